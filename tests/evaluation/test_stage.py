"""Evaluation: baselines, intervals, paired tests, the stage end to end, its CLI."""

import contextlib
import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from scipy import stats

import evaluate_model
from rectune.config import parse_ks
from rectune.data.build import SourceSpec, build_dataset
from rectune.data.feedback import FeedbackConfig
from rectune.data.splits import SplitConfig
from rectune.data.store import load_dataset
from rectune.errors import ConfigError
from rectune.evaluation import stage as evaluation
from rectune.evaluation.baselines import popularity_factors, random_scorer
from rectune.evaluation.evaluator import evaluate
from rectune.evaluation.stage import EvaluationConfig, run_evaluation
from rectune.evaluation.statistics import bootstrap_means, paired_comparison
from rectune.recommender import Recommender
from rectune.training import TrainingConfig, train_model

# Four users, five items. Training counts per item: 2, 3, 1, 1, 1.
TRAIN = sp.csr_matrix(
    np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 1, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=np.float32)
)
TEST = sp.csr_matrix(
    np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=np.float32)
)


def test_popularity_baseline_on_a_hand_made_matrix():
    users, items = popularity_factors(TRAIN)
    result = evaluate(train=TRAIN, test=TEST, k=2, user_factors=users, item_factors=items)
    # Popularity order 1, 0, 2, 3, 4 (ties to the lower index) minus each user's items:
    # u0 -> 2, 3 (hit at rank 2); u1 -> 0, 3 (no hit); u2 -> 2, 4 (two hits);
    # u3 has nothing held out and is skipped.
    assert result.users.tolist() == [0, 1, 2]
    assert result.recommended.tolist() == [[2, 3], [0, 3], [2, 4]]
    per_user = result.per_user
    assert per_user["precision"].tolist() == [0.5, 0.0, 1.0]
    assert per_user["recall"].tolist() == [1.0, 0.0, 1.0]
    assert per_user["mrr"].tolist() == [0.5, 0.0, 1.0]
    assert per_user["hit_rate"].tolist() == [1.0, 0.0, 1.0]
    assert per_user["ndcg"] == pytest.approx([1 / np.log2(3), 0.0, 1.0])
    assert per_user["map"] == pytest.approx([0.5, 0.0, 1.0])
    assert result.means["precision"] == pytest.approx(0.5)
    assert result.coverage == pytest.approx(4 / 5)  # items 0, 2, 3, 4


def test_random_baseline_ranks_each_users_items_uniformly():
    scorer = random_scorer(10, seed=3)
    scores = scorer(np.arange(20_000))
    first = np.bincount(scores.argmax(axis=1), minlength=10)
    assert stats.chisquare(first).pvalue > 0.001
    # Blocks do not matter, the seed does.
    assert np.array_equal(scorer(np.array([7, 19_999])), scores[[7, 19_999]])
    assert not np.array_equal(random_scorer(10, seed=4)(np.arange(5)), scores[:5])
    ranked = evaluate(train=TRAIN, test=TEST, k=5, scorer=random_scorer(5)).recommended
    for row, user in enumerate([0, 1, 2]):
        assert not set(ranked[row][ranked[row] >= 0]) & set(TRAIN[user].indices)


def test_cutting_an_evaluation_at_a_smaller_k_equals_scoring_it(synthetic_dataset):
    users, items = popularity_factors(synthetic_dataset.train)
    matrices = (synthetic_dataset.train, synthetic_dataset.test)
    full = evaluate(None, *matrices, k=20, user_factors=users, item_factors=items)
    for k in (1, 5, 10):
        direct = evaluate(None, *matrices, k=k, user_factors=users, item_factors=items)
        assert full.at(k).means == pytest.approx(direct.means, abs=1e-12)
    with pytest.raises(ConfigError, match="between 1 and 20"):
        full.at(21)


