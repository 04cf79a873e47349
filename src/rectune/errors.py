"""Domain exceptions.

Every error a user can cause with bad input is a :class:`RectuneError`; the entry
scripts turn it into one line on stderr and exit code 2, never a traceback.
"""


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
