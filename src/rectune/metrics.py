"""Ranking metrics and the one evaluator that computes them all.

Notation, for one user: ``R`` is the set of held-out (relevant) items, ``n = |R|``;
``rel_i`` is 1 when the item at rank ``i`` (1-based) of the top-``K`` list is in ``R``;
training items are never recommended. Users with no held-out items are skipped; every
mean is over the users with at least one.

The ranking orders items by score, highest first, and breaks ties by the lower item
index, so results are deterministic.

rectune's Precision@K is the standard one, ``hits / K``. implicit's ``precision_at_k``
divides by ``min(K, n)`` and sums over users before dividing (a micro average), so it
reports larger numbers; never compare the two. MAP@K and nDCG@K here agree with
implicit's ``ranking_metrics_at_k``.
"""

from __future__ import annotations

import math
import os
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune.errors import ConfigError

#: Per-user metrics, in report order; ``coverage`` is catalog-wide and comes last.
USER_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
METRICS = (*USER_METRICS, "coverage")

# Cells (users x items) of float32 scores per block: ~16 MB per worker thread.
_BLOCK_CELLS = 1 << 22
# Widest chunk of items whose maximum :func:`top_k` takes.
_MAX_CHUNK = 128


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


def check_list_length(k: int, n_items: int, option: str = "--k") -> None:
    """Refuse a list length ``k`` longer than the catalogue of ``n_items`` items: every
    list would hold the whole catalogue, and scoring it costs as much as sorting it."""
    if k > n_items:
        raise ConfigError(
            f"{option} {k} is longer than the catalogue ({n_items:,} items); "
            f"use at most {n_items:,}"
        )


