"""The study's MLflow runs: one parent per study (and tracking store), made once by
whichever worker comes first, and the child runs brought into line with Optuna's trials
when a killed worker left them behind (:func:`reconcile_runs`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from rectune.data.store import SplitDataset
from rectune.failpoints import failpoint
from rectune.tracking import (
    PARENT_TAG,
    PIPELINE_TAG,
    TRAINING,
    VALIDATION,
    RunStatus,
    Tracker,
    split_inputs,
)
from rectune.tuning.attributes import (
    ERROR,
    INTERRUPTED,
    METRICS,
    PARAMS,
    PARENT_RUNS_ATTR,
    RUN_ID,
    STUDY_UID_ATTR,
)
from rectune.tuning.best_params import (
    delivered_params,
)
from rectune.tuning.plan import TuningConfig
from rectune.tuning.search_space import SearchSpace
from rectune.tuning.storage import objective_names, study_lock
from rectune.tuning.trial_run import trial_metrics
from rectune.urls import first_line, redact_url


def join_study(
    study: optuna.Study,
    storage: BaseStorage,
    config: TuningConfig,
    tracker: Tracker,
    space: SearchSpace,
    dataset: SplitDataset,
    *,
    complete: bool = False,
) -> tuple[str, int]:
    """Find or create the study's MLflow parent run; number this worker.

    A ``complete`` study (it holds all its trials) that has no parent for this key (a
    repeated ``mlflow run .`` has a new pipeline run) gets the latest parent it has in
    the same experiment, rather than a new one with no trials under it.

    Both happen under a lock held in the storage, so workers starting together agree
    on one parent run. The parent is kept per tracking store, experiment and ``mlflow
    run`` pipeline run (user attribute ``mlflow_parent_runs``); a resumed study reopens
    it. Returns the parent run's id and how many workers joined the study before.
    """
    pipeline, key = parent_key(tracker)
    with study_lock(storage, f"rectune/{study.study_name}"):
        attrs = study.user_attrs  # one read of the storage, under the lock
        worker = int(attrs.get("workers_joined", 0))
        study.set_user_attr("workers_joined", worker + 1)
        # Names this study, not another of the same name (one made again in a fresh
        # storage, say): its parent run carries it, so that one left unrecorded is found.
        uid = attrs.get(STUDY_UID_ATTR)
        if uid is None:
            uid = uuid.uuid4().hex
            study.set_user_attr(STUDY_UID_ATTR, uid)
        parents = dict(attrs.get(PARENT_RUNS_ATTR, {}))
        parent_id = parents.get(key)
        if not (parent_id and tracker.run_in_experiment(parent_id)):
            # A worker killed after making the parent and before recording it left one:
            # adopt it, rather than make a second parent for the study.
            parent_id = unrecorded_parent(tracker, uid, pipeline)
            if parent_id is None and complete:
                parent_id = _latest_parent(tracker, parents)
            if parent_id is not None:
                parents[key] = parent_id
                study.set_user_attr(PARENT_RUNS_ATTR, parents)
        if parent_id:
            tracker.reopen_run(parent_id)
            return parent_id, worker
        parent_id = _new_parent(study, config, tracker, space, dataset, uid)
        parents[key] = parent_id
        study.set_user_attr(PARENT_RUNS_ATTR, parents)
        failpoint("parent_run_recorded")
    return parent_id, worker


def tuning_inputs(dataset: SplitDataset) -> list[Any]:
    """The tune split as a tuning run's MLflow dataset inputs: fit on ``train_val``,
    scored on ``validation``."""
    return split_inputs(dataset, {"train_val": TRAINING, "validation": VALIDATION})


def _latest_parent(tracker: Tracker, parents: dict[str, str]) -> str | None:
    """The study's most recently recorded parent run in the tracker's experiment."""
    for parent_id in reversed(list(parents.values())):
        if tracker.run_in_experiment(parent_id):
            return parent_id
    return None


def _new_parent(
    study: optuna.Study,
    config: TuningConfig,
    tracker: Tracker,
    space: SearchSpace,
    dataset: SplitDataset,
    uid: str,
) -> str:
    """Make the study's parent run, with the settings it was started with and its
    search space; return its id."""
    tags = {
        "model": config.model,
        "dataset": config.dataset,
        "dataset_fingerprint": dataset.fingerprint,
        "study_name": study.study_name,
        "sampler": config.resolved_sampler,
        "pruner": "none" if config.multi_objective else config.pruner,
        "seed": config.seed,
        "optuna_storage": config.shown_storage,
        "objectives": ",".join(o.name for o in config.resolved_objectives),
        "search_space": space.source,
        "role": "tuning-parent",
        STUDY_UID_ATTR: uid,
    }
    parent_id = tracker.start_stage_run(study.study_name, tags=tags)
    failpoint("parent_run_created")
    tracker.log_inputs(parent_id, tuning_inputs(dataset))
    tracker.log(
        parent_id,
        params={
            "model": config.model,
            "dataset": config.dataset,
            "n_trials": config.n_trials,
            "timeout": config.timeout,
            "k": config.k,
            "metric": config.metric,
            "cv_folds": config.cv_folds,
            "eval_users": config.eval_users or "all",
            "share_iterations": config.share_iterations,
            "n_jobs": config.n_jobs,
            "device": config.device,
            "seed": config.seed,
            "search_space_fingerprint": space.fingerprint,
        },
    )
    tracker.log_text(parent_id, space.text, f"search_space/{Path(space.source).name}")
    return parent_id


def parent_key(tracker: Tracker) -> tuple[str, str]:
    """The ``mlflow run`` pipeline run's id (or ``""``), and the key of the study's parent
    run in its user attribute ``mlflow_parent_runs``: tracking store, experiment and
    pipeline run."""
    pipeline = tracker.pipeline_run.info.run_id if tracker.pipeline_run else ""
    return pipeline, f"{redact_url(tracker.uri)}#{tracker.experiment_id}#{pipeline}"


def unrecorded_parent(tracker: Tracker, uid: str, pipeline: str) -> str | None:
    """The newest parent run of the study ``uid`` in the tracker's experiment (and the
    ``mlflow run`` pipeline run ``pipeline``, or none), if there is one."""
    for run in tracker.find_runs(role="tuning-parent", **{STUDY_UID_ATTR: uid}):
        if run.tags.get(PIPELINE_TAG, "") == pipeline:
            return run.run_id
    return None


def reconcile_runs(study: optuna.Study, tracker: Tracker, parent_id: str) -> list[str]:
    """Make the study's MLflow runs under ``parent_id`` agree with its Optuna trials.

    A worker killed at the wrong moment leaves MLflow behind Optuna: a trial Optuna has
    recorded whose run is still RUNNING, its last writes lost with the worker (they
    were queued), or a run made for a trial whose id never reached the trial. Runs of
    finished trials are ended here, with the result, parameters and state Optuna
    recorded; runs no trial names are ended as orphans. Runs of running trials are left
    to their workers (or to the heartbeats, when those workers are dead). Returns one
    line per kind of repair made.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    objective = next(iter(objective_names(study)), None)
    repaired, orphans = [], []
    for run in tracker.find_runs(**{PARENT_TAG: parent_id}):
        number = run.tags.get("trial_number", "")
        trial = trials.get(int(number)) if number.isdigit() else None
        if run.status != "RUNNING" or trial is None or not trial.state.is_finished():
            continue
        if trial.user_attrs.get(RUN_ID) == run.run_id:
            _finish_run_from_trial(tracker, run.run_id, trial, objective)
            repaired.append(trial.number)
        else:
            # Made for the trial, whose worker was killed before recording its id: the
            # trial failed for lack of heartbeats, and this is its run.
            recorded = trial.user_attrs.get(RUN_ID)
            tracker.set_tags(
                run.run_id,
                {
                    "state": "ORPHAN" if recorded else trial.state.name,
                    "orphan": "true",
                    "error": "its worker was killed before recording this run with its trial",
                },
            )
            tracker.end_run(run.run_id, "KILLED")
            orphans.append(trial.number)
    lines = []
    if repaired:
        lines.append(
            f"ended the MLflow run(s) of trial(s) {_numbers(repaired)}, left RUNNING by a "
            "killed worker, with the results Optuna recorded"
        )
    if orphans:
        lines.append(
            f"ended {len(orphans)} MLflow run(s) made for trial(s) {_numbers(orphans)} that "
            "no trial recorded (their worker was killed as it made them)"
        )
    return lines


