"""The whole pipeline through `mlflow run . --env-manager local`, then read back through an
MLflow server's REST API and its web UI in headless Chromium."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from chromium_helpers import rendered_dom
from mlflow_helpers import MLFLOW, clean_env, mlflow_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
N_TRIALS = 4


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A copy of the project after `mlflow run .` with small parameters.

    The copy keeps the checkout's data/, models/ and mlflow.db untouched; with no
    MLFLOW_TRACKING_URI the runs go to MLflow's default store, the copy's mlflow.db.
    """
    project = tmp_path_factory.mktemp("project")
    for name in ("MLproject", "python_env.yaml", "requirements.txt"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    result = mlflow_run(project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, result


def mlflow_run(project: Path) -> subprocess.CompletedProcess:
    """`mlflow run .` in ``project`` with small parameters, as the pipeline fixture runs it."""
    env = clean_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [
        MLFLOW,
        "run",
        ".",
        "--env-manager",
        "local",
        "--experiment-name",
        "rectune",
        "--run-name",
        "pipeline",
        "-P",
        f"n_trials={N_TRIALS}",
        "-P",
        "eval_k=5,10",
    ]
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=900
    )


def rest(url, endpoint, payload=None):
    """GET (with query parameters) or POST (JSON) an MLflow REST endpoint."""
    if payload is None or endpoint.endswith(("get-by-name", "list")):
        query = f"?{urllib.parse.urlencode(payload)}" if payload else ""
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}{query}")
    else:
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def served(pipeline, tmp_path):
    """An mlflow server over the pipeline's store: its URL, the experiment id, its runs."""
    project, _ = pipeline
    with mlflow_server(
        f"sqlite:///{project / 'mlflow.db'}", project / "mlruns", tmp_path / "server.log"
    ) as url:
        experiment = rest(url, "experiments/get-by-name", {"experiment_name": "rectune"})
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = rest(url, "runs/search", {"experiment_ids": [experiment_id], "max_results": 1000})
        yield url, experiment_id, runs


def runs_by_role(runs):
    """{role: [run, ...]} with the `mlflow run` pipeline run under "pipeline"."""
    grouped = {}
    for run in runs:
        tags = {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}
        run["tags"] = tags
        role = tags.get("role") or ("trial" if "trial_number" in tags else None)
        role = role or ("pipeline" if tags.get("mlflow.runName") == "pipeline" else "other")
        grouped.setdefault(role, []).append(run)
    return grouped


def test_mlflow_run_leaves_every_stage_on_disk(pipeline):
    project, result = pipeline
    best = json.loads((project / "models" / "best_hyperparameters.json").read_text())
    meta = json.loads((project / "models" / "als" / "model.json").read_text())
    assert meta["params"] == {**{"alpha": 1.0, "iterations": 15}, **best["als"]}
    assert meta["params_origin"] == str(project / "models" / "best_hyperparameters.json")
    report = json.loads(
        (project / "models" / "reports" / "evaluation-als-synthetic.json").read_text()
    )
    assert report["ks"] == [5, 10]
    assert report["metrics"]["model"]["precision@10"]["mean"] == pytest.approx(
        meta["metrics"]["precision@10"], abs=1e-12
    )
    assert (project / "mlflow.db").is_file()
    assert "succeeded" in result.stderr


