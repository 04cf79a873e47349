"""Redacting secrets from URLs before they are printed or logged.

A URL's password is masked by where it can be, not by what it looks like. Every form a
driver accepts puts it between the first ``:`` after ``scheme://user`` and the **last**
``@`` of the URL (a host has no ``@``): percent-encoded (``p%40ss``), with raw ``:`` or
``/`` (``p%40ss:w/rd``, which SQLAlchemy reads and urllib does not), and with a raw
``@`` (``p@ss``, where SQLAlchemy's parser gives the part after the first ``@`` to the
host, so masking only its password would leave a fragment). Everything in that span is
masked, so an ``@`` in a URL's path or query masks more than the password, never less.
Query parameters that carry secrets (``?password=...``, as libpq and SQLAlchemy take
them) are masked too.

Each password masked is also remembered for this process, so that a driver's error
quoting it outside its URL (decoded, say) is scrubbed by :func:`redact_text` as well.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

REDACTED = "***"
#: Query parameters whose values are secrets, compared without case.
SECRET_PARAMETERS = frozenset(
    {"password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token", "api_key"}
)
#: Shorter remembered passwords are not scrubbed from free text: every "ab" would go.
MIN_REMEMBERED = 4

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# A URL in free text runs to whitespace or a quote or bracket that closes it.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*")
_remembered: set[str] = set()
_remembering = threading.Lock()  # writer threads redact while the main one remembers


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``.

    >>> redact_url("postgresql://tuner:s3cret@db:5432/optuna")
    'postgresql://tuner:***@db:5432/optuna'
    >>> redact_url("postgresql://tuner:p@ss:w/rd@db/optuna?password=x&sslmode=require")
    'postgresql://tuner:***@db/optuna?password=***&sslmode=require'
    >>> redact_url("sqlite:///models/optuna.db")
    'sqlite:///models/optuna.db'
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return _scrub_remembered(url)
    head, rest = url[: scheme.end()], url[scheme.end() :]
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at:]
        user, colon, password = userinfo.partition(":")
        if colon:
            _remember(password)
            head += f"{user}:{REDACTED}"
        else:
            head += userinfo
    return _scrub_remembered(head + _redact_query(rest))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (see :func:`redact_url`), and every
    password seen in a URL so far masked wherever else it appears.

    Error messages from database drivers and MLflow quote the URL they failed on.
    """
    return _scrub_remembered(_URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text))


def _redact_query(rest: str) -> str:
    base, mark, query = rest.partition("?")
    if not mark:
        return rest
    fields = []
    for field in query.split("&"):
        key, equals, _ = field.partition("=")
        if equals and unquote(key).lower() in SECRET_PARAMETERS:
            _remember(field[len(key) + 1 :])
            field = f"{key}={REDACTED}"
        fields.append(field)
    return f"{base}?{'&'.join(fields)}"


def has_raw_at_in_password(url: str) -> bool:
    """Whether ``url``'s password holds an unencoded ``@``: drivers then read part of
    it as the host (and quote that part in their errors), so such a URL cannot work;
    ``%40`` is the ``@`` they read as part of the password."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return False
    userinfo = url[scheme.end() :].rpartition("@")[0]
    return "@" in userinfo.partition(":")[2]


def _remember(secret: str) -> None:
    decoded = unquote(secret)
    # The pieces too: a driver that split a raw '@' quotes the piece it took for a host.
    with _remembering:
        for form in {secret, decoded, quote(decoded, safe=""), *decoded.split("@")}:
            if len(form) >= MIN_REMEMBERED:
                _remembered.add(form)


def _scrub_remembered(text: str) -> str:
    # Longest first: a secret that contains another is masked whole. Only where it
    # stands apart from letters, digits and '_': the common password "postgres" must
    # not turn every "postgresql://" into "***ql://".
    with _remembering:
        secrets = sorted(_remembered, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = re.sub(
                rf"(?<!\w){re.escape(secret)}(?!\w)",
                lambda _: REDACTED,
                text,
            )
    return text


def protect(*urls: str | None) -> None:
    """Remember the passwords of ``urls`` (the storage and tracking URLs a command
    was given) before anything can quote them, so that :func:`redact_text` masks them
    in any form, in any message."""
    for url in urls:
        if url:
            redact_url(url)


def first_line(err: BaseException) -> str:
    """An exception's first line with any password in it redacted."""
    text = str(err).strip()
    return redact_text(text.splitlines()[0] if text else type(err).__name__)


__all__ = [
    "REDACTED",
    "SECRET_PARAMETERS",
    "first_line",
    "has_raw_at_in_password",
    "protect",
    "redact_text",
    "redact_url",
]
