"""Non-personalised baselines, in forms the shared evaluator scores (factors, scorers)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def popularity_factors(train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 factors whose scores are each item's number of training users.

    ``user_factors`` is a column of ones and ``item_factors`` the item counts, so
    ``U @ V.T`` ranks every user's unseen items by popularity (ties: lower item index).
    """
    counts = np.bincount(sp.csr_matrix(train).indices, minlength=train.shape[1])
    user_factors = np.ones((train.shape[0], 1), dtype=np.float32)
    item_factors = counts.astype(np.float32)[:, None]
    return user_factors, item_factors


def random_scorer(n_items: int, seed: int = 42) -> Callable[[np.ndarray], np.ndarray]:
    """A scorer giving every (user, item) pair an independent uniform score in [0, 1).

    Each user's items are thus ranked in a uniformly random order, independently of
    every other user. The score is a hash of ``(seed, user, item)`` (SplitMix64), so it
    does not depend on how users are split into blocks or threads.
    """
    items = np.arange(n_items, dtype=np.uint64)
    salt = _splitmix64(np.array([seed], dtype=np.uint64))[0]

    def score(users: np.ndarray) -> np.ndarray:
        keys = (np.asarray(users, dtype=np.uint64)[:, None] * np.uint64(n_items) + items) ^ salt
        return (_splitmix64(keys) >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)

    return score


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-mixed 64-bit hash of each (wrapping) uint64."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
