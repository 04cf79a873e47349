"""Redacting secrets from URLs before they are printed or logged."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    >>> redact_url("postgresql://tuner:s3cret@db:5432/optuna")
    'postgresql://tuner:***@db:5432/optuna'
    >>> redact_url("sqlite:///models/optuna.db")
    'sqlite:///models/optuna.db'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))
