"""MLflow tracking: the only package of rectune that talks to MLflow.

Every call names its run explicitly through :class:`mlflow.MlflowClient`; nothing uses
MLflow's per-thread "active run", so trials running in parallel threads each log to
their own run. The tracking store is MLflow's own choice: ``MLFLOW_TRACKING_URI`` when
set, otherwise MLflow 3's default (``sqlite:///mlflow.db`` in the current directory,
artifacts under ``./mlruns``).

Stages link up under ``mlflow run``: it starts a run for the project and hands its id to
the command in ``MLFLOW_RUN_ID``. Each stage's top run (the tuning parent, the training
run, the evaluation run) then goes into that run's experiment as its child, so the
pipeline run in the UI leads to every stage; trials nest one level further down. A
stage's top run lives for one ``with`` block (:meth:`Tracker.stage_run`).

Modules
-------
tracker
    :class:`Tracker`: runs of one experiment, made and ended by id; one context
    manager owns a stage run's life (:meth:`Tracker.stage_run`).
_logs
    Params, metrics, tags and artifacts logged to a run.
_writes
    Writes done behind the caller by one background thread (:class:`PendingRun`).
_lookup
    Finding runs again by tag or id; ending those a killed process left RUNNING.
pyfunc
    The pyfunc model (:class:`RecommenderModel`), logging it, the model registry.
pyfunc_model
    The models-from-code entry file MLflow runs to load a pyfunc model.
_store
    The tracking store: its URI, whether it answers, its tables, its artifacts.
_tags
    The names runs share: tags, experiments, metric and param keys.
"""

from rectune.tracking._logs import EVALUATION, TRAINING, VALIDATION, split_inputs
from rectune.tracking._lookup import FoundRun
from rectune.tracking._store import (
    REACH_TIMEOUT,
    check_reachable,
    download_run_folder,
    initialize_store,
    tracking_uri,
)
from rectune.tracking._tags import (
    HOST_TAG,
    PARENT_TAG,
    PID_TAG,
    PIPELINE_RUN_ENV,
    PIPELINE_TAG,
    PYFUNC_NAME,
    SPLIT_PREFIXES,
    RunStatus,
    default_experiment,
    git_commit,
    mlflow_key,
    pipeline_run_id,
    source_tags,
    split_metrics,
)
from rectune.tracking._writes import PendingRun, RunRef
from rectune.tracking.pyfunc import RecommenderModel
from rectune.tracking.tracker import RunEnd, Tracker

__all__ = [
    "EVALUATION",
    "HOST_TAG",
    "PARENT_TAG",
    "PID_TAG",
    "PIPELINE_RUN_ENV",
    "PIPELINE_TAG",
    "PYFUNC_NAME",
    "REACH_TIMEOUT",
    "SPLIT_PREFIXES",
    "TRAINING",
    "VALIDATION",
    "FoundRun",
    "PendingRun",
    "RecommenderModel",
    "RunEnd",
    "RunRef",
    "RunStatus",
    "Tracker",
    "check_reachable",
    "default_experiment",
    "download_run_folder",
    "git_commit",
    "initialize_store",
    "mlflow_key",
    "pipeline_run_id",
    "source_tags",
    "split_inputs",
    "split_metrics",
    "tracking_uri",
]
