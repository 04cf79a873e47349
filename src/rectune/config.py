"""Paths and defaults, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from rectune.errors import ConfigError

_CHECKOUT = Path(__file__).resolve().parents[2]  # src/rectune/config.py -> the repository
#: The repository root when rectune runs from its checkout (the scripts, or ``pip install
#: -e .``); the current folder when it is installed as a package (``pip install .``),
#: where the repository's data/ and models/ would lie inside site-packages.
PROJECT_ROOT = _CHECKOUT if (_CHECKOUT / "src" / "rectune").is_dir() else Path.cwd()
DATA_DIR = PROJECT_ROOT / "data"
MODELS_DIR = PROJECT_ROOT / "models"

RAW_SUBDIR = "raw"
PROCESSED_SUBDIR = "processed"
REPORTS_SUBDIR = "reports"
REPORTS_DIR = MODELS_DIR / REPORTS_SUBDIR
#: The tuned parameters' file in the models folder (tune writes it, train reads it).
BEST_PARAMETERS_FILE = "best_hyperparameters.json"
#: Moves ``data/`` for every stage (the ``--data-dir`` default).
DATA_DIR_ENV = "RECTUNE_DATA_DIR"

DEFAULT_SEED = 42
DEFAULT_DATASET = "synthetic"


def parse_ks(text: str) -> tuple[int, ...]:
    """``"5,10,20"`` -> ``(5, 10, 20)``: distinct positive list lengths, ascending.

    Raises
    ------
    rectune.errors.ConfigError
        When a part is not a whole number, or none is given, or one is below 1.
    """
    try:
        ks = {int(part) for part in str(text).split(",") if part.strip()}
    except ValueError:
        raise ConfigError(f"{text!r} is not a comma-separated list of integers") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"{text!r} needs one or more positive integers, e.g. 5,10,20")
    return tuple(sorted(ks))


def default_data_dir() -> Path:
    """The ``--data-dir`` default: ``$RECTUNE_DATA_DIR`` when set, else ``data/``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DATA_DIR)


def best_parameters_path(models_dir: Path = MODELS_DIR) -> Path:
    """The tuned parameters' file in ``models_dir``: tune's ``--output`` and train's bare
    ``--hyperparameters`` by default."""
    return Path(models_dir) / BEST_PARAMETERS_FILE


def default_reports_dir(models_dir: Path = MODELS_DIR) -> Path:
    """Where a stage's reports go by default: ``reports/`` in the models folder."""
    return Path(models_dir) / REPORTS_SUBDIR


def raw_dir(data_dir: Path = DATA_DIR) -> Path:
    """Folder of downloaded archives and their extracted contents (immutable inputs)."""
    return Path(data_dir) / RAW_SUBDIR


def processed_dir(data_dir: Path = DATA_DIR) -> Path:
    """Folder holding one sub-folder of split matrices per dataset name."""
    return Path(data_dir) / PROCESSED_SUBDIR
