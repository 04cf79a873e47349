"""Tuning: Optuna studies with one MLflow child run per trial, and the output file."""

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from mlflow_helpers import clean_env, mlflow_server
from rectune import tuning
from rectune.commands import tune as hyperparameter_tuning  # the script runs its main
from rectune.errors import ConfigError
from rectune.models import build_model, fit_model
from rectune.progress import StudyBar
from rectune.seeds import WORKER, derived_seed
from rectune.tuning import sharing
from rectune.tuning.best_params import provenance_path
from rectune.tuning.checkpoints import checkpoint_iterations
from rectune.tuning.plan import TuningConfig, parse_objectives
from rectune.tuning.study import run_tuning

SMALL_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [8, 16]}
  regularization: {type: categorical, choices: [0.1, 1.0]}
  iterations: {type: categorical, choices: [4, 8]}
"""
SMALL_BPR = """model: bpr
parameters:
  factors: {type: categorical, choices: [8, 16]}
  learning_rate: {type: categorical, choices: [0.01, 0.05]}
  iterations: 5
"""


@pytest.fixture
def tune(tmp_path, monkeypatch, mlflow_uri, synthetic_dataset):
    """Run a small study in ``tmp_path`` (artifacts land in tmp_path/mlruns)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "als.yaml").write_text(SMALL_ALS)
    (tmp_path / "bpr.yaml").write_text(SMALL_BPR)
    data_dir = synthetic_dataset.path.parent.parent

    def run(pruner=None, fit=fit_model, **overrides):
        model = overrides.get("model", "als")
        settings = {
            "model": model,
            "n_trials": 3,
            "data_dir": data_dir,
            "output": tmp_path / "models" / "best_hyperparameters.json",
            "search_space": tmp_path / f"{model}.yaml",
            "experiment_name": f"test-{tmp_path.name}",
            "show_progress": False,
            "pruner": "none",  # the storage: the default journal file, models/optuna.journal
            # Shared trials fill the small studies here; by default they come on top.
            "count_shared": True,
        }
        settings.update(overrides)
        return run_tuning(TuningConfig(**settings), pruner=pruner, fit=fit)

    return run


def trial_table(study):
    return [(t.params, t.state.name, t.values) for t in study.trials]


def children(result):
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_run(result.parent_run_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'",
    )
    return sorted(runs, key=lambda run: int(run.data.tags["trial_number"]))


def test_three_trial_study_is_deterministic_by_seed(tune, tmp_path):
    first = tune(study_name="a", seed=7)
    second = tune(study_name="b", seed=7)
    assert trial_table(first.study) == trial_table(second.study)
    assert len(first.study.trials) == 3
    assert all(t.state.name == "COMPLETE" for t in first.study.trials)
    other = tune(study_name="c", seed=8)
    assert [t.params for t in other.study.trials] != [t.params for t in first.study.trials]


