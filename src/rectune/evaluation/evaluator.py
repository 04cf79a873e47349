"""The one evaluator: every metric of every user from one top-K pass per block."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune.errors import ConfigError
from rectune.evaluation.metrics import RankingEvaluation
from rectune.evaluation.ranking import (
    Scorer,
    chunk_width,
    factors_of,
    rows_of,
    top_k_chunked,
    users_per_block,
)


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
                rows, cols = rows_of(self.train, block)
                scores[rows, cols] = -np.inf
                scores[:, self.n_items :] = -np.inf
                recommended = top_k_chunked(scores, k, self._chunk)
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


def _hits(recommended: np.ndarray, test: sp.csr_matrix, block: np.ndarray) -> np.ndarray:
    """Whether each recommended item is in the user's held-out set."""
    n_items = test.shape[1]
    rows, cols = rows_of(test, block)
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
