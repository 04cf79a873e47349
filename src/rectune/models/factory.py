"""Building implicit's ALS and BPR models on a device, fitting them, converting them.

:func:`build_model` validates the hyperparameters, picks the device and seeds the
model; :func:`fit_model` applies rectune's two hyperparameters around implicit's fit
(see :mod:`rectune.models`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import implicit.cpu.als
import implicit.cpu.bpr
import implicit.gpu
import implicit.gpu.als
import implicit.gpu.bpr
import implicit.nearest_neighbours
import numpy as np
import scipy.sparse as sp

from rectune.errors import ModelError
from rectune.models.hyperparameters import HYPERPARAMETERS, ModelName, validate_hyperparameters

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)

#: Called after each training iteration with the number of iterations done (1-based).
IterationCallback = Callable[[int], None]


def cuda_available() -> bool:
    """Whether implicit was built with CUDA and sees a GPU."""
    return bool(implicit.gpu.HAS_CUDA)


def resolve_device(device: str) -> Literal["cpu", "cuda"]:
    """``auto`` becomes ``cuda`` when implicit reports CUDA available, else ``cpu``."""
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ModelError(
            "device 'cuda' was asked for, but implicit reports no CUDA device "
            "(implicit.gpu.HAS_CUDA is False); use device 'cpu' or 'auto'"
        )
    return device  # type: ignore[return-value]


def build_model(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    device: str = "auto",
    seed: int = 42,
    num_threads: int | None = None,
) -> Any:
    """Build an unfitted implicit ALS or BPR model.

    Parameters
    ----------
    name : {"als", "bpr"}
    params : mapping, optional
        Hyperparameters (see :data:`HYPERPARAMETERS`); missing ones take the defaults.
    device : {"auto", "cpu", "cuda"}
    seed : int
        ``random_state`` of the model.
    num_threads : int, optional
        CPU threads; ``None`` means all cores for ALS and 1 for BPR (deterministic).
    """
    params = validate_hyperparameters(name, params)
    adjustments = Adjustments(
        weighting=params.pop("weighting", "stored"),
        popularity_correction=params.pop("popularity_correction", 0.0),
    )
    model = _implicit_model(name, params, resolve_device(device), seed, num_threads)
    model.rectune_adjustments = adjustments
    return model


def _implicit_model(
    name: str, params: dict[str, Any], resolved: str, seed: int, num_threads: int | None
) -> Any:
    if resolved == "cuda":
        ignored = [key for key in params if not HYPERPARAMETERS[name][key].cuda]
        kwargs = {key: value for key, value in params.items() if key not in ignored}
        module = implicit.gpu.als if name == "als" else implicit.gpu.bpr
        cls = (
            module.AlternatingLeastSquares if name == "als" else module.BayesianPersonalizedRanking
        )
        try:
            return cls(**kwargs, random_state=seed)
        except ValueError as err:  # e.g. implicit built without RMM
            raise ModelError(f"cannot build {name.upper()} on CUDA: {err}") from err
    if num_threads is None:
        num_threads = 0 if name == "als" else 1
    if num_threads < 0:
        raise ModelError(f"num_threads must be 0 (all cores) or more, got {num_threads}")
    if name == "als":
        return implicit.cpu.als.AlternatingLeastSquares(
            **params, num_threads=num_threads, random_state=seed
        )
    return implicit.cpu.bpr.BayesianPersonalizedRanking(
        **params, num_threads=num_threads, random_state=seed
    )


def fit_model(
    model: Any,
    user_items: sp.csr_matrix,
    *,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
) -> Any:
    """Fit ``model`` on a user x item CSR matrix; return it.

    The matrix is weighted first and the popularity correction applied after, as the
    model's rectune hyperparameters say (see :mod:`rectune.models`). While the fit
    runs, :func:`rectune.evaluation.ranking.factors_of` already scores with the
    correction, so ``callback(iterations_done)``, run after every iteration with a
    1-based count, sees the model as it would be if the fit stopped there. An exception
    raised in it (say, ``optuna.TrialPruned``) stops the fit and propagates.
    """
    user_items = sp.csr_matrix(user_items, dtype=np.float32)
    adjustments = getattr(model, "rectune_adjustments", None) or Adjustments()
    model.pending_item_bias = adjustments.item_bias(user_items)

    def on_iteration(iteration: int, *_: Any) -> None:
        callback(iteration + 1)

    try:
        model.fit(
            adjustments.training_matrix(user_items),
            show_progress=show_progress,
            callback=on_iteration if callback else None,
        )
    finally:
        # A fit stopped by its callback (pruned) is left as it was scored, corrected too.
        _add_item_bias(model, model.pending_item_bias)
        model.pending_item_bias = None
    return model


@dataclass(frozen=True)
class Adjustments:
    """rectune's hyperparameters around an implicit fit (see :mod:`rectune.models`)."""

    weighting: str = "stored"
    popularity_correction: float = 0.0

    def training_matrix(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """The matrix ALS fits: ``user_items`` weighted by :attr:`weighting`."""
        if self.weighting == "stored":
            return user_items
        if self.weighting == "binary":
            weighted = user_items.copy()
            weighted.data[:] = 1.0
            return weighted
        weight = (
            implicit.nearest_neighbours.bm25_weight
            if self.weighting == "bm25"
            else implicit.nearest_neighbours.tfidf_weight
        )
        return sp.csr_matrix(weight(user_items), dtype=np.float32)

    def item_bias(self, user_items: sp.csr_matrix) -> np.ndarray | None:
        """``beta * log(n_i)`` per item (``n_i``: its training users, at least 1), or
        ``None`` without a correction."""
        if not self.popularity_correction:
            return None
        counts = np.bincount(user_items.indices, minlength=user_items.shape[1])
        return (self.popularity_correction * np.log(np.maximum(counts, 1))).astype(np.float32)


def _add_item_bias(model: Any, bias: np.ndarray | None) -> None:
    """Add ``bias`` to a fitted BPR model's item bias (the last item factor column)."""
    if bias is None or model.item_factors is None:
        return
    if _is_gpu(model):
        items = model.item_factors.to_numpy()
        items[:, -1] += bias
        model.item_factors = implicit.gpu.Matrix(items)
    else:
        model.item_factors[:, -1] += bias


def to_cpu(model: Any) -> Any:
    """The CPU version of a model (GPU models are copied; CPU models returned as is)."""
    return model.to_cpu() if _is_gpu(model) else model


def _is_gpu(model: Any) -> bool:
    return type(model).__module__.startswith("implicit.gpu")


def model_name_of(model: Any) -> ModelName:
    """``als`` or ``bpr`` for an implicit model instance."""
    if type(model).__name__ == "AlternatingLeastSquares":
        return "als"
    if type(model).__name__ == "BayesianPersonalizedRanking":
        return "bpr"
    raise ModelError(f"not an implicit ALS or BPR model: {type(model).__name__}")
