"""Split properties: disjoint, complete, per-user fractions, determinism, recency."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rectune.data.feedback import FeedbackConfig, to_implicit_feedback
from rectune.data.interactions import validate_interactions
from rectune.data.splits import SplitConfig, holdout_mask, split_interactions
from rectune.data.synthetic import SyntheticConfig, generate_interactions
from rectune.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def interactions():
    frame = generate_interactions(
        SyntheticConfig(n_users=300, n_items=400, n_interactions=12_000, seed=7)
    )
    # Add users with 1 and 3 interactions: too few to split, and barely enough.
    extra = frame.iloc[:4].copy()
    extra["user_id"] = [10_001, 10_002, 10_002, 10_002]
    frame = validate_interactions(__import__("pandas").concat([frame, extra]), "test")
    return to_implicit_feedback(frame, FeedbackConfig(), "test")


def as_set(matrix: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = matrix.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


@pytest.mark.parametrize("strategy", ["random", "temporal", "leave-last-out"])
def test_splits_are_disjoint_complete_and_share_one_shape(interactions, strategy):
    m = split_interactions(interactions, SplitConfig(strategy=strategy, seed=1))
    everything = set(zip(interactions.users.tolist(), interactions.items.tolist(), strict=True))
    train, test = as_set(m["train"]), as_set(m["test"])
    train_val, validation = as_set(m["train_val"]), as_set(m["validation"])
    assert train.isdisjoint(test) and train | test == everything
    assert train_val.isdisjoint(validation) and train_val | validation == train
    assert {x.shape for x in m.values()} == {(interactions.n_users, interactions.n_items)}
    for matrix in m.values():
        assert matrix.dtype == np.float32 and matrix.has_sorted_indices


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.9])
def test_per_user_held_out_share_is_within_one_interaction(interactions, fraction):
    config = SplitConfig(test_fraction=fraction, validation_fraction=fraction, seed=2)
    m = split_interactions(interactions, config)
    n = np.diff(sp.csr_matrix(m["train"] + m["test"]).indptr)
    n_test = np.diff(m["test"].indptr)
    splittable = n >= 2
    assert np.all(np.abs(n_test[splittable] - fraction * n[splittable]) <= 1)
    assert np.all(n_test[splittable] >= 1) and np.all(n_test[splittable] <= n[splittable] - 1)
    # Validation is carved from train with the same rule.
    n_train = np.diff(m["train"].indptr)
    n_val = np.diff(m["validation"].indptr)
    ok = n_train >= 2
    assert np.all(np.abs(n_val[ok] - fraction * n_train[ok]) <= 1)


def test_users_with_too_few_interactions_stay_in_train_only(interactions):
    m = split_interactions(interactions, SplitConfig(seed=3))
    single = int(np.flatnonzero(interactions.user_ids == 10_001)[0])
    triple = int(np.flatnonzero(interactions.user_ids == 10_002)[0])
    assert m["train"][single].nnz == 1 and m["test"][single].nnz == 0
    # 3 interactions: one held out for test, then 2 left so one goes to validation.
    assert m["test"][triple].nnz == 1 and m["validation"][triple].nnz == 1
    assert m["train_val"][triple].nnz == 1
    m = split_interactions(interactions, SplitConfig(min_interactions=4, seed=3))
    assert m["test"][triple].nnz == 0 and m["train"][triple].nnz == 3


def test_same_seed_same_split_other_seed_other_split(interactions):
    a = split_interactions(interactions, SplitConfig(seed=11))
    b = split_interactions(interactions, SplitConfig(seed=11))
    c = split_interactions(interactions, SplitConfig(seed=12))
    for name in a:
        assert (a[name] != b[name]).nnz == 0
    assert (a["test"] != c["test"]).nnz > 0


def test_temporal_split_holds_out_each_users_latest_interactions(interactions):
    m = split_interactions(interactions, SplitConfig(strategy="temporal", seed=0))
    when = sp.csr_matrix(
        (interactions.timestamps.astype(np.float64), (interactions.users, interactions.items)),
        shape=m["train"].shape,
    )
    for train, held in (("train", "test"), ("train_val", "validation")):
        for user in range(interactions.n_users):
            held_items = m[held][user].indices
            if len(held_items) == 0:
                continue
            earlier = when[user, m[train][user].indices].toarray().ravel()
            later = when[user, held_items].toarray().ravel()
            assert later.min() >= earlier.max(), (user, train)


def test_leave_last_out_holds_out_exactly_the_latest_one(interactions):
    m = split_interactions(interactions, SplitConfig(strategy="leave-last-out"))
    n = np.diff(sp.csr_matrix(m["train"] + m["test"]).indptr)
    assert np.array_equal(np.diff(m["test"].indptr), (n >= 2).astype(int))
    users, items = interactions.users, interactions.items
    for user in np.flatnonzero(n >= 2)[:50]:
        mine = users == user
        latest = interactions.timestamps[mine].max()
        held = m["test"][user].indices[0]
        assert interactions.timestamps[mine & (items == held)][0] == latest


def test_timestamp_strategies_need_timestamps(small_frame):
    frame = validate_interactions(small_frame.drop(columns="timestamp"), "f")
    feedback = to_implicit_feedback(frame, FeedbackConfig(), "f")
    with pytest.raises(DataError, match="temporal split needs timestamps"):
        split_interactions(feedback, SplitConfig(strategy="temporal"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"test_fraction": 0.0},
        {"test_fraction": 1.0},
        {"validation_fraction": -0.1},
        {"min_interactions": 1},
        {"strategy": "by-date"},
    ],
)
def test_bad_split_config_is_rejected(kwargs):
    with pytest.raises(ConfigError):
        SplitConfig(**kwargs)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=20),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_holdout_mask_property(counts, fraction, seed):
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.concatenate([np.arange(c) for c in counts]) if counts else np.array([])
    key = np.random.default_rng(seed).random(len(users))
    mask = holdout_mask(users, key, items, len(counts), fraction, 2)
    held = np.bincount(users[mask], minlength=len(counts))
    for count, n_out in zip(counts, held, strict=True):
        if count < 2:
            assert n_out == 0
        else:
            assert 1 <= n_out <= count - 1 and abs(n_out - fraction * count) <= 1
    # The held-out ones are those with the largest keys within each user.
    for user in range(len(counts)):
        mine = users == user
        if mask[mine].any() and (~mask[mine]).any():
            assert key[mine & mask].min() > key[mine & ~mask].max()


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 200),
    n_users=st.integers(1, 30),
    n_items=st.integers(1, 40),
    key_kind=st.sampled_from(["random", "coarse", "timestamps", "ints", "normal"]),
    wide=st.sampled_from([0, 20, 44]),
    grouped=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_holdout_order_is_the_three_key_lexsort(n, n_users, n_items, key_kind, wide, grouped, seed):
    # The packed one-sort order must be the lexsort's permutation exactly, ties included
    # (wide user or item indices force the inexact packing and its fallback).
    from rectune.data.splits import _holdout_order

    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n) << wide
    users = np.sort(users) if grouped else users
    items = rng.integers(0, n_items, n) << (wide // 2)
    key = {
        "random": lambda: rng.random(n),
        "coarse": lambda: np.floor(rng.random(n) * 4) / 4,
        "timestamps": lambda: rng.integers(-(2**40), 2**40, n).astype(np.float64),
        "ints": lambda: rng.integers(0, 3, n),
        "normal": lambda: rng.normal(size=n),
    }[key_kind]()
    expected = np.lexsort((-items.astype(np.int64), -key, users))
    assert np.array_equal(_holdout_order(users, key, items), expected)