def test_every_trial_is_a_child_of_one_parent_with_its_metrics(tune, tmp_path):
    result = tune(n_trials=4, sampler="grid", seed=1)
    runs = children(result)
    assert [int(r.data.tags["trial_number"]) for r in runs] == [0, 1, 2, 3]
    client = MlflowClient()
    for run, trial in zip(runs, result.study.trials, strict=True):
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics
        # Scores say their split (validation); timings measure none.
        for key in ("val_precision_at_10", "val_recall_at_10", "fit_seconds", "eval_seconds"):
            assert key in metrics, key
        assert not any(name.startswith(("precision", "test_")) for name in metrics)
        assert metrics["val_precision_at_10"] == pytest.approx(trial.value)
        assert {k: run.data.params[k] for k in trial.params} == {
            k: str(v) for k, v in trial.params.items()
        }
        history = client.get_metric_history(run.info.run_id, "val_precision_at_10_by_iteration")
        steps = sorted(m.step for m in history)
        iterations = trial.params["iterations"]
        if trial.user_attrs.get("shared_fit_of") is None:
            assert iterations == 8  # the grid visits the largest iteration count first
            assert steps == [4, 8]  # scored at the iteration choices, as every trial is
            assert set(trial.intermediate_values) == {4, 8}
            assert trial.intermediate_values[8] == pytest.approx(trial.value)
        else:  # recorded from the fit of 8 at 4: its parent's curve is not copied
            assert iterations == 4 and run.data.tags["shared_fit_of_trial"] == str(
                trial.user_attrs["shared_fit_of"]
            )
            assert steps == [] and trial.intermediate_values == {}
    parent = client.get_run(result.parent_run_id)
    tags = parent.data.tags
    for key, value in {
        "model": "als",
        "dataset": "synthetic",
        "sampler": "grid",
        "pruner": "none",
        "seed": "1",
        "rectune_version": "0.1.0",
        "study_name": result.study.study_name,
    }.items():
        assert tags[key] == value, key
    assert len(tags["dataset_fingerprint"]) == 64
    # The UI's Dataset, User and Source columns, on the parent and every trial alike;
    # the experiment opens on its runs table (not MLflow 3's GenAI overview).
    for run in (parent, *(client.get_run(r.info.run_id) for r in runs)):
        used = {(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs}
        assert used == {("synthetic/train_val", "training"), ("synthetic/validation", "validation")}
        assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # optuna-dashboard names the objective after its metric, not "Objective 0".
    assert result.study.metric_names == ["precision@10"]
    best = [r for r in runs if r.data.tags.get("best_trial") == "true"]
    assert len(best) == 1 and tags["best_run_id"] == best[0].info.run_id
    assert parent.data.metrics["best_val_precision_at_10"] == pytest.approx(result.study.best_value)
    assert tags["best_factors"] == str(result.best_params["factors"])
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"search_space", "plots", "report", "importance.json", "summary.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(result.parent_run_id, "plots")}
    assert {
        f"plots/{name}.json"  # plotly's figure JSON; the report is the page that draws them
        for name in ("optimization_history", "param_importances", "slice", "param_pairs")
    } <= plots
    importance = json.loads(
        client.download_artifacts(result.parent_run_id, "importance.json", str(tmp_path))
        and (tmp_path / "importance.json").read_text()
    )
    assert set(importance) == {"fanova", "ped_anova"}
    assert set(importance["fanova"]) == {"factors", "regularization", "iterations"}
    report = result.report_path.read_text()
    assert result.report_path.parent == tmp_path / "models" / "reports"
    assert report.count("* plotly.js (basic - minified)") == 1  # plotly.js once
    assert report.count('class="plot"') == len(plots)
    assert "Best parameters" in report and "Trials" in report
    plot = json.loads(
        Path(
            client.download_artifacts(result.parent_run_id, "plots/slice.json", str(tmp_path))
        ).read_text()
    )
    assert {trace["type"] for trace in plot["data"]} == {"scatter"}


def test_pruned_and_failed_trials_show_in_optuna_and_mlflow(tune):
    def fit(model, train, callback=None):
        if model.factors == 16:
            raise RuntimeError("boom")
        return fit_model(model, train, callback=callback)

    always_prune = optuna.pruners.ThresholdPruner(lower=1.0)  # P@10 is never 1
    # The grid has 4 points with 8 factors (pruned) and 4 with 16 (failed): failed
    # trials do not count towards --n-trials, so the study runs until 4 are pruned.
    # (Without sharing: a fit of 8 would record its exact value at 4 before the pruner
    # sees it there.)
    result = tune(n_trials=4, sampler="grid", pruner=always_prune, fit=fit, share_iterations=False)
    states = {t.number: t.state.name for t in result.study.trials}
    runs = {int(r.data.tags["trial_number"]): r for r in children(result)}
    failed = list(states.values()).count("FAIL")
    assert list(states.values()).count("PRUNED") == 4 and 1 <= failed <= 4
    assert len(states) == 4 + failed
    for number, state in states.items():
        run = runs[number]
        trial = result.study.trials[number]
        if state == "PRUNED":
            assert run.data.tags["pruned"] == "true" and run.info.status == "FINISHED"
            # The objective is the last value the pruner saw, as MLflow's charts need.
            last = trial.intermediate_values[max(trial.intermediate_values)]
            assert run.data.metrics["val_precision_at_10"] == pytest.approx(last)
        else:
            assert run.info.status == "FAILED"
            assert run.data.tags["error"] == "RuntimeError: boom"
            assert trial.user_attrs["error"] == "RuntimeError: boom"
    assert result.counts == {
        "complete": 0,
        "reused": 0,
        "shared": 0,
        "fits": 4 + failed,
        "pruned": 4,
        "failed": failed,
        "study_finished": 4,
        "study_shared": 0,
        "study_total": 4 + failed,
    }
    assert result.best_params is None
    assert not (result.config.output).exists()


def test_failing_trials_stop_after_as_many_failures_as_trials_asked_for(tune):
    def fit(model, train, callback=None):
        raise RuntimeError("boom")

    result = tune(n_trials=3, fit=fit)
    assert [t.state.name for t in result.study.trials] == ["FAIL"] * 3
    assert "stopped after 3 failed trials" in result.notes


def test_a_combination_that_keeps_failing_is_given_up_after_two_tries(tune):
    def fit(model, train, callback=None):
        # As a combination the GPU cannot hold would, every time.
        if model.factors == 16 and model.regularization == 1.0:
            raise RuntimeError("out of memory")
        return fit_model(model, train, callback=callback)

    names = ("factors", "regularization", "iterations")
    # Seed 0: the sampler used to propose one of the failing two four times.
    result = tune(n_trials=6, sampler="tpe", fit=fit, seed=0)
    trials = result.study.trials
    failed = Counter(tuple(t.params[k] for k in names) for t in trials if t.state.name == "FAIL")
    assert failed and set(failed) <= {(16, 1.0, 4), (16, 1.0, 8)}
    assert set(failed.values()) <= {1, 2}
    # The other six finished: the study was not used up on the failing two.
    finished = {
        tuple(t.user_attrs["params"][k] for k in names)
        for t in trials
        if t.state.name == "COMPLETE"
    }
    assert finished == {
        (f, r, i) for f in (8, 16) for r in (0.1, 1.0) for i in (4, 8) if (f, r) != (16, 1.0)
    }
    assert result.counts["study_finished"] == 6
    assert not any(note.startswith("stopped after") for note in result.notes)


def test_resuming_runs_only_the_missing_trials_under_the_same_parent(tune):
    first = tune(n_trials=3, study_name="resume")
    before = trial_table(first.study)
    again = tune(n_trials=3, study_name="resume")
    assert again.resumed_trials == 3 and len(again.study.trials) == 3
    assert again.counts["complete"] == 0 and again.best_params == first.best_params
    grown = tune(n_trials=5, study_name="resume")
    assert grown.resumed_trials == 3 and len(grown.study.trials) == 5
    assert trial_table(grown.study)[:3] == before
    assert first.parent_run_id == again.parent_run_id == grown.parent_run_id
    assert [int(r.data.tags["trial_number"]) for r in children(grown)] == [0, 1, 2, 3, 4]
    parent = MlflowClient().get_run(grown.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_finished"] == 5
    assert parent.data.params["n_trials"] == "3"  # params keep the study's first settings
    seed = derived_seed(42, WORKER, 2)  # by key, not 42 + 2
    assert f"run 3 to join this study: its sampler is seeded with {seed}" in grown.notes


def test_a_complete_study_run_again_by_a_new_pipeline_run_keeps_its_one_parent(
    tune, tmp_path, monkeypatch
):
    """A repeated ``mlflow run .`` (a new pipeline run) on a finished study runs nothing,
    makes no empty parent, and points at the parent that holds the trials."""
    client = MlflowClient()
    experiment = client.create_experiment(f"test-{tmp_path.name}")
    first, second = (client.create_run(experiment).info.run_id for _ in range(2))
    monkeypatch.setenv("MLFLOW_RUN_ID", first)
    done = tune(n_trials=3, study_name="again")
    assert not done.already_complete and done.counts["fits"] > 0
    monkeypatch.setenv("MLFLOW_RUN_ID", second)
    again = tune(n_trials=3, study_name="again")
    assert again.already_complete and again.counts["fits"] == again.counts["complete"] == 0
    assert again.parent_run_id == done.parent_run_id
    assert again.best_params == done.best_params
    parents = client.search_runs([experiment], filter_string="tags.role = 'tuning-parent'")
    assert [run.info.run_id for run in parents] == [done.parent_run_id]
    assert parents[0].info.status == "FINISHED"
    assert hyperparameter_tuning._counts_line(again, again.config) == (
        "Study again is complete: 3 of 3 trials finished, nothing to run (a larger "
        "--n-trials, or another --study-name, tunes on); its best and runs are below"
    )


def test_tuning_bpr_keeps_the_als_entry(tune, tmp_path):
    als = tune(model="als", n_trials=2)
    output = tmp_path / "models" / "best_hyperparameters.json"
    als_entry = json.loads(output.read_text())["als"]
    assert als_entry == als.best_params
    bpr = tune(model="bpr", n_trials=2)
    document = json.loads(output.read_text())
    assert document == {"als": als_entry, "bpr": bpr.best_params}
    assert document["bpr"]["iterations"] == 5  # fixed parameters are written too
    provenance = json.loads(provenance_path(output).read_text())
    assert set(provenance) == {"als", "bpr"}
    assert provenance["bpr"]["parent_run_id"] == bpr.parent_run_id
    assert provenance["als"]["metric"] == "precision@10"
    assert provenance["als"]["value"] == pytest.approx(als.best_values["precision@10"])


def test_a_repeated_combination_is_not_refitted(tune, tmp_path):
    (tmp_path / "one.yaml").write_text(
        "parameters:\n  factors: {type: categorical, choices: [8]}\n  iterations: 4\n"
    )
    fits = []

    def counting_fit(model, train, callback=None):
        fits.append(model.factors)
        return fit_model(model, train, callback=callback)

    result = tune(n_trials=3, search_space=tmp_path / "one.yaml", fit=counting_fit, n_jobs=1)
    assert fits == [8]
    trials = result.study.trials
    assert [t.user_attrs.get("reused_from") for t in trials] == [None, 0, 0]
    assert len({t.value for t in trials}) == 1
    runs = children(result)
    assert [r.data.tags.get("reused_from_trial") for r in runs] == [None, "0", "0"]
    assert runs[2].data.metrics["val_precision_at_10"] == pytest.approx(trials[0].value)
    assert result.counts["reused"] == 2


def test_parallel_trials_log_to_their_own_runs(tune):
    result = tune(n_trials=4, n_jobs=2, sampler="grid")
    runs = children(result)
    assert len(runs) == 4
    by_number = {int(r.data.tags["trial_number"]): r.info.run_id for r in runs}
    assert {t.number: t.user_attrs["mlflow_run_id"] for t in result.study.trials} == by_number
    for run in runs:
        assert "val_precision_at_10" in run.data.metrics


BUDGET_ALS = """model: als
parameters:
  factors: {type: int, low: 4, high: 16}
  regularization: {type: float, low: 0.01, high: 10, log: true}
  iterations: 6
"""


def test_parallel_trials_by_default_give_the_same_study_however_long_fits_take(tune, tmp_path):
    (tmp_path / "budget.yaml").write_text(BUDGET_ALS)
    lock = threading.Lock()
    at_once, most = [0], [0]

    def jittery_fit(model, train, callback=None):
        with lock:
            at_once[0] += 1
            most[0] = max(most[0], at_once[0])
        time.sleep(random.random() / 20)  # unseeded: the order trials end in differs
        try:
            return fit_model(model, train, callback=callback)
        finally:
            with lock:
                at_once[0] -= 1

    results = [
        tune(n_trials=6, search_space=tmp_path / "budget.yaml", study_name=name, seed=5,
             fit=jittery_fit, checkpoints=3)
        for name in ("a", "b")
    ]  # fmt: skip
    assert most[0] == 2  # the default ran two at once
    first, second = (trial_table(r.study) for r in results)
    assert first == second
    assert [state for _, state, _ in first] == ["COMPLETE"] * 6
    parent = MlflowClient().get_run(results[0].parent_run_id)
    assert parent.data.params["n_jobs"] == "2"


def test_ctrl_c_stops_the_parallel_trial_beside_it(tune, tmp_path):
    (tmp_path / "budget.yaml").write_text(BUDGET_ALS.replace("iterations: 6", "iterations: 400"))
    calls = []

    def fit(model, train, callback=None):
        calls.append(1)
        if len(calls) == 3:
            time.sleep(0.2)  # trial 3 is fitting by now
            raise KeyboardInterrupt
        return fit_model(model, train, callback=callback)

    result = tune(n_trials=6, search_space=tmp_path / "budget.yaml", fit=fit, patience=0)
    assert result.interrupted
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert trials[3].user_attrs["error"] == tuning.INTERRUPTED  # stopped, not fitted out
    client = MlflowClient()
    for trial in trials[2:]:
        assert client.get_run(trial.user_attrs["mlflow_run_id"]).info.status == "KILLED"


def test_multi_objective_study_writes_a_pareto_trial(tune):
    result = tune(n_trials=4, objectives=parse_objectives("precision@10,coverage@10"))
    assert [d.name for d in result.study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    assert set(result.best_values) == {"precision@10", "coverage@10"}
    front = {t.number for t in result.study.best_trials}
    assert result.best_trial_number in front
    best_first = max(result.study.best_trials, key=lambda t: t.values[0])
    assert result.best_values["precision@10"] == pytest.approx(best_first.values[0])
    plots = {a.path for a in MlflowClient().list_artifacts(result.parent_run_id, "plots")}
    assert "plots/pareto_front.json" in plots


def test_cross_validation_logs_each_fold(tune):
    result = tune(n_trials=1, cv_folds=2)
    run = children(result)[0]
    history = MlflowClient().get_metric_history(run.info.run_id, "val_precision_at_10_by_fold")
    assert sorted(m.step for m in history) == [0, 1]
    mean = sum(m.value for m in history) / 2
    assert result.study.trials[0].value == pytest.approx(mean)


def test_warm_start_enqueues_the_current_best_first(tune, tmp_path):
    output = tmp_path / "models" / "best_hyperparameters.json"
    output.parent.mkdir()
    output.write_text(
        json.dumps({"als": {"factors": 16, "regularization": 1.0, "iterations": 8, "alpha": 3.0}})
    )
    result = tune(n_trials=2, warm_start=True, sampler="random")
    assert result.study.trials[0].params == {"factors": 16, "regularization": 1.0, "iterations": 8}
    assert "warm start: 1 parameter set(s) enqueued" in result.notes


def test_a_study_made_for_another_metric_is_refused(tune):
    tune(n_trials=1, study_name="shared")
    with pytest.raises(ConfigError, match="was created with objectives=\\['precision@10'\\]"):
        tune(n_trials=1, study_name="shared", metric="recall")


def test_checkpoints_are_evenly_spaced():
    assert checkpoint_iterations(20, 5) == {4, 8, 12, 16, 20}
    assert checkpoint_iterations(3, 5) == {1, 2, 3}
    assert checkpoint_iterations(10, 3) == {4, 7, 10}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("precision@0", "objective 'precision@0' is not METRIC@K"),
        ("auc@10", "objective 'auc@10' is not METRIC@K"),
        ("precision@10,precision@10", "objectives repeat"),
        ("fit_seconds", "the first objective must be a metric@K"),
        ("fit_seconds,precision@10", "the first objective must be a metric@K"),
    ],
)
def test_bad_objectives_are_rejected(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_objectives(text)


def run_cli(args, tmp_path, data_dir):
    return CliRunner().invoke(
        hyperparameter_tuning.main,
        [
            *args,
            "--data-dir",
            str(data_dir),
            "--no-progress",
            "--output",
            str(tmp_path / "models" / "best_hyperparameters.json"),
        ],
    )


def test_cli_prints_a_summary(tmp_path, monkeypatch, mlflow_uri, synthetic_dataset):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "als.yaml").write_text(SMALL_ALS)
    result = run_cli(
        [
            "--model",
            "als",
            "--n-trials",
            "3",
            "--search-space",
            "als.yaml",
            "--experiment-name",
            "cli",
            "--pruner",
            "none",
        ],
        tmp_path,
        synthetic_dataset.path.parent.parent,
    )
    assert result.exit_code == 0, result.output
    out = result.output
    # Grid order: two fits of 8 iterations record their 4-iteration twins, on top of
    # the 3 trials asked for; then one more fit.
    assert (
        "Study als-synthetic-precision_at_10: 5 trials this run from 3 fits "
        "(5 complete, 2 of them recorded from another's fit, 0 reused; 0 pruned, 0 failed); "
        "3 of 3 finished in the study (recorded ones on top)"
    ) in out
    assert "Best (trial " in out and "precision@10 = 0." in out
    assert "Wrote the als entry of" in out
    assert "MLflow parent run " in out and "in experiment cli" in out
    assert "mlflow ui --backend-store-uri" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "knn"], "Invalid value for '--model': 'knn' is not one of 'als', 'bpr'"),
        (["--model", "als", "--n-trials", "0"], "'--n-trials': 0 is not in the range x>=1"),
        (["--model", "als", "--k", "0"], "'--k': 0 is not in the range x>=1"),
        (["--model", "als", "--sampler", "anneal"], "'--sampler': 'anneal' is not one of"),
        (
            ["--model", "als", "--dataset", "nowhere"],
            "no processed dataset 'nowhere'.*make it with `python src/split_data.py --dataset "
            "nowhere`",
        ),
        (
            ["--model", "als", "--search-space", "missing.yaml"],
            "search space file not found: missing.yaml",
        ),
        (["--model", "als", "--objectives", "precision@ten"], "objective 'precision@ten'"),
        (
            ["--model", "als", "--sampler", "grid", "--search-space", "continuous.yaml"],
            "parameter 'alpha' is continuous, so the grid sampler cannot enumerate it",
        ),
    ],
)
def test_cli_rejects_bad_options_with_one_line(
    tmp_path, monkeypatch, synthetic_dataset, args, message
):
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "continuous.yaml").write_text(
        "parameters:\n  alpha: {type: float, low: 0.1, high: 10}\n"
    )
    result = run_cli(args, tmp_path, synthetic_dataset.path.parent.parent)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "mlruns").exists()  # refused before any run was made


