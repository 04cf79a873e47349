"""Reading, validation and implicit feedback on small hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from rectune.data.feedback import FeedbackConfig, to_implicit_feedback
from rectune.data.interactions import ColumnMapping, read_interactions, validate_interactions
from rectune.data.synthetic import SyntheticConfig, generate_interactions
from rectune.errors import ConfigError, DataError

# user a rated item 1 twice (2 then 5), item 2 once (3); user b rated item 1 (4).
EVENTS = pd.DataFrame(
    {
        "user_id": ["a", "a", "a", "b"],
        "item_id": [1, 1, 2, 1],
        "rating": [2.0, 5.0, 3.0, 4.0],
        "timestamp": [10, 30, 20, 5],
    }
)


def feedback(frame, **config):
    return to_implicit_feedback(validate_interactions(frame, "t"), FeedbackConfig(**config), "t")


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("binary", [1.0, 1.0, 1.0]),
        ("rating", [5.0, 3.0, 4.0]),  # the pair's highest rating
        ("count", [2.0, 1.0, 1.0]),  # occurrences of the pair
    ],
)
def test_duplicates_merge_by_weighting(weighting, expected):
    result = feedback(EVENTS, weighting=weighting)
    assert result.user_ids.tolist() == ["a", "b"]
    assert result.item_ids.tolist() == [1, 2]
    assert list(zip(result.users.tolist(), result.items.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 0),
    ]
    assert result.values.tolist() == expected
    assert result.timestamps.tolist() == [30, 20, 5]  # the latest of each pair
    assert result.stats["duplicate_pairs_merged"] == 1


def test_min_rating_applies_to_each_event_before_merging():
    result = feedback(EVENTS, min_rating=4, weighting="count")
    # (a, 1) keeps only its 5-star event; (a, 2) at 3 stars is dropped.
    assert result.values.tolist() == [1.0, 1.0]
    assert result.timestamps.tolist() == [30, 5]
    assert result.stats["interactions_after_min_rating"] == 2


def test_k_core_filtering_repeats_until_stable():
    # c has 2 items; item 9 is only c's. With min 2 per item, item 9 goes, then c has 1
    # item, and with min 2 per user c goes too, leaving item 1 with a and b only.
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c", "c"], "item_id": [1, 2, 1, 2, 1, 9]})
    result = feedback(frame, min_user_interactions=2, min_item_interactions=2)
    assert result.user_ids.tolist() == ["a", "b"] and result.item_ids.tolist() == [1, 2]
    assert len(result) == 4


def test_ids_keep_their_natural_order():
    frame = pd.DataFrame({"user_id": [10, 9, 100], "item_id": [3.0, 20.0, 3.0]})
    result = feedback(frame)
    assert result.user_ids.tolist() == [9, 10, 100]  # numeric, not "10" < "9"
    assert result.item_ids.tolist() == [3, 20]  # float ids with integer values
    assert result.item_ids.dtype == np.int64


def test_string_dates_become_unix_seconds():
    frame = pd.DataFrame(
        {"user_id": [1, 1], "item_id": [1, 2], "timestamp": ["1970-01-01T00:01:00Z", "1970-01-02"]}
    )
    assert validate_interactions(frame, "t")["timestamp"].tolist() == [60, 86_400]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("user_id", None, "1 row.* have a missing user_id .first at data row 2"),
        ("item_id", None, "missing item_id"),
        ("rating", "five", "column 'rating' must be numeric.*data row 2: 'five'"),
        ("rating", None, "column 'rating' must be numeric"),
        ("timestamp", "yesterday-ish", "column 'timestamp' must hold Unix times or dates"),
    ],
)
def test_validation_names_the_column_and_row(column, value, message):
    frame = EVENTS.astype(object)
    frame.loc[1, column] = value
    with pytest.raises(DataError, match=message):
        validate_interactions(frame, "t")


def test_nothing_left_after_filtering_is_an_error():
    with pytest.raises(DataError, match="no interactions left after filtering"):
        feedback(EVENTS, min_rating=6)
    with pytest.raises(DataError, match="no interactions left"):
        feedback(EVENTS, min_user_interactions=5)


def test_rating_options_need_a_rating_column():
    frame = EVENTS.drop(columns="rating")
    with pytest.raises(DataError, match="--min-rating needs a rating column"):
        feedback(frame, min_rating=3)
    with pytest.raises(DataError, match="--weighting rating needs a rating column"):
        feedback(frame, weighting="rating")


def test_bad_feedback_config_is_rejected():
    with pytest.raises(ConfigError, match="unknown weighting"):
        FeedbackConfig(weighting="log")
    with pytest.raises(ConfigError, match="min_user_interactions must be at least 1"):
        FeedbackConfig(min_user_interactions=0)


def test_reads_csv_tsv_parquet_and_custom_separator(tmp_path):
    frame = EVENTS.rename(columns={"user_id": "u", "item_id": "i"})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "a.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "a.parquet")
    frame.to_csv(tmp_path / "a.txt", index=False, sep=";")
    columns = ColumnMapping(user="u", item="i")
    for name, sep in [("a.csv", None), ("a.tsv", None), ("a.parquet", None), ("a.txt", ";")]:
        read = read_interactions(tmp_path / name, columns, sep)
        assert list(read.columns) == ["user_id", "item_id", "rating", "timestamp"]
        assert read["rating"].tolist() == EVENTS["rating"].tolist(), name
    with pytest.raises(DataError, match=r"cannot tell the format of .*a.txt.*--sep"):
        read_interactions(tmp_path / "a.txt", columns)


def test_missing_columns_are_named_with_what_exists(tmp_path):
    EVENTS.to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError) as err:
        read_interactions(tmp_path / "e.csv", ColumnMapping(user="userId", rating="stars"))
    message = str(err.value)
    assert "columns 'userId', 'stars' not found" in message
    assert "'user_id', 'item_id', 'rating', 'timestamp'" in message
    assert "--user-col, --rating-col" in message


def test_synthetic_data_is_deterministic_and_shaped_like_movielens_100k():
    a = generate_interactions()
    b = generate_interactions()
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 100_000
    assert a["user_id"].nunique() == 943 and a["item_id"].max() <= 1682
    assert not a.duplicated(["user_id", "item_id"]).any()
    per_user = a.groupby("user_id").size()
    assert per_user.min() >= 20 and per_user.max() > 5 * per_user.median()
    assert set(a["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # Power-law popularity: the top 10% of items hold far more than 10% of interactions.
    per_item = a.groupby("item_id").size().sort_values(ascending=False)
    assert per_item.iloc[:168].sum() / len(a) > 0.33
    other = generate_interactions(SyntheticConfig(seed=43))
    assert not a.equals(other)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0},
        {"n_interactions": 5, "n_users": 10},
        {"n_users": 2, "n_items": 2, "n_interactions": 5},
    ],
)
def test_bad_synthetic_config_is_rejected(kwargs):
    with pytest.raises(ConfigError):
        SyntheticConfig(**kwargs)


def test_synthetic_small_shapes_fill_exactly():
    frame = generate_interactions(SyntheticConfig(n_users=5, n_items=4, n_interactions=20))
    assert len(frame) == 20 and not frame.duplicated(["user_id", "item_id"]).any()


@pytest.mark.parametrize(
    "config",
    [
        SyntheticConfig(),
        SyntheticConfig(n_users=1000, n_items=50, n_interactions=40_000, seed=3),
        SyntheticConfig(n_users=513, n_items=30, n_interactions=600, seed=9),
    ],
)
def test_synthetic_blocks_drawn_in_threads_are_the_one_thread_draws(config):
    # Each thread starts its blocks where the one stream has got to, so the frame (and
    # every draw after the blocks) is the same whatever the number of threads.
    one = generate_interactions(config, workers=1)
    for workers in (2, 3):
        pd.testing.assert_frame_equal(generate_interactions(config, workers=workers), one)
