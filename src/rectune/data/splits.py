"""Per-user hold-out splits: random, temporal and leave-last-out.

Every split holds out part of *each* user's interactions, so every user with at least
``min_interactions`` interactions appears on both sides; users with fewer stay in the
training side only. For a user with ``n`` interactions the held-out count is

* ``random`` / ``temporal``: ``floor(fraction * n + 1/2)``, clipped to ``[1, n - 1]``
  (so it is within one interaction of ``fraction * n``);
* ``leave-last-out``: 1.

``random`` holds out a seeded random subset; ``temporal`` and ``leave-last-out`` hold out
the user's most recent interactions (ties broken by the higher item index).

A rectune dataset has two splits made with the same strategy: the *final* split
(``train`` / ``test``) and the *tune* split (``train_val`` / ``validation``), carved from
``train`` with ``validation_fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp

from rectune.data.interactions import Interactions
from rectune.errors import ConfigError, DataError

Strategy = Literal["random", "temporal", "leave-last-out"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
SPLIT_NAMES = ("train", "test", "train_val", "validation")

# Distinct random streams for the two holds-outs made from one seed.
_TEST_STREAM, _VALIDATION_STREAM = 0, 1


@dataclass(frozen=True)
class SplitConfig:
    """How to split; see the module docstring for the exact rule."""

    strategy: Strategy = "random"
    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    min_interactions: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown split strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        for name in ("test_fraction", "validation_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be strictly between 0 and 1, got {value}")
        if self.min_interactions < 2:
            raise ConfigError(
                f"min_interactions must be at least 2 (one to train on, one to hold out), "
                f"got {self.min_interactions}"
            )

    @property
    def needs_timestamps(self) -> bool:
        return self.strategy in ("temporal", "leave-last-out")


def holdout_mask(
    users: np.ndarray,
    order_key: np.ndarray,
    items: np.ndarray,
    n_users: int,
    fraction: float | None,
    min_interactions: int,
) -> np.ndarray:
    """Boolean mask of the interactions to hold out, per user.

    Parameters
    ----------
    users, items : numpy.ndarray of int, shape (n,)
        User and item index of each interaction.
    order_key : numpy.ndarray, shape (n,)
        Within each user, the interactions with the *largest* keys are held out first
        (ties: larger item index first).
    n_users : int
    fraction : float or None
        Share of each user's interactions to hold out; ``None`` holds out exactly one.
    min_interactions : int
        Users with fewer interactions hold out nothing.
    """
    counts = np.bincount(users, minlength=n_users)
    if fraction is None:
        n_out = np.ones(n_users, dtype=np.int64)
    else:
        n_out = np.clip(np.floor(fraction * counts + 0.5).astype(np.int64), 1, counts - 1)
    n_out[counts < min_interactions] = 0
    order = _holdout_order(users, order_key, items)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sorted_users = users[order]
    rank = np.arange(len(users)) - starts[sorted_users]
    mask = np.zeros(len(users), dtype=bool)
    mask[order] = rank < n_out[sorted_users]
    return mask


def _holdout_order(users: np.ndarray, key: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``np.lexsort((-items, -key, users))``: by user, then descending key, then
    descending item, then position; computed with one sort of one int64 key where that
    provably gives the same permutation, else with the lexsort itself.

    A three-key lexsort of 20M interactions takes about 20 s. Packing (user, -key,
    -item) into one integer gives the same order in one stable sort, which is fast when
    users arrive grouped, as they do from :class:`~rectune.data.interactions.Interactions`.
    Keys must be integers (timestamps) or multiples of 2**-53 in [0, 1) (what
    ``Generator.random`` draws). Where the three do not fit in 63 bits, the key loses
    its lowest bits and the item is left out: the order is then the same unless two
    interactions of one user share the packed value, and in that case the lexsort runs.
    """
    users = np.asarray(users)
    items = np.asarray(items)
    key = np.asarray(key)
    if len(users) == 0:
        return np.lexsort((-items.astype(np.int64), -key, users))
    packed = _packed_order_key(users, key, items)
    if packed is not None:
        int_key, exact = packed
        order = np.argsort(int_key, kind="stable")
        if exact:
            return order
        # Inexact packing: the order is the lexsort's only if the packed values are
        # distinct within each user (the user is in their highest bits).
        sorted_key = int_key[order]
        if not np.any(sorted_key[1:] == sorted_key[:-1]):
            return order
    return np.lexsort((-items.astype(np.int64), -key, users))


def _packed_order_key(
    users: np.ndarray, key: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, bool] | None:
    """One int64 per interaction ascending in (user, -key, -item), and whether it is
    exact (else the key's lowest bits are dropped, and the item); ``None`` if the key
    cannot be represented as an integer exactly."""
    integral = np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)
    if not integral or users.min() < 0 or items.min() < 0:
        return None
    # Bounds keep max - min within int64.
    if np.issubdtype(key.dtype, np.integer):
        if key.min() <= -(2**61) or key.max() >= 2**61:
            return None
        ints = key.astype(np.int64)
    elif not np.issubdtype(key.dtype, np.floating) or not np.all(np.isfinite(key)):
        return None
    elif np.all(key == np.floor(key)) and np.abs(key).max() < 2**61:
        ints = key.astype(np.int64)
    elif key.min() >= 0 and key.max() < 1:
        ints = key * 2.0**53  # exact: scaling by a power of two
        if not np.all(ints == np.floor(ints)):
            return None
        ints = ints.astype(np.int64)
    else:
        return None
    # Descending key as an ascending non-negative integer.
    ints = int(ints.max()) - ints
    user_bits = int(users.max()).bit_length()
    key_bits = int(ints.max()).bit_length()
    item_bits = int(items.max()).bit_length()
    if user_bits + key_bits + item_bits <= 63:
        high = users.astype(np.int64) << (key_bits + item_bits)
        return high | (ints << item_bits) | (int(items.max()) - items.astype(np.int64)), True
    if user_bits > 62:
        return None
    drop = max(0, user_bits + key_bits - 63)
    kept_bits = key_bits - drop
    return (users.astype(np.int64) << kept_bits) | (ints >> drop), False


