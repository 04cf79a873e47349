"""Serving a saved model: the Recommender and its MLflow pyfunc form agree with evaluation."""

import io
import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from mlflow.pyfunc.scoring_server import predictions_to_json
from mlflow.tracking import MlflowClient

import model_training
from rectune.data.store import save_dataset
from rectune.errors import ModelError
from rectune.evaluation.evaluator import evaluate
from rectune.models import build_model, fit_model
from rectune.recommender import Recommender, write_model_folder

TRAIN = sp.csr_matrix(
    np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [0, 1, 1, 0, 0, 0],
            [1, 0, 1, 1, 0, 0],
            [0, 0, 0, 1, 1, 0],
        ],
        dtype=np.float32,
    )
)


@pytest.fixture
def small_folder(tmp_path):
    """A model folder over TRAIN with string user ids and integer item ids."""
    dataset = tmp_path / "dataset"
    save_dataset(
        dataset,
        {name: TRAIN for name in ("train", "test", "train_val", "validation")},
        np.array(["ann", "bob", "cy", "dee"], dtype=object),
        np.array([10, 20, 30, 40, 50, 60]),
        {},
    )
    model = fit_model(build_model("als", {"factors": 3, "iterations": 4}, device="cpu"), TRAIN)
    folder = tmp_path / "model"
    write_model_folder(folder, model, TRAIN, dataset, {"model": "als", "k": 2})
    return folder, model


def test_recommendations_are_the_evaluators_ranking(small_folder):
    folder, model = small_folder
    recommender = Recommender.load(folder)
    frame = recommender.recommend(["ann", "bob", "cy", "dee"], k=3)
    lists = frame.groupby("user_id", sort=False)["item_id"].apply(list).to_dict()
    ranked = evaluate(model, TRAIN, sp.csr_matrix(np.ones(TRAIN.shape)), 3).recommended
    item_ids = np.array([10, 20, 30, 40, 50, 60])
    for row, user in enumerate(["ann", "bob", "cy", "dee"]):
        assert lists[user] == [int(i) for i in item_ids[ranked[row][ranked[row] >= 0]]]
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score", "fallback"]
    assert not frame["fallback"].any()


def test_training_items_are_never_recommended_and_lists_can_be_short(small_folder):
    recommender = Recommender.load(small_folder[0])
    frame = recommender.recommend(["cy"], k=5)
    # cy trained on items 10, 30, 40: only 20, 50 and 60 are left.
    assert sorted(frame["item_id"]) == [20, 50, 60]
    assert list(frame["rank"]) == [1, 2, 3]
    assert frame["score"].is_monotonic_decreasing


def test_unknown_users_get_the_most_popular_items(small_folder):
    recommender = Recommender.load(small_folder[0])
    frame = recommender.recommend(["zed"], k=3)
    # Training counts: 10:2, 20:2, 30:2, 40:2, 50:1, 60:0; ties go to the lower index.
    assert list(frame["item_id"]) == [10, 20, 30]
    assert list(frame["score"]) == [2.0, 2.0, 2.0]  # their training users
    assert frame["fallback"].all()


def test_default_k_comes_from_the_metadata_and_bad_k_is_refused(small_folder):
    recommender = Recommender.load(small_folder[0])
    assert len(recommender.recommend(["ann"])) == 2
    with pytest.raises(ModelError, match="k must be a positive integer"):
        recommender.recommend(["ann"], k=0)


def test_an_incomplete_folder_is_refused(small_folder):
    folder = small_folder[0]
    (folder / "train_items.npz").unlink()
    with pytest.raises(ModelError, match=r"incomplete: missing \['train_items\.npz'\]"):
        Recommender.load(folder)
    with pytest.raises(ModelError, match="no saved model at"):
        Recommender.load(folder.parent / "nowhere")


def test_pyfunc_model_round_trips_and_registers_with_an_alias(
    tmp_path, monkeypatch, mlflow_uri, synthetic_dataset
):
    monkeypatch.chdir(tmp_path)
    data_dir = synthetic_dataset.path.parent.parent
    args = [
        "--model",
        "als",
        "--param",
        "factors=16",
        "--param",
        "iterations=3",
        "--data-dir",
        str(data_dir),
        "--models-dir",
        str(tmp_path / "models"),
        "--experiment-name",
        f"pyfunc-{tmp_path.name}",
        "--register",
        f"rectune-{tmp_path.name}",
    ]
    first = CliRunner().invoke(model_training.main, args)
    assert first.exit_code == 0, first.output
    assert f"registered as rectune-{tmp_path.name} version 1" in first.output
    meta = json.loads((tmp_path / "models" / "als" / "model.json").read_text())

    users = [int(u) for u in synthetic_dataset.user_ids[[0, 5, 17]]]
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{meta['mlflow_run_id']}/recommender")
    predicted = pyfunc.predict(pd.DataFrame({"user_id": users}), params={"k": 7})
    expected = Recommender.load(tmp_path / "models" / "als").recommend(users, 7)
    pd.testing.assert_frame_equal(predicted.reset_index(drop=True), expected)
    assert len(predicted) == 21
    default_k = pyfunc.predict(pd.DataFrame({"user_id": users[:1]}))
    assert len(default_k) == 10  # the k the model was scored with

    # What `mlflow models serve` answers for a known and an unknown user: strict JSON
    # (no NaN), the unknown user's rows marked as the popularity fallback.
    served = io.StringIO()
    predictions_to_json(
        pyfunc.predict(pd.DataFrame({"user_id": [users[0], -12345]}), params={"k": 3}), served
    )
    rows = json.loads(served.getvalue(), parse_constant=pytest.fail)["predictions"]
    assert [(row["user_id"], row["fallback"]) for row in rows] == [(users[0], False)] * 3 + [
        (-12345, True)
    ] * 3
    assert all(isinstance(row["score"], float) for row in rows)

    signature = pyfunc.metadata.signature
    assert signature.inputs.input_names() == ["user_id"]
    assert signature.outputs.input_names() == ["user_id", "rank", "item_id", "score", "fallback"]
    assert signature.params.params[0].name == "k"

    # A second training registers version 2 and moves the alias to it.
    second = CliRunner().invoke(model_training.main, [*args, "--param", "factors=8"])
    assert second.exit_code == 0, second.output
    client = MlflowClient()
    version = client.get_model_version_by_alias(f"rectune-{tmp_path.name}", "champion")
    assert int(version.version) == 2
    champion = mlflow.pyfunc.load_model(f"models:/rectune-{tmp_path.name}@champion")
    latest = Recommender.load(tmp_path / "models" / "als").recommend(users, 7)
    pd.testing.assert_frame_equal(
        champion.predict(pd.DataFrame({"user_id": users}), params={"k": 7}), latest
    )