def test_cli_refuses_a_corrupt_output_file(tmp_path, monkeypatch, synthetic_dataset):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "models" / "best_hyperparameters.json"
    output.parent.mkdir()
    output.write_text('{"als": {"factors": 6')
    result = run_cli(["--model", "als"], tmp_path, synthetic_dataset.path.parent.parent)
    assert result.exit_code == 2
    assert "best_hyperparameters.json is not valid JSON" in result.output
    assert output.read_text() == '{"als": {"factors": 6'  # left for the user to fix


def test_gp_sampler_without_torch_says_how_to_get_it(tmp_path, monkeypatch, synthetic_dataset):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        ["--model", "als", "--sampler", "gp"], tmp_path, synthetic_dataset.path.parent.parent
    )
    assert result.exit_code == 2
    assert "the gp sampler needs PyTorch" in result.output


def _write_many(output, prefix, count, barrier):
    from rectune.tuning.best_params import write_best_hyperparameters

    barrier.wait()  # start both writers together so their writes interleave
    for i in range(count):
        write_best_hyperparameters(output, f"{prefix}{i}", {"factors": i}, {"round": i})


@pytest.mark.slow
def test_concurrent_writers_keep_every_entry(tmp_path):
    # Each process adds a new entry per write, so any lost update (read, the other
    # process writes, write back without its entry) drops an entry for good.
    import multiprocessing

    output = tmp_path / "best_hyperparameters.json"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_write_many, args=(output, prefix, 150, barrier))
        for prefix in ("als", "bpr")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    expected = {f"{prefix}{i}": {"factors": i} for prefix in ("als", "bpr") for i in range(150)}
    assert json.loads(output.read_text()) == expected
    provenance = json.loads(provenance_path(output).read_text())
    assert set(provenance) == set(expected)


