"""Redacting secrets from URLs before they are printed or logged."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
# scheme://user:password@  (the password may not contain '@', '/' or whitespace)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@/\s]+@")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    >>> redact_url("postgresql://tuner:s3cret@db:5432/optuna")
    'postgresql://tuner:***@db:5432/optuna'
    >>> redact_url("sqlite:///models/optuna.db")
    'sqlite:///models/optuna.db'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact_text(url)
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{netloc}"))


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in free text with the password as ``***``.

    Error messages from database drivers and MLflow quote the URL they failed on.
    """
    return _CREDENTIALS.sub(lambda m: f"{m['head']}{REDACTED}@", text)
