"""Passwords in URLs are redacted wherever they could be printed or logged."""

import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectune import urls
from rectune.urls import has_raw_at_in_password, protect, redact_text, redact_url


@pytest.fixture(autouse=True)
def forget_passwords(monkeypatch):
    """Each test starts with no remembered passwords."""
    monkeypatch.setattr(urls, "_remembered", set())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://tuner:s3cret@db:5432/optuna", "postgresql://tuner:***@db:5432/optuna"),
        (
            "postgresql+psycopg://u:p%40ss@h/db?sslmode=require",
            "postgresql+psycopg://u:***@h/db?sslmode=require",
        ),
        ("http://user:pw@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
        ("sqlite:///models/optuna.db", "sqlite:///models/optuna.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("postgresql://u:secret@h:99999/x", "postgresql://u:***@h:99999/x"),  # bad port
        # Raw ':' and '/' in the password: SQLAlchemy reads it, urllib does not.
        (
            "postgresql://reluser:p%40ss:w/rd@127.0.0.1:5432/db",
            "postgresql://reluser:***@127.0.0.1:5432/db",
        ),
        # A raw '@': all of it goes, not only what SQLAlchemy takes for the password.
        ("postgresql://u:p@ss@127.0.0.1/db", "postgresql://u:***@127.0.0.1/db"),
        # Passwords as query parameters, as libpq and SQLAlchemy take them.
        (
            "postgresql://u@h/db?sslmode=require&password=hunter22",
            "postgresql://u@h/db?sslmode=require&password=***",
        ),
        ("postgresql://h/db?PASSWORD=x&token=abc", "postgresql://h/db?PASSWORD=***&token=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),  # a user, no password
        ("models/optuna.journal", "models/optuna.journal"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_scrubs_every_url_in_a_message():
    message = (
        "API request to http://u:secret@127.0.0.1:1/api/2.0/x failed; "
        "also tried 'mysql://root:hunter2@db/x'"
    )
    assert redact_text(message) == (
        "API request to http://u:***@127.0.0.1:1/api/2.0/x failed; "
        "also tried 'mysql://root:***@db/x'"
    )


def test_a_protected_password_is_masked_wherever_a_message_quotes_it():
    protect("postgresql://u:p%40ss:w/rd@h/db", None)
    # Drivers quote it decoded, or the piece of a raw '@' they took for the host.
    assert redact_text('password "p@ss:w/rd" rejected') == 'password "***" rejected'
    protect("postgresql://u:first@second@h/db")
    assert redact_text('could not translate host name "second@h"') == (
        'could not translate host name "***@h"'
    )
    assert redact_text("first") == "***"


def test_a_raw_at_in_the_password_is_found():
    assert has_raw_at_in_password("postgresql://u:p@ss@h/db")
    assert not has_raw_at_in_password("postgresql://u:p%40ss@h/db")
    assert not has_raw_at_in_password("postgresql://u@h/db?x=a@b")
    assert not has_raw_at_in_password("models/optuna.journal")


# Any printable character; the forms below are how users write such a password.
PASSWORDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=urls.MIN_REMEMBERED,
    max_size=24,
)
ASCII_PASSWORDS = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation,
    min_size=urls.MIN_REMEMBERED,
    max_size=24,
)


def forms(password: str) -> list[tuple[str, str]]:
    """URLs holding ``password`` as users write them, each with the password it holds."""
    encoded = quote(password, safe="")
    return [
        (f"postgresql://tuner:{encoded}@127.0.0.1:5432/optuna", password),  # percent-encoded
        (f"postgresql+psycopg://tuner:{password}@db:5432/optuna?sslmode=require", password),
        (f"http://tuner:{password}@127.0.0.1:5000", password),
        (f"postgresql://tuner@127.0.0.1/optuna?sslmode=require&password={encoded}", password),
        (f"mysql://tuner:{password}@2x@db/x", f"{password}@2x"),  # a raw '@' for certain
    ]


def leaks(password: str, text: str, clean: str) -> bool:
    """Whether ``password`` (or its encoding) is in ``text`` more often than in ``clean``,
    the same text made with no password (:data:`urls.REDACTED` in its place): a password
    such as ``ttp:`` also stands in the ``http://`` around it, and that is no leak."""
    return (
        any(
            text.count(form) > clean.count(form)
            for form in {password, quote(password, safe="")}
            if len(form) >= 2
        )
        and urls.REDACTED not in password
    )


def forms_and_clean(password: str) -> list[tuple[str, str, str, str]]:
    """:func:`forms` of ``password``, each beside the same form with no password."""
    return [
        (url, secret, clean_url, clean_secret)
        for (url, secret), (clean_url, clean_secret) in zip(
            forms(password), forms(urls.REDACTED), strict=True
        )
    ]


@settings(max_examples=300, deadline=None)
@given(password=PASSWORDS)
def test_no_url_form_of_a_password_survives_redact_url(password):
    for url, secret, clean, _ in forms_and_clean(password):
        assert not leaks(secret, redact_url(url), clean), url


@settings(max_examples=300, deadline=None)
@given(password=ASCII_PASSWORDS, before=st.sampled_from(["at ", "(", "url=", "'", '"']))
def test_no_url_form_survives_in_a_message_once_protected(password, before):
    for url, secret, clean_url, clean_secret in forms_and_clean(password):
        urls._remembered.clear()
        protect(url)
        message = f"connection to {before}{url} failed: {secret} rejected"
        clean = f"connection to {before}{clean_url} failed: {clean_secret} rejected"
        assert not leaks(secret, redact_text(message), clean), message


@settings(max_examples=300, deadline=None)
@given(
    password=st.text(
        alphabet=string.ascii_letters + string.digits + "%:/@?#&=+!$-_.~", min_size=4, max_size=24
    )
)
def test_a_url_in_a_message_is_redacted_without_being_protected_first(password):
    for url, secret, clean_url, _ in forms_and_clean(password):
        urls._remembered.clear()
        message, clean = f"tried {url}; it failed", f"tried {clean_url}; it failed"
        assert not leaks(secret, redact_text(message), clean), url


def test_a_remembered_password_that_is_a_common_word_leaves_words_whole():
    protect("postgresql://tuner:postgres@db/optuna")
    assert redact_url("postgresql://tuner:postgres@db/postgres_runs") == (
        "postgresql://tuner:***@db/postgres_runs"
    )
    assert redact_text('password "postgres" refused') == 'password "***" refused'


def test_a_password_that_also_stands_in_the_url_around_it_is_checked_for_itself():
    # Found by the test above: "ttp:" is in every http:// URL, redacted or not.
    message = "tried http://tuner:ttp:@127.0.0.1:5000; it failed"
    clean = "tried http://tuner:***@127.0.0.1:5000; it failed"
    assert redact_text(message) == clean
    assert not leaks("ttp:", redact_text(message), clean)
    assert leaks("ttp:", message, clean)  # the password itself, unredacted