def _holdout(
    interactions: Interactions, keep: np.ndarray, config: SplitConfig, fraction: float, stream: int
) -> np.ndarray:
    """Mask (over all interactions) of those to hold out from the subset ``keep``."""
    index = np.flatnonzero(keep)
    if config.needs_timestamps:
        key = interactions.timestamps[index].astype(np.float64)
    else:
        key = np.random.default_rng([config.seed, stream]).random(len(index))
    part = holdout_mask(
        interactions.users[index],
        key,
        interactions.items[index],
        interactions.n_users,
        None if config.strategy == "leave-last-out" else fraction,
        config.min_interactions,
    )
    out = np.zeros(len(interactions), dtype=bool)
    out[index[part]] = True
    return out


def split_interactions(interactions: Interactions, config: SplitConfig) -> dict[str, sp.csr_matrix]:
    """Make the final and tune splits as user x item CSR matrices of one shape.

    Returns
    -------
    dict
        ``train``, ``test``, ``train_val``, ``validation``: float32 CSR matrices of shape
        (n_users, n_items) with sorted indices; ``train`` = ``train_val`` + ``validation``
        and ``train`` + ``test`` = all interactions, each pair disjoint.

    Raises
    ------
    DataError
        When the strategy needs timestamps the data lacks, or no user has enough
        interactions to hold any out.
    """
    if config.needs_timestamps and interactions.timestamps is None:
        raise DataError(
            f"the {config.strategy} split needs timestamps, and the data has no timestamp "
            "column (set --timestamp-col, or use --strategy random)"
        )
    everything = np.ones(len(interactions), dtype=bool)
    test = _holdout(interactions, everything, config, config.test_fraction, _TEST_STREAM)
    if not test.any():
        raise DataError(
            f"no user has the {config.min_interactions} interactions needed to hold any out; "
            "nothing to test on"
        )
    validation = _holdout(
        interactions, ~test, config, config.validation_fraction, _VALIDATION_STREAM
    )
    masks = {
        "train": ~test,
        "test": test,
        "train_val": ~test & ~validation,
        "validation": validation,
    }
    return {name: _to_csr(interactions, mask) for name, mask in masks.items()}


def _to_csr(interactions: Interactions, mask: np.ndarray) -> sp.csr_matrix:
    users = interactions.users[mask]
    items = interactions.items[mask]
    if len(users) < 2**31 and _sorted_distinct_pairs(users, items):
        # Interactions come sorted by (user, item) without repeats, so the selection
        # already is the CSR layout; building it through COO would sort 20M entries.
        indptr = np.zeros(interactions.n_users + 1, dtype=np.int32)
        np.cumsum(np.bincount(users, minlength=interactions.n_users), out=indptr[1:])
        matrix = sp.csr_matrix(
            (
                interactions.values[mask].astype(np.float32, copy=False),
                items.astype(np.int32, copy=False),
                indptr,
            ),
            shape=(interactions.n_users, interactions.n_items),
            copy=False,
        )
        matrix.has_sorted_indices = True
        return matrix
    matrix = sp.csr_matrix(
        (interactions.values[mask], (interactions.users[mask], interactions.items[mask])),
        shape=(interactions.n_users, interactions.n_items),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int32)
    return matrix


def _sorted_distinct_pairs(users: np.ndarray, items: np.ndarray) -> bool:
    """Whether (user, item) pairs are strictly increasing, users first."""
    if len(users) < 2:
        return True
    next_user = users[1:] > users[:-1]
    return bool(np.all(next_user | ((users[1:] == users[:-1]) & (items[1:] > items[:-1]))))


def per_user_folds(
    matrix: sp.csr_matrix, n_folds: int, seed: int
) -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
    """Split each user's interactions into ``n_folds`` folds for cross-validation.

    Each user's interactions are shuffled (seeded) and dealt round-robin into the folds,
    so fold sizes per user differ by at most one. Users with a single interaction are
    never held out. Fold ``f`` returns ``(train, held_out)`` where ``held_out`` holds the
    user's interactions dealt to ``f`` and ``train`` the rest; every user with at least
    two interactions keeps at least one in ``train`` of every fold.
    """
    if n_folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {n_folds}")
    coo = matrix.tocoo()
    users = coo.row.astype(np.int64)
    key = np.random.default_rng([seed, 2]).random(len(users))
    order = np.lexsort((key, users))
    counts = np.bincount(users, minlength=matrix.shape[0])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    fold_of = np.where(counts[users] >= 2, rank % n_folds, -1)
    folds = []
    for fold in range(n_folds):
        held = fold_of == fold
        parts = []
        for mask in (~held, held):
            part = sp.csr_matrix(
                (coo.data[mask], (coo.row[mask], coo.col[mask])),
                shape=matrix.shape,
                dtype=np.float32,
            )
            part.sort_indices()
            parts.append(part)
        folds.append((parts[0], parts[1]))
    return folds
