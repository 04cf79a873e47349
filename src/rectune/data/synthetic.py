"""A deterministic synthetic interactions dataset that works offline.

Its defaults are shaped like MovieLens-100k (943 users, 1682 items, 100,000 ratings of
1-5 with timestamps; every user has at least 20). Each user's items are drawn without
replacement from

    P(item i | user u)  proportional to  popularity_i * exp(signal * <p_u, q_i>)

where ``popularity_i`` follows a power law over a random order of the items (a few
blockbusters, a long tail) and ``p_u``, ``q_i`` are planted ``n_factors``-dimensional
tastes scaled so that ``<p_u, q_i>`` has unit variance. A popularity ranking therefore
finds some hits, and a matrix factorisation that recovers the tastes finds clearly more.
Ratings rise with the user's affinity for the item; timestamps are spread over seven
months like the original's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rectune.data.interactions import Columns
from rectune.errors import ConfigError

_FIRST_TIMESTAMP = 874_724_710  # 1997-09-20, MovieLens-100k's first rating
_SPAN_SECONDS = 215 * 24 * 3600
_MIN_PER_USER = 20


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape and structure of the synthetic dataset; see the module docstring."""

    n_users: int = 943
    n_items: int = 1682
    n_interactions: int = 100_000
    n_factors: int = 16
    signal: float = 2.5
    popularity_exponent: float = 1.2
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_interactions", "n_factors"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_interactions < self.n_users:
            raise ConfigError(
                f"n_interactions ({self.n_interactions}) must be at least n_users "
                f"({self.n_users}): every user needs an interaction"
            )
        if self.n_interactions > self.n_users * self.n_items:
            raise ConfigError(
                f"n_interactions ({self.n_interactions}) exceeds n_users * n_items "
                f"({self.n_users * self.n_items}), the number of distinct pairs"
            )


def generate_interactions(
    config: SyntheticConfig = SyntheticConfig(), block_size: int = 512, workers: int | None = None
) -> pd.DataFrame:
    """Generate the dataset as a frame of user_id, item_id, rating, timestamp.

    The same config always gives the same frame, whatever ``block_size`` and ``workers``
    (threads drawing blocks of users at once; default: one per CPU). Ids start at 1, as
    in MovieLens.
    """
    rng = np.random.default_rng(config.seed)
    scale = config.n_factors**-0.25  # so that <p_u, q_i> has unit variance
    user_taste = rng.normal(0.0, scale, (config.n_users, config.n_factors)).astype(np.float32)
    item_taste = rng.normal(0.0, scale, (config.n_items, config.n_factors)).astype(np.float32)
    popularity_rank = rng.permutation(config.n_items) + 1
    log_popularity = (-config.popularity_exponent * np.log(popularity_rank)).astype(np.float32)
    counts = _user_counts(config, rng)

    def block(start: int, generator: np.random.Generator) -> tuple[np.ndarray, ...]:
        stop = min(start + block_size, config.n_users)
        block_affinity = user_taste[start:stop] @ item_taste.T
        # Gumbel top-k: the k largest of logits + Gumbel noise are a sample of k items
        # without replacement with probabilities proportional to exp(logits).
        keys = config.signal * block_affinity
        keys += log_popularity
        keys += generator.gumbel(size=keys.shape).astype(np.float32)
        # Negated in place (exact), to find the largest keys without another copy.
        negated = np.negative(keys, out=keys)
        block_counts = counts[start:stop]
        k_max = int(block_counts.max())
        if k_max < config.n_items:
            top = np.argpartition(negated, k_max - 1, axis=1)[:, :k_max]
        else:
            top = np.broadcast_to(np.arange(config.n_items), keys.shape)
        top_negated = np.take_along_axis(negated, top, axis=1)
        top = np.take_along_axis(top, np.argsort(top_negated, axis=1, kind="stable"), axis=1)
        chosen = np.arange(k_max) < block_counts[:, None]
        rows = np.nonzero(chosen)[0]
        return rows + start, top[chosen], block_affinity[rows, top[chosen]]

    starts = range(0, config.n_users, block_size)
    workers = workers or len(os.sched_getaffinity(0))
    parts = _draw_blocks_in_threads(rng, starts, block, block_size, config, workers)
    if parts is None:  # one thread, as the stream is drawn: block after block
        parts = [
            block(start, rng)
            for start in tqdm(starts, desc="generating", unit="block", disable=None, leave=False)
        ]
    users, items, affinity = (np.concatenate(column) for column in zip(*parts, strict=True))
    noise = rng.normal(0.0, 0.8, len(users))
    ratings = np.clip(np.rint(3.5 + affinity / affinity.std() + noise), 1, 5)
    timestamps = _FIRST_TIMESTAMP + rng.integers(0, _SPAN_SECONDS, len(users))
    return pd.DataFrame(
        {
            Columns.User: users.astype(np.int64) + 1,
            Columns.Item: items.astype(np.int64) + 1,
            Columns.Rating: ratings.astype(np.float64),
            Columns.Timestamp: timestamps.astype(np.int64),
        }
    )


