"""Domain exceptions.

Every error a user can cause with bad input is a :class:`RectuneError`; the entry
scripts turn it into one line on stderr and exit code 2, never a traceback.
"""

from typing import Any

#: The longest quote of a user's value in a message.
EXCERPT_CHARS = 80


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message quotes what it refuses,
    and a value can be megabytes long (a YAML alias bomb expands to 140 MB)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} characters)"


class RectuneError(Exception):
    """Base class of every error caused by bad input or configuration."""


class ConfigError(RectuneError, ValueError):
    """An option or parameter has a value outside its allowed range."""


class DataError(RectuneError, ValueError):
    """Input interactions are missing, empty or malformed."""


class DatasetNotFoundError(RectuneError, FileNotFoundError):
    """A processed dataset was asked for that has not been made yet."""


class DownloadError(RectuneError):
    """A public dataset could not be downloaded or failed its checksum."""


class ModelError(RectuneError, ValueError):
    """A model name, hyperparameter, device or model file is invalid."""
