"""The tuning stage: an Optuna study over a model's search space, tracked in MLflow.

:func:`run_tuning` runs (or resumes, or joins) a study from a :class:`TuningConfig`:
each trial (:class:`TrialRunner`) fits on ``train_val`` and is scored on
``validation`` by the evaluator final evaluation uses; the best parameters go to the
output file (:func:`write_best_hyperparameters`). The pieces, in the order a study uses
them: :mod:`~rectune.tuning.plan` (options), :mod:`~rectune.tuning.search_space`,
:mod:`~rectune.tuning.samplers`, :mod:`~rectune.tuning.pruners`,
:mod:`~rectune.tuning.checkpoints` (early stopping), :mod:`~rectune.tuning.sharing`
(iteration sharing), :mod:`~rectune.tuning.trial`, :mod:`~rectune.tuning.parallel`,
:mod:`~rectune.tuning.storage` with :mod:`~rectune.tuning.journal` and
:mod:`~rectune.tuning.heartbeats`, :mod:`~rectune.tuning.runs` (MLflow runs),
:mod:`~rectune.tuning.loop`, :mod:`~rectune.tuning.results`,
:mod:`~rectune.tuning.best_params` and :mod:`~rectune.tuning.report`."""

# The face is lazy (PEP 562): ``import rectune.tuning.best_params`` (training reads the
# output file) does not import the whole tuner, Optuna and the study loop with it.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where each public name lives, by submodule.
_EXPORTS = {
    "attributes": (
        "BEST_ITERATION",
        "ERROR",
        "FIT_SECONDS",
        "HEARTBEAT_ATTR",
        "INTERRUPTED",
        "ITERATIONS",
        "METRICS",
        "PARAMS",
        "PARENT_RUNS_ATTR",
        "REUSED_FROM",
        "RUN_ID",
        "same_params",
        "same_value",
        "SAME_VALUE_REL_TOL",
        "SHARED_FIT_OF",
        "STUDY_ATTR",
        "STUDY_UID_ATTR",
        "SURPLUS",
    ),
    "best_params": (
        "check_writable",
        "delivered_params",
        "jsonable",
        "matching_provenance",
        "provenance_path",
        "read_best_hyperparameters",
        "write_best_hyperparameters",
    ),
    "checkpoints": (
        "best_of_folds",
        "checkpoint_iterations",
        "CheckpointPlan",
        "Curve",
        "DEFAULT_CHECKPOINTS",
        "DEFAULT_PATIENCE",
        "mean_of_folds",
        "PlanKind",
    ),
    "fitting": ("FitRecord", "FoldScorer", "StopFit", "TrialFitter"),
    "heartbeats": (
        "BeatFromTheStart",
        "DEFAULT_HEARTBEAT",
        "fail_stale_trials",
        "GRACE_FACTOR",
        "SilentTrials",
        "StaleTrialHandler",
        "start_beating",
        "stop_beating",
    ),
    "journal": ("JournalFile", "mend_journal", "open_journal", "STALE_LOCK_SECONDS"),
    "loop": ("optimize", "POLL_SECONDS", "quiet_optuna", "STORAGE_RETRY_DELAYS"),
    "parallel": (
        "Callback",
        "in_trial_order",
        "InTrialOrder",
        "optimize_in_order",
        "TrialFunction",
    ),
    "plan": (
        "DEFAULT_JOURNAL",
        "default_storage",
        "LEGACY_DATABASE",
        "max_iterations",
        "Objective",
        "OBJECTIVE_METRICS",
        "PARALLEL_TRIALS",
        "parallel_trials",
        "parse_objectives",
        "resolve",
        "SAMPLERS",
        "TUNING_METRICS",
        "TuningConfig",
    ),
    "pruners": (
        "DEFAULT_PRUNER",
        "make_pruner",
        "MIN_TRIALS_AT_STEP",
        "PRUNERS",
        "RUNG_QUANTILE",
        "RungPruner",
        "STARTUP_TRIALS",
        "warmup_iterations",
    ),
    "report": (
        "FANOVA_TREES",
        "import_behind",
        "importances",
        "render_report",
        "study_figures",
        "write_study_reports",
    ),
    "results": ("finish_study", "TuningResult"),
    "runs": ("join_study", "parent_key", "reconcile_noted", "reconcile_runs", "unrecorded_parent"),
    "samplers": ("DistinctSampler", "FAILURES_TO_GIVE_UP", "make_sampler", "MAX_COMBINATIONS"),
    "search_space": (
        "default_space_path",
        "load_search_space",
        "MAX_SPACE_BYTES",
        "parse_search_space",
        "SearchSpace",
        "SHIPPED_SPACES",
        "space_path",
    ),
    "sharing": (
        "GridSampler",
        "iteration_choices",
        "IterationSharing",
        "pending_iterations",
        "SharedTrial",
    ),
    "storage": (
        "CONNECTION_ERRORS",
        "create_or_load_study",
        "Database",
        "FINISHED",
        "is_shared",
        "is_url",
        "lost_connection",
        "make_storage",
        "same_database",
        "sqlite_path",
        "StorageUnavailableError",
        "study_lock",
        "StudyProgress",
        "trials_ahead",
    ),
    "study": ("open_study", "repair_study", "run_tuning"),
    "trial": ("find_completed", "SurplusTrial", "TrialRunner"),
    "trial_run": ("TrialRun",),
}
_OWNER = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "BEST_ITERATION",
    "CONNECTION_ERRORS",
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_JOURNAL",
    "DEFAULT_PATIENCE",
    "DEFAULT_PRUNER",
    "ERROR",
    "FAILURES_TO_GIVE_UP",
    "FANOVA_TREES",
    "FINISHED",
    "FIT_SECONDS",
    "GRACE_FACTOR",
    "HEARTBEAT_ATTR",
    "INTERRUPTED",
    "ITERATIONS",
    "LEGACY_DATABASE",
    "MAX_COMBINATIONS",
    "MAX_SPACE_BYTES",
    "METRICS",
    "MIN_TRIALS_AT_STEP",
    "OBJECTIVE_METRICS",
    "PARALLEL_TRIALS",
    "PARAMS",
    "PARENT_RUNS_ATTR",
    "POLL_SECONDS",
    "PRUNERS",
    "REUSED_FROM",
    "RUNG_QUANTILE",
    "RUN_ID",
    "SAME_VALUE_REL_TOL",
    "SAMPLERS",
    "SHARED_FIT_OF",
    "SHIPPED_SPACES",
    "STALE_LOCK_SECONDS",
    "STARTUP_TRIALS",
    "STORAGE_RETRY_DELAYS",
    "STUDY_ATTR",
    "STUDY_UID_ATTR",
    "SURPLUS",
    "TUNING_METRICS",
    "BeatFromTheStart",
    "Callback",
    "CheckpointPlan",
    "Curve",
    "Database",
    "DistinctSampler",
    "FitRecord",
    "FoldScorer",
    "GridSampler",
    "InTrialOrder",
    "IterationSharing",
    "JournalFile",
    "Objective",
    "PlanKind",
    "RungPruner",
    "SearchSpace",
    "SharedTrial",
    "SilentTrials",
    "StaleTrialHandler",
    "StopFit",
    "StorageUnavailableError",
    "StudyProgress",
    "SurplusTrial",
    "TrialFitter",
    "TrialFunction",
    "TrialRun",
    "TrialRunner",
    "TuningConfig",
    "TuningResult",
    "best_of_folds",
    "check_writable",
    "checkpoint_iterations",
    "create_or_load_study",
    "default_space_path",
    "default_storage",
    "delivered_params",
    "fail_stale_trials",
    "find_completed",
    "finish_study",
    "import_behind",
    "importances",
    "in_trial_order",
    "is_shared",
    "is_url",
    "iteration_choices",
    "join_study",
    "jsonable",
    "load_search_space",
    "lost_connection",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "matching_provenance",
    "max_iterations",
    "mean_of_folds",
    "mend_journal",
    "open_journal",
    "open_study",
    "optimize",
    "optimize_in_order",
    "parallel_trials",
    "parent_key",
    "parse_objectives",
    "parse_search_space",
    "pending_iterations",
    "provenance_path",
    "quiet_optuna",
    "read_best_hyperparameters",
    "reconcile_noted",
    "reconcile_runs",
    "render_report",
    "repair_study",
    "resolve",
    "run_tuning",
    "same_database",
    "same_params",
    "same_value",
    "space_path",
    "sqlite_path",
    "start_beating",
    "stop_beating",
    "study_figures",
    "study_lock",
    "trials_ahead",
    "unrecorded_parent",
    "warmup_iterations",
    "write_best_hyperparameters",
    "write_study_reports",
]


