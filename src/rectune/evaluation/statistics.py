"""Uncertainty of per-user metric means: bootstrap intervals and paired tests.

Every evaluated user contributes one value per metric, so a metric's mean is a mean
over users, and its uncertainty comes from which users happened to be sampled. The
bootstrap resamples users with replacement; comparisons between two systems are paired
(the same users, the same resamples), which is far more sensitive than comparing two
separate intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from rectune.errors import ConfigError

# Resample-by-user count cells built at once: bounds memory for large user counts.
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedComparison:
    """System A minus system B on the same users.

    Attributes
    ----------
    difference : float
        ``mean(a) - mean(b)``.
    low, high : float
        Bootstrap confidence interval of the difference.
    p_value : float
        Two-sided paired t-test of ``a_u - b_u`` against zero; 1.0 when every
        difference is zero.
    """

    difference: float
    low: float
    high: float
    p_value: float


def bootstrap_means(values: np.ndarray, n_resamples: int = 1000, seed: int = 42) -> np.ndarray:
    """Means of ``values`` over ``n_resamples`` bootstrap resamples of its columns (users).

    Parameters
    ----------
    values : numpy.ndarray, shape (n_series, n_users)
        One row per series (say, one metric of one system); columns are users. All rows
        are resampled with the same users, so differences between rows stay paired.
    n_resamples : int
    seed : int
        The resamples are a function of ``seed`` and ``n_users`` only.

    Returns
    -------
    numpy.ndarray, shape (n_resamples, n_series)
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n_users = values.shape[1]
    if n_users == 0:
        raise ConfigError("cannot bootstrap over zero users")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n_users)
    means = np.empty((n_resamples, values.shape[0]))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        picks = rng.integers(0, n_users, size=(size, n_users))
        # counts[r, u]: how often resample r drew user u; its mean is counts @ values / n.
        offsets = (np.arange(size)[:, None] * n_users + picks).ravel()
        counts = np.bincount(offsets, minlength=size * n_users).reshape(size, n_users)
        means[start : start + size] = counts @ values.T / n_users
    return means


def percentile_interval(
    resampled: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval of each column of ``resampled``."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail], axis=0)
    return low, high


def mean_intervals(
    values: np.ndarray, resampled: np.ndarray, confidence: float = 0.95
) -> list[Interval]:
    """One :class:`Interval` per row of ``values`` from its bootstrap means."""
    low, high = percentile_interval(resampled, confidence)
    means = np.atleast_2d(values).mean(axis=1)
    return [
        Interval(float(m), float(lo), float(hi)) for m, lo, hi in zip(means, low, high, strict=True)
    ]


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    resampled_a: np.ndarray,
    resampled_b: np.ndarray,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare two systems' per-user values ``a`` and ``b`` (same users, same order).

    ``resampled_a`` and ``resampled_b`` are their bootstrap means from the same
    resamples (:func:`bootstrap_means` on rows of one array).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    differences = a - b
    low, high = percentile_interval(np.asarray(resampled_a) - np.asarray(resampled_b), confidence)
    if len(differences) < 2 or np.all(differences == differences[0]):
        # A constant difference has no spread: the t statistic is undefined. Zero
        # difference is no evidence at all; a constant non-zero one is certain.
        p_value = 1.0 if len(differences) < 2 or differences[0] == 0 else 0.0
    else:
        p_value = float(stats.ttest_rel(a, b).pvalue)
    return PairedComparison(
        difference=float(differences.mean()),
        low=float(low),
        high=float(high),
        p_value=p_value if math.isfinite(p_value) else 1.0,
    )
