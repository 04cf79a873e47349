"""The top-K ranking kernel: scores to each user's best items, training items excluded.

The ranking orders items by score, highest first, and breaks ties by the lower item
index, so results are deterministic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune.errors import ConfigError

# Cells (users x items) of float32 scores per block: ~16 MB per worker thread.
_BLOCK_CELLS = 1 << 22


# Widest chunk of items whose maximum :func:`top_k` takes.
_MAX_CHUNK = 128


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
    return top_k_chunked(np.ascontiguousarray(scores), k, chunk)


def top_k_chunked(scores: np.ndarray, k: int, chunk: int) -> np.ndarray:
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
    rows, cols = rows_of(exclude, users)
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


def rows_of(matrix: sp.csr_matrix, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block-local row, column) of every stored entry in the given rows."""
    starts, ends = matrix.indptr[block], matrix.indptr[block + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(block)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = matrix.indices[np.repeat(starts, lengths) + offsets]
    return rows, cols
