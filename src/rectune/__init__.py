"""rectune: an MLflow-tracked tuning pipeline for implicit-feedback recommenders.

The stages as functions for notebooks, :func:`split`, :func:`tune`, :func:`train`,
:func:`evaluate` and :func:`report` (:mod:`rectune.api`), are imported on first use, so
``import rectune`` stays light.
"""

__version__ = "0.1.0"

from rectune._faces import lazy_face
from rectune.errors import (
    ConfigError,
    DataError,
    DatasetNotFoundError,
    DownloadError,
    ModelError,
    RectuneError,
)

__getattr__, _dir = lazy_face("rectune", {"api": ("evaluate", "report", "split", "train", "tune")})

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "DownloadError",
    "ModelError",
    "RectuneError",
    "__version__",
    "evaluate",
    "report",
    "split",
    "train",
    "tune",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *_dir()})
