"""Metrics against hand-computed tables, and against implicit where definitions agree."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from implicit.evaluation import ranking_metrics_at_k

from rectune.errors import ConfigError
from rectune.evaluation.evaluator import Evaluator, evaluate
from rectune.evaluation.ranking import check_list_length, sample_users, top_k
from rectune.models import build_model, fit_model


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    """A binary user x item matrix from per-user item lists."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = (
        np.concatenate([np.array(r, dtype=np.int32) for r in rows])
        if indptr[-1]
        else np.array([], dtype=np.int32)
    )
    return sp.csr_matrix(
        (np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), n_items)
    )


def evaluate_scores(scores, train_rows, test_rows, k, **kwargs):
    """Evaluate a fixed score table: user factors = identity, item factors = scores.T."""
    scores = np.asarray(scores, dtype=np.float32)
    n_users, n_items = scores.shape
    return evaluate(
        None,
        csr(train_rows, n_items),
        csr(test_rows, n_items),
        k,
        user_factors=np.eye(n_users, dtype=np.float32),
        item_factors=scores.T.copy(),
        **kwargs,
    )


# Six items; scores rank items 0 > 1 > 2 > 3 > 4 > 5 for every user unless stated.
DESCENDING = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_hand_computed_table():
    # user 0: trains on item 0 -> ranking 1,2,3,... ; held out {2, 4}; K=3 list [1, 2, 3]
    # user 1: trains on nothing -> ranking 0,1,2 ; held out {0, 1, 2, 5} (more than K)
    # user 2: held out nothing -> skipped
    # user 3: trains on 1 -> ranking 0,2,3 ; held out {5}: no hit
    result = evaluate_scores(
        [DESCENDING] * 4, [[0], [], [3], [1]], [[2, 4], [0, 1, 2, 5], [], [5]], k=3
    )
    assert result.users.tolist() == [0, 1, 3]
    assert result.recommended.tolist() == [[1, 2, 3], [0, 1, 2], [0, 2, 3]]
    d = [1 / math.log2(i + 2) for i in range(3)]  # discounts 1, 1/log2(3), 1/2
    per_user = result.per_user
    assert per_user["precision"] == pytest.approx([1 / 3, 3 / 3, 0])
    assert per_user["recall"] == pytest.approx([1 / 2, 3 / 4, 0])
    assert per_user["ndcg"] == pytest.approx([d[1] / (d[0] + d[1]), 1.0, 0])
    # AP: user 0 hit at rank 2 -> P@2 = 1/2, over min(K, n) = 2 -> 1/4.
    assert per_user["map"] == pytest.approx([(1 / 2) / 2, (1 + 1 + 1) / 3, 0])
    assert per_user["mrr"] == pytest.approx([1 / 2, 1, 0])
    assert per_user["hit_rate"] == pytest.approx([1, 1, 0])
    assert result.coverage == pytest.approx(4 / 6)  # items 0, 1, 2, 3
    means = result.means
    assert means["precision"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert means["recall"] == pytest.approx((1 / 2 + 3 / 4) / 3)
    assert result.named()["precision@3"] == means["precision"]


def test_precision_divides_by_k_even_with_few_held_out_items():
    # One held-out item, found at rank 1: P@5 = 1/5 (implicit would say 1/1).
    result = evaluate_scores([DESCENDING], [[]], [[0]], k=5)
    assert result.per_user["precision"] == pytest.approx([1 / 5])
    assert result.per_user["recall"] == pytest.approx([1.0])
    assert result.per_user["ndcg"] == pytest.approx([1.0])
    assert result.per_user["map"] == pytest.approx([1.0])


def test_ties_are_broken_by_lower_item_index():
    # Items 1, 2, 4 tie at the top; items 0 and 3 tie below them.
    scores = [[1.0, 5.0, 5.0, 1.0, 5.0, 0.0]]
    result = evaluate_scores(scores, [[]], [[4, 3]], k=4)
    assert result.recommended.tolist() == [[1, 2, 4, 0]]
    assert result.per_user["precision"] == pytest.approx([1 / 4])
    assert result.per_user["mrr"] == pytest.approx([1 / 3])
    # A tie across the cut-off: only the lowest index of the tied group gets in.
    result = evaluate_scores(scores, [[]], [[4]], k=2)
    assert result.recommended.tolist() == [[1, 2]]
    assert result.per_user["hit_rate"] == pytest.approx([0.0])


def test_top_k_handles_all_equal_scores_and_padding():
    assert top_k(np.zeros((2, 5), dtype=np.float32), 3).tolist() == [[0, 1, 2], [0, 1, 2]]
    scores = np.array([[1.0, -np.inf, 2.0, -np.inf]], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [[2, 0, -1]]
    assert top_k(scores, 6).tolist() == [[2, 0, -1, -1, -1, -1]]


def full_sort_top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """The definition: sort each row by (score desc, index asc), drop -inf, pad -1."""
    ranked = []
    for row in scores:
        order = [int(i) for i in np.lexsort((np.arange(len(row)), -row)) if row[i] > -np.inf]
        ranked.append((order + [-1] * k)[:k])
    return ranked


@settings(max_examples=200, deadline=None)
@given(
    n_cols=st.integers(1, 700),
    k=st.integers(1, 40),
    levels=st.integers(1, 6),
    excluded=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_k_equals_a_full_sort(n_cols, k, levels, excluded, seed):
    # Few distinct levels make many ties, at the cut-off too; -inf marks excluded items.
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(5, n_cols)).astype(np.float32)
    scores[rng.random(scores.shape) < excluded] = -np.inf
    assert top_k(scores, k).tolist() == full_sort_top_k(scores, k)


def test_top_k_on_continuous_scores_of_a_large_catalog():
    scores = np.random.default_rng(0).normal(size=(40, 5000)).astype(np.float32)
    scores[:, ::7] = -np.inf
    assert top_k(scores, 25).tolist() == full_sort_top_k(scores, 25)


def test_training_items_are_never_recommended():
    # The user trained on the two best items; the held-out item is third best.
    result = evaluate_scores([DESCENDING], [[0, 1]], [[2]], k=1)
    assert result.recommended.tolist() == [[2]]
    assert result.per_user["precision"] == pytest.approx([1.0])


def test_users_with_no_held_out_items_are_skipped_and_user_subsets_work():
    result = evaluate_scores([DESCENDING] * 3, [[], [], []], [[0], [], [5]], k=2)
    assert result.users.tolist() == [0, 2]
    assert result.means["precision"] == pytest.approx((1 / 2 + 0) / 2)
    subset = evaluate_scores(
        [DESCENDING] * 3, [[], [], []], [[0], [], [5]], k=2, users=np.array([2, 1])
    )
    assert subset.users.tolist() == [2]
    empty = evaluate_scores([DESCENDING], [[]], [[]], k=2)
    assert empty.n_users == 0 and math.isnan(empty.means["precision"])


def test_stored_zeros_in_test_are_not_relevant_and_input_is_not_modified():
    test = sp.csr_matrix(
        (np.array([0.0, 1.0], np.float32), np.array([1, 0]), np.array([0, 2])), shape=(1, 6)
    )  # unsorted, item 1 stored as 0
    result = evaluate(
        None,
        csr([[]], 6),
        test,
        2,
        user_factors=np.eye(1, dtype=np.float32),
        item_factors=np.array([DESCENDING], np.float32).T.copy(),
    )
    assert result.per_user["precision"] == pytest.approx([1 / 2])  # only item 0 counts
    assert result.per_user["recall"] == pytest.approx([1.0])
    assert test.indices.tolist() == [1, 0] and test.nnz == 2


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        evaluate_scores([DESCENDING], [[]], [[0]], k=k)


def test_factor_shapes_must_match_the_matrices():
    with pytest.raises(ConfigError, match="factors cover 1 users"):
        evaluate(
            None,
            csr([[0], [1]], 6),
            csr([[1], [2]], 6),
            2,
            user_factors=np.ones((1, 2)),
            item_factors=np.ones((6, 2)),
        )


@pytest.fixture(scope="module")
def fitted(synthetic_dataset):
    model = build_model("als", {"factors": 32, "regularization": 0.1, "iterations": 10}, seed=3)
    return fit_model(model, synthetic_dataset.train), synthetic_dataset


@pytest.mark.parametrize("k", [1, 10, 50])
def test_agrees_with_implicit_where_definitions_agree(fitted, k):
    model, ds = fitted
    theirs = ranking_metrics_at_k(model, ds.train, ds.test, K=k, show_progress=False)
    ours = evaluate(model, ds.train, ds.test, k)
    assert ours.means["map"] == pytest.approx(theirs["map"], rel=1e-9)
    assert ours.means["ndcg"] == pytest.approx(theirs["ndcg"], rel=1e-9)
    # implicit's precision: sum of hits / sum of min(K, n_held_out), over all users.
    hits = ours.per_user["precision"] * k
    n_held_out = np.diff(ds.test.indptr)[ours.users]
    assert theirs["precision"] == pytest.approx(hits.sum() / np.minimum(k, n_held_out).sum())
    if k > 1:  # users with fewer than K held-out items make implicit's number larger
        assert theirs["precision"] > ours.means["precision"]


def test_block_size_and_threads_do_not_change_results(fitted):
    model, ds = fitted
    reference = evaluate(model, ds.train, ds.test, 10, num_threads=1)
    for block_size, threads in [(1, 1), (37, 2), (10_000, 4)]:
        other = evaluate(model, ds.train, ds.test, 10, block_size=block_size, num_threads=threads)
        assert np.array_equal(other.recommended, reference.recommended)
        for name, values in reference.per_user.items():
            assert np.array_equal(other.per_user[name], values), name


def test_an_evaluator_reused_across_models_gives_what_fresh_evaluations_give(fitted):
    model, ds = fitted
    other = fit_model(build_model("als", {"factors": 8, "iterations": 3}, seed=5), ds.train)
    evaluator = Evaluator(ds.train, ds.test, 10, block_size=50, num_threads=2)
    for current in (model, other, model):
        again = evaluator(current)
        fresh = evaluate(current, ds.train, ds.test, 10)
        assert np.array_equal(again.recommended, fresh.recommended)
        assert again.means == fresh.means


def test_sampled_users_are_seeded_have_held_out_items_and_cap_at_all():
    test = csr([[1], [], [2], [0, 3], [], [4]], 5)
    sample = sample_users(test, 2, seed=3)
    assert len(sample) == 2 and set(sample) <= {0, 2, 3, 5}
    assert sample.tolist() == sorted(sample.tolist())
    assert np.array_equal(sample_users(test, 2, seed=3), sample)
    draws = {tuple(sample_users(test, 2, seed=s)) for s in range(20)}
    assert len(draws) > 1
    assert sample_users(test, 10, seed=0).tolist() == [0, 2, 3, 5]
    with pytest.raises(ConfigError, match="must be positive"):
        sample_users(test, 0, seed=0)


def test_a_list_longer_than_the_catalogue_is_refused():
    check_list_length(5, 5)
    with pytest.raises(ConfigError, match=r"--k 6 is longer than the catalogue \(5 items\)"):
        check_list_length(6, 5)
