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

from typing import TYPE_CHECKING

from rectune._faces import lazy_face

#: Submodule -> the public names it defines, every one re-exported here.
_EXPORTS = {
    "attributes": (
        "BEST_ITERATION ERROR FIT_SECONDS HEARTBEAT_ATTR INTERRUPTED ITERATIONS METRICS "
        "PARAMS PARENT_RUNS_ATTR REUSED_FROM RUN_ID same_params same_value SAME_VALUE_REL_TOL "
        "SHARED_FIT_OF STUDY_ATTR STUDY_UID_ATTR SURPLUS"
    ),
    "best_params": (
        "check_writable delivered_params jsonable matching_provenance provenance_path "
        "read_best_hyperparameters write_best_hyperparameters"
    ),
    "checkpoints": (
        "best_of_folds checkpoint_iterations CheckpointPlan Curve DEFAULT_CHECKPOINTS "
        "DEFAULT_PATIENCE mean_of_folds PlanKind"
    ),
    "fitting": "FitRecord FoldScorer StopFit TrialFitter",
    "heartbeats": (
        "BeatFromTheStart DEFAULT_HEARTBEAT fail_stale_trials GRACE_FACTOR SilentTrials "
        "StaleTrialHandler start_beating stop_beating"
    ),
    "journal": "JournalFile mend_journal open_journal STALE_LOCK_SECONDS",
    "loop": "optimize POLL_SECONDS quiet_optuna STORAGE_RETRY_DELAYS",
    "parallel": "Callback in_trial_order InTrialOrder optimize_in_order TrialFunction",
    "plan": (
        "BEST_PARAMETERS_FILE DEFAULT_JOURNAL default_storage LEGACY_DATABASE max_iterations "
        "Objective "
        "OBJECTIVE_METRICS PARALLEL_TRIALS parallel_trials parse_objectives resolve SAMPLERS "
        "TUNING_METRICS TuningConfig"
    ),
    "pruners": (
        "DEFAULT_PRUNER make_pruner MIN_TRIALS_AT_STEP PRUNERS RUNG_QUANTILE RungPruner "
        "STARTUP_TRIALS warmup_iterations"
    ),
    "report": (
        "FANOVA_TREES import_behind importances render_report study_figures write_study_reports"
    ),
    "rerender": "rerender_report study_summary",
    "results": "finish_study TuningResult",
    "runs": "join_study parent_key reconcile_noted reconcile_runs tuning_inputs unrecorded_parent",
    "samplers": "DistinctSampler FAILURES_TO_GIVE_UP make_sampler MAX_COMBINATIONS",
    "search_space": (
        "default_space_path load_search_space MAX_SPACE_BYTES parse_search_space SearchSpace "
        "SHIPPED_SPACES space_path"
    ),
    "sharing": "GridSampler iteration_choices IterationSharing pending_iterations SharedTrial",
    "storage": (
        "CONNECTION_ERRORS create_or_load_study Database FINISHED is_shared is_url "
        "objective_names "
        "lost_connection make_storage same_database sqlite_path StorageUnavailableError "
        "study_lock StudyProgress trials_ahead"
    ),
    "study": "open_study repair_study run_tuning",
    "trial": "find_completed SurplusTrial TrialRunner",
    "trial_run": "SPLIT TrialRun trial_metrics",
}
_EXPORTS_BY_MODULE = {module: tuple(names.split()) for module, names in _EXPORTS.items()}

__all__ = sorted((n for names in _EXPORTS_BY_MODULE.values() for n in names), key=str.lower)

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS_BY_MODULE)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and editors
    from rectune.tuning.attributes import *  # noqa: F403
    from rectune.tuning.best_params import *  # noqa: F403
    from rectune.tuning.checkpoints import *  # noqa: F403
    from rectune.tuning.fitting import *  # noqa: F403
    from rectune.tuning.heartbeats import *  # noqa: F403
    from rectune.tuning.journal import *  # noqa: F403
    from rectune.tuning.loop import *  # noqa: F403
    from rectune.tuning.parallel import *  # noqa: F403
    from rectune.tuning.plan import *  # noqa: F403
    from rectune.tuning.pruners import *  # noqa: F403
    from rectune.tuning.report import *  # noqa: F403
    from rectune.tuning.rerender import *  # noqa: F403
    from rectune.tuning.results import *  # noqa: F403
    from rectune.tuning.runs import *  # noqa: F403
    from rectune.tuning.samplers import *  # noqa: F403
    from rectune.tuning.search_space import *  # noqa: F403
    from rectune.tuning.sharing import *  # noqa: F403
    from rectune.tuning.storage import *  # noqa: F403
    from rectune.tuning.study import *  # noqa: F403
    from rectune.tuning.trial import *  # noqa: F403
    from rectune.tuning.trial_run import *  # noqa: F403