def _draw_blocks_in_threads(
    rng: np.random.Generator,
    starts: range,
    block: Callable[[int, np.random.Generator], tuple[np.ndarray, ...]],
    block_size: int,
    config: SyntheticConfig,
    workers: int,
) -> list[tuple[np.ndarray, ...]] | None:
    """The blocks drawn by ``workers`` threads from the very numbers one thread draws.

    A block of ``m`` cells draws ``m`` Gumbel numbers, each one 64-bit output of the bit
    generator (numpy redraws only a uniform of exactly 0.0, about once in 2**53), so block ``b``
    starts where the stream is advanced by the cells before it. Each thread gets a copy
    of the generator advanced there; a block that does not end exactly where the next
    begins means a redraw happened, and then ``None`` sends the caller to the plain
    loop. On success ``rng`` is left where the plain loop would leave it.
    """
    bit_generator = rng.bit_generator
    if workers < 2 or len(starts) < 2 or not hasattr(bit_generator, "advance"):
        return None
    initial = bit_generator.state
    cells = [(min(start + block_size, config.n_users) - start) * config.n_items for start in starts]
    offsets = np.concatenate(([0], np.cumsum(cells))).tolist()

    def state_at(offset: int) -> dict:
        copy = type(bit_generator)()
        copy.state = initial
        copy.advance(offset)
        # advance() drops the buffered 32-bit half-draw; Gumbel draws never touch it,
        # so the plain loop ends with the one it started with.
        return {**copy.state, "has_uint32": initial["has_uint32"], "uinteger": initial["uinteger"]}

    def run(index: int) -> tuple[tuple[np.ndarray, ...], bool]:
        copy = type(bit_generator)()
        copy.state = state_at(offsets[index])
        part = block(starts[index], np.random.Generator(copy))
        return part, copy.state == state_at(offsets[index + 1])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(
                pool.map(run, range(len(starts))),
                total=len(starts),
                desc="generating",
                unit="block",
                disable=None,
                leave=False,
            )
        )
    if not all(exact for _, exact in results):
        bit_generator.state = initial
        return None
    bit_generator.state = state_at(offsets[-1])
    return [part for part, _ in results]


def _user_counts(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed interactions per user, summing exactly to ``n_interactions``."""
    floor = min(_MIN_PER_USER, config.n_interactions // config.n_users, config.n_items)
    weights = rng.lognormal(0.0, 1.0, config.n_users)
    counts = np.full(config.n_users, floor, dtype=np.int64)
    remaining = config.n_interactions - counts.sum()
    # Hand out what is left in proportion to the weights, never past the catalog size.
    while remaining > 0:
        room = config.n_items - counts
        open_users = room > 0
        share = weights * open_users
        extra = np.minimum(np.floor(remaining * share / share.sum()).astype(np.int64), room)
        if extra.sum() == 0:  # fewer units left than users with room: largest weights first
            order = np.argsort(-share, kind="stable")[:remaining]
            extra = np.zeros_like(counts)
            extra[order] = 1
        counts += extra
        remaining -= int(extra.sum())
    return counts


def frame_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names and values, for the manifest's source hash."""
    digest = hashlib.sha256()
    for name in frame.columns:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(frame[name].to_numpy()).tobytes())
    return digest.hexdigest()


def describe(config: SyntheticConfig) -> dict:
    """The generator's settings, as recorded in the manifest."""
    return asdict(config)
