"""The Python API (rectune.split, tune, train, evaluate): result objects with real
values, quiet by default, and the example script that uses it."""

import math
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import rectune
from rectune.errors import ConfigError
from rectune.evaluation.stage import EvaluationResult
from rectune.training import TrainingResult
from rectune.tuning.results import TuningResult

ROOT = Path(__file__).resolve().parents[1]
SMALL_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [8, 16]}
  regularization: {type: categorical, choices: [0.1, 1.0]}
  iterations: {type: categorical, choices: [4, 8]}
"""
#: What Optuna prints per trial at INFO ("[I 2026-... ] Trial 0 finished ...").
OPTUNA_LINES = re.compile(r"\[I \d{4}-|Trial \d+ (finished|pruned)|A new study created")


def test_tune_train_evaluate_return_results_and_print_nothing(
    tmp_path, mlflow_uri, synthetic_dataset, capfd
):
    (tmp_path / "als.yaml").write_text(SMALL_ALS)
    data_dir = synthetic_dataset.path.parent.parent
    models = tmp_path / "models"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)  # a notebook's default
    try:
        tuned = rectune.tune(
            "als",
            n_trials=2,
            k="10",
            search_space=tmp_path / "als.yaml",
            data_dir=data_dir,
            models_dir=models,
            experiment_name="api",
            pruner="none",
        )
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored
    finally:
        optuna.logging.set_verbosity(verbosity)
    trained = rectune.train(
        "als", hyperparameters=True, data_dir=data_dir, models_dir=models, experiment_name="api"
    )
    evaluated = rectune.evaluate(
        "als",
        k=[5, 10],
        n_bootstrap=20,
        data_dir=data_dir,
        models_dir=models,
        experiment_name="api",
    )
    out, err = capfd.readouterr()
    assert not OPTUNA_LINES.search(out + err), out + err
    assert out == ""

    assert isinstance(tuned, TuningResult) and tuned.best_params["factors"] in (8, 16)
    assert 0 < tuned.best_values["precision@10"] < 1
    assert (models / "best_hyperparameters.json").exists() and tuned.report_path.exists()
    assert isinstance(trained, TrainingResult) and trained.model_dir == models / "als"
    assert 0 < trained.metrics["precision@10"] < 1
    assert isinstance(evaluated, EvaluationResult) and evaluated.summary["ks"] == [5, 10]
    p10 = evaluated.summary["metrics"]["model"]["precision@10"]["mean"]
    assert math.isclose(p10, trained.metrics["precision@10"], rel_tol=1e-6)


def test_the_api_refuses_what_the_commands_refuse(tmp_path):
    with pytest.raises(ConfigError, match="this stage scores one K"):
        rectune.tune("als", k=[5, 10], data_dir=tmp_path)
    with pytest.raises(ConfigError, match="exactly one of model, model_dir and run_id"):
        rectune.evaluate()
    with pytest.raises(ConfigError, match="apply to synthetic only"):
        rectune.split("movielens-100k", n_users=10, data_dir=tmp_path)


def test_split_returns_the_manifest(tmp_path):
    manifest = rectune.split(
        n_users=50, n_items=40, n_interactions=600, dataset_name="tiny", data_dir=tmp_path
    )
    assert manifest["name"] == "tiny" and manifest["counts"]["interactions"] == 600
    assert (tmp_path / "processed" / "tiny" / "manifest.json").exists()


def test_the_api_is_lazy_on_the_package():
    assert set(rectune.__all__) >= {"split", "tune", "train", "evaluate", "report"}
    assert rectune.tune.__module__ == "rectune.api"


@pytest.mark.slow
def test_the_quickstart_example_prints_real_numbers(tmp_path):
    """examples/quickstart.py, as a user runs it (about 30 s on 2 cores)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    scores = dict(re.findall(r"^P@10 (\w+) +(0\.\d{4}) ", result.stdout, re.M))
    assert set(scores) == {"model", "popular", "random"}, result.stdout
    assert float(scores["model"]) > float(scores["random"]) > 0
    assert not OPTUNA_LINES.search(result.stdout + result.stderr), result.stderr
    assert (tmp_path / "mlflow.db").exists()
