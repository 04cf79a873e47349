"""Non-personalised baselines, expressed as factors so the shared evaluator scores them."""

from __future__ import annotations

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


def random_factors(
    n_users: int, n_items: int, seed: int = 42, dimension: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian factors whose scores put each user's items in a uniformly random order.

    For any fixed user vector ``u``, the scores ``<u, v_i>`` of items with independent
    standard normal ``v_i`` are independent and identically distributed, so every
    order of a user's items is equally likely. Different users' orders are only weakly
    related (their vectors' cosine is about ``N(0, 1 / dimension)``).
    """
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((n_users, dimension), dtype=np.float32)
    item_factors = rng.standard_normal((n_items, dimension), dtype=np.float32)
    return user_factors, item_factors
