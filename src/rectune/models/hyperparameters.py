"""The hyperparameters of ALS and BPR: their types, ranges and defaults, and checking them.

The allowed names are implicit's own keyword arguments plus rectune's two (ALS
``weighting``, BPR ``popularity_correction``; see :mod:`rectune.models`); the defaults are
implicit's, plus those two.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from rectune.errors import ModelError, excerpt

ModelName = Literal["als", "bpr"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


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