def _tune_subprocess(cwd, data_dir, env):
    import subprocess
    import sys
    from pathlib import Path

    (cwd / "als.yaml").write_text(SMALL_ALS)
    script = Path(__file__).resolve().parents[2] / "src" / "hyperparameter_tuning.py"
    return subprocess.run(
        [
            sys.executable,
            str(script),
            "--model",
            "als",
            "--n-trials",
            "3",
            "--no-progress",
            "--search-space",
            "als.yaml",
            "--data-dir",
            str(data_dir),
            "--output",
            str(cwd / "models" / "best.json"),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_default_tracking_store_is_mlflow_db_in_the_working_directory(tmp_path, synthetic_dataset):
    result = _tune_subprocess(tmp_path, synthetic_dataset.path.parent.parent, clean_env())
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # The address opens the experiment's runs table (MLflow 3's UI opens its GenAI pages
    # unless told), with the trials sorted best first.
    experiment = client.get_experiment_by_name("rectune-als").experiment_id
    assert (
        "see it with `mlflow ui`, then open http://127.0.0.1:5000/#/experiments/"
        f"{experiment}/runs?workflowType=machine_learning"
        "&orderByKey=metrics.%60val_precision_at_10%60&orderByAsc=false"
    ) in result.stdout
    parent = client.search_runs(
        [client.get_experiment_by_name("rectune-als").experiment_id],
        filter_string="tags.role = 'tuning-parent'",
    )[0]
    artifacts = tmp_path / "mlruns" / parent.info.experiment_id / parent.info.run_id
    assert (artifacts / "artifacts" / "importance.json").is_file()


@pytest.mark.slow
def test_tuning_against_a_tracking_server(tmp_path, synthetic_dataset):
    with mlflow_server(
        f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log"
    ) as url:
        work = tmp_path / "work"
        work.mkdir()
        result = _tune_subprocess(
            work, synthetic_dataset.path.parent.parent, clean_env(MLFLOW_TRACKING_URI=url)
        )
        assert result.returncode == 0, result.stderr
        assert f"open {url}/#/experiments/" in result.stdout
        assert "ExperimentalWarning" not in result.stderr  # study.set_metric_names
        assert not (work / "mlruns").exists() and not (work / "mlflow.db").exists()
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("rectune-als").experiment_id
        parent = client.search_runs([experiment], filter_string="tags.role = 'tuning-parent'")
        assert len(parent) == 1
        kids = client.search_runs(
            [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'"
        )
        assert len(kids) == 5  # 3 fits, 2 trials recorded from them (iteration sharing)
        names = {a.path for a in client.list_artifacts(parent[0].info.run_id)}
        assert {"importance.json", "plots", "report"} <= names


def test_study_names_become_safe_report_file_names(tune, tmp_path):
    result = tune(n_trials=1, study_name="team/als v2")
    assert result.report_path == tmp_path / "models" / "reports" / "team_als_v2.html"
    assert (
        TuningConfig(model="als", dataset="/data/x/ml/").resolved_study_name
        == "als-ml-precision_at_10"
    )


def test_resume_writes_the_best_trials_own_fixed_values(tune, tmp_path):
    (tmp_path / "eight.yaml").write_text(
        "parameters:\n  factors: {type: categorical, choices: [8]}\n  iterations: 8\n"
    )
    (tmp_path / "one.yaml").write_text(
        "parameters:\n  factors: {type: categorical, choices: [8]}\n  iterations: 1\n"
    )
    tune(n_trials=1, study_name="fixed", search_space=tmp_path / "eight.yaml")
    result = tune(n_trials=1, study_name="fixed", search_space=tmp_path / "one.yaml")
    assert result.best_trial_number == 0  # one ALS sweep does worse than eight
    written = json.loads((tmp_path / "models" / "best_hyperparameters.json").read_text())
    assert written["als"] == {"factors": 8, "iterations": 8} == result.best_params


def test_best_trial_tags_do_not_cross_studies(tune, tmp_path):
    first = tune(n_trials=2, study_name="same", storage=f"sqlite:///{tmp_path / 'a.db'}")
    tune(n_trials=2, study_name="same", storage=f"sqlite:///{tmp_path / 'b.db'}")
    best = MlflowClient().get_run(first.study.best_trial.user_attrs["mlflow_run_id"])
    assert best.data.tags["best_trial"] == "true"


def test_quotes_in_study_names_are_fine(tune):
    assert tune(n_trials=1, study_name="bob's study").best_params is not None


def test_the_mlflow_database_is_refused_as_optuna_storage(tune, mlflow_uri):
    with pytest.raises(ConfigError, match="is the MLflow tracking database"):
        tune(storage=mlflow_uri)


def test_ctrl_c_keeps_finished_trials_and_ends_runs_killed(tune, tmp_path):
    calls = []

    def fit(model, train, callback=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fit_model(model, train, callback=callback)

    result = tune(n_trials=5, sampler="grid", fit=fit)
    assert result.interrupted
    states = [t.state.name for t in result.study.trials]
    # Two fits of 8 iterations, each recording its 4-iteration trial; the third fit stopped.
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    assert [t.user_attrs.get("shared_fit_of") for t in result.study.trials[:4]] == [
        None,
        0,
        None,
        2,
    ]
    client = MlflowClient()
    killed = client.get_run(result.study.trials[4].user_attrs["mlflow_run_id"])
    assert killed.info.status == "KILLED"
    assert client.get_run(result.parent_run_id).info.status == "KILLED"
    written = json.loads((tmp_path / "models" / "best_hyperparameters.json").read_text())
    assert written["als"] == result.best_params
    assert result.report_path.is_file()


def test_checkpoints_follow_the_models_default_iterations(tune, tmp_path):
    (tmp_path / "no_iterations.yaml").write_text(
        "parameters:\n  factors: {type: categorical, choices: [8]}\n"
    )
    result = tune(model="bpr", n_trials=1, search_space=tmp_path / "no_iterations.yaml", patience=0)
    trial = result.study.trials[0]
    # BPR's default is 100 iterations, not 15: the budget, scored every tenth of it.
    assert sorted(trial.intermediate_values) == list(range(10, 101, 10))


def test_a_failed_trial_logs_one_warning_line(tune, caplog):
    def fit(model, train, callback=None):
        raise ValueError("no luck")

    with caplog.at_level("WARNING", logger="rectune"):
        tune(n_trials=1, fit=fit)
    assert "trial 0 failed: ValueError: no luck" in caplog.messages


def test_passwords_never_reach_the_error_message(tmp_path, monkeypatch, synthetic_dataset):
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        ["--model", "als", "--storage", "postgresql://tuner:s3cret@127.0.0.1:1/x"],
        tmp_path,
        synthetic_dataset.path.parent.parent,
    )
    assert result.exit_code == 2
    assert "cannot open Optuna storage postgresql://tuner:***@127.0.0.1:1/x" in result.output
    assert "s3cret" not in result.output


def test_an_unwritable_output_is_refused_before_any_trial(tmp_path, monkeypatch, synthetic_dataset):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        hyperparameter_tuning.main,
        [
            "--model",
            "als",
            "--no-progress",
            "--output",
            "/proc/rectune/best.json",
            "--data-dir",
            str(synthetic_dataset.path.parent.parent),
        ],
    )
    assert result.exit_code == 2
    assert result.output.startswith("Error: cannot write --output /proc/rectune/best.json")
    assert not (tmp_path / "mlruns").exists()


# --------------------------------------------------------------------------- iteration sharing

SHARED_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [8, 16]}
  regularization: {type: categorical, choices: [0.1, 1.0]}
  iterations: {type: categorical, choices: [2, 5, 9]}
"""
SHARED_BPR = """model: bpr
parameters:
  factors: {type: categorical, choices: [8, 16]}
  learning_rate: 0.05
  iterations: {type: categorical, choices: [3, 7]}
"""
TIMINGS = ("fit_seconds", "eval_seconds")


def by_params(study):
    """{(sorted params): (user-attr metrics without timings, values)} of COMPLETE trials."""
    table = {}
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        metrics = {k: v for k, v in trial.user_attrs["metrics"].items() if k not in TIMINGS}
        table[tuple(sorted(trial.user_attrs["params"].items()))] = (metrics, trial.values)
    return table


@pytest.mark.parametrize(
    ("model", "space", "grid_size", "fits"),
    [
        ("als", SHARED_ALS, 12, 4),
        ("bpr", SHARED_BPR, 4, 2),
    ],
)
def test_shared_trials_equal_separately_fitted_models(
    tune, tmp_path, model, space, grid_size, fits
):
    (tmp_path / "shared.yaml").write_text(space)
    common = {
        "model": model,
        "n_trials": grid_size,
        "sampler": "grid",
        "search_space": tmp_path / "shared.yaml",
        "objectives": parse_objectives("precision@10,ndcg@5,fit_seconds"),
    }
    shared = tune(study_name="shared", **common)
    separate = tune(study_name="separate", share_iterations=False, **common)
    # Every combination fitted on its own in one study, from its largest-iterations
    # fit in the other: the same metrics, at every K, to the last bit.
    assert len(by_params(separate.study)) == len(by_params(shared.study)) == grid_size
    for key, (metrics, values) in by_params(separate.study).items():
        shared_metrics, shared_values = by_params(shared.study)[key]
        assert shared_metrics == metrics, key
        assert shared_values[:2] == values[:2], key
    trials = shared.study.trials
    owners = [t for t in trials if "shared_fit_of" not in t.user_attrs]
    assert len(owners) == fits and shared.counts["shared"] == grid_size - fits
    top = max(p["iterations"] for p in (t.user_attrs["params"] for t in trials))
    assert all(t.user_attrs["params"]["iterations"] == top for t in owners)
    for trial in trials:
        owner = trial.user_attrs.get("shared_fit_of")
        if owner is None:
            continue
        params, fitted = trial.user_attrs["params"], trial_by_number(shared.study, owner)
        assert params == {**fitted.user_attrs["params"], "iterations": params["iterations"]}
        assert params["iterations"] < fitted.user_attrs["params"]["iterations"]
        # fit_seconds is the owner's fit time up to the shared iteration count.
        assert 0 < trial.values[2] < fitted.values[2]
    assert separate.counts["shared"] == 0 and len(separate.study.trials) == grid_size


def trial_by_number(study, number):
    return next(t for t in study.trials if t.number == number)


def test_shared_trials_get_child_runs_and_the_grid_is_exhausted(tune, tmp_path):
    (tmp_path / "shared.yaml").write_text(SHARED_ALS)
    result = tune(n_trials=50, sampler="grid", search_space=tmp_path / "shared.yaml")
    assert len(result.study.trials) == 12  # the grid's size, not 50: it ran out
    runs = children(result)
    assert len(runs) == 12 and all(r.info.status == "FINISHED" for r in runs)
    for run, trial in zip(runs, result.study.trials, strict=True):
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.data.params["iterations"] == str(trial.params["iterations"])
        assert run.data.metrics["val_precision_at_10"] == trial.value
        owner = trial.user_attrs.get("shared_fit_of")
        assert run.data.tags.get("shared_fit_of_trial") == (None if owner is None else str(owner))
    assert result.counts["shared"] == 8 and result.counts["complete"] == 4


def test_a_pruned_fit_records_the_iteration_counts_it_reached(tune, tmp_path):
    (tmp_path / "shared.yaml").write_text(SHARED_ALS.replace("[2, 5, 9]", "[2, 8]"))
    always_prune = optuna.pruners.ThresholdPruner(lower=1.0)
    result = tune(
        n_trials=2, sampler="grid", pruner=always_prune, search_space=tmp_path / "shared.yaml"
    )
    # A fit of 8 is scored at the choices 2 and 8: it records 2, then is pruned there.
    first, second = result.study.trials[:2]
    assert first.state.name == "PRUNED" and first.params["iterations"] == 8
    assert first.intermediate_values == {2: second.value}
    assert second.state.name == "COMPLETE" and second.params["iterations"] == 2
    assert second.user_attrs["shared_fit_of"] == 0
    assert second.intermediate_values == {}  # its parent's curve, not reported twice


def test_a_study_of_fixed_size_is_not_overfilled_by_shared_trials(tune, tmp_path):
    (tmp_path / "shared.yaml").write_text(SHARED_ALS)
    result = tune(n_trials=5, sampler="grid", search_space=tmp_path / "shared.yaml")
    # A fit of 9 records 5 and 2 (3 trials); the second fit has room for one more.
    assert len(result.study.trials) == 5
    assert [t.user_attrs.get("shared_fit_of") for t in result.study.trials] == [None, 0, 0, None, 3]
    assert result.study.trials[4].params["iterations"] == 5  # the larger choice first


def test_the_progress_bar_counts_shared_trials_and_shows_the_best(tune, tmp_path, monkeypatch):
    shown = []
    original = StudyBar.update

    def update(bar, trials, progress):
        original(bar, trials, progress)
        shown.append((bar.finished, bar.target, bar.best))

    monkeypatch.setattr(StudyBar, "update", update)
    (tmp_path / "shared.yaml").write_text(SHARED_ALS)
    result = tune(n_trials=5, sampler="grid", search_space=tmp_path / "shared.yaml")
    assert result.counts["fits"] == 2  # Optuna's own bar stopped at 2 of 5
    best = result.study.best_trial
    assert shown[-1] == (
        5,
        5,
        f"best precision@10 {best.value:.4f} (trial {best.number})",
    )
    # Shown after each fit, not only when the study is done: the first fit (of 9
    # iterations) made 3 trials, the second 2 more.
    assert sorted({n for n, _, _ in shown}) == [0, 3, 5]


def test_sharing_needs_categorical_iterations_and_skips_known_combinations(tune, tmp_path):
    (tmp_path / "int.yaml").write_text(
        SHARED_ALS.replace(
            "{type: categorical, choices: [2, 5, 9]}", "{type: int, low: 2, high: 9}"
        )
    )
    result = tune(n_trials=3, search_space=tmp_path / "int.yaml", seed=3)
    assert result.counts["shared"] == 0 and len(result.study.trials) == 3
    (tmp_path / "shared.yaml").write_text(SHARED_ALS)
    tpe = tune(n_trials=12, study_name="tpe", search_space=tmp_path / "shared.yaml", seed=3)
    params = [tuple(sorted(t.user_attrs["params"].items())) for t in tpe.study.trials]
    fitted = [
        p
        for p, t in zip(params, tpe.study.trials, strict=True)
        if "reused_from" not in t.user_attrs
    ]
    assert len(set(fitted)) == len(fitted)  # a combination is never fitted or recorded twice


def test_eval_users_scores_a_fixed_sample(tune, synthetic_dataset):
    from rectune.evaluation.evaluator import evaluate
    from rectune.evaluation.ranking import sample_users

    result = tune(n_trials=1, eval_users=50, share_iterations=False)
    trial = result.study.trials[0]
    model = build_model("als", trial.user_attrs["params"], device="cpu", seed=42)
    fit_model(model, synthetic_dataset.train_val)
    users = sample_users(synthetic_dataset.validation, 50, seed=42)
    sampled = evaluate(
        model, synthetic_dataset.train_val, synthetic_dataset.validation, 10, users=users
    )
    assert len(users) == 50
    assert trial.value == sampled.means["precision"]
    with pytest.raises(ConfigError, match="created with eval_users=50"):
        tune(n_trials=2, eval_users=60)
    with pytest.raises(ConfigError, match="created with eval_users=50, not None"):
        tune(n_trials=2)


# --------------------------------------------------------------------- Optuna storage


def test_the_default_storage_is_a_journal_file_beside_the_output(tune, tmp_path):
    result = tune(n_trials=2)
    journal = tmp_path / "models" / "optuna.journal"
    assert result.config.storage == str(journal)
    assert not (tmp_path / "models" / "optuna.db").exists()
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name=result.study.study_name, storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    again = tune(n_trials=3)
    assert again.resumed_trials == 2
    assert len(again.study.trials) == 3


def test_a_study_in_an_earlier_versions_sqlite_file_resumes(tune, tmp_path):
    database = tmp_path / "models" / "optuna.db"
    first = tune(n_trials=2, storage=f"sqlite:///{database}")
    again = tune(n_trials=3)  # no --storage: the default finds optuna.db, not a journal
    assert again.config.storage == f"sqlite:///{database}"
    assert again.resumed_trials == 2
    assert again.parent_run_id == first.parent_run_id
    assert not (tmp_path / "models" / "optuna.journal").exists()


def test_a_sqlite_file_given_as_a_path_is_refused(tune, tmp_path):
    database = tmp_path / "models" / "optuna.db"
    tune(n_trials=1, storage=f"sqlite:///{database}")
    with pytest.raises(ConfigError, match=f"is a SQLite database.*sqlite:///{database}"):
        tune(n_trials=1, storage=str(database))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_dead_workers_trial_in_a_journal_file_is_failed_and_retried(tune, tmp_path):
    first = tune(n_trials=2)
    # A worker that died mid-trial: its trial stays RUNNING, its heartbeat long silent.
    storage = tuning.make_storage(first.config.storage)
    study = optuna.load_study(study_name=first.study.study_name, storage=storage)
    dead = study.ask({"factors": optuna.distributions.CategoricalDistribution([8, 16])})
    dead.suggest_categorical("regularization", [0.1, 1.0])
    dead.suggest_categorical("iterations", [4, 8])
    storage.set_trial_system_attr(dead._trial_id, tuning.HEARTBEAT_ATTR, time.time() - 100)
    assert storage.get_trial(dead._trial_id).state.name == "RUNNING"

    result = tune(n_trials=3)
    trials = {t.number: t for t in result.study.trials}
    assert trials[dead.number].state.name == "FAIL"
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1
    assert retries[0].state.name == "COMPLETE"
    assert retries[0].params == trials[dead.number].params
    # The retry does not inherit the dead worker's last heartbeat.
    assert retries[0].system_attrs[tuning.HEARTBEAT_ATTR] > time.time() - 60
    assert any(f"trial(s) {dead.number} had stopped sending heartbeats" in n for n in result.notes)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_live_trials_heartbeat_keeps_it_running(tmp_path):
    handler = tuning.StaleTrialHandler()
    storage = tuning.make_storage(str(tmp_path / "optuna.journal"), heartbeat=1, on_stale=handler)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    tuning.fail_stale_trials(study)
    assert storage.get_trial(trial._trial_id).state.name == "RUNNING"
    storage.set_trial_system_attr(trial._trial_id, tuning.HEARTBEAT_ATTR, time.time() - 3.5)
    tuning.fail_stale_trials(study)  # silent for more than 3 heartbeats of 1 s
    assert storage.get_trial(trial._trial_id).state.name == "FAIL"


@pytest.mark.timeout(90)
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_left_running_before_its_first_heartbeat_is_failed_and_retried(tune, tmp_path):
    first = tune(n_trials=2)
    # A worker killed (or cut off from the storage) just after creating its trial, before
    # the trial's first heartbeat: a plain journal storage records no heartbeat.
    plain = JournalStorage(JournalFileBackend(first.config.storage))
    silent = optuna.load_study(study_name=first.study.study_name, storage=plain).ask()
    assert tuning.HEARTBEAT_ATTR not in plain.get_trial(silent._trial_id).system_attrs

    started = time.monotonic()
    result = tune(n_trials=3, heartbeat=1)  # stale after 3 s of silence
    assert time.monotonic() - started > 3
    trials = {t.number: t for t in result.study.trials}
    assert trials[silent.number].state.name == "FAIL"
    assert [t.state.name for n, t in trials.items() if n != silent.number] == ["COMPLETE"] * 3
    assert any(
        f"trial(s) {silent.number} had stopped sending heartbeats" in n for n in result.notes
    )


def lost(statement: str) -> sqlalchemy.exc.OperationalError:
    """The error SQLAlchemy raises when the database connection drops mid-statement."""
    return sqlalchemy.exc.OperationalError(
        statement, {}, Exception("server closed the connection unexpectedly")
    )


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_connection_lost_while_optuna_records_a_result_is_retried(tune, monkeypatch, caplog):
    # Optuna 5.0.0 raises an UnboundLocalError when the storage fails both to record a
    # trial's result and to read the trial back; the loss of connection is underneath.
    monkeypatch.setattr(tuning.loop, "STORAGE_RETRY_DELAYS", (0.1,) * 4)
    record, read = tuning.JournalFile.set_trial_state_values, tuning.JournalFile.get_trial
    armed = {"record": True, "read": False}

    def failing_record(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.COMPLETE and armed["record"]:
            armed.update(record=False, read=True)
            raise lost("UPDATE trials")
        return record(self, trial_id, state, values)

    def failing_read(self, trial_id):
        if armed["read"]:
            armed["read"] = False
            raise lost("SELECT trials")
        return read(self, trial_id)

    monkeypatch.setattr(tuning.JournalFile, "set_trial_state_values", failing_record)
    monkeypatch.setattr(tuning.JournalFile, "get_trial", failing_read)
    result = tune(n_trials=3, heartbeat=1)

    # Trial 0's result was lost with the connection: it went stale, failed and was run
    # again, while the study went on.
    trials = result.study.trials
    assert trials[0].state.name == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert retry.state.name == "COMPLETE" and retry.params == trials[0].params
    assert [t.state.name for t in trials].count("COMPLETE") == 3
    retried = [r.message for r in caplog.records if "lost the Optuna storage" in r.message]
    assert len(retried) == 1 and "server closed the connection unexpectedly" in retried[0]


def while_handling(err: BaseException, handled: BaseException) -> BaseException:
    """``err`` as Python chains it when raised in an ``except`` block of ``handled``."""
    err.__context__ = handled
    return err


def wrapped(driver_error: BaseException) -> optuna.exceptions.StorageInternalError:
    """``driver_error`` as Optuna's RDB storage re-raises it."""
    err = optuna.exceptions.StorageInternalError("An exception is raised during the commit")
    err.__cause__ = driver_error
    return err


def test_lost_connection_finds_the_drivers_error_under_what_was_raised_after_it():
    driver = lost("SELECT 1")
    assert tuning.lost_connection(driver) is driver
    assert tuning.lost_connection(wrapped(driver)) is driver
    # Optuna's bookkeeping failing in turn while it handled the lost connection.
    assert tuning.lost_connection(while_handling(UnboundLocalError("x"), driver)) is driver
    assert tuning.lost_connection(while_handling(KeyError("y"), wrapped(driver))) is driver

    assert tuning.lost_connection(ValueError("bad value")) is None
    assert tuning.lost_connection(while_handling(KeyError("y"), ValueError("z"))) is None
    # Optuna wraps every database error, not only lost connections.
    bad_data = sqlalchemy.exc.DataError("INSERT", {}, Exception("value too long"))
    assert tuning.lost_connection(wrapped(bad_data)) is None
    # `raise ... from None` says the error handled is not the cause.
    unrelated = while_handling(KeyError("y"), driver)
    unrelated.__suppress_context__ = True
    assert tuning.lost_connection(unrelated) is None


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_shared_trial_that_could_not_be_recorded_goes_stale_and_is_retried(tune, monkeypatch):
    # The connection drops just as a fit records its trial at a smaller iteration count.
    number_of = tuning.JournalFile.get_trial_number_from_id
    armed = [True]

    def failing_number_of(self, trial_id):
        if armed[0] and sharing.SHARED_FIT_OF in self.get_trial(trial_id).user_attrs:
            armed[0] = False
            raise lost("SELECT trials.number")
        return number_of(self, trial_id)

    monkeypatch.setattr(tuning.JournalFile, "get_trial_number_from_id", failing_number_of)
    result = tune(n_trials=3, heartbeat=1)
    assert not armed[0]

    trials = result.study.trials
    (lost_shared,) = [
        t for t in trials if t.state.name == "FAIL" and sharing.SHARED_FIT_OF in t.user_attrs
    ]
    fit_of = trials[lost_shared.user_attrs[sharing.SHARED_FIT_OF]]
    assert (
        fit_of.state.name == "FAIL" and "server closed the connection" in fit_of.user_attrs["error"]
    )
    # Not left beating for ever: stale, failed and run once more.
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost_shared.number]
    assert retry.state.name == "COMPLETE" and retry.params == lost_shared.params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3