def users_per_block(n_items: int) -> int:
    """Users scored at once so that a block holds about 4M float32 scores (~16 MB)."""
    return max(1, _BLOCK_CELLS // max(n_items, 1))


def chunk_width(n_items: int, k: int) -> int:
    """Items per chunk in :func:`top_k`'s search: at most 128, and narrow enough that a
    row has at least ``4 k`` chunks, so the k-th largest chunk maximum is a tight bound."""
    return max(1, min(_MAX_CHUNK, n_items // (4 * k)))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores of each row, best first.

    Ties are broken by the lower column index. Entries of ``-inf`` (excluded items) are
    never returned: a row with fewer than ``k`` finite scores is padded with -1.
    """
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    chunk = chunk_width(n_cols, k)
    width = -(-n_cols // chunk) * chunk
    if width != n_cols:
        padded = np.full((n_rows, width), -np.inf, dtype=scores.dtype)
        padded[:, :n_cols] = scores
        scores = padded
    return _top_k_chunked(np.ascontiguousarray(scores), k, chunk)


def _top_k_chunked(scores: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """:func:`top_k` of a C-contiguous array whose width is a multiple of ``chunk``.

    A full sort or ``argpartition`` of every row costs several passes over the block;
    this costs about one. The k-th largest of the row's chunk maxima is a lower bound of
    its k-th largest score (the k largest maxima are k distinct scores at least that
    high), so every item of the top k lies in a chunk whose maximum reaches the bound,
    and at least that score. Only those few candidates are sorted, exactly, by (score
    descending, index ascending), so ties are broken as a full sort would.
    """
    n_rows, width = scores.shape
    n_chunks = width // chunk
    by_chunk = scores.reshape(n_rows, n_chunks, chunk)
    maxima = by_chunk.max(axis=2)
    if k <= n_chunks:
        bound = np.partition(maxima, n_chunks - k, axis=1)[:, n_chunks - k]
    else:
        bound = np.full(n_rows, -np.inf, dtype=scores.dtype)
    # -inf marks excluded items: it is never a candidate, even when it is the bound.
    bound = np.maximum(bound, np.nextafter(np.asarray(-np.inf, scores.dtype), 0))
    chunk_rows, chunk_ids = np.nonzero(maxima >= bound[:, None])
    values = by_chunk[chunk_rows, chunk_ids]  # (candidate chunks, chunk)
    flat = np.flatnonzero(values >= bound[chunk_rows, None])
    rows = chunk_rows[flat // chunk]
    cols = chunk_ids[flat // chunk] * chunk + flat % chunk
    order = np.lexsort((cols, -values.ravel()[flat], rows))
    cols = cols[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    ranks = np.arange(k)
    ranked = np.full((n_rows, k), -1, dtype=np.int64)
    present = ranks < counts[:, None]
    ranked[present] = cols[(starts[:, None] + ranks)[present]]
    return ranked


#: Scores of every item for a block of user indices, shape (len(users), n_items): a new
#: array on every call, which the ranking overwrites where items are excluded.
Scorer = Callable[[np.ndarray], np.ndarray]


def factor_scorer(user_factors: np.ndarray, item_factors: np.ndarray) -> Scorer:
    """The scorer of a factor model: ``user_factors[users] @ item_factors.T``."""

    def score(users: np.ndarray) -> np.ndarray:
        return np.asarray(user_factors[users] @ item_factors.T, dtype=np.float32)

    return score


def rank_items(
    scorer: Scorer, users: np.ndarray, exclude: sp.csr_matrix, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-K items of ``users`` by ``scorer(users)``, best first.

    Items stored in ``exclude``'s rows of those users (their training items) are never
    returned. The ranking is :func:`top_k`'s: ties go to the lower item index.

    Returns
    -------
    items : numpy.ndarray of int, shape (len(users), k)
        Item indices, -1 where a user has fewer than ``k`` items left to rank.
    scores : numpy.ndarray of float32, shape (len(users), k)
        Their scores, NaN where ``items`` is -1.
    """
    scores = np.asarray(scorer(users), dtype=np.float32)
    rows, cols = _rows_of(exclude, users)
    scores[rows, cols] = -np.inf
    items = top_k(scores, k)
    top_scores = np.take_along_axis(scores, np.maximum(items, 0), axis=1)
    return items, np.where(items >= 0, top_scores, np.float32(np.nan))


def factors_of(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(user_factors, item_factors) as numpy arrays from a fitted implicit model.

    GPU models are copied to the host. BPR's factors carry its item bias as an extra
    column (and a column of ones for users), so ``U @ V.T`` scores either model. While
    :func:`rectune.models.fit_model` runs, the BPR popularity correction it will add to
    the item bias at the end (``pending_item_bias``) is added to a copy here.
    """
    users, items = model.user_factors, model.item_factors
    if hasattr(users, "to_numpy"):  # implicit.gpu.Matrix
        users, items = users.to_numpy(), items.to_numpy()
    users, items = np.asarray(users), np.asarray(items)
    pending = getattr(model, "pending_item_bias", None)
    if pending is not None:
        items = items.copy()
        items[:, -1] += pending
    return users, items


def sample_users(test: sp.csr_matrix, n: int, seed: int) -> np.ndarray:
    """``n`` users with held-out items, drawn without replacement by ``seed``, ascending.

    All of them when there are no more than ``n``. The same matrix, ``n`` and ``seed``
    always give the same sample, so every trial of a study scores the same users.
    """
    if n < 1:
        raise ConfigError(f"the number of users to sample must be positive, got {n}")
    eligible = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr) > 0)
    if n >= len(eligible):
        return eligible
    return np.sort(np.random.default_rng(seed).choice(eligible, size=n, replace=False))


class Evaluator:
    """Scores models on one (train, held-out) pair, as many times as asked.

    What depends on the data alone is prepared once: the held-out matrix cleaned, the
    evaluated users and their blocks. Score buffers, one per block in flight, are kept
    and reused by later calls, so a study allocates them once rather than per trial.
    :func:`evaluate` is one call of a new evaluator.

    Parameters
    ----------
    train : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Items each user trained on; they are excluded from the ranking.
    test : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Held-out items; any non-zero entry counts as relevant.
    k : int
        Length of each top-K list.
    users : numpy.ndarray of int, optional
        Restrict to these users (those among them with no held-out items are skipped).
    block_size : int, optional
        Users scored at once; by default about 4M score cells per block, so memory stays
        bounded whatever the catalog size.
    num_threads : int
        Blocks scored in parallel (numpy releases the GIL in the matrix product and the
        reductions); 0 means one per CPU core.
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        test: sp.csr_matrix,
        k: int = 10,
        *,
        users: np.ndarray | None = None,
        block_size: int | None = None,
        num_threads: int = 0,
    ) -> None:
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        train = sp.csr_matrix(train)
        test = sp.csr_matrix(test)
        if train.shape != test.shape:
            raise ConfigError(f"train shape {train.shape} differs from test shape {test.shape}")
        if not test.has_sorted_indices or not test.data.all():
            test = test.copy()  # leave the caller's matrix as it was
            test.eliminate_zeros()  # a stored zero is not a held-out item
            test.sort_indices()
        self.k = int(k)
        self.train, self.test = train, test
        self.n_users, self.n_items = test.shape
        self._n_relevant = np.diff(test.indptr)
        candidates = np.arange(self.n_users) if users is None else np.unique(np.asarray(users))
        #: Users scored: those given (or all) with at least one held-out item, ascending.
        self.users = candidates[self._n_relevant[candidates] > 0]
        self.block_size = block_size or users_per_block(self.n_items)
        self.blocks = [
            self.users[start : start + self.block_size]
            for start in range(0, len(self.users), self.block_size)
        ]
        self.num_threads = num_threads or os.cpu_count() or 1
        self._chunk = chunk_width(self.n_items, self.k)
        self._width = -(-self.n_items // self._chunk) * self._chunk
        self._buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def __call__(
        self,
        model: Any = None,
        *,
        user_factors: np.ndarray | None = None,
        item_factors: np.ndarray | None = None,
        scorer: Scorer | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> RankingEvaluation:
        """Score every evaluated user in one top-K pass and compute all metrics.

        Give a fitted implicit ALS or BPR model (CPU or GPU), or its ``user_factors``
        and ``item_factors`` (scores are ``user_factors @ item_factors.T``), or a
        ``scorer(user_indices)`` returning those users' scores of every item.
        ``progress`` is called with the number of users finished after each block.
        """
        score_into = self._score_function(model, user_factors, item_factors, scorer)
        k = self.k

        def score_block(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            buffer = self._take_buffer()
            try:
                scores = buffer[: len(block)]
                score_into(block, scores)
                rows, cols = _rows_of(self.train, block)
                scores[rows, cols] = -np.inf
                scores[:, self.n_items :] = -np.inf
                recommended = _top_k_chunked(scores, k, self._chunk)
            finally:
                self._buffers.put(buffer)
            hits = _hits(recommended, self.test, block)
            if progress is not None:
                progress(len(block))
            return recommended, hits

        threads = min(self.num_threads, len(self.blocks))
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(score_block, self.blocks))
        else:
            results = [score_block(block) for block in self.blocks]
        if results:
            recommended = np.vstack([r for r, _ in results])
            hits = np.vstack([h for _, h in results])
        else:
            recommended = np.empty((0, k), dtype=np.int64)
            hits = np.empty((0, k), dtype=bool)
        return RankingEvaluation.from_hits(
            self.users, recommended, hits, self._n_relevant[self.users], self.n_items
        )

    def _score_function(
        self,
        model: Any,
        user_factors: np.ndarray | None,
        item_factors: np.ndarray | None,
        scorer: Scorer | None,
    ) -> Callable[[np.ndarray, np.ndarray], None]:
        """A function writing a block's scores into a (block, padded width) buffer."""
        if scorer is not None:

            def from_scorer(block: np.ndarray, out: np.ndarray) -> None:
                out[:, : self.n_items] = scorer(block)

            return from_scorer
        if user_factors is None or item_factors is None:
            if model is None:
                raise ConfigError(
                    "evaluate() needs a fitted model, user and item factors, or a scorer"
                )
            user_factors, item_factors = factors_of(model)
        if user_factors.shape[0] != self.n_users or item_factors.shape[0] != self.n_items:
            raise ConfigError(
                f"factors cover {user_factors.shape[0]} users x {item_factors.shape[0]} "
                f"items; the matrices have {self.n_users} x {self.n_items}"
            )
        # Zero rows pad the catalog to whole chunks, so the product fills the buffer
        # in place (the padding is then set to -inf).
        dtype = np.result_type(user_factors.dtype, item_factors.dtype, np.float32)
        padded = np.zeros((self._width, item_factors.shape[1]), dtype=dtype)
        padded[: self.n_items] = item_factors
        items_t = padded.T
        users = np.asarray(user_factors, dtype=dtype)

        def from_factors(block: np.ndarray, out: np.ndarray) -> None:
            if dtype == np.float32:
                np.matmul(users[block], items_t, out=out)
            else:  # float64 factors: multiply in float64, rank in float32
                out[:] = users[block] @ items_t

        return from_factors

    def _take_buffer(self) -> np.ndarray:
        try:
            return self._buffers.get_nowait()
        except queue.Empty:
            return np.empty((self.block_size, self._width), dtype=np.float32)


def evaluate(
    model: Any = None,
    train: sp.csr_matrix | None = None,
    test: sp.csr_matrix | None = None,
    k: int = 10,
    *,
    user_factors: np.ndarray | None = None,
    item_factors: np.ndarray | None = None,
    scorer: Scorer | None = None,
    users: np.ndarray | None = None,
    block_size: int | None = None,
    num_threads: int = 0,
    progress: Callable[[int], None] | None = None,
) -> RankingEvaluation:
    """Score every user with held-out items in one top-K pass and compute all metrics.

    One call of a new :class:`Evaluator` (see it for the parameters); to score many
    models on the same data, keep an :class:`Evaluator` instead.

    Returns
    -------
    RankingEvaluation
    """
    evaluator = Evaluator(
        train, test, k, users=users, block_size=block_size, num_threads=num_threads
    )
    return evaluator(
        model,
        user_factors=user_factors,
        item_factors=item_factors,
        scorer=scorer,
        progress=progress,
    )


def _rows_of(matrix: sp.csr_matrix, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block-local row, column) of every stored entry in the given rows."""
    starts, ends = matrix.indptr[block], matrix.indptr[block + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(block)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = matrix.indices[np.repeat(starts, lengths) + offsets]
    return rows, cols


def _hits(recommended: np.ndarray, test: sp.csr_matrix, block: np.ndarray) -> np.ndarray:
    """Whether each recommended item is in the user's held-out set."""
    n_items = test.shape[1]
    rows, cols = _rows_of(test, block)
    relevant_keys = rows.astype(np.int64) * n_items + cols  # sorted: rows, then columns
    rec_keys = np.arange(len(block), dtype=np.int64)[:, None] * n_items + recommended
    position = np.searchsorted(relevant_keys, rec_keys)
    position = np.minimum(position, max(len(relevant_keys) - 1, 0))
    found = (
        relevant_keys[position] == rec_keys
        if len(relevant_keys)
        else np.zeros(rec_keys.shape, dtype=bool)
    )
    return found & (recommended >= 0)