def __getattr__(name: str) -> Any:
    module = _OWNER.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # looked up once
        return value
    try:  # a submodule, e.g. rectune.tuning.loop
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return list(__all__)


if TYPE_CHECKING:  # the same names, eagerly, for type checkers and editors
    from rectune.tuning.attributes import (
        BEST_ITERATION,
        ERROR,
        FIT_SECONDS,
        HEARTBEAT_ATTR,
        INTERRUPTED,
        ITERATIONS,
        METRICS,
        PARAMS,
        PARENT_RUNS_ATTR,
        REUSED_FROM,
        RUN_ID,
        SAME_VALUE_REL_TOL,
        SHARED_FIT_OF,
        STUDY_ATTR,
        STUDY_UID_ATTR,
        SURPLUS,
        same_params,
        same_value,
    )
    from rectune.tuning.best_params import (
        check_writable,
        delivered_params,
        jsonable,
        matching_provenance,
        provenance_path,
        read_best_hyperparameters,
        write_best_hyperparameters,
    )
    from rectune.tuning.checkpoints import (
        DEFAULT_CHECKPOINTS,
        DEFAULT_PATIENCE,
        CheckpointPlan,
        Curve,
        PlanKind,
        best_of_folds,
        checkpoint_iterations,
        mean_of_folds,
    )
    from rectune.tuning.fitting import FitRecord, FoldScorer, StopFit, TrialFitter
    from rectune.tuning.heartbeats import (
        DEFAULT_HEARTBEAT,
        GRACE_FACTOR,
        BeatFromTheStart,
        SilentTrials,
        StaleTrialHandler,
        fail_stale_trials,
        start_beating,
        stop_beating,
    )
    from rectune.tuning.journal import STALE_LOCK_SECONDS, JournalFile, mend_journal, open_journal
    from rectune.tuning.loop import POLL_SECONDS, STORAGE_RETRY_DELAYS, optimize, quiet_optuna
    from rectune.tuning.parallel import (
        Callback,
        InTrialOrder,
        TrialFunction,
        in_trial_order,
        optimize_in_order,
    )
    from rectune.tuning.plan import (
        DEFAULT_JOURNAL,
        LEGACY_DATABASE,
        OBJECTIVE_METRICS,
        PARALLEL_TRIALS,
        SAMPLERS,
        TUNING_METRICS,
        Objective,
        TuningConfig,
        default_storage,
        max_iterations,
        parallel_trials,
        parse_objectives,
        resolve,
    )
    from rectune.tuning.pruners import (
        DEFAULT_PRUNER,
        MIN_TRIALS_AT_STEP,
        PRUNERS,
        RUNG_QUANTILE,
        STARTUP_TRIALS,
        RungPruner,
        make_pruner,
        warmup_iterations,
    )
    from rectune.tuning.report import (
        FANOVA_TREES,
        import_behind,
        importances,
        render_report,
        study_figures,
        write_study_reports,
    )
    from rectune.tuning.results import TuningResult, finish_study
    from rectune.tuning.runs import (
        join_study,
        parent_key,
        reconcile_noted,
        reconcile_runs,
        unrecorded_parent,
    )
    from rectune.tuning.samplers import (
        FAILURES_TO_GIVE_UP,
        MAX_COMBINATIONS,
        DistinctSampler,
        make_sampler,
    )
    from rectune.tuning.search_space import (
        MAX_SPACE_BYTES,
        SHIPPED_SPACES,
        SearchSpace,
        default_space_path,
        load_search_space,
        parse_search_space,
        space_path,
    )
    from rectune.tuning.sharing import (
        GridSampler,
        IterationSharing,
        SharedTrial,
        iteration_choices,
        pending_iterations,
    )
    from rectune.tuning.storage import (
        CONNECTION_ERRORS,
        FINISHED,
        Database,
        StorageUnavailableError,
        StudyProgress,
        create_or_load_study,
        is_shared,
        is_url,
        lost_connection,
        make_storage,
        same_database,
        sqlite_path,
        study_lock,
        trials_ahead,
    )
    from rectune.tuning.study import open_study, repair_study, run_tuning
    from rectune.tuning.trial import SurplusTrial, TrialRunner, find_completed
    from rectune.tuning.trial_run import TrialRun
