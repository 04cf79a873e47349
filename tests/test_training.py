"""Final training: which hyperparameters are used, what is saved, what is logged."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from rectune.commands import train as model_training  # the script runs its main
from rectune.evaluation.evaluator import evaluate
from rectune.models import DEFAULT_HYPERPARAMETERS, load_model
from rectune.training import DEFAULT_HYPERPARAMETERS_FILE, parse_overrides

TUNED = {
    "als": {"factors": 12, "regularization": 0.5, "iterations": 3},
    "bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 5},
}


@pytest.fixture
def train(tmp_path, monkeypatch, mlflow_uri, synthetic_dataset):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tuned.json").write_text(json.dumps(TUNED))
    data_dir = synthetic_dataset.path.parent.parent

    def run(*args):
        return CliRunner().invoke(
            model_training.main,
            [
                *args,
                "--data-dir",
                str(data_dir),
                "--models-dir",
                str(tmp_path / "models"),
                "--experiment-name",
                f"train-{tmp_path.name}",
            ],
        )

    return run


def saved(tmp_path, model="als"):
    folder = tmp_path / "models" / model
    return json.loads((folder / "model.json").read_text()), load_model(folder / "model.npz")


def test_tuned_values_are_used_exactly(train, tmp_path, synthetic_dataset):
    result = train("--model", "als", "--hyperparameters", "tuned.json")
    assert result.exit_code == 0, result.output
    meta, model = saved(tmp_path)
    assert meta["params"] == {**TUNED["als"], "alpha": 1.0, "weighting": "stored"}
    assert meta["params_origin"] == "tuned.json"
    assert (model.factors, model.regularization, model.iterations) == (12, 0.5, 3)
    assert meta["dataset_fingerprint"] == synthetic_dataset.fingerprint
    assert (meta["trained_on"], meta["scored_on"]) == ("train", "test")
    # The saved id maps are the dataset's.
    for name in ("user_ids.csv", "item_ids.csv"):
        assert (tmp_path / "models" / "als" / name).read_bytes() == (
            synthetic_dataset.path / name
        ).read_bytes()
    # The reported metrics are the evaluator's on the saved model.
    direct = evaluate(model, synthetic_dataset.train, synthetic_dataset.test, 10).named()
    assert meta["metrics"] == pytest.approx(direct, rel=1e-12)
    assert f"precision@10   {direct['precision@10']:.4f}" in result.output


def test_a_bare_hyperparameters_reads_the_tuned_file_in_models_dir(train, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best_hyperparameters.json").write_text(json.dumps(TUNED))
    result = train("--model", "als", "--hyperparameters")  # --models-dir tmp_path/models
    assert result.exit_code == 0, result.output
    meta, _ = saved(tmp_path)
    assert meta["params_origin"] == str(tmp_path / "models" / "best_hyperparameters.json")
    assert meta["params"]["factors"] == TUNED["als"]["factors"]


def test_tune_mode_fits_train_val_and_scores_validation(train, tmp_path, synthetic_dataset):
    result = train("--model", "bpr", "--mode", "tune", "--hyperparameters", "tuned.json")
    assert result.exit_code == 0, result.output
    meta, model = saved(tmp_path, "bpr")
    assert (meta["trained_on"], meta["scored_on"]) == ("train_val", "validation")
    direct = evaluate(model, synthetic_dataset.train_val, synthetic_dataset.validation, 10)
    assert meta["metrics"]["precision@10"] == pytest.approx(direct.means["precision"])


def test_without_hyperparameters_the_defaults_are_used(train, tmp_path):
    assert train("--model", "als", "--param", "iterations=2").exit_code == 0
    meta, _ = saved(tmp_path)
    assert meta["params"] == {**DEFAULT_HYPERPARAMETERS["als"], "iterations": 2}
    assert meta["params_origin"] == "defaults"


def test_overrides_win_over_the_file_and_are_recorded(train, tmp_path):
    result = train(
        "--model",
        "als",
        "--hyperparameters",
        "tuned.json",
        "--param",
        "factors=20",
        "--param",
        "use_cg=false",
    )
    assert result.exit_code == 0, result.output
    meta, model = saved(tmp_path)
    assert meta["params"]["factors"] == 20 and meta["params"]["use_cg"] is False
    assert meta["params"]["regularization"] == 0.5  # the rest still from the file
    assert meta["overrides"] == {"factors": 20, "use_cg": False}
    assert model.factors == 20
    client = MlflowClient()
    run_id = result.output.split("MLflow run ")[1].split()[0]
    params = client.get_run(run_id).data.params
    assert params["override_factors"] == "20" and params["factors"] == "20"


def test_repeats_report_mean_and_standard_deviation(train, tmp_path):
    result = train("--model", "als", "--hyperparameters", "tuned.json", "--repeats", "3")
    assert result.exit_code == 0, result.output
    assert "mean ± std over 3 seeds" in result.output
    meta, _ = saved(tmp_path)
    assert meta["repeats"] == 3 and meta["metrics_std"]["precision@10"] > 0
    run_id = result.output.split("MLflow run ")[1].split()[0]
    metrics = MlflowClient().get_run(run_id).data.metrics
    std = meta["metrics_std"]["precision@10"]
    assert metrics["test_precision_at_10_std"] == pytest.approx(std)
    assert metrics["test_precision_at_10"] == pytest.approx(meta["metrics"]["precision@10"])
    assert "fit_seconds" in metrics  # a timing measures no split
    # The run was made after the fits but starts when they did: its duration covers them.
    info = MlflowClient().get_run(run_id).info
    assert (info.end_time - info.start_time) / 1000 >= 3 * metrics["fit_seconds"]


def test_the_flag_alone_reads_the_default_file(monkeypatch):
    seen = {}

    def fake_train(config):
        seen["path"] = config.hyperparameters
        raise SystemExit(0)

    monkeypatch.setattr(model_training, "train_model", fake_train)
    CliRunner().invoke(model_training.main, ["--model", "als", "--hyperparameters"])
    assert seen["path"] == DEFAULT_HYPERPARAMETERS_FILE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--hyperparameters", "missing.json"],
            "hyperparameters file missing.json not found; make it with `python "
            "src/hyperparameter_tuning.py --model als --output missing.json`",
        ),
        (
            ["--hyperparameters", "bpr_only.json"],
            "bpr_only.json has no 'als' entry \\(it has: bpr\\); tune it with `python "
            "src/hyperparameter_tuning.py --model als",
        ),
        (
            ["--hyperparameters", "broken.json"],
            "broken.json is not valid JSON.*re-create it with `python src/hyperparameter_tuning.py",
        ),
        (["--param", "factors"], "--param 'factors' is not NAME=VALUE"),
        (["--param", "learning_rate=0.1"], "unknown ALS hyperparameter 'learning_rate'"),
        (["--param", "factors=-3"], "hyperparameter 'factors' must be int >= 1, got -3"),
        (["--dataset", "elsewhere"], "no processed dataset 'elsewhere'"),
    ],
)
def test_bad_input_gets_one_line(train, tmp_path, args, message):
    import re

    (tmp_path / "bpr_only.json").write_text(json.dumps({"bpr": TUNED["bpr"]}))
    (tmp_path / "broken.json").write_text('{"als": ')
    result = train("--model", "als", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / "models").exists()


def test_parse_overrides_types_values():
    assert parse_overrides(["factors=64", "alpha=2.5", "use_cg=true", "x= 7 "]) == {
        "factors": 64,
        "alpha": 2.5,
        "use_cg": True,
        "x": 7,
    }
    assert parse_overrides(["regularization=1e-3"]) == {"regularization": 0.001}
    assert parse_overrides(["name=abc"]) == {"name": "abc"}


def test_saved_model_scores_are_reproducible(train, tmp_path):
    train("--model", "als", "--hyperparameters", "tuned.json")
    first, model_a = saved(tmp_path)
    train("--model", "als", "--hyperparameters", "tuned.json")
    second, model_b = saved(tmp_path)
    assert first["metrics"] == second["metrics"]
    assert np.array_equal(model_a.item_factors, model_b.item_factors)


def test_scaled_epochs_keep_the_number_of_sgd_steps():
    from rectune.training import scaled_epochs

    assert scaled_epochs(100, 60_000, 75_000) == 80
    assert scaled_epochs(3, 10, 100) == 1  # never below one epoch
    assert scaled_epochs(7, 50, 50) == 7


def test_tuned_bpr_epochs_are_scaled_to_the_steps_tuning_made(train, tmp_path, synthetic_dataset):
    tuned = {"bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 40}}
    (tmp_path / "tuned.json").write_text(json.dumps(tuned))
    (tmp_path / "tuned.provenance.json").write_text(
        json.dumps({"bpr": {"trained_interactions": 30_000}})
    )
    result = train("--model", "bpr", "--hyperparameters", "tuned.json")
    assert result.exit_code == 0, result.output
    meta, model = saved(tmp_path, "bpr")
    expected = round(40 * 30_000 / synthetic_dataset.train.nnz)
    assert model.iterations == meta["params"]["iterations"] == expected != 40
    assert (meta["tuned_iterations"], meta["final_epochs_from"]) == (40, "steps")
    assert "the tuned 40 epochs scaled" in result.output
    # Without provenance, tuning is taken to have fitted the dataset's train_val.
    (tmp_path / "tuned.provenance.json").unlink()
    assert train("--model", "bpr", "--hyperparameters", "tuned.json").exit_code == 0
    expected = round(40 * synthetic_dataset.train_val.nnz / synthetic_dataset.train.nnz)
    assert saved(tmp_path, "bpr")[1].iterations == expected
    # Kept as tuned when asked, or when set by hand; ALS never scales.
    for args in (["--final-epochs-from", "epochs"], ["--param", "iterations=40"]):
        assert train("--model", "bpr", "--hyperparameters", "tuned.json", *args).exit_code == 0
        meta, model = saved(tmp_path, "bpr")
        assert model.iterations == 40 and meta["tuned_iterations"] is None


def test_a_training_that_fails_mid_run_ends_its_run_failed(train, tmp_path, monkeypatch):
    from rectune.errors import ConfigError
    from rectune.tracking import Tracker

    def refuse(*args, **kwargs):
        raise ConfigError("no room for the pyfunc model")

    monkeypatch.setattr(Tracker, "log_recommender", refuse)
    result = train("--model", "als", "--param", "iterations=2")
    assert result.exit_code == 2 and "no room for the pyfunc model" in result.output
    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"train-{tmp_path.name}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.info.run_name == "train-als-final" and run.data.tags["role"] == "training"
    assert run.data.params["iterations"] == "2"  # what was logged before it failed stays
