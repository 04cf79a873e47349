"""ALS and BPR from implicit: one factory, fitting with an iteration callback, save/load.

``build_model("als", {"factors": 64})`` validates the hyperparameters against
:data:`HYPERPARAMETERS`, fills the rest from :data:`DEFAULT_HYPERPARAMETERS` (implicit's
own defaults, plus rectune's two below), picks the device and seeds the model. Models
are saved in implicit's own ``.npz`` format, which loads without pickle.

Two hyperparameters are rectune's, applied around implicit's fit by :func:`fit_model`:

* ALS ``weighting``: what the training matrix's values become before the fit, where
  implicit's confidence is ``1 + alpha * value``: ``stored`` (the values as
  ``split_data.py`` wrote them: ratings, counts or 1s), ``binary`` (1 per interaction),
  ``bm25`` or ``tfidf`` (implicit's ``bm25_weight(K1=100, B=0.8)`` / ``tfidf_weight`` of
  the stored values).
* BPR ``popularity_correction`` ``beta``: implicit's BPR draws each negative item in
  proportion to its popularity (from the training matrix's entries; Cornac and the BPR
  paper draw uniformly), so it learns scores relative to popularity and ranks popular
  items too low. After the fit, ``beta * log(n_i)`` is added to each item's bias, ``n_i``
  being its number of training users (at least 1): the logQ correction of sampled
  training (Yi et al., 2019). 0 gives implicit's model as it is; 1 is the correction a
  sampled softmax takes (for BPR's pairwise loss a heuristic, measured in
  ``benchmarks/quality.py``). It is in the saved factors, so recommending and serving
  need nothing more.

Determinism: ALS is deterministic for a fixed seed at any thread count. BPR is only
deterministic with one thread, so BPR on the CPU defaults to ``num_threads=1``; pass
more threads explicitly to trade reproducibility for speed.
"""

from __future__ import annotations

import io
import numbers
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import implicit.cpu.als
import implicit.cpu.bpr
import implicit.gpu
import implicit.gpu.als
import implicit.gpu.bpr
import implicit.nearest_neighbours
import numpy as np
import scipy.sparse as sp

from rectune._io import arrays_to_npz_bytes, write_bytes_atomic
from rectune.errors import ModelError, excerpt

ModelName = Literal["als", "bpr"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)

#: Called after each training iteration with the number of iterations done (1-based).
IterationCallback = Callable[[int], None]


@dataclass(frozen=True)
class Hyperparameter:
    """Type and allowed range of one hyperparameter."""

    kind: type
    low: float | None = None
    low_inclusive: bool = True
    cuda: bool = True  # accepted by the GPU implementation
    help: str = ""
    #: The allowed values of a ``str`` hyperparameter.
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return f"one of {', '.join(self.choices)}"
        if self.low is None:
            return self.kind.__name__
        return f"{self.kind.__name__} {'>=' if self.low_inclusive else '>'} {self.low:g}"

    def coerce(self, name: str, value: Any) -> Any:
        if isinstance(value, bool | np.bool_) and self.kind is not bool:
            # YAML's and JSON's true is no count or weight, though Python calls it 1.
            raise ModelError(f"hyperparameter {name!r} must be {self.describe()}, got {value!r}")
        if self.kind is str:
            if isinstance(value, str) and value in self.choices:
                return value
        elif self.kind is bool:
            if isinstance(value, bool | np.bool_):
                return bool(value)
        elif self.kind is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
                value = int(value)
                if self._in_range(value):
                    return value
            elif (
                isinstance(value, numbers.Real)
                and float(value).is_integer()
                and self._in_range(value)
            ):
                return int(value)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            value = float(value)
            if np.isfinite(value) and self._in_range(value):
                return value
        raise ModelError(f"hyperparameter {name!r} must be {self.describe()}, got {excerpt(value)}")

    def _in_range(self, value: float) -> bool:
        if self.low is None:
            return True
        return value >= self.low if self.low_inclusive else value > self.low


HYPERPARAMETERS: dict[str, dict[str, Hyperparameter]] = {
    "als": {
        "factors": Hyperparameter(int, 1, help="latent factors"),
        "regularization": Hyperparameter(float, 0.0, help="L2 penalty"),
        "alpha": Hyperparameter(
            float, 0.0, low_inclusive=False, help="confidence weight of observed entries"
        ),
        "iterations": Hyperparameter(int, 1, help="ALS sweeps"),
        "weighting": Hyperparameter(
            str,
            choices=("stored", "binary", "bm25", "tfidf"),
            help="training values before the fit (rectune's)",
        ),
        "use_cg": Hyperparameter(bool, cuda=False, help="conjugate-gradient solver"),
        "use_native": Hyperparameter(bool, cuda=False, help="native extensions"),
    },
    "bpr": {
        "factors": Hyperparameter(int, 1, help="latent factors (plus an item bias)"),
        "learning_rate": Hyperparameter(float, 0.0, low_inclusive=False, help="SGD step"),
        "regularization": Hyperparameter(float, 0.0, help="L2 penalty"),
        "iterations": Hyperparameter(int, 1, help="SGD epochs"),
        "verify_negative_samples": Hyperparameter(
            bool, help="resample negatives the user has liked"
        ),
        "popularity_correction": Hyperparameter(
            float, 0.0, help="beta of the log-popularity added to item biases (rectune's)"
        ),
    },
}

DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "als": {
        "factors": 100,
        "regularization": 0.01,
        "alpha": 1.0,
        "iterations": 15,
        "weighting": "stored",
    },
    "bpr": {
        "factors": 100,
        "learning_rate": 0.01,
        "regularization": 0.01,
        "iterations": 100,
        "popularity_correction": 1.0,
    },
}


def check_model_name(name: str) -> ModelName:
    """Return ``name`` if it is a known model, else raise :class:`ModelError`."""
    if name not in MODEL_NAMES:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return name  # type: ignore[return-value]


def validate_hyperparameters(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check and coerce ``params`` for model ``name``, filling in the defaults.

    Raises
    ------
    ModelError
        For an unknown parameter (listing the allowed ones) or a value of the wrong type
        or out of range (giving the range).
    """
    spec = HYPERPARAMETERS[check_model_name(name)]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ModelError(
            f"unknown {name.upper()} hyperparameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; allowed: {', '.join(spec)}"
        )
    merged = {**DEFAULT_HYPERPARAMETERS[name], **params}
    return {key: spec[key].coerce(key, value) for key, value in merged.items()}


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
    model's rectune hyperparameters say (see the module's docstring). While the fit
    runs, :func:`rectune.evaluation.metrics.factors_of` already scores with the correction, so
    ``callback(iterations_done)``, run after every iteration with a 1-based count, sees
    the model as it would be if the fit stopped there. An exception raised in it (say,
    ``optuna.TrialPruned``) stops the fit and propagates.
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
    """rectune's hyperparameters around an implicit fit (see the module's docstring)."""

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
    """``(user_factors, item_factors)`` of a saved model, as :func:`metrics.factors_of`
    gives them, read straight from the file.

    No implicit model is built, so serving processes skip implicit's thread checks.
    """
    path = Path(path)
    _saved_model_name(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return np.asarray(stored["user_factors"]), np.asarray(stored["item_factors"])
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err