def reconcile_noted(study: optuna.Study, tracker: Tracker, parent_id: str) -> list[str]:
    """:func:`reconcile_runs`, whose failure (MLflow down) is a note, not the end."""
    try:
        return reconcile_runs(study, tracker, parent_id)
    except Exception as err:
        return [f"could not check the MLflow runs against the study: {first_line(err)}"]


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, sorted(set(numbers))))


def _finish_run_from_trial(
    tracker: Tracker, run_id: str, trial: optuna.trial.FrozenTrial, objective: str | None
) -> None:
    """End a trial's run with what Optuna recorded (a pruned trial's objective: the last
    value its pruner saw, as :meth:`TrialRun.log_pruned` logs it)."""
    state = trial.state.name
    params = trial.user_attrs.get(PARAMS, trial.params)
    tags: dict[str, Any] = {"state": state, "trial_number": trial.number, "repaired": "true"}
    metrics = {}
    if trial.state == optuna.trial.TrialState.COMPLETE:
        params = delivered_params(trial.user_attrs, params)
        metrics = trial_metrics(trial.user_attrs.get(METRICS, {}))
    elif trial.state == optuna.trial.TrialState.PRUNED:
        tags["pruned"] = "true"
        if objective and trial.intermediate_values:
            last = trial.intermediate_values[max(trial.intermediate_values)]
            metrics = trial_metrics({objective: last})
    else:
        tags["error"] = trial.user_attrs.get(ERROR, "its worker was killed")
    tracker.log(run_id, params=params, metrics=metrics, tags=tags)
    status: RunStatus = "FINISHED"
    if state == "FAIL":  # stopped by the user (Ctrl-C) is KILLED, as the runner ends it
        status = "KILLED" if tags["error"] == INTERRUPTED else "FAILED"
    tracker.end_run(run_id, status)