def test_rest_api_shows_the_pipeline_runs_metrics_and_artifacts(pipeline, tmp_path):
    with served(pipeline, tmp_path) as (url, _, runs):
        roles = runs_by_role(runs["runs"])
        assert {role: len(found) for role, found in roles.items()} == {
            "pipeline": 1,
            "tuning-parent": 1,
            "trial": N_TRIALS,
            "training": 1,
            "evaluation": 1,
        }
        pipeline_id = roles["pipeline"][0]["info"]["run_id"]
        tuning_id = roles["tuning-parent"][0]["info"]["run_id"]
        for role in ("tuning-parent", "training", "evaluation"):
            assert roles[role][0]["tags"]["mlflow.parentRunId"] == pipeline_id
        assert all(t["tags"]["mlflow.parentRunId"] == tuning_id for t in roles["trial"])
        assert all(run["info"]["status"] == "FINISHED" for run in runs["runs"])

        def metrics(run):
            return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}

        assert all(
            "val_precision_at_10" in metrics(t)
            for t in roles["trial"]
            if t["tags"].get("state", "COMPLETE") == "COMPLETE"
        )
        assert "best_val_precision_at_10" in metrics(roles["tuning-parent"][0])
        assert "test_precision_at_10" in metrics(roles["training"][0])
        evaluation = metrics(roles["evaluation"][0])
        assert {"test_precision_at_5", "test_ndcg_at_10_ci_high", "popular/test_map_at_10"} <= set(
            evaluation
        )

        def artifacts(run, path=None):
            query = {"run_id": run["info"]["run_id"], **({"path": path} if path else {})}
            return {f["path"] for f in rest(url, "artifacts/list", query).get("files", [])}

        assert {"plots", "report", "importance.json"} <= artifacts(roles["tuning-parent"][0])
        assert {"model/model.npz", "model/model.json"} <= artifacts(roles["training"][0], "model")
        # MLflow 3 keeps logged models beside the runs, linked as the run's outputs.
        (output,) = roles["training"][0]["outputs"]["model_outputs"]
        logged = rest(url, f"logged-models/{output['model_id']}")["model"]
        assert logged["info"]["name"] == "recommender"
        assert logged["info"]["source_run_id"] == roles["training"][0]["info"]["run_id"]
        assert "evaluation/evaluation-als-synthetic.html" in artifacts(
            roles["evaluation"][0], "evaluation"
        )


def rows_in_order(page: str, names: set[str]) -> list[str]:
    """The run names of the runs table's rows, top to bottom (ag-grid keeps each row's
    place in ``row-index``, not in the DOM's order)."""
    shown: dict[int, str] = {}
    for index, body in re.findall(r'row-index="(\d+)"(.*?)(?=row-index="|$)', page, re.S):
        found = [name for name in re.findall(r">([^<>]+)<", body) if name in names]
        if found:
            shown.setdefault(int(index), found[0])
    return [shown[i] for i in sorted(shown)]


def test_mlflow_ui_opens_the_runs_table_with_the_best_trial_first(pipeline, tmp_path):
    """In headless Chromium (Debian's chromium; `.ci/run` installs it)."""
    _, first = pipeline
    with served(pipeline, tmp_path) as (url, experiment_id, runs):
        roles = runs_by_role(runs["runs"])
        (best,) = [t for t in roles["trial"] if t["tags"].get("best_trial") == "true"]
        names = {run["info"]["run_name"] for run in runs["runs"]}

        # The address the tuning stage printed opens the runs table, sorted by the trials'
        # objective: the best trial first, above the test-scored training and evaluation.
        (page,) = re.findall(
            r"then open http://127\.0\.0\.1:5000/(\S+)", first.stdout + first.stderr
        )
        assert page.startswith(f"#/experiments/{experiment_id}/runs?")
        listing = rendered_dom(f"{url}/{page}", tmp_path / "profile-1")
        assert "<title>Runs - Experiment" in listing
        shown = rows_in_order(listing, names)
        assert shown[0] == best["info"]["run_name"], shown
        assert set(shown[:N_TRIALS]) == {t["info"]["run_name"] for t in roles["trial"]}
        # Without the address's workflowType, MLflow 3.17 opens its GenAI overview.
        overview = rendered_dom(f"{url}/#/experiments/{experiment_id}", tmp_path / "profile-2")
        assert "<title>Overview - Experiment" in overview

        # A stage's run page shows its metrics and links back to the pipeline run.
        evaluation = roles["evaluation"][0]["info"]["run_id"]
        run_page = rendered_dom(
            f"{url}/#/experiments/{experiment_id}/runs/{evaluation}?workflowType=machine_learning",
            tmp_path / "profile-3",
        )
        for text in ("evaluate-als", "test_precision_at_10", "popular/test_map_at_10", "pipeline"):
            assert text in run_page, f"{text} is not on the evaluation run's page"


def test_a_second_mlflow_run_says_the_study_is_complete_and_keeps_its_parent(pipeline):
    """Last in this file: it adds runs to the store the tests above count."""
    project, first = pipeline
    again = mlflow_run(project)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert (
        f"Study als-synthetic-precision_at_10 is complete: {N_TRIALS} of {N_TRIALS} trials "
        "finished, nothing to run" in output
    )
    assert "registered as rectune-als version 2: models:/rectune-als@champion" in output
    parent = re.compile(r"MLflow parent run (\w+) in experiment")
    assert len(parent.findall(output)) == 1
    assert parent.findall(output) == parent.findall(first.stdout + first.stderr)