# --------------------------------------------------------------------------- early stopping

BUDGET_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [8, 16]}
  regularization: {type: float, low: 0.01, high: 100.0, log: true}
  iterations: 12
"""


def test_a_budget_trial_stands_for_its_best_checkpoint(tune, tmp_path, synthetic_dataset):
    (tmp_path / "budget.yaml").write_text(BUDGET_ALS)
    ran = []

    def fit(model, train, callback=None):
        def counting(done):
            ran.append(done)
            callback(done)

        return fit_model(model, train, callback=counting)

    result = tune(
        n_trials=4, search_space=tmp_path / "budget.yaml", checkpoints=4, patience=1, fit=fit
    )
    runs = {int(r.data.tags["trial_number"]): r for r in children(result)}
    budget_steps = [3, 6, 9, 12]
    for trial in result.study.trials:
        best = trial.user_attrs["best_iteration"]
        curve = trial.intermediate_values
        # The pruner is shown the best so far at every checkpoint of the budget; a fit
        # stopped early shows its best at the ones it skipped.
        assert sorted(curve) == budget_steps
        assert [curve[s] for s in budget_steps] == sorted(curve[s] for s in budget_steps)
        assert trial.value == curve[12] and best in budget_steps
        stopped = int(runs[trial.number].data.tags["stopped_at_iteration"])
        # Stopped one checkpoint (the patience) after its best, or at the budget.
        assert stopped == next((s for s in budget_steps if s > best), 12)
        assert runs[trial.number].data.params["iterations"] == str(best)
        # Its value is that of a model fitted for its best count on its own.
        params = {**trial.user_attrs["params"], "iterations": best}
        alone = fit_model(build_model("als", params, seed=42), synthetic_dataset.train_val)
        from rectune.evaluation.evaluator import evaluate

        score = evaluate(alone, synthetic_dataset.train_val, synthetic_dataset.validation, 10)
        assert trial.value == pytest.approx(score.named()["precision@10"], abs=1e-12)
    assert len(ran) == sum(  # the fits ran to where they stopped, no further
        int(r.data.tags["stopped_at_iteration"]) for r in runs.values()
    )
    written = json.loads(result.config.output.read_text())["als"]
    assert written["iterations"] == result.study.best_trial.user_attrs["best_iteration"]
    assert result.best_params["iterations"] == written["iterations"]
    provenance = json.loads(provenance_path(result.config.output).read_text())["als"]
    assert provenance["trained_interactions"] == synthetic_dataset.train_val.nnz


def test_shared_trials_come_on_top_of_the_trials_asked_for(tune, tmp_path):
    (tmp_path / "shared.yaml").write_text(SHARED_ALS)
    result = tune(
        n_trials=3, sampler="grid", search_space=tmp_path / "shared.yaml", count_shared=False
    )
    trials = result.study.trials
    fitted = [t for t in trials if "shared_fit_of" not in t.user_attrs]
    shared = [t for t in trials if "shared_fit_of" in t.user_attrs]
    assert len(fitted) == 3 and all(t.params["iterations"] == 9 for t in fitted)
    assert len(shared) == 6  # each fit of 9 records 5 and 2
    assert all(t.intermediate_values == {} for t in shared)
    assert result.counts["study_finished"] == 3 and result.counts["study_shared"] == 6


def test_a_pruned_combination_is_completed_by_a_longer_fit():
    def trial(state, iterations, shared_of=None):
        params = {"factors": 8, "regularization": 0.1, "iterations": iterations}
        return optuna.trial.create_trial(
            state=state,
            params=params,
            distributions={
                "factors": optuna.distributions.CategoricalDistribution([8, 16]),
                "regularization": optuna.distributions.CategoricalDistribution([0.1, 1.0]),
                "iterations": optuna.distributions.CategoricalDistribution([2, 5, 9]),
            },
            value=None if state != optuna.trial.TrialState.COMPLETE else 0.1,
            user_attrs={"params": params},
        )

    states = optuna.trial.TrialState
    params = {"factors": 8, "regularization": 0.1, "iterations": 9}
    pruned = [trial(states.PRUNED, 5), trial(states.PRUNED, 2)]
    assert sharing.pending_iterations(pruned, params, (2, 5, 9), None) == [5, 2]
    known = [trial(states.COMPLETE, 5), trial(states.RUNNING, 2)]
    assert sharing.pending_iterations(known, params, (2, 5, 9), None) == []
    assert sharing.pending_iterations(pruned, params, (2, 5, 9), 1) == [5]


def test_provenance_is_used_only_with_the_parameters_it_was_written_for(tmp_path, monkeypatch):
    output = tmp_path / "best.json"
    tuning.write_best_hyperparameters(output, "als", {"factors": 8}, {"study_name": "a"})
    assert tuning.matching_provenance(output, "als")["study_name"] == "a"
    # Killed after the provenance of a second study and before its parameters.
    real = tuning.best_params.write_json_atomic

    def killed_at_the_second_write(path, payload):
        if path == output:
            raise KeyboardInterrupt
        real(path, payload)

    monkeypatch.setattr(tuning.best_params, "write_json_atomic", killed_at_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        tuning.write_best_hyperparameters(output, "als", {"factors": 16}, {"study_name": "b"})
    monkeypatch.undo()
    assert json.loads(output.read_text()) == {"als": {"factors": 8}}
    assert tuning.matching_provenance(output, "als") == {}  # b's, not for factors 8
    # Entries of earlier releases name no parameters and are taken as they are.
    provenance_path(output).write_text(json.dumps({"als": {"study_name": "old"}}))
    assert tuning.matching_provenance(output, "als") == {"study_name": "old"}


def test_runs_a_killed_worker_left_running_are_ended_from_the_study(tune):
    first = tune(n_trials=3, study_name="mend")
    client = MlflowClient()
    runs = children(first)
    # Killed with its last writes queued: the trial is COMPLETE, its run still RUNNING.
    client.update_run(runs[1].info.run_id, "RUNNING")
    # Killed between making a run and recording it: a run no trial names.
    orphan = client.create_run(
        runs[0].info.experiment_id,
        tags={"mlflow.parentRunId": first.parent_run_id, "trial_number": "2"},
    ).info.run_id
    again = tune(n_trials=3, study_name="mend")
    assert again.parent_run_id == first.parent_run_id
    assert any("trial(s) 1, left RUNNING by a killed worker" in n for n in again.notes)
    assert any(
        "1 MLflow run(s) made for trial(s) 2 that no trial recorded" in n for n in again.notes
    )
    mended = client.get_run(runs[1].info.run_id)
    assert mended.info.status == "FINISHED" and mended.data.tags["repaired"] == "true"
    assert mended.data.metrics["val_precision_at_10"] == pytest.approx(
        first.study.trials[1].value
    )
    ended = client.get_run(orphan)
    assert ended.info.status == "KILLED" and ended.data.tags["orphan"] == "true"
    assert {r.info.status for r in children(again)} == {"FINISHED", "KILLED"}


def test_a_parent_run_left_unrecorded_is_adopted_not_made_again(tune):
    first = tune(n_trials=2, study_name="adopt")
    # Killed after making the parent and before recording it in the study.
    first.study.set_user_attr(tuning.PARENT_RUNS_ATTR, {})
    again = tune(n_trials=3, study_name="adopt")
    assert again.parent_run_id == first.parent_run_id
    client = MlflowClient()
    experiment = client.get_run(first.parent_run_id).info.experiment_id
    parents = client.search_runs(
        [experiment], "tags.role = 'tuning-parent' and tags.study_name = 'adopt'"
    )
    assert len(parents) == 1
    # A study made again under the same name (a fresh storage) gets a parent of its own.
    first.study.set_user_attr(tuning.STUDY_UID_ATTR, "another-study")
    first.study.set_user_attr(tuning.PARENT_RUNS_ATTR, {})
    other = tune(n_trials=3, study_name="adopt")
    assert other.parent_run_id != first.parent_run_id


def test_repair_alone_mends_runs_and_runs_no_trial(tune, tmp_path):
    first = tune(n_trials=2, study_name="alone")
    client = MlflowClient()
    run = children(first)[0].info.run_id
    client.update_run(run, "RUNNING")
    client.update_run(first.parent_run_id, "RUNNING")
    args = [
        "--model", "als", "--repair", "--study-name", "alone",
        "--search-space", str(tmp_path / "als.yaml"),
        "--output", str(tmp_path / "models" / "best_hyperparameters.json"),
        "--experiment-name", f"test-{tmp_path.name}",
    ]  # fmt: skip
    result = CliRunner().invoke(hyperparameter_tuning.main, args)
    assert result.exit_code == 0, result.output
    assert "ended the MLflow run(s) of trial(s) 0" in result.output
    assert f"ended the parent run {first.parent_run_id}" in result.output
    assert client.get_run(run).info.status == "FINISHED"
    assert len(first.study.trials) == 2
    again = CliRunner().invoke(hyperparameter_tuning.main, args)
    assert "MLflow agrees with Optuna; nothing to repair" in again.output
    missing = CliRunner().invoke(
        hyperparameter_tuning.main, [*args[:3], "--study-name", "nope", *args[5:]]
    )
    assert missing.exit_code == 2 and "no study 'nope' in" in missing.output


def test_a_shared_trial_failed_by_another_worker_leaves_its_fit_complete(tune, tmp_path):
    journal = tmp_path / "models" / "optuna.journal"

    def fit(model, train, callback=None):
        def failing_the_shared_one(done):
            callback(done)
            if done == 8:  # the 4-iteration trial is recorded and running by now
                other = JournalStorage(JournalFileBackend(str(journal)))  # another worker
                study_id = other.get_study_id_from_name("stale-shared")
                for t in other.get_all_trials(study_id, deepcopy=False):
                    if t.state.name == "RUNNING" and sharing.SHARED_FIT_OF in t.user_attrs:
                        other.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)

        return fit_model(model, train, callback=failing_the_shared_one if callback else None)

    result = tune(
        n_trials=1, sampler="grid", fit=fit, study_name="stale-shared", count_shared=False
    )
    states = {t.number: t.state.name for t in result.study.trials}
    assert states == {0: "COMPLETE", 1: "FAIL"}
    runs = {int(r.data.tags["trial_number"]): r for r in children(result)}
    assert runs[0].info.status == "FINISHED"
    assert runs[1].info.status == "KILLED" and runs[1].data.tags["state"] == "FAIL"
