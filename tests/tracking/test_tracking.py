"""The MLflow tracker: writes behind the caller, stage runs left by killed processes,
and run lifecycles owned by one block."""

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rectune import tracking
from rectune.tracking import PID_TAG, Tracker


def test_runs_made_behind_get_their_writes_in_order(mlflow_uri):
    tracker = Tracker("test-tracking-behind")
    seen = []
    with tracker.write_behind():
        pending = tracker.start_run_behind("a", tags={"t": 1}, then=seen.append)
        tracker.log(pending, params={"p": 2}, metrics={"m": 0.5}, tags={"state": "COMPLETE"})
        tracker.end_run(pending, "FINISHED")
        run_id = pending.wait()
        assert seen == [run_id]
    run = MlflowClient().get_run(run_id)
    assert run.info.run_name == "a"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"p": "2"}
    assert run.data.metrics == {"m": 0.5}
    assert run.data.tags["t"] == "1"
    assert run.data.tags["state"] == "COMPLETE"
    assert tracker.write_errors == []


def test_run_creations_go_before_queued_writes(mlflow_uri):
    tracker = Tracker("test-tracking-order")
    order = []
    busy, gate = threading.Event(), threading.Event()
    with tracker.write_behind():
        first = tracker.start_run_behind("first")
        first.wait()
        tracker._write(lambda run_id: (busy.set(), gate.wait(), order.append("log")), first)
        tracker._write(lambda run_id: order.append("log 2"), first)
        busy.wait()  # the writer is in the middle of the first log
        second = tracker.start_run_behind("second", then=lambda run_id: order.append("create"))
        gate.set()
        second.wait()
    assert order == ["log", "create", "log 2"]


def test_a_run_that_cannot_be_made_costs_one_warning_not_the_caller(mlflow_uri, monkeypatch):
    tracker = Tracker("test-tracking-failure")

    def refuse(*args, **kwargs):
        raise RuntimeError("store is read-only")

    monkeypatch.setattr(tracker.client, "create_run", refuse)
    with tracker.write_behind():
        pending = tracker.start_run_behind("doomed")
        tracker.log(pending, metrics={"m": 1.0})
        tracker.end_run(pending, "FINISHED")
        assert pending.wait() is None
    assert tracker.write_errors == ["RuntimeError: store is read-only"]


def test_a_stage_run_left_running_by_a_killed_process_is_ended_by_the_next(mlflow_uri):
    tracker = Tracker("dead-runs")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    left = tracker.start_stage_run("train-als-final", tags={"role": "training"})
    tracker.set_tags(left, {PID_TAG: dead.pid})
    live = tracker.start_stage_run("train-als-final", tags={"role": "training"})  # this one
    other = tracker.start_stage_run("evaluate-als", tags={"role": "evaluation"})
    tracker.set_tags(other, {PID_TAG: dead.pid})
    assert tracker.end_dead_runs("training") == [left]
    client = MlflowClient()
    assert client.get_run(left).info.status == "KILLED"
    assert client.get_run(left).data.tags["error"] == "its process was killed before it ended"
    assert client.get_run(live).info.status == "RUNNING"
    assert client.get_run(other).info.status == "RUNNING"  # another stage's: not asked
    assert tracker.end_dead_runs("training") == []


def test_a_stage_run_ends_finished_or_failed_with_its_block(mlflow_uri):
    tracker = Tracker("stage-runs")
    client = MlflowClient()
    with tracker.stage_run("train-als-final", tags={"role": "training"}) as finished:
        assert client.get_run(finished).info.status == "RUNNING"
    assert client.get_run(finished).info.status == "FINISHED"
    assert client.get_run(finished).data.tags["role"] == "training"
    for error in (ValueError("no"), KeyboardInterrupt()):
        with pytest.raises(type(error)), tracker.stage_run("evaluate-als") as failed:
            raise error
        # Ctrl-C too: a stage run has always ended FAILED when its block raised.
        assert client.get_run(failed).info.status == "FAILED"


def test_ending_a_run_by_how_its_block_ends(mlflow_uri):
    tracker = Tracker("ending-runs")
    client = MlflowClient()
    runs = {}
    for name in ("returned", "set", "interrupted", "raised"):
        runs[name] = tracker.start_run(name)
    with tracker.ending(runs["returned"], interrupted="KILLED"):
        pass
    with tracker.ending(runs["set"], interrupted="KILLED") as end:
        end.status = "KILLED"  # a caught Ctrl-C: the block returns, the run was stopped
    with (
        pytest.raises(KeyboardInterrupt),
        tracker.ending(runs["interrupted"], interrupted="KILLED"),
    ):
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError), tracker.ending(runs["raised"], interrupted="KILLED"):
        raise RuntimeError("broken")
    statuses = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert statuses == {
        "returned": "FINISHED",
        "set": "KILLED",
        "interrupted": "KILLED",
        "raised": "FAILED",
    }


def test_the_face_exports_every_name_it_lists_and_the_old_module_had():
    # The names `from rectune.tracking import X` gave when tracking was one module.
    before = {
        "HOST_TAG", "PARENT_TAG", "PID_TAG", "PIPELINE_RUN_ENV", "PIPELINE_TAG", "PYFUNC_NAME",
        "REACH_TIMEOUT", "FoundRun", "PendingRun", "RecommenderModel", "RunRef", "RunStatus",
        "Tracker", "check_reachable", "default_experiment", "download_run_folder",
        "git_commit", "initialize_store", "mlflow_key", "pipeline_run_id", "source_tags",
        "tracking_uri",
    }  # fmt: skip
    added = {"RunEnd", "SPLIT_PREFIXES", "split_metrics", "split_inputs"}
    added |= {"TRAINING", "VALIDATION", "EVALUATION"}
    assert set(tracking.__all__) == before | added
    assert all(hasattr(tracking, name) for name in tracking.__all__)


def test_only_the_tracking_package_imports_mlflow():
    package = Path(tracking.__file__).resolve().parents[1]
    importing = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if re.search(r"^\s*(import|from) mlflow\b", path.read_text(), re.MULTILINE)
    }
    assert importing and all(path.startswith("tracking/") for path in importing), importing
