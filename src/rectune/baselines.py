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
