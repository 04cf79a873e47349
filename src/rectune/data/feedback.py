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

    merged = _merge_duplicates(frame)
    stats["duplicate_pairs_merged"] = len(frame) - len(merged)
    merged = _k_core(merged, config.min_user_interactions, config.min_item_interactions)
    if merged.empty:
        raise DataError(_nothing_left(source, config))

    user_ids, users = _index(merged[Columns.User])
    item_ids, items = _index(merged[Columns.Item])
    order = np.lexsort((items, users))
    values = {
        "binary": np.ones(len(merged)),
        "rating": merged[Columns.Rating].to_numpy() if has_rating else None,
        "count": merged["count"].to_numpy(),
    }[config.weighting]
    timestamps = (
        merged[Columns.Timestamp].to_numpy(np.int64)[order] if Columns.Timestamp in merged else None
    )
    stats.update(interactions=len(merged), users=len(user_ids), items=len(item_ids))
    return Interactions(
        users=users[order].astype(np.int32),
        items=items[order].astype(np.int32),
        values=np.asarray(values, dtype=np.float32)[order],
        timestamps=timestamps,
        user_ids=user_ids,
        item_ids=item_ids,
        stats=stats,
    )


def _merge_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    aggregations = {"count": (Columns.User, "size")}
    if Columns.Rating in frame:
        aggregations[Columns.Rating] = (Columns.Rating, "max")
    if Columns.Timestamp in frame:
        aggregations[Columns.Timestamp] = (Columns.Timestamp, "max")
    return frame.groupby([Columns.User, Columns.Item], sort=False, as_index=False).agg(
        **aggregations
    )


def _k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    while not frame.empty:
        user_counts = frame[Columns.User].map(frame[Columns.User].value_counts())
        item_counts = frame[Columns.Item].map(frame[Columns.Item].value_counts())
        keep = (user_counts >= min_user) & (item_counts >= min_item)
        if keep.all():
            break
        frame = frame[keep]
    return frame


def _index(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(ids, sort=True)
    return np.asarray(uniques), codes


def _nothing_left(source: str, config: FeedbackConfig) -> str:
    return (
        f"{source}: no interactions left after filtering (min_rating={config.min_rating}, "
        f"min_user_interactions={config.min_user_interactions}, "
        f"min_item_interactions={config.min_item_interactions})"
    )
