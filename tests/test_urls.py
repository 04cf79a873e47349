"""Passwords in URLs are redacted wherever they could be printed or logged."""

import pytest

from rectune.urls import redact_text, redact_url


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
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_scrubs_every_url_in_a_message():
    message = (
        "API request to http://u:secret@127.0.0.1:1/api/2.0/x failed; "
        "also tried mysql://root:hunter2@db/x"
    )
    assert redact_text(message) == (
        "API request to http://u:***@127.0.0.1:1/api/2.0/x failed; also tried mysql://root:***@db/x"
    )
