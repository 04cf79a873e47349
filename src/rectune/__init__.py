"""rectune: an MLflow-tracked tuning pipeline for implicit-feedback recommenders."""

__version__ = "0.1.0"

from rectune.errors import (
    ConfigError,
    DataError,
    DatasetNotFoundError,
    DownloadError,
    ModelError,
    RectuneError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "DownloadError",
    "ModelError",
    "RectuneError",
    "__version__",
]
