"""Implicit feedback from validated interactions: filters, weighting, duplicates merged,
k-core, and the user x item matrix with its id maps (:func:`to_implicit_feedback`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
import pandas as pd

from rectune.data.interactions import Columns, Interactions
from rectune.errors import ConfigError, DataError

Weighting = Literal["auto", "binary", "rating", "count"]


WEIGHTINGS: tuple[str, ...] = get_args(Weighting)


@dataclass(frozen=True)
class FeedbackConfig:
    """How explicit interactions become an implicit-feedback matrix.

    Parameters
    ----------
    min_rating
        Keep only interactions whose rating is at least this (needs a rating column);
        ``None`` keeps everything.
    weighting
        Matrix values: ``binary`` (1 for every kept pair), ``rating`` (the pair's highest
        rating), ``count`` (how many times the pair occurs), or ``auto``: ``rating`` when
        the source has ratings, else ``binary``. Keeping the ratings costs nothing
        downstream (evaluation, baselines and BPR read only which pairs exist) and lets
        ALS choose its ``weighting``, ratings or not, as a tuned hyperparameter.
    min_user_interactions, min_item_interactions
        Drop users and items with fewer distinct interactions, repeatedly, until every
        remaining user and item has enough (a k-core).
    """

    min_rating: float | None = None
    weighting: Weighting = "auto"
    min_user_interactions: int = 1
    min_item_interactions: int = 1

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"unknown weighting {self.weighting!r}; choose one of {', '.join(WEIGHTINGS)}"
            )
        for name in ("min_user_interactions", "min_item_interactions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def resolved(self, has_rating: bool) -> FeedbackConfig:
        """This config with ``auto`` weighting resolved for a source with or without a
        rating column."""
        if self.weighting != "auto":
            return self
        return replace(self, weighting="rating" if has_rating else "binary")


def to_implicit_feedback(
    frame: pd.DataFrame, config: FeedbackConfig, source: str = "input"
) -> Interactions:
    """Turn validated interactions into indexed implicit feedback.

    Steps, in order:

    1. ``min_rating``: drop interactions rated below it.
    2. Merge duplicate (user, item) pairs into one entry whose value is 1 (``binary``),
       the highest rating (``rating``) or the number of occurrences (``count``), and
       whose timestamp is the latest one.
    3. Drop users and items with fewer than ``min_user_interactions`` /
       ``min_item_interactions`` distinct pairs, repeating until both hold.
    4. Index users and items in the natural order of their ids.

    Raises
    ------
    DataError
        When a step needs a column the data lacks, or nothing is left.
    """
    stats: dict = {"interactions_read": len(frame)}
    has_rating = Columns.Rating in frame
    config = config.resolved(has_rating)
    if config.min_rating is not None:
        if not has_rating:
            raise DataError(f"{source}: --min-rating needs a rating column, and there is none")
        frame = frame[frame[Columns.Rating] >= config.min_rating]
        stats["interactions_after_min_rating"] = len(frame)
    if config.weighting == "rating" and not has_rating:
        raise DataError(f"{source}: --weighting rating needs a rating column, and there is none")
    if frame.empty:
        raise DataError(_nothing_left(source, config))
    if config.weighting == "rating" and (frame[Columns.Rating] <= 0).any():
        # A zero or negative value would be an interaction with no or negative weight.
        count = int((frame[Columns.Rating] <= 0).sum())
        raise DataError(
            f"{source}: {count:,} rating(s) are zero or negative, and the matrix values are "
            "the ratings (--weighting rating, or auto with a rating column); keep the "
            "positive ones with --min-rating (e.g. 1), or count every rated pair as one "
            "interaction with --weighting binary"
        )

    user_ids, user_codes = _index(frame[Columns.User])
    item_ids, item_codes = _index(frame[Columns.Item])
    ratings = frame[Columns.Rating].to_numpy() if has_rating else None
    timestamps = frame[Columns.Timestamp].to_numpy() if Columns.Timestamp in frame else None
    present = (user_codes >= 0) & (item_codes >= 0)
    if not present.all():  # missing ids (unvalidated frames): dropped, as groupby did
        user_codes, item_codes = user_codes[present], item_codes[present]
        ratings = None if ratings is None else ratings[present]
        timestamps = None if timestamps is None else timestamps[present]
    pairs = _merge_duplicates(user_codes, item_codes, len(item_ids), ratings, timestamps)
    stats["duplicate_pairs_merged"] = len(frame) - len(pairs.users)
    keep = _k_core(
        pairs.users,
        pairs.items,
        (len(user_ids), len(item_ids)),
        (config.min_user_interactions, config.min_item_interactions),
    )
    if keep is not None:
        pairs = pairs.take(keep)
    if len(pairs.users) == 0:
        raise DataError(_nothing_left(source, config))

    user_ids, users = _compact(user_ids, pairs.users)
    item_ids, items = _compact(item_ids, pairs.items)
    n = len(users)
    values = {
        "binary": np.ones(n),
        "rating": pairs.rating,
        "count": pairs.count,
    }[config.weighting]
    stats.update(interactions=n, users=len(user_ids), items=len(item_ids))
    # Pairs come out sorted by (user, item): compacting the codes keeps their order.
    return Interactions(
        users=users.astype(np.int32),
        items=items.astype(np.int32),
        values=np.asarray(values, dtype=np.float32),
        timestamps=None if pairs.timestamp is None else pairs.timestamp.astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        stats=stats,
    )


@dataclass(frozen=True)
class _Pairs:
    """Distinct (user, item) pairs as codes, sorted by user then item, with the number
    of events, the highest rating and the latest timestamp of each."""

    users: np.ndarray
    items: np.ndarray
    count: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None

    def take(self, index: np.ndarray) -> _Pairs:
        return _Pairs(
            *(
                None if a is None else a[index]
                for a in (self.users, self.items, self.count, self.rating, self.timestamp)
            )
        )


def _merge_duplicates(
    users: np.ndarray,
    items: np.ndarray,
    n_items: int,
    ratings: np.ndarray | None,
    timestamps: np.ndarray | None,
) -> _Pairs:
    """Merge events of one (user, item) pair: one sort by pair, then reductions over the
    runs of equal pairs (order-free, so the result does not depend on the sort)."""
    if len(users) and int(users.max()) * n_items + n_items < 2**63:
        key = users.astype(np.int64) * n_items + items
        order = np.argsort(key, kind="stable")
        key = key[order]
        new_pair = key[1:] != key[:-1]
    else:
        order = np.lexsort((items, users))
        new_pair = (users[order][1:] != users[order][:-1]) | (items[order][1:] != items[order][:-1])
    # Usually every pair is distinct; then the runs are the sorted events themselves.
    unique = not len(users) or int(np.count_nonzero(new_pair)) == len(users) - 1
    if unique:
        first, count = order, np.ones(len(users), dtype=np.int64)
    else:
        starts = np.flatnonzero(np.concatenate(([True], new_pair)))
        first, count = order[starts], np.diff(np.append(starts, len(users)))
    del new_pair

    def highest(values: np.ndarray | None, maximum: np.ufunc) -> np.ndarray | None:
        if values is None:
            return None
        if unique:
            return values[first]
        return maximum.reduceat(values[order], starts)

    return _Pairs(
        users=users[first],
        items=items[first],
        count=count,
        # fmax skips NaN, as pandas' max did.
        rating=highest(ratings, np.fmax),
        timestamp=highest(timestamps, np.maximum),
    )


def _k_core(
    users: np.ndarray, items: np.ndarray, sizes: tuple[int, int], minima: tuple[int, int]
) -> np.ndarray | None:
    """Index of the pairs in the k-core: drop users and items below their minimum count,
    all at once, and repeat until none is dropped. ``None`` when the minima are 1."""
    if minima == (1, 1):
        return None
    index = np.arange(len(users))
    while len(index):
        u, i = users[index], items[index]
        keep = (np.bincount(u, minlength=sizes[0])[u] >= minima[0]) & (
            np.bincount(i, minlength=sizes[1])[i] >= minima[1]
        )
        if keep.all():
            break
        index = index[keep]
    return index


def _index(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(ids, sort=True)
    # int32 codes halve the memory of the steps that follow; -1 marks a missing id.
    return np.asarray(uniques), codes.astype(np.int32 if len(uniques) < 2**31 else np.int64)


def _compact(ids: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids still used and codes renumbered over them, keeping their order."""
    present = np.zeros(len(ids), dtype=bool)
    present[codes] = True
    return ids[present], (np.cumsum(present) - 1)[codes]


def _nothing_left(source: str, config: FeedbackConfig) -> str:
    return (
        f"{source}: no interactions left after filtering (min_rating={config.min_rating}, "
        f"min_user_interactions={config.min_user_interactions}, "
        f"min_item_interactions={config.min_item_interactions})"
    )
