"""Saving fitted models in implicit's own ``.npz`` format and loading them, never with
pickle."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import implicit.cpu.als
import implicit.cpu.bpr
import numpy as np

from rectune._io import arrays_to_npz_bytes, write_bytes_atomic
from rectune.errors import ModelError
from rectune.models.factory import model_name_of, to_cpu
from rectune.models.hyperparameters import MODEL_NAMES, ModelName


def save_model(model: Any, path: str | Path) -> Path:
    """Save a fitted model atomically in implicit's ``.npz`` format (no pickle).

    GPU models are converted to CPU first. A ``model_name`` entry records ALS or BPR so
    that :func:`load_model` can tell them apart.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    cpu_model = to_cpu(model)
    entries = {"model_name": np.array(model_name_of(cpu_model))}
    # implicit's own save writes the entries its load() expects; re-pack them
    # deterministically (np.savez stamps the time) with the model name added.
    buffer = io.BytesIO()
    cpu_model.save(buffer)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        entries.update(stored.items())
    write_bytes_atomic(path, arrays_to_npz_bytes(entries))
    return path


#: What numpy raises on a damaged, truncated or pickle-carrying ``.npz`` file.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _unreadable(path: Path, err: Exception) -> ModelError:
    """Why ``path`` is no saved model, in rectune's words: numpy's own advice for a file
    that is not an archive is to load it unsafely, which rectune never does."""
    text = str(err)
    if "allow_pickle" in text or "pickled" in text:
        reason = "it is neither a NumPy archive nor free of pickled objects (never loaded)"
    elif isinstance(err, zipfile.BadZipFile):
        reason = "it is not a complete NumPy archive (cut short or overwritten?)"
    else:
        reason = text.splitlines()[0] if text else type(err).__name__
    return ModelError(f"{path} is not a saved model: {reason}")


def _saved_model_name(path: Path) -> ModelName:
    """The ``model_name`` entry of a file written by :func:`save_model`."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as stored:
            name = str(stored["model_name"]) if "model_name" in stored else None
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err
    if name not in MODEL_NAMES:
        raise ModelError(f"{path} is not a rectune-saved ALS or BPR model")
    return name  # type: ignore[return-value]


def load_model(path: str | Path) -> Any:
    """Load a model saved by :func:`save_model` (CPU, no pickle).

    Raises
    ------
    ModelError
        When the file is missing or is not a saved ALS/BPR model.
    """
    path = Path(path)
    name = _saved_model_name(path)
    cls = (
        implicit.cpu.als.AlternatingLeastSquares
        if name == "als"
        else implicit.cpu.bpr.BayesianPersonalizedRanking
    )
    try:
        model = cls.load(str(path))
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err
    if hasattr(model, "model_name"):
        del model.model_name
    return model


def load_factors(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(user_factors, item_factors)`` of a saved model, as
    :func:`rectune.evaluation.ranking.factors_of` gives them, read straight from the file.

    No implicit model is built, so serving processes skip implicit's thread checks.
    """
    path = Path(path)
    _saved_model_name(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return np.asarray(stored["user_factors"]), np.asarray(stored["item_factors"])
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err
