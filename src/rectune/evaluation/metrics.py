"""Ranking metrics: each formula, per user, from a hits matrix.

Notation, for one user: ``R`` is the set of held-out (relevant) items, ``n = |R|``;
``rel_i`` is 1 when the item at rank ``i`` (1-based) of the top-``K`` list is in ``R``;
training items are never recommended. Users with no held-out items are skipped; every
mean is over the users with at least one.

rectune's Precision@K is the standard one, ``hits / K``. implicit's ``precision_at_k``
divides by ``min(K, n)`` and sums over users before dividing (a micro average), so it
reports larger numbers; never compare the two. MAP@K and nDCG@K here agree with
implicit's ``ranking_metrics_at_k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rectune.errors import ConfigError

#: Per-user metrics, in report order; ``coverage`` is catalog-wide and comes last.
USER_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
METRICS = (*USER_METRICS, "coverage")


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@K per user: ``sum_i rel_i / K``.

    Parameters
    ----------
    hits : numpy.ndarray of bool, shape (n_users, K)
        ``hits[u, i]`` is True when user u's item at rank i+1 is relevant.
    k : int
    """
    return hits.sum(axis=1) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Recall@K per user: ``sum_i rel_i / n`` (the share of held-out items found)."""
    return hits.sum(axis=1) / n_relevant


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """nDCG@K per user, binary gains: ``DCG / IDCG`` with

    ``DCG = sum_{i=1..K} rel_i / log2(i + 1)`` and
    ``IDCG = sum_{i=1..min(K, n)} 1 / log2(i + 1)`` (all relevant items ranked first).
    """
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return (hits @ discounts) / ideal


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """AP@K per user (its mean over users is MAP@K):

    ``AP@K = sum_{i=1..K} P@i * rel_i / min(K, n)`` where ``P@i`` is the precision of the
    top ``i``.
    """
    k = hits.shape[1]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return (precision_at_i * hits).sum(axis=1) / np.minimum(n_relevant, k)


def reciprocal_rank_at_k(hits: np.ndarray) -> np.ndarray:
    """RR@K per user (its mean is MRR@K): ``1 / rank`` of the first relevant item in the
    top K, or 0 when there is none."""
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate_at_k(hits: np.ndarray) -> np.ndarray:
    """HitRate@K per user: 1 when at least one of the top K items is relevant, else 0."""
    return hits.any(axis=1).astype(np.float64)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Coverage@K: ``|union of all users' top-K lists| / n_items``.

    ``recommended`` holds item indices, with -1 where a list is shorter than K.
    """
    shown = np.unique(recommended[recommended >= 0])
    return len(shown) / n_items


def user_metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-user metric of :data:`USER_METRICS` from one hits matrix."""
    k = hits.shape[1]
    n_relevant = np.asarray(n_relevant)
    return {
        "precision": precision_at_k(hits, k),
        "recall": recall_at_k(hits, n_relevant),
        "ndcg": ndcg_at_k(hits, n_relevant),
        "map": average_precision_at_k(hits, n_relevant),
        "mrr": reciprocal_rank_at_k(hits),
        "hit_rate": hit_rate_at_k(hits),
    }


@dataclass(frozen=True)
class RankingEvaluation:
    """The result of :func:`evaluate`.

    Attributes
    ----------
    k : int
    users : numpy.ndarray of int
        Evaluated user indices (those with held-out items), ascending.
    per_user : dict of str to numpy.ndarray
        Each metric of :data:`USER_METRICS`, aligned with ``users``.
    coverage : float
        Catalog coverage of the evaluated users' top-K lists.
    recommended : numpy.ndarray of int, shape (len(users), K)
        The top-K item indices per evaluated user, -1 padded.
    hits : numpy.ndarray of bool, shape (len(users), K)
        Whether each recommended item is held out for its user.
    n_relevant : numpy.ndarray of int
        Held-out items per evaluated user.
    n_items : int
        Catalog size (the denominator of coverage).
    """

    k: int
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    coverage: float
    recommended: np.ndarray
    hits: np.ndarray
    n_relevant: np.ndarray
    n_items: int

    @classmethod
    def from_hits(
        cls,
        users: np.ndarray,
        recommended: np.ndarray,
        hits: np.ndarray,
        n_relevant: np.ndarray,
        n_items: int,
    ) -> RankingEvaluation:
        """Compute every metric from the top-K lists and their hits."""
        return cls(
            k=hits.shape[1],
            users=users,
            per_user=user_metrics(hits, n_relevant),
            coverage=catalog_coverage(recommended, n_items),
            recommended=recommended,
            hits=hits,
            n_relevant=n_relevant,
            n_items=n_items,
        )

    def at(self, k: int) -> RankingEvaluation:
        """The same evaluation cut at a shorter list length ``k`` (no re-scoring).

        A top-``k`` list is the first ``k`` entries of the top-``K`` list, so one pass at
        the largest K gives every smaller K.
        """
        if not 1 <= k <= self.k:
            raise ConfigError(f"k must lie between 1 and {self.k}, got {k}")
        return RankingEvaluation.from_hits(
            self.users,
            self.recommended[:, :k],
            self.hits[:, :k],
            self.n_relevant,
            self.n_items,
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def means(self) -> dict[str, float]:
        """Each per-user metric averaged over the evaluated users, plus coverage."""
        means = {
            name: float(values.mean()) if len(values) else math.nan
            for name, values in self.per_user.items()
        }
        means["coverage"] = self.coverage
        return means

    def named(self) -> dict[str, float]:
        """Means keyed like ``precision@10``, for logging and printing."""
        return {f"{name}@{self.k}": value for name, value in self.means.items()}