def test_bootstrap_means_are_means_of_resampled_users():
    values = np.array([[0.0, 1.0, 2.0, 3.0, 10.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    means = bootstrap_means(values, n_resamples=50, seed=9)
    picks = np.random.default_rng(9).integers(0, 5, size=(50, 5))
    assert means[:, 0] == pytest.approx(values[0][picks].mean(axis=1))
    assert means[:, 1] == pytest.approx(np.ones(50))
    assert np.array_equal(means, bootstrap_means(values, n_resamples=50, seed=9))


def test_paired_comparison_uses_the_paired_t_test():
    a = np.array([0.5, 0.2, 0.9, 0.4, 0.7, 0.1])
    b = np.array([0.4, 0.2, 0.5, 0.1, 0.6, 0.2])
    resampled = bootstrap_means(np.vstack([a, b]), 200, seed=1)
    result = paired_comparison(a, b, resampled[:, 0], resampled[:, 1])
    assert result.difference == pytest.approx((a - b).mean())
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result.low <= result.difference <= result.high
    same = paired_comparison(a, a, resampled[:, 0], resampled[:, 0])
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_uri, synthetic_dataset):
    """A small final ALS model trained on the session's synthetic dataset."""
    models_dir = tmp_path_factory.mktemp("models")
    result = train_model(
        TrainingConfig(
            model="als",
            overrides={"factors": 16, "iterations": 5},
            data_dir=synthetic_dataset.path.parent.parent,
            models_dir=models_dir,
            experiment_name="evaluation-tests",
        )
    )
    return result


def evaluation_config(trained, tmp_path, data_dir, **overrides):
    options = {
        "model_dir": trained.model_dir,
        "data_dir": data_dir,
        "ks": (5, 10),
        "n_bootstrap": 200,
        "reports_dir": tmp_path / "reports",
        "experiment_name": "evaluation-tests",
    }
    return EvaluationConfig(**{**options, **overrides})


def test_evaluation_matches_the_evaluator_called_directly(trained, tmp_path, synthetic_dataset):
    data_dir = synthetic_dataset.path.parent.parent
    result = run_evaluation(evaluation_config(trained, tmp_path, data_dir))
    summary = result.summary
    recommender = Recommender.load(trained.model_dir)
    train, test = synthetic_dataset.train, synthetic_dataset.test
    for k in (5, 10):
        direct = evaluate(
            train=train,
            test=test,
            k=k,
            user_factors=recommender.user_factors,
            item_factors=recommender.item_factors,
        ).named()
        by_count, counts = popularity_factors(train)
        popular = evaluate(
            train=train, test=test, k=k, user_factors=by_count, item_factors=counts
        ).named()
        for name, value in direct.items():
            assert summary["metrics"]["model"][name]["mean"] == pytest.approx(value, abs=1e-12)
            assert summary["metrics"]["popular"][name]["mean"] == pytest.approx(
                popular[name], abs=1e-12
            )
    # The same numbers the training stage reported for its own K.
    for name, value in trained.metrics.items():
        assert summary["metrics"]["model"][name]["mean"] == pytest.approx(value, abs=1e-12)
    interval = summary["metrics"]["model"]["precision@10"]
    assert interval["low"] < interval["mean"] < interval["high"]
    assert summary["dataset"]["users_evaluated"] == int((np.diff(test.indptr) > 0).sum())
    versus = summary["comparisons"]["random"]["precision@10"]
    assert versus["difference"] > 0 and versus["p_value"] < 0.001
    assert set(summary["systems"]) == {"model", "popular", "random"}

    # Reports on disk and in the run, metrics and links in MLflow.
    names = sorted(path.name for path in result.report_paths)
    assert names == [f"evaluation-als-synthetic.{ext}" for ext in ("html", "json", "md")]
    assert json.loads(result.report_paths[0].read_text())["metrics"] == summary["metrics"]
    markdown = (tmp_path / "reports" / "evaluation-als-synthetic.md").read_text()
    assert "| precision | " + f"{interval['mean']:.4f}" in markdown
    client = MlflowClient()
    run = client.get_run(result.run_id)
    # Every metric says its split; baselines are a section of their own in MLflow's charts.
    assert run.data.metrics["test_precision_at_10"] == pytest.approx(interval["mean"])
    assert run.data.metrics["test_precision_at_10_ci_low"] == pytest.approx(interval["low"])
    popular = summary["metrics"]["popular"]["precision@10"]["mean"]
    assert run.data.metrics["popular/test_precision_at_10"] == pytest.approx(popular)
    assert not any(name.startswith(("vs_", "precision")) for name in run.data.metrics)
    # The test split is the run's dataset input, and the run's time covers the scoring.
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.name == "synthetic/test"
    assert [(t.key, t.value) for t in used.tags] == [("mlflow.data.context", "evaluation")]
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["rectune.training_run_id"] == trained.run_id
    assert run.data.tags["role"] == "evaluation"
    # The model's hyperparameters under the names its training run logs them by.
    training_params = client.get_run(trained.run_id).data.params
    for name in ("factors", "regularization", "iterations"):
        assert run.data.params[name] == training_params[name]
    logged = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert logged == {f"evaluation/{name}" for name in names}


def test_progress_covers_every_user_of_every_system(
    trained, tmp_path, synthetic_dataset, monkeypatch
):
    shown = {}

    @contextlib.contextmanager
    def bar(total, label, enabled):
        shown[label] = [total, 0, enabled]

        def advance(users):
            shown[label][1] += users

        yield advance

    monkeypatch.setattr(evaluation, "scoring_bar", bar)
    data_dir = synthetic_dataset.path.parent.parent
    config = evaluation_config(
        trained, tmp_path, data_dir, defaults_baseline=True, show_progress=True
    )
    users = run_evaluation(config).summary["dataset"]["users_evaluated"]
    assert shown == {
        f"scoring {system}": [users, users, True]
        for system in ("model", "popular", "random", "defaults")
    }


def test_evaluation_is_reproducible_by_seed(trained, tmp_path, synthetic_dataset):
    data_dir = synthetic_dataset.path.parent.parent
    first = run_evaluation(evaluation_config(trained, tmp_path, data_dir, ks=(10,)))
    second = run_evaluation(evaluation_config(trained, tmp_path, data_dir, ks=(10,)))
    assert first.summary["metrics"] == second.summary["metrics"]
    assert first.summary["comparisons"] == second.summary["comparisons"]


def test_defaults_baseline_is_the_model_with_default_parameters(
    trained, tmp_path, synthetic_dataset
):
    data_dir = synthetic_dataset.path.parent.parent
    config = evaluation_config(trained, tmp_path, data_dir, ks=(10,), defaults_baseline=True)
    summary = run_evaluation(config).summary
    defaults = train_model(
        TrainingConfig(
            model="als",
            data_dir=data_dir,
            models_dir=tmp_path / "defaults",
            experiment_name="evaluation-tests",
        )
    )
    assert summary["metrics"]["defaults"]["precision@10"]["mean"] == pytest.approx(
        defaults.metrics["precision@10"], abs=1e-12
    )


def test_a_model_from_another_split_is_refused(trained, tmp_path, synthetic_dataset):
    other = tmp_path / "data"
    build_dataset(SourceSpec(), FeedbackConfig(), SplitConfig(seed=7), data_dir=other)
    with pytest.raises(ConfigError, match="fingerprint") as caught:
        run_evaluation(evaluation_config(trained, tmp_path, other))
    assert load_dataset("synthetic", other).fingerprint[:12] in str(caught.value)
    assert not (tmp_path / "reports").exists()


def test_parse_ks():
    assert parse_ks("20,5, 10,5") == (5, 10, 20)
    for bad in ("", "0,5", "five"):
        with pytest.raises(ConfigError):
            parse_ks(bad)


def run_cli(*args):
    return CliRunner().invoke(evaluate_model.main, list(args))


def test_cli_evaluates_by_run_id(trained, tmp_path, synthetic_dataset):
    data_dir = synthetic_dataset.path.parent.parent
    result = run_cli(
        "--run-id",
        trained.run_id,
        "--k",
        "10",
        "--n-bootstrap",
        "100",
        "--data-dir",
        str(data_dir),
        "--models-dir",
        str(tmp_path / "models"),
        "--experiment-name",
        "evaluation-tests",
    )
    assert result.exit_code == 0, result.output
    assert f"Evaluated als (MLflow run {trained.run_id}) on the test split of synthetic" in (
        result.output
    )
    precision = trained.metrics["precision@10"]
    assert f"precision  {precision:.4f} [" in result.output
    assert (tmp_path / "models" / "reports" / "evaluation-als-synthetic.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of --model, --model-dir and --run-id"),
        (("--model", "als", "--run-id", "abc"), "give exactly one of"),
        (("--model-dir", "nowhere"), "no saved model at nowhere"),
        (("--model-dir", ".", "--k", "0"), "needs one or more positive integers"),
        (("--model", "svd"), "'svd' is not one of 'als', 'bpr'"),
    ],
)
def test_cli_bad_input_gets_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error:")


def test_an_evaluation_that_fails_mid_run_ends_its_run_failed(
    trained, tmp_path, synthetic_dataset, monkeypatch
):
    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(evaluation, "write_evaluation_reports", refuse)
    data_dir = synthetic_dataset.path.parent.parent
    config = evaluation_config(trained, tmp_path, data_dir, ks=(10,), experiment_name="eval-fail")
    with pytest.raises(OSError, match="disk full"):
        run_evaluation(config)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("eval-fail")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.info.run_name == "evaluate-als" and run.data.tags["role"] == "evaluation"
    assert "test_precision_at_10" in run.data.metrics  # what was logged before it failed stays
