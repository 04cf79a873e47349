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

Modules
-------
hyperparameters
    The allowed hyperparameters, their ranges and defaults; checking them.
factory
    Devices, building and fitting models (with rectune's two hyperparameters).
files
    Saving and loading fitted models (``.npz``, no pickle).
"""

from rectune.models.factory import (
    DEVICES,
    Adjustments,
    Device,
    IterationCallback,
    build_model,
    cuda_available,
    fit_model,
    model_name_of,
    resolve_device,
    to_cpu,
)
from rectune.models.files import load_factors, load_model, save_model
from rectune.models.hyperparameters import (
    DEFAULT_HYPERPARAMETERS,
    HYPERPARAMETERS,
    MODEL_NAMES,
    Hyperparameter,
    ModelName,
    check_model_name,
    validate_hyperparameters,
)

__all__ = [
    "DEFAULT_HYPERPARAMETERS",
    "DEVICES",
    "HYPERPARAMETERS",
    "MODEL_NAMES",
    "Adjustments",
    "Device",
    "Hyperparameter",
    "IterationCallback",
    "ModelName",
    "build_model",
    "check_model_name",
    "cuda_available",
    "fit_model",
    "load_factors",
    "load_model",
    "model_name_of",
    "resolve_device",
    "save_model",
    "to_cpu",
    "validate_hyperparameters",
]
