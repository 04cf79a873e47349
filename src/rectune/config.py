"""Paths and defaults, in one place."""

from __future__ import annotations

from pathlib import Path

#: The repository root (``src/rectune/config.py`` -> two levels up from ``src``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
MODELS_DIR = PROJECT_ROOT / "models"

RAW_SUBDIR = "raw"
PROCESSED_SUBDIR = "processed"

DEFAULT_SEED = 42
DEFAULT_DATASET = "synthetic"


def raw_dir(data_dir: Path = DATA_DIR) -> Path:
    """Folder of downloaded archives and their extracted contents (immutable inputs)."""
    return Path(data_dir) / RAW_SUBDIR


def processed_dir(data_dir: Path = DATA_DIR) -> Path:
    """Folder holding one sub-folder of split matrices per dataset name."""
    return Path(data_dir) / PROCESSED_SUBDIR
