"""Optuna studies over ALS/BPR hyperparameters, one MLflow child run per trial.

A trial samples parameters from the search space, fits on ``train_val`` and scores the
objective on ``validation`` with :func:`rectune.evaluation.metrics.evaluate`, the evaluator that
final evaluation uses. While fitting it evaluates at a few iteration checkpoints and
reports them to Optuna, so the pruner can stop unpromising trials early.

* One fit serves every ``iterations`` choice of the search space (see
  :mod:`rectune.tuning.sharing`): a trial fitting ``v`` iterations is scored at each smaller
  choice on the way, and each is recorded as a trial of its own: started (with a
  heartbeat and its MLflow run) when the fit reaches it, completed when the fit ends.
* Samplers propose a combination the study has not tried yet while a finite space has
  one (:mod:`rectune.tuning.samplers`); a combination that already completed is not refitted:
  the trial reuses its values (tagged ``reused_from_trial``).
* ``eval_users`` scores every trial on the same seeded sample of validation users.
* Data is loaded once per study, and one :class:`rectune.evaluation.metrics.Evaluator` per fold
  scores every trial, reusing its buffers.
* A trial that raises is marked FAIL in Optuna (with its error in the user attribute
  ``error``) and FAILED in MLflow (tag ``error``); the study goes on.
* With ``cv_folds > 1`` a trial is scored by the mean over per-user folds of ``train``
  instead of the single ``train_val``/``validation`` split; it costs ``cv_folds`` fits
  (intermediate values, and so pruning, come from the first fold).
* Several objectives (``precision@10,coverage@10`` or ``fit_seconds``) make a
  multi-objective study; the Pareto-optimal trial with the best first objective is the
  one written to the output file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage

from rectune.data.build import load_or_build
from rectune.data.store import SplitDataset
from rectune.errors import ConfigError, DataError
from rectune.evaluation.ranking import check_list_length
from rectune.models import (
    DEFAULT_HYPERPARAMETERS,
    fit_model,
    resolve_device,
)
from rectune.seeds import WORKER, derived_seed
from rectune.tracking import (
    Tracker,
    default_experiment,
    tracking_uri,
)
from rectune.tuning import parallel
from rectune.tuning.attributes import PARENT_RUNS_ATTR, STUDY_UID_ATTR
from rectune.tuning.best_params import (
    check_writable,
    read_best_hyperparameters,
)
from rectune.tuning.heartbeats import StaleTrialHandler
from rectune.tuning.loop import optimize, quiet_optuna
from rectune.tuning.plan import TuningConfig, max_iterations, resolve
from rectune.tuning.pruners import make_pruner
from rectune.tuning.results import TuningResult, finish_study
from rectune.tuning.runs import (
    join_study,
    parent_key,
    reconcile_noted,
    reconcile_runs,
    unrecorded_parent,
)
from rectune.tuning.samplers import make_sampler
from rectune.tuning.search_space import SearchSpace, load_search_space

# --------------------------------------------------------------------------- iterations
# --------------------------------------------------------------------------- study
from rectune.tuning.storage import StudyProgress, create_or_load_study, make_storage, same_database
from rectune.tuning.trial import TrialRunner
from rectune.urls import redact_url


def open_study(
    config: TuningConfig,
    space: SearchSpace,
    dataset: SplitDataset,
    storage: BaseStorage,
) -> optuna.Study:
    """Create the study in ``storage``, or load it to resume; refuse one made for another
    model, objective, dataset or fold count."""
    objectives = config.resolved_objectives
    return create_or_load_study(
        storage,
        config.resolved_study_name,
        description={
            "model": config.model,
            "objectives": [o.name for o in objectives],
            "dataset_fingerprint": dataset.fingerprint,
            "cv_folds": config.cv_folds,
            # Scores on a user sample are not comparable with full ones. (None, for all
            # users, matches studies made before the option, which lack the key.)
            "eval_users": config.eval_users,
        },
        search_space_fingerprint=space.fingerprint,
        sampler=make_sampler(config.resolved_sampler, config.seed, space),
        pruner=(
            optuna.pruners.NopPruner()
            if config.multi_objective
            else make_pruner(config.pruner, max_iterations(space))
        ),
        directions=[o.direction for o in objectives],
        metric_names=[o.name for o in objectives],
    )


# --------------------------------------------------------------------------- objective


# --------------------------------------------------------------------------- results


def _warm_start(study: optuna.Study, config: TuningConfig, space: SearchSpace) -> int:
    candidates = []
    current = read_best_hyperparameters(config.output).get(config.model)
    if current:
        candidates.append(current)
    candidates.append(DEFAULT_HYPERPARAMETERS[config.model])
    queued = 0
    for params in candidates:
        inside = space.contains(params)
        if inside:
            study.enqueue_trial(inside, skip_if_exists=True)
            queued += 1
    return queued


def run_tuning(
    config: TuningConfig,
    *,
    pruner: optuna.pruners.BasePruner | None = None,
    fit: Callable[..., Any] = fit_model,
) -> TuningResult:
    """Run (or resume, or join) a study; log it to MLflow; write the best parameters.

    Any number of processes may run this on one study in a shared storage: each runs
    trials until the study holds ``config.n_trials`` finished ones, all logged under
    one MLflow parent run. ``pruner`` overrides the configured one and ``fit`` the
    fitting function; both are for tests and for library users with their own.
    """
    from rectune.tuning import report as reports

    started = time.perf_counter()
    reports.import_behind()
    config, space, dataset = _checked_inputs(config)
    on_stale = StaleTrialHandler()
    storage = _make_storage(config, on_stale)
    study = open_study(config, space, dataset, storage)
    if pruner is not None:
        study.pruner = pruner
    # Parallel trials are pruned on the trials every run has finished before them.
    study.pruner = parallel.in_trial_order(study.pruner, config.n_jobs)
    earlier = study.get_trials(deepcopy=False)
    resumed = len(earlier)
    notes = _setting_notes(config, space)
    tracker = Tracker(config.experiment_name, default=default_experiment(config.model))
    finished = StudyProgress.of_trials(earlier, count_shared=config.count_shared).finished
    complete = config.n_trials is not None and finished >= config.n_trials
    parent_id, worker = join_study(
        study, storage, config, tracker, space, dataset, complete=complete
    )
    notes.extend(reconcile_noted(study, tracker, parent_id))
    if worker:
        # Workers after the first sample from their own seed, so they do not all try
        # the same parameters; the first worker of a study keeps --seed's sequence.
        seed = derived_seed(config.seed, WORKER, worker)
        study.sampler = make_sampler(config.resolved_sampler, seed, space)
        notes.append(f"run {worker + 1} to join this study: its sampler is seeded with {seed}")
    with tracker.ending(parent_id, interrupted="KILLED") as parent_end:
        if config.warm_start:
            queued = _warm_start(study, config, space)
            notes.append(f"warm start: {queued} parameter set(s) enqueued")
        runner = TrialRunner(config, space, dataset, tracker, parent_id, fit=fit, storage=storage)
        on_stale.on_stale.append(runner.end_stale_run)
        interrupted = False
        try:
            # MLflow writes go on in the background while the next model fits.
            with quiet_optuna(), tracker.write_behind():
                optimize(study, storage, runner, config, notes)
        except KeyboardInterrupt:
            # Keep what finished: write the best so far and the report, then stop.
            interrupted = True
            notes.append("interrupted: the trials finished so far are kept and reported")
        notes.extend(_closing_notes(study, tracker, parent_id, runner))
        result = finish_study(
            study, config, tracker, parent_id, dataset, space, started, runner, notes, reports
        )
        result.resumed_trials = resumed
        result.interrupted = interrupted
        result.already_complete = complete
        parent_end.status = "KILLED" if interrupted else "FINISHED"
        return result


def _checked_inputs(config: TuningConfig) -> tuple[TuningConfig, SearchSpace, SplitDataset]:
    """The resolved config, its search space and dataset; every input that can be
    refused is refused here, before any run is made."""
    space = load_search_space(config.model, config.search_space)
    if config.resolved_sampler == "grid":
        space.grid()  # refuse continuous spaces before anything else
    read_best_hyperparameters(config.output)  # refuse a corrupt output file up front
    check_writable(config.output)
    resolve_device(config.device)  # refuse cuda without a GPU before any run is made
    config = resolve(config, space)
    dataset = load_or_build(config.dataset, config.data_dir, config.seed)
    for objective in config.resolved_objectives:
        if objective.k is not None:
            check_list_length(objective.k, dataset.train.shape[1], "--k")
    if dataset.validation.nnz == 0 and config.cv_folds == 1:
        raise DataError(
            f"dataset {config.dataset!r} has an empty validation split; "
            "re-split it with a larger --validation-fraction"
        )
    return config, space, dataset


def _setting_notes(config: TuningConfig, space: SearchSpace) -> list[str]:
    """What the user should know about how the settings combine."""
    notes = []
    categorical = [
        name
        for name, d in space.distributions.items()
        if isinstance(d, optuna.distributions.CategoricalDistribution)
    ]
    if config.resolved_sampler == "cmaes" and categorical:
        notes.append(
            f"cmaes cannot sample categorical parameters; {', '.join(categorical)} "
            "were sampled at random"
        )
    if config.multi_objective and config.pruner != "none":
        notes.append("pruning is off: Optuna does not prune multi-objective studies")
    return notes


def _closing_notes(
    study: optuna.Study, tracker: Tracker, parent_id: str, runner: TrialRunner
) -> list[str]:
    """What went wrong around the trials: runs killed workers left behind (reconciled
    now that this worker's writes are done), failed MLflow writes, stale trials."""
    notes = reconcile_noted(study, tracker, parent_id)
    if tracker.write_errors:
        notes.append(
            f"{len(tracker.write_errors)} MLflow write(s) failed (the Optuna study has "
            f"every result); the first: {tracker.write_errors[0]}"
        )
    if runner.stale:
        notes.append(
            f"trial(s) {', '.join(map(str, runner.stale))} had stopped sending heartbeats "
            "(a worker died): marked failed, their parameters queued once more"
        )
    return notes


def _make_storage(config: TuningConfig, on_stale: StaleTrialHandler) -> BaseStorage:
    url = config.storage
    if same_database(url, tracking_uri()):
        raise ConfigError(
            f"--storage {redact_url(url)} is the MLflow tracking database; Optuna and "
            "MLflow cannot share one database (both keep alembic tables): give Optuna its "
            "own, e.g. models/optuna.journal"
        )
    return make_storage(url, config.heartbeat, on_stale)


def repair_study(config: TuningConfig) -> list[str]:
    """Only reconcile (``hyperparameter_tuning.py --repair``): make the MLflow runs of
    an existing study agree with its trials, and end its parent run when no trial is
    running; run no trial. Returns what was done, one line each."""
    config = resolve(config)
    storage = _make_storage(config, StaleTrialHandler())
    name = config.resolved_study_name
    if name not in {s.study_name for s in storage.get_all_studies()}:
        raise ConfigError(
            f"no study {name!r} in {config.shown_storage} to repair "
            "(give --study-name and --storage as the study was run with)"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    tracker = Tracker(config.experiment_name, default=default_experiment(config.model))
    pipeline, key = parent_key(tracker)
    parent_id = study.user_attrs.get(PARENT_RUNS_ATTR, {}).get(key)
    uid = study.user_attrs.get(STUDY_UID_ATTR)
    if parent_id is None and uid is not None:
        parent_id = unrecorded_parent(tracker, uid, pipeline)
    if parent_id is None:
        return [
            f"study {name!r} has no MLflow parent run in experiment {tracker.experiment_name!r}"
        ]
    done = reconcile_runs(study, tracker, parent_id)
    live = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    if not study.get_trials(deepcopy=False, states=live) and tracker.status(parent_id) == "RUNNING":
        tracker.end_run(parent_id, "FINISHED")
        done.append(f"ended the parent run {parent_id}, left RUNNING by a killed worker")
    return done or [f"study {name!r}: MLflow agrees with Optuna; nothing to repair"]
