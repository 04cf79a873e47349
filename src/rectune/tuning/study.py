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

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeatThread, get_heartbeat_thread

from rectune import __version__
from rectune._io import file_lock, lock_path, write_json_atomic
from rectune.config import DATA_DIR, MODELS_DIR
from rectune.data.splits import per_user_folds
from rectune.data.store import SplitDataset, load_dataset
from rectune.errors import ConfigError, DataError, DatasetNotFoundError
from rectune.evaluation.evaluator import Evaluator
from rectune.evaluation.metrics import USER_METRICS
from rectune.evaluation.ranking import check_list_length, sample_users
from rectune.failpoints import failpoint
from rectune.models import (
    DEFAULT_HYPERPARAMETERS,
    HYPERPARAMETERS,
    build_model,
    check_model_name,
    fit_model,
    resolve_device,
)
from rectune.progress import StudyBar
from rectune.tracking import (
    PARENT_TAG,
    PIPELINE_TAG,
    PendingRun,
    RunRef,
    RunStatus,
    Tracker,
    default_experiment,
    tracking_uri,
)
from rectune.tuning import parallel, sharing
from rectune.tuning import storage as studies
from rectune.tuning.checkpoints import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_PATIENCE,
    CheckpointPlan,
    Curve,
    best_of_folds,
    checkpoint_iterations,
)
from rectune.tuning.pruners import DEFAULT_PRUNER, PRUNERS, make_pruner
from rectune.tuning.samplers import make_sampler
from rectune.tuning.search_space import SearchSpace, load_search_space
from rectune.tuning.storage import (
    DEFAULT_HEARTBEAT,
    StaleTrialHandler,
    StorageUnavailableError,
    StudyProgress,
    same_database,
)
from rectune.urls import redact_url

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2")
TUNING_METRICS = ("precision", "recall", "ndcg", "map")
#: Objectives may also use these; ``fit_seconds`` is minimised, the rest maximised.
OBJECTIVE_METRICS = (*USER_METRICS, "coverage")
FIT_SECONDS = "fit_seconds"
#: Study user attribute mapping a tracking store (and experiment) to the parent run.
PARENT_RUNS_ATTR = "mlflow_parent_runs"
#: Study user attribute (and tag of its parent runs) naming the study uniquely.
STUDY_UID_ATTR = "rectune_study_uid"
#: The default Optuna storage, beside ``--output``; earlier versions kept a SQLite file.
DEFAULT_JOURNAL = "optuna.journal"
LEGACY_DATABASE = "optuna.db"
#: Trials run at once by default, where nothing keeps a study to one at a time.
PARALLEL_TRIALS = 2
_OBJECTIVE = re.compile(r"^(?P<metric>[a-z_]+)@(?P<k>[1-9][0-9]*)$")


@dataclass(frozen=True)
class Objective:
    """One thing to optimise: ``metric@k`` on validation (maximise) or fit seconds."""

    metric: str
    k: int | None = None

    @property
    def name(self) -> str:
        return self.metric if self.k is None else f"{self.metric}@{self.k}"

    @property
    def direction(self) -> str:
        return "minimize" if self.metric == FIT_SECONDS else "maximize"


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """Parse ``precision@10,coverage@10`` (or ``fit_seconds``) into objectives."""
    objectives = []
    for part in (p.strip() for p in text.split(",")):
        if part == FIT_SECONDS:
            objectives.append(Objective(FIT_SECONDS))
            continue
        match = _OBJECTIVE.match(part)
        if not match or match["metric"] not in OBJECTIVE_METRICS:
            raise ConfigError(
                f"objective {part!r} is not METRIC@K or {FIT_SECONDS}; metrics: "
                f"{', '.join(OBJECTIVE_METRICS)}"
            )
        objectives.append(Objective(match["metric"], int(match["k"])))
    if len({o.name for o in objectives}) != len(objectives):
        raise ConfigError(f"objectives repeat: {text}")
    if objectives[0].k is None:
        raise ConfigError(
            f"the first objective must be a metric@K (it drives pruning and picks the "
            f"trial written out), not {FIT_SECONDS}: e.g. precision@10,{FIT_SECONDS}"
        )
    return tuple(objectives)


@dataclass(frozen=True)
class TuningConfig:
    """Everything one tuning invocation needs; the CLI maps its options onto this.

    ``n_trials`` is the size of the study, not of this invocation: workers (and re-runs
    after a crash) run trials until the study holds ``n_trials`` finished (complete or
    pruned) ones. ``None`` runs until ``timeout``. Trials recorded from another trial's
    fit (iteration sharing) come on top, unless ``count_shared``.
    """

    model: str
    dataset: str = "synthetic"
    n_trials: int | None = 50
    timeout: float | None = None
    k: int = 10
    metric: str = "precision"
    objectives: tuple[Objective, ...] = ()
    sampler: str | None = None
    pruner: str = DEFAULT_PRUNER
    search_space: str | Path | None = None  # a file, or a shipped space's name
    study_name: str | None = None
    storage: str | None = None
    n_jobs: int | Literal["auto"] = "auto"
    seed: int = 42
    device: str = "auto"
    cv_folds: int = 1
    warm_start: bool = False
    output: Path = MODELS_DIR / "best_hyperparameters.json"
    experiment_name: str | None = None
    data_dir: Path = DATA_DIR
    checkpoints: int = DEFAULT_CHECKPOINTS
    patience: int = DEFAULT_PATIENCE
    show_progress: bool = True
    heartbeat: int = DEFAULT_HEARTBEAT
    share_iterations: bool = True
    count_shared: bool = False
    eval_users: int | None = None

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"n_trials must be at least 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k}")
        if self.metric not in TUNING_METRICS:
            raise ConfigError(
                f"unknown metric {self.metric!r}; choose one of {', '.join(TUNING_METRICS)}"
            )
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ConfigError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}")
        if self.n_jobs != "auto" and (not isinstance(self.n_jobs, int) or self.n_jobs < 1):
            raise ConfigError(f"n_jobs must be 'auto' or at least 1, got {self.n_jobs!r}")
        if self.cv_folds < 1:
            raise ConfigError(f"cv_folds must be at least 1, got {self.cv_folds}")
        if self.checkpoints < 1:
            raise ConfigError(f"checkpoints must be at least 1, got {self.checkpoints}")
        if self.patience < 0:
            raise ConfigError(f"patience must be 0 (off) or more, got {self.patience}")
        if self.heartbeat < 1:
            raise ConfigError(f"heartbeat must be at least 1 second, got {self.heartbeat}")
        if self.eval_users is not None and self.eval_users < 1:
            raise ConfigError(f"eval_users must be at least 1, got {self.eval_users}")

    @property
    def resolved_objectives(self) -> tuple[Objective, ...]:
        return self.objectives or (Objective(self.metric, self.k),)

    @property
    def multi_objective(self) -> bool:
        return len(self.resolved_objectives) > 1

    @property
    def resolved_sampler(self) -> str:
        return self.sampler or ("nsga2" if self.multi_objective else "tpe")

    @property
    def resolved_study_name(self) -> str:
        dataset = Path(self.dataset).name  # a folder path gives its last part
        return self.study_name or f"{self.model}-{dataset}-" + "-".join(
            o.name.replace("@", "_at_") for o in self.resolved_objectives
        )

    @property
    def resolved_storage(self) -> str:
        """``--storage``, else the journal file ``optuna.journal`` beside ``--output``
        (or, where only the SQLite ``optuna.db`` of earlier versions is there, that one,
        so its studies resume)."""
        if self.storage:
            return self.storage
        folder = Path(self.output).resolve().parent
        journal, database = folder / DEFAULT_JOURNAL, folder / LEGACY_DATABASE
        if not journal.exists() and database.exists():
            return f"sqlite:///{database}"  # resume studies made before journal files
        return str(journal)

    @property
    def reports_dir(self) -> Path:
        return Path(self.output).parent / "reports"


@dataclass
class TuningResult:
    """What a finished tuning run reports back."""

    study: optuna.Study
    config: TuningConfig
    parent_run_id: str
    best_params: dict[str, Any] | None
    best_values: dict[str, float] | None
    best_trial_number: int | None
    counts: dict[str, int]
    wall_seconds: float
    report_path: Path | None
    experiment_name: str
    tracking_uri: str
    ui_hint: str
    resumed_trials: int = 0
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False


# --------------------------------------------------------------------------- iterations


def _max_iterations(space: SearchSpace) -> int:
    """The largest ``iterations`` a trial of ``space`` fits (the budget, unsearched)."""
    if "iterations" in space.fixed:
        return int(space.fixed["iterations"])
    distribution = space.distributions.get("iterations")
    if distribution is None:
        return int(DEFAULT_HYPERPARAMETERS[space.model]["iterations"])
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return int(max(distribution.choices))
    return int(distribution.high)


def parallel_trials(config: TuningConfig, space: SearchSpace) -> int:
    """Trials run at once: ``config.n_jobs``, or for ``auto`` :data:`PARALLEL_TRIALS`,
    except where iteration sharing applies (it records trials from a fit while the fit
    runs, which needs one trial at a time) or the models fit on the one GPU."""
    if config.n_jobs != "auto":
        return config.n_jobs
    if config.share_iterations and sharing.iteration_choices(space):
        return 1
    if resolve_device(config.device) == "cuda":
        return 1
    return PARALLEL_TRIALS


# --------------------------------------------------------------------------- study


def open_study(
    config: TuningConfig,
    space: SearchSpace,
    dataset: SplitDataset,
    storage: BaseStorage,
) -> optuna.Study:
    """Create the study in ``storage``, or load it to resume; refuse one made for another
    model, objective, dataset or fold count."""
    objectives = config.resolved_objectives
    return studies.open_study(
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
            else make_pruner(config.pruner, _max_iterations(space))
        ),
        directions=[o.direction for o in objectives],
    )


def _same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[key] == b[key]
        or (
            isinstance(a[key], float)
            and isinstance(b[key], float)
            and math.isclose(a[key], b[key], rel_tol=1e-12)
        )
        for key in a
    )


def find_completed(
    trials: list[optuna.trial.FrozenTrial], params: dict[str, Any], exclude: int
) -> optuna.trial.FrozenTrial | None:
    """A COMPLETE trial among a study's ``trials`` with exactly these parameters.

    Trials keep their full parameters, fixed ones included, in the user attribute
    ``params``, so a resumed study whose fixed values changed is compared correctly.
    """
    for trial in trials:
        if trial.state != optuna.trial.TrialState.COMPLETE:
            continue
        earlier = trial.user_attrs.get("params", trial.params)
        if trial.number != exclude and _same_params(earlier, params):
            return trial
    return None


# --------------------------------------------------------------------------- objective


class SurplusTrial(Exception):
    """A trial created after the study already had its requested number of trials."""


class TrialRunner:
    """The Optuna objective: fit, evaluate, report, log one child run per trial."""

    def __init__(
        self,
        config: TuningConfig,
        space: SearchSpace,
        dataset: SplitDataset,
        tracker: Tracker,
        parent_id: str,
        *,
        fit: Callable[..., Any] = fit_model,
        storage: BaseStorage | None = None,
    ) -> None:
        self.config = config
        #: The study's storage, for its locks (``None``: none taken, one process only).
        self.storage = storage
        #: Numbers of the trials this worker ran, and of those it found surplus.
        self.ran: list[int] = []
        self.surplus: list[int] = []
        self.failed = 0
        #: Trials of dead workers this worker failed for lack of heartbeats.
        self.stale: list[int] = []
        self.space = space
        self.tracker = tracker
        self.parent_id = parent_id
        self.objectives = config.resolved_objectives
        self.fit = fit
        self.device = resolve_device(config.device)
        # Parallel trials share the cores. BPR stays on its deterministic single thread;
        # None and 0 mean the defaults (all cores for ALS and for evaluation).
        n_jobs = parallel_trials(config, space)
        share = max(1, (os.cpu_count() or 1) // n_jobs)
        self.num_threads = share if n_jobs > 1 and config.model == "als" else None
        self.eval_threads = share if n_jobs > 1 else 0
        if config.cv_folds > 1:
            self.folds = per_user_folds(dataset.train, config.cv_folds, config.seed)
        else:
            self.folds = [(dataset.train_val, dataset.validation)]
        #: Every K scored; one evaluation at the largest gives them all.
        self.ks = sorted({o.k for o in self.objectives if o.k is not None} | {config.k})
        # One evaluator per fold for the whole study: the data is prepared once and the
        # score buffers are reused by every trial.
        self.evaluators = [
            Evaluator(
                train,
                held_out,
                max(self.ks),
                users=(
                    sample_users(held_out, config.eval_users, config.seed)
                    if config.eval_users
                    else None
                ),
                num_threads=self.eval_threads,
            )
            for train, held_out in self.folds
        ]
        # Parallel trials of one process could overfill the study with shared trials
        # (each counts the room before the other records), so sharing needs n_jobs 1.
        self.iteration_choices = (
            sharing.iteration_choices(space) if config.share_iterations and n_jobs == 1 else None
        )
        #: Numbers of the trials this worker recorded from its fits (iteration sharing).
        self.shared: list[int] = []
        #: Set to stop every running fit at its next iteration (Ctrl-C, parallel trials).
        self.cancelled = threading.Event()
        #: The study as :meth:`prepare` read it for each trial, by number.
        self._prepared: dict[int, list[optuna.trial.FrozenTrial]] = {}
        #: Whether the space has finitely many combinations, each to be tried once.
        try:
            space.grid()
            self.finite = True
        except ConfigError:
            self.finite = False
        self._sampling_lock = f"rectune/{config.resolved_study_name}/sampling"

    def prepare(self, trial: optuna.Trial) -> None:
        """Sample ``trial``'s parameters and read the study for it, now.

        Parallel trials (:func:`rectune.tuning.parallel.optimize_in_order`) call this right
        after each ask, in trial order, so that what a trial reuses or counts does not
        depend on which of the running trials happen to be told before it starts.
        """
        self._suggest(trial)
        self._prepared[trial.number] = trial.study.get_trials(deepcopy=False)

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample ``trial``'s parameters, under the study's lock on a finite space.

        The sampler proposes a combination no trial has; a trial another worker is
        sampling at the same moment has none yet, so without the lock both could take
        the same one. The lock is held until the parameters are in the storage.
        """
        with self._sampling():
            return self.space.suggest(trial)

    def _sampling(self) -> contextlib.AbstractContextManager[Any]:
        """The study's sampling lock, where combinations are finite and workers may share
        the study (no lock otherwise: a continuous space has no combination to repeat)."""
        if self.finite and self.storage is not None:
            return studies.study_lock(self.storage, self._sampling_lock)
        return contextlib.nullcontext()

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        target = self.config.n_trials
        # One read of the study serves the surplus check, reuse and sharing.
        trials = self._prepared.pop(trial.number, None)
        if trials is None:
            trials = trial.study.get_trials(deepcopy=False)
        ahead = studies.trials_ahead(trials, trial.number, count_shared=self.config.count_shared)
        if target is not None and ahead >= target:
            # Another worker took the last trial the study needed while this one was
            # being created: stop without a run, and let the study's count decide.
            self.surplus.append(trial.number)
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise SurplusTrial(f"the study already has {target} trials")
        self.ran.append(trial.number)
        failpoint("trial_started")
        # The run is made behind the fit; its id joins the trial's attributes as soon
        # as it exists (a killed worker's run is found and ended through it).
        run_id = self._start_trial_run(
            trial.number, lambda made: trial.set_user_attr("mlflow_run_id", made)
        )
        params: dict[str, Any] = {}
        # The params go to MLflow with the trial's result (one write, not two).
        try:
            # In here: a failure to sample is a failed trial, counted as one.
            params = self._suggest(trial)
            trial.set_user_attr("params", params)
            previous = find_completed(trials, params, exclude=trial.number)
            if previous is not None:
                value = self._reuse(trial, previous, run_id, params)
            else:
                value = self._train(trial, params, run_id, trials)
            failpoint("objective_returned")
            return value
        except optuna.TrialPruned:
            self.tracker.end_run(run_id, "FINISHED")  # _train logged its result
            raise
        except Exception as err:
            self.failed += 1
            message = f"{type(err).__name__}: {err}"
            log.warning("trial %d failed: %s", trial.number, message)
            self.tracker.log(run_id, params=params, tags={"error": message, "state": "FAIL"})
            self.tracker.end_run(run_id, "FAILED")
            trial.set_user_attr("error", message)
            raise
        except BaseException:  # Ctrl-C: the run did not fail, it was stopped
            trial.set_user_attr("error", studies.INTERRUPTED)
            self.tracker.log(
                run_id, params=params, tags={"error": studies.INTERRUPTED, "state": "FAIL"}
            )
            self.tracker.end_run(run_id, "KILLED")
            raise
        finally:
            run_id.wait()  # the trial must not end before its run id is recorded

    def _start_trial_run(
        self, number: int, record_id: Callable[[str], Any], **tags: Any
    ) -> PendingRun:
        """Trial ``number``'s child run, made behind the caller; ``record_id(run_id)``
        stores its id with the Optuna trial as soon as it exists."""
        return self.tracker.start_run_behind(
            f"trial-{number}",
            parent_id=self.parent_id,
            tags={**self._trial_tags(number), **tags},
            then=record_id,
        )

    def _trial_tags(self, number: int) -> dict[str, Any]:
        """The tags every trial's run carries."""
        return {
            "trial_number": number,
            "study": self.config.resolved_study_name,
            "model": self.config.model,
        }

    def end_stale_run(self, trial: optuna.trial.FrozenTrial) -> None:
        """End the MLflow run of a trial whose worker stopped sending heartbeats."""
        self.stale.append(trial.number)
        try:
            run_id = trial.user_attrs.get("mlflow_run_id") or self._run_of_unrecorded(trial)
            self.tracker.set_tags(
                run_id,
                {
                    "state": "FAIL",
                    "error": "its worker stopped sending heartbeats (killed, or cut off "
                    "from the Optuna storage); the parameters are queued once more",
                },
            )
            self.tracker.end_run(run_id, "KILLED")
        except Exception as err:  # the trial is failed in Optuna either way
            log.warning("could not end the MLflow run of stale trial %d: %s", trial.number, err)

    def _run_of_unrecorded(self, trial: optuna.trial.FrozenTrial) -> str:
        """The run of a trial whose worker died before recording its run id: the one
        made for it (found by its number), else one made now, so that every trial of
        the study has its run."""
        found = self.tracker.find_runs(**{PARENT_TAG: self.parent_id, "trial_number": trial.number})
        if found:
            return found[0].run_id
        run_id = self.tracker.start_run(
            f"trial-{trial.number}", parent_id=self.parent_id, tags=self._trial_tags(trial.number)
        )
        self.tracker.log(run_id, params=trial.params)
        return run_id

    def _reuse(
        self,
        trial: optuna.Trial,
        previous: optuna.trial.FrozenTrial,
        run_id: RunRef,
        params: dict[str, Any],
    ) -> float | tuple[float, ...]:
        trial.set_user_attr("reused_from", previous.number)
        metrics = previous.user_attrs.get("metrics", {})
        trial.set_user_attr("metrics", metrics)
        if BEST_ITERATION in previous.user_attrs:
            trial.set_user_attr(BEST_ITERATION, previous.user_attrs[BEST_ITERATION])
        self.tracker.log(
            run_id,
            params=delivered_params(previous.user_attrs, params),
            metrics=metrics,
            tags={
                "reused_from_trial": previous.number,
                "state": "COMPLETE",
                "trial_number": trial.number,
            },
        )
        self.tracker.end_run(run_id, "FINISHED")
        values = tuple(previous.values)
        return values if self.config.multi_objective else values[0]

    def _train(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        run_id: RunRef,
        trials: list[optuna.trial.FrozenTrial],
    ) -> float | tuple[float, ...]:
        config = self.config
        plan = self._plan(params)
        shared = self._shared_iterations(trials, params)
        fits: list[_FitRecord] = []
        recorded: list[_SharedTrial] = []
        try:
            for fold, (train, _) in enumerate(self.folds):
                model = build_model(
                    config.model,
                    params,
                    device=self.device,
                    seed=config.seed,
                    num_threads=self.num_threads,
                )
                record = _FitRecord(Curve(plan))
                fits.append(record)
                callback = self._fit_callback(
                    trial, model, fold, params, plan, shared, fits, recorded.append
                )
                with contextlib.suppress(_StopFit):  # stopped early: the curve says where
                    self.fit(model, train, callback=callback)
                record.fit_seconds = callback.fit_seconds()
                if fold == 0 and record.curve.skipped_steps():
                    self._report_skipped(trial, record)
                if not plan.best_of:
                    # The score at the end: the last checkpoint's when it was the end.
                    end = record.curve.metrics.get(plan.iterations)
                    if end is None:
                        started = time.perf_counter()
                        end = self._metrics(fold, model)
                        record.eval_seconds += time.perf_counter() - started
                    record.metrics = {k: v for k, v in end.items() if k != FIT_SECONDS}
        except optuna.TrialPruned:
            self.tracker.log(
                run_id,
                params=params,
                tags={"pruned": "true", "state": "PRUNED"},
                history=self._history(fits),
            )
            raise
        finally:
            # What the fit recorded on its way stands, however the fit ended.
            self._complete_shared(trial, recorded)
        tags = {"state": "COMPLETE", "trial_number": trial.number}
        if plan.best_of:
            # Early stopping: the trial stands for its best checkpoint's iteration count.
            best = best_of_folds([f.curve for f in fits])
            for f in fits:
                f.metrics = {k: v for k, v in f.curve.metrics[best].items() if k != FIT_SECONDS}
            trial.set_user_attr(BEST_ITERATION, best)
            params = {**params, sharing.ITERATIONS: best}
            tags["stopped_at_iteration"] = fits[0].curve.last_step
        if config.cv_folds > 1:
            for fold, f in enumerate(fits):
                self.tracker.log(
                    run_id,
                    metrics={f"fold_{name}": value for name, value in f.metrics.items()},
                    step=fold,
                )
        metrics = _mean([f.metrics for f in fits])
        metrics[FIT_SECONDS] = sum(f.fit_seconds for f in fits)
        metrics["eval_seconds"] = sum(f.eval_seconds for f in fits)
        trial.set_user_attr("metrics", metrics)
        self.tracker.log(
            run_id,
            params=params,
            metrics=metrics,
            tags=tags,
            history=self._history(fits),
        )
        self.tracker.end_run(run_id, "FINISHED")
        values = tuple(metrics[o.name] for o in self.objectives)
        return values if config.multi_objective else values[0]

    def _plan(self, params: dict[str, Any]) -> CheckpointPlan:
        """Where this trial's fit is scored (see :mod:`rectune.tuning.checkpoints`)."""
        iterations = int(
            params.get("iterations", DEFAULT_HYPERPARAMETERS[self.config.model]["iterations"])
        )
        if sharing.ITERATIONS not in self.space.distributions:
            kind = "budget"
        elif self.iteration_choices is not None:
            kind = "choices"
        else:
            kind = "own"
        return CheckpointPlan.make(
            kind,
            iterations,
            checkpoints=self.config.checkpoints,
            choices=self.iteration_choices or (),
            patience=self.config.patience,
        )

    def _report_skipped(self, trial: optuna.Trial, record: _FitRecord) -> None:
        """Show the pruner a fit that stopped early at the checkpoints it skipped, with
        its best (so later trials are compared with it there too)."""
        if self.config.multi_objective:
            return
        best = record.curve.values[record.curve.best_step]
        for step in record.curve.skipped_steps():
            record.reported[step] = best
            trial.report(best, step=step)

    def _history(self, fits: list[_FitRecord]) -> dict[str, dict[int, float]]:
        """The intermediate values reported to the pruner, as an MLflow metric history
        (logged with the trial's result: one call instead of one per checkpoint)."""
        if not fits or not fits[0].reported:
            return {}
        return {f"intermediate_{self.objectives[0].name}": fits[0].reported}

    def _metrics(self, fold: int, model: Any) -> dict[str, float]:
        """Every metric at every K asked for, from one evaluation at the largest K."""
        result = self.evaluators[fold](model)
        return {name: value for k in self.ks for name, value in result.at(k).named().items()}

    def _shared_iterations(
        self, trials: list[optuna.trial.FrozenTrial], params: dict[str, Any]
    ) -> list[int]:
        """The smaller ``iterations`` choices this trial's fit will record (sharing)."""
        if self.iteration_choices is None:
            return []
        room = None
        if self.config.n_trials is not None and self.config.count_shared:
            progress = StudyProgress.of_trials(trials, count_shared=True)  # this one runs
            room = self.config.n_trials - progress.finished - progress.running
        return sharing.pending_iterations(trials, params, self.iteration_choices, room)

    def _fit_callback(self, trial, model, fold, params, plan, shared, fits, recorded):
        """Called after every iteration: scores the model at the plan's checkpoints and
        at the shared iteration counts; reports to the pruner (first fold, one
        objective); records each shared count as a trial once the last fold reaches it;
        stops a budget fit early (first fold by its patience, later ones where the
        first stopped); keeps fit time apart."""
        report = fold == 0 and not self.config.multi_objective
        last_fold = fold == len(self.folds) - 1
        record = fits[fold]
        # Later folds of a budget fit go as far as the first did, to compare at its counts.
        stop_at = fits[0].curve.last_step if fold > 0 and plan.best_of else None
        marks = set(plan.steps) if (report or plan.best_of) else set()
        if stop_at is not None:
            marks = {m for m in marks if m <= stop_at}
        shared = set(shared)
        objective = self.objectives[0]
        started = time.perf_counter()
        paused = 0.0

        def callback(done: int) -> None:
            nonlocal paused
            if self.cancelled.is_set():
                raise KeyboardInterrupt  # the trial is stopped, as by Ctrl-C
            if done not in marks and done not in shared:
                return
            pause = time.perf_counter()
            fit_so_far = pause - started - paused
            metrics = self._metrics(fold, model)
            if done in shared:
                record.shared[done] = {**metrics, FIT_SECONDS: fit_so_far}
            if done in marks:
                value = metrics[objective.name]
                record.curve.add(done, value, {**metrics, FIT_SECONDS: fit_so_far})
                if report:
                    shown = record.curve.reported(done)
                    record.reported[done] = shown  # logged to MLflow with the trial's result
                    trial.report(shown, step=done)
            if done in shared:
                record.shared[done]["eval_seconds"] = time.perf_counter() - pause
                if last_fold:
                    shared_trial = self._record_shared(trial, params, fits, done)
                    if shared_trial is not None:
                        recorded(shared_trial)
            spent = time.perf_counter() - pause
            paused += spent
            if done not in shared:
                record.eval_seconds += spent
            if report and done in marks and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at iteration {done} with {shown:.4f}")
            if (fold == 0 and record.curve.should_stop()) or (
                stop_at is not None and done >= stop_at
            ):
                raise _StopFit

        callback.fit_seconds = lambda: time.perf_counter() - started - paused
        return callback

    def _record_shared(
        self, trial: optuna.Trial, params: dict[str, Any], fits: list[_FitRecord], w: int
    ) -> _SharedTrial | None:
        """Start recording the fit's scores at ``w`` iterations as a trial of its own.

        Done as soon as every fold reached ``w``, while the fit goes on, so its MLflow run
        is made behind the fit; the trial runs (with a heartbeat, like any other) until
        :meth:`_complete_shared`. ``None`` when the study has no room left for it.
        """
        study = trial.study
        if self.config.n_trials is not None and self.config.count_shared:
            # Other workers may have filled the study since this fit began.
            progress = StudyProgress.of(study, count_shared=True)  # this trial runs
            if progress.finished + progress.running >= self.config.n_trials:
                return None
        grid = study.sampler if isinstance(study.sampler, sharing.GridSampler) else None
        metrics = _mean([f.shared[w] for f in fits], sums=(FIT_SECONDS, "eval_seconds"))
        full = {**params, sharing.ITERATIONS: w}
        storage = study._storage
        # Under the sampling lock, and only if no trial has taken the combination since
        # the fit began (another worker may have sampled it meanwhile).
        with self._sampling():
            now = study.get_trials(deepcopy=False)
            if not sharing.pending_iterations(now, params, [w], None):
                return None
            # Straight to the storage (as Study.add_trial does), running, to learn its
            # number, which names its MLflow run.
            trial_id = storage.create_new_trial(
                study._study_id,
                template_trial=optuna.trial.create_trial(
                    state=optuna.trial.TrialState.RUNNING,
                    params={name: full[name] for name in trial.params},
                    distributions=trial.distributions,
                    user_attrs={
                        "params": full,
                        "metrics": metrics,
                        sharing.SHARED_FIT_OF: trial.number,
                    },
                    system_attrs=grid.system_attrs(full) if grid else None,
                ),
            )
        number = storage.get_trial_number_from_id(trial_id)
        # It beats until completed, like the trial whose fit it comes from: were this
        # worker killed, it would go stale and be retried, not be left running.
        heartbeat = get_heartbeat_thread(trial_id, storage)
        heartbeat.start()
        try:
            run_id = self._start_trial_run(
                number,
                lambda made: storage.set_trial_user_attr(trial_id, "mlflow_run_id", made),
                shared_fit_of_trial=trial.number,
                state="COMPLETE",
            )
            self.tracker.log(run_id, params=full, metrics=metrics)
            self.tracker.end_run(run_id, "FINISHED")
        except BaseException:
            # Not to be completed: it must stop beating, go stale and be retried, not
            # beat for ever while every worker waits for it.
            heartbeat.join()
            raise
        values = [metrics[o.name] for o in self.objectives]
        return _SharedTrial(trial_id, number, values, run_id, heartbeat)

    def _complete_shared(self, trial: optuna.Trial, recorded: list[_SharedTrial]) -> None:
        """Complete the trials a fit recorded, once each has its run id.

        They beat until then: an MLflow slow to make their runs (down for a while, say)
        must not make them look stale to other workers. One that another worker failed
        as stale all the same is left failed (its parameters are queued again), with its
        run ended to match, and the fit's own trial goes on.
        """
        try:
            for shared in recorded:
                shared.run_id.wait()
        finally:
            for shared in recorded:  # no heartbeat thread outlives its fit
                shared.heartbeat.join()
        storage = trial.study._storage
        for shared in recorded:
            try:
                storage.set_trial_state_values(
                    shared.trial_id, optuna.trial.TrialState.COMPLETE, shared.values
                )
            except optuna.exceptions.UpdateFinishedTrialError:
                self.tracker.set_tags(
                    shared.run_id,
                    {"state": "FAIL", "error": "failed as stale by another worker first"},
                )
                self.tracker.end_run(shared.run_id, "KILLED")
                continue
            self.shared.append(shared.number)


@dataclass(frozen=True)
class _SharedTrial:
    """A trial recorded from another's fit (iteration sharing), running until the fit ends."""

    trial_id: int
    number: int
    values: list[float]
    run_id: PendingRun
    heartbeat: BaseHeartbeatThread


class _StopFit(Exception):
    """Raised by a fit's callback to end the fit early (early stopping)."""


#: User attribute of a trial fitted to an iteration budget (``iterations`` not searched):
#: its best checkpoint's count, the ``iterations`` it stands for.
BEST_ITERATION = "best_iteration"


def delivered_params(user_attrs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as the model it stands for: with early stopping, its best
    iteration count in place of the budget it was sampled with."""
    best = user_attrs.get(BEST_ITERATION)
    return params if best is None else {**params, sharing.ITERATIONS: int(best)}


@dataclass
class _FitRecord:
    """What one fit of a trial measured: its scores at checkpoints, its metrics, and
    those at shared counts."""

    curve: Curve
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    #: Metrics (with fit and eval seconds) at each shared iteration count reached.
    shared: dict[int, dict[str, float]] = field(default_factory=dict)
    #: What the pruner was shown at each checkpoint (first fold).
    reported: dict[int, float] = field(default_factory=dict)


def _mean(records: list[dict[str, float]], sums: tuple[str, ...] = ()) -> dict[str, float]:
    """Per-key mean over folds; the keys in ``sums`` are summed (seconds)."""
    return {
        name: float((np.sum if name in sums else np.mean)([r[name] for r in records]))
        for name in records[0]
    }


# --------------------------------------------------------------------------- results


def _check_writable(output: Path) -> None:
    """Refuse an --output that cannot be written, before any trial runs."""
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path(output), "a"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write --output {output}: {err.strerror or err}") from err


def read_best_hyperparameters(path: Path) -> dict[str, dict[str, Any]]:
    """The output file as a dict (empty if it does not exist yet).

    Raises
    ------
    ConfigError
        When the file is not valid JSON of the shape ``{"als": {...}, "bpr": {...}}``.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise ConfigError(
            f"{path} must map model names to parameter objects, like "
            '{"als": {"factors": 64}}; fix or delete it'
        )
    return document


def provenance_path(output: Path) -> Path:
    """Provenance sits beside the output: ``best_hyperparameters.provenance.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.provenance.json")


def write_best_hyperparameters(
    output: Path, model: str, params: dict[str, Any], provenance: dict[str, Any]
) -> None:
    """Replace ``model``'s entry in the output file, keeping every other model's entry.

    The read-modify-write runs under a file lock and each file is replaced atomically,
    so two tuning processes finishing together both keep their entries. The provenance
    is written first and names the parameters it is for (``params``): a process killed
    between the two writes leaves provenance that readers see does not match (see
    :func:`matching_provenance`), never parameters credited to another study.
    """
    output = Path(output)
    with file_lock(output):
        document = read_best_hyperparameters(output)
        prov_file = provenance_path(output)
        try:
            prov = json.loads(prov_file.read_text()) if prov_file.exists() else {}
        except (OSError, json.JSONDecodeError):
            prov = {}
        prov[model] = {**provenance, "params": params}
        write_json_atomic(prov_file, prov)
        failpoint("provenance_written")
        document[model] = params
        write_json_atomic(output, document)


def matching_provenance(output: Path, model: str) -> dict[str, Any]:
    """``model``'s provenance beside ``output``, if it is for the parameters there.

    Empty when there is none, or when it names other parameters: a tuning process was
    killed after writing the provenance and before the parameters. (Entries of earlier
    releases name none, and are taken as they are.)
    """
    prov_file = provenance_path(Path(output))
    try:
        entry = json.loads(prov_file.read_text()).get(model)
        params = read_best_hyperparameters(Path(output)).get(model)
    except (OSError, ValueError, AttributeError, DataError, ConfigError):
        return {}
    if not isinstance(entry, dict):
        return {}
    if "params" in entry and entry["params"] != params:
        log.warning(
            "%s: the provenance of %s is for other parameters (a tuning run was stopped "
            "while writing); it is not used",
            prov_file,
            model,
        )
        return {}
    return entry


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


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


def load_or_make_dataset(config: TuningConfig) -> SplitDataset:
    """Load the processed dataset; make the default synthetic one if it is missing."""
    try:
        return load_dataset(config.dataset, data_dir=config.data_dir)
    except DatasetNotFoundError:
        if config.dataset != "synthetic":
            raise
    from rectune.data.build import SourceSpec, build_dataset
    from rectune.data.interactions import FeedbackConfig
    from rectune.data.splits import SplitConfig
    from rectune.data.synthetic import SyntheticConfig

    build_dataset(
        SourceSpec(synthetic=SyntheticConfig(seed=config.seed)),
        FeedbackConfig(),
        SplitConfig(seed=config.seed),
        data_dir=config.data_dir,
    )
    return load_dataset(config.dataset, data_dir=config.data_dir)


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
    space = load_search_space(config.model, config.search_space)
    if config.resolved_sampler == "grid":
        space.grid()  # refuse continuous spaces before anything else
    read_best_hyperparameters(config.output)  # refuse a corrupt output file up front
    _check_writable(config.output)
    resolve_device(config.device)  # refuse cuda without a GPU before any run is made
    config = dataclasses.replace(config, n_jobs=parallel_trials(config, space))
    dataset = load_or_make_dataset(config)
    for objective in config.resolved_objectives:
        if objective.k is not None:
            check_list_length(objective.k, dataset.train.shape[1], "--k")
    if dataset.validation.nnz == 0 and config.cv_folds == 1:
        raise DataError(
            f"dataset {config.dataset!r} has an empty validation split; "
            "re-split it with a larger --validation-fraction"
        )
    on_stale = StaleTrialHandler()
    storage = _make_storage(config, on_stale)
    study = open_study(config, space, dataset, storage)
    if pruner is not None:
        study.pruner = pruner
    # Parallel trials are pruned on the trials every run has finished before them.
    study.pruner = parallel.in_trial_order(study.pruner, config.n_jobs)
    resumed = len(study.get_trials(deepcopy=False))
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
    tracker = Tracker(config.experiment_name, default=default_experiment(config.model))
    parent_id, worker = _join_study(study, storage, config, tracker, space, dataset)
    notes.extend(_reconcile_noted(study, tracker, parent_id))
    if worker:
        # Workers after the first sample from their own seed, so they do not all try
        # the same parameters; the first worker of a study keeps --seed's sequence.
        study.sampler = make_sampler(config.resolved_sampler, config.seed + worker, space)
        notes.append(
            f"run {worker + 1} to join this study: its sampler is seeded with "
            f"{config.seed + worker}"
        )
    status = "FAILED"
    interrupted = False
    try:
        if config.warm_start:
            queued = _warm_start(study, config, space)
            notes.append(f"warm start: {queued} parameter set(s) enqueued")
        runner = TrialRunner(config, space, dataset, tracker, parent_id, fit=fit, storage=storage)
        on_stale.on_stale.append(runner.end_stale_run)
        try:
            # MLflow writes go on in the background while the next model fits.
            with _quiet_optuna(), tracker.write_behind():
                _optimize(study, storage, runner, config, notes)
        except KeyboardInterrupt:
            # Keep what finished: write the best so far and the report, then stop.
            interrupted = True
            notes.append("interrupted: the trials finished so far are kept and reported")
        # What workers killed while this one ran left behind (this one's writes are done).
        notes.extend(_reconcile_noted(study, tracker, parent_id))
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
        result = _finish(
            study, config, tracker, parent_id, dataset, space, started, runner, notes, reports
        )
        result.resumed_trials = resumed
        result.interrupted = interrupted
        status = "KILLED" if interrupted else "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end_run(parent_id, status)


def _make_storage(config: TuningConfig, on_stale: StaleTrialHandler) -> BaseStorage:
    url = config.resolved_storage
    if same_database(url, tracking_uri()):
        raise ConfigError(
            f"--storage {redact_url(url)} is the MLflow tracking database; Optuna and "
            "MLflow cannot share one database (both keep alembic tables): give Optuna its "
            "own, e.g. models/optuna.journal"
        )
    return studies.make_storage(url, config.heartbeat, on_stale)


def _join_study(
    study: optuna.Study,
    storage: BaseStorage,
    config: TuningConfig,
    tracker: Tracker,
    space: SearchSpace,
    dataset: SplitDataset,
) -> tuple[str, int]:
    """Find or create the study's MLflow parent run; number this worker.

    Both happen under a lock held in the storage, so workers starting together agree
    on one parent run. The parent is kept per tracking store, experiment and ``mlflow
    run`` pipeline run (user attribute ``mlflow_parent_runs``); a resumed study reopens
    it. Returns the parent run's id and how many workers joined the study before.
    """
    pipeline, key = _parent_key(tracker)
    with studies.study_lock(storage, f"rectune/{study.study_name}"):
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
            parent_id = _unrecorded_parent(tracker, uid, pipeline)
            if parent_id is not None:
                parents[key] = parent_id
                study.set_user_attr(PARENT_RUNS_ATTR, parents)
        if parent_id:
            tracker.reopen_run(parent_id)
            return parent_id, worker
        tags = {
            "model": config.model,
            "dataset": config.dataset,
            "dataset_fingerprint": dataset.fingerprint,
            "study_name": study.study_name,
            "sampler": config.resolved_sampler,
            "pruner": "none" if config.multi_objective else config.pruner,
            "seed": config.seed,
            "optuna_storage": redact_url(config.resolved_storage),
            "objectives": ",".join(o.name for o in config.resolved_objectives),
            "search_space": space.source,
            "role": "tuning-parent",
            STUDY_UID_ATTR: uid,
        }
        parent_id = tracker.start_stage_run(study.study_name, tags=tags)
        failpoint("parent_run_created")
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
        parents[key] = parent_id
        study.set_user_attr(PARENT_RUNS_ATTR, parents)
        failpoint("parent_run_recorded")
    return parent_id, worker


def _parent_key(tracker: Tracker) -> tuple[str, str]:
    """The ``mlflow run`` pipeline run's id (or ``""``), and the key of the study's parent
    run in its user attribute ``mlflow_parent_runs``: tracking store, experiment and
    pipeline run."""
    pipeline = tracker.pipeline_run.info.run_id if tracker.pipeline_run else ""
    return pipeline, f"{redact_url(tracker.uri)}#{tracker.experiment_id}#{pipeline}"


def _unrecorded_parent(tracker: Tracker, uid: str, pipeline: str) -> str | None:
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
    repaired, orphans = [], []
    for run in tracker.find_runs(**{PARENT_TAG: parent_id}):
        number = run.tags.get("trial_number", "")
        trial = trials.get(int(number)) if number.isdigit() else None
        if run.status != "RUNNING" or trial is None or not trial.state.is_finished():
            continue
        if trial.user_attrs.get("mlflow_run_id") == run.run_id:
            _finish_run_from_trial(tracker, run.run_id, trial)
            repaired.append(trial.number)
        else:
            # Made for the trial, whose worker was killed before recording its id: the
            # trial failed for lack of heartbeats, and this is its run.
            recorded = trial.user_attrs.get("mlflow_run_id")
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


def _reconcile_noted(study: optuna.Study, tracker: Tracker, parent_id: str) -> list[str]:
    """:func:`reconcile_runs`, whose failure (MLflow down) is a note, not the end."""
    try:
        return reconcile_runs(study, tracker, parent_id)
    except Exception as err:
        return [f"could not check the MLflow runs against the study: {studies.first_line(err)}"]


def repair_study(config: TuningConfig) -> list[str]:
    """Only reconcile (``hyperparameter_tuning.py --repair``): make the MLflow runs of
    an existing study agree with its trials, and end its parent run when no trial is
    running; run no trial. Returns what was done, one line each."""
    storage = _make_storage(config, StaleTrialHandler())
    name = config.resolved_study_name
    if name not in {s.study_name for s in storage.get_all_studies()}:
        raise ConfigError(
            f"no study {name!r} in {redact_url(config.resolved_storage)} to repair "
            "(give --study-name and --storage as the study was run with)"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    tracker = Tracker(config.experiment_name, default=default_experiment(config.model))
    pipeline, key = _parent_key(tracker)
    parent_id = study.user_attrs.get(PARENT_RUNS_ATTR, {}).get(key)
    uid = study.user_attrs.get(STUDY_UID_ATTR)
    if parent_id is None and uid is not None:
        parent_id = _unrecorded_parent(tracker, uid, pipeline)
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


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, sorted(set(numbers))))


def _finish_run_from_trial(tracker: Tracker, run_id: str, trial: optuna.trial.FrozenTrial) -> None:
    state = trial.state.name
    params = trial.user_attrs.get("params", trial.params)
    tags: dict[str, Any] = {"state": state, "trial_number": trial.number, "repaired": "true"}
    metrics = {}
    if trial.state == optuna.trial.TrialState.COMPLETE:
        params = delivered_params(trial.user_attrs, params)
        metrics = dict(trial.user_attrs.get("metrics", {}))
    elif trial.state == optuna.trial.TrialState.PRUNED:
        tags["pruned"] = "true"
    else:
        tags["error"] = trial.user_attrs.get("error", "its worker was killed")
    tracker.log(run_id, params=params, metrics=metrics, tags=tags)
    status: RunStatus = "FINISHED"
    if state == "FAIL":  # stopped by the user (Ctrl-C) is KILLED, as the runner ends it
        status = "KILLED" if tags["error"] == studies.INTERRUPTED else "FAILED"
    tracker.end_run(run_id, status)


#: Seconds between looks at a study whose last trials other workers are running.
POLL_SECONDS = 2.0
#: Waits before each retry after losing the Optuna storage (about 30 s in all).
STORAGE_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _show_progress(study: optuna.Study, bar: StudyBar, count_shared: bool) -> StudyProgress:
    """The study's progress, from one read of its trials, shown on ``bar`` too."""
    trials = study.get_trials(deepcopy=False)
    progress = StudyProgress.of_trials(trials, count_shared=count_shared)
    bar.update(trials, progress)
    return progress


def _after_each_trial(
    target: int | None, bar: StudyBar, count_shared: bool
) -> Callable[[optuna.Study, Any], None]:
    """A callback that shows the study's progress and stops starting trials once
    finished and running ones (of every worker) make ``target``; the rest of the study
    is left to the workers running it."""

    def callback(study: optuna.Study, _trial: Any) -> None:
        failpoint("result_recorded")
        progress = _show_progress(study, bar, count_shared)
        if target is not None and progress.finished + progress.running >= target:
            study.stop()

    return callback


def _optimize(
    study: optuna.Study,
    storage: BaseStorage,
    runner: TrialRunner,
    config: TuningConfig,
    notes: list[str],
) -> None:
    """Run trials until the study holds ``config.n_trials`` finished ones.

    Trials other workers are running count as on their way; this worker waits for them
    (a dead worker's trial goes stale after its grace period, is failed and queued once
    more, and then run here). The loop also stops at the timeout, when the grid is used
    up, and after as many failed trials as were asked for (a broken setup should not
    spin). A lost storage connection is retried with backoff, then reported.
    """
    objective = config.resolved_objectives[0]
    bar = StudyBar(
        config.n_trials,
        objective.name,
        None if config.multi_objective else objective.direction,
        config.show_progress,
    )
    try:
        _run_trials(study, storage, runner, config, notes, bar)
    finally:
        bar.close()


def _run_trials(
    study: optuna.Study,
    storage: BaseStorage,
    runner: TrialRunner,
    config: TuningConfig,
    notes: list[str],
    bar: StudyBar,
) -> None:
    """The loop of :func:`_optimize`, showing its progress on ``bar``."""
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    target = config.n_trials
    retries = 0
    waiting_noted = False
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        try:
            studies.fail_stale_trials(study)
            progress = _show_progress(study, bar, config.count_shared)
            missing = None
            if target is not None:
                if progress.finished >= target:
                    return
                missing = target - progress.finished - progress.running
                if missing <= 0:
                    if not waiting_noted:
                        log.info("waiting for %d trial(s) of other workers", progress.running)
                        waiting_noted = True
                    time.sleep(POLL_SECONDS if remaining is None else min(POLL_SECONDS, remaining))
                    continue
                if runner.failed >= target:
                    notes.append(f"stopped after {runner.failed} failed trials")
                    return
            if isinstance(study.sampler, optuna.samplers.GridSampler) and (
                study.sampler.is_exhausted(study)
            ):
                return
            attempted = len(runner.ran) + len(runner.surplus)
            # Without a bar to draw or a size to reach, no need to read the study.
            callbacks = (
                [_after_each_trial(target, bar, config.count_shared)]
                if target is not None or bar.enabled
                else None
            )
            if config.n_jobs == 1:
                study.optimize(
                    runner,
                    n_trials=missing,
                    timeout=remaining,
                    catch=(Exception,),
                    callbacks=callbacks,
                    show_progress_bar=False,  # the study's own bar counts shared trials too
                )
            else:
                parallel.optimize_in_order(
                    study,
                    runner,
                    n_jobs=config.n_jobs,
                    n_trials=missing,
                    timeout=remaining,
                    catch=(Exception,),
                    callbacks=callbacks,
                    prepare=runner.prepare,
                    cancel=runner.cancelled,
                )
            retries = 0
            if target is None or len(runner.ran) + len(runner.surplus) == attempted:
                return  # the timeout, or a sampler that stopped the study
        except Exception as err:
            lost = studies.lost_connection(err)
            if lost is None:
                raise
            cause = studies.first_line(lost)
            shown = redact_url(config.resolved_storage)
            if retries == len(STORAGE_RETRY_DELAYS):
                raise StorageUnavailableError(
                    f"lost the Optuna storage {shown} ({cause}) and "
                    f"{retries} retries over {sum(STORAGE_RETRY_DELAYS):g} s did not bring "
                    "it back; finished trials are kept: run the same command to resume"
                ) from err
            if isinstance(storage, optuna.storages.RDBStorage):
                storage.remove_session()  # its transaction died with the connection
            delay = STORAGE_RETRY_DELAYS[retries]
            retries += 1
            log.warning(
                "lost the Optuna storage %s (%s); retry %d of %d in %g s",
                shown,
                cause,
                retries,
                len(STORAGE_RETRY_DELAYS),
                delay,
            )
            time.sleep(delay)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines (the progress bar says enough).

    Only ever raises the level: a caller that asked for ERROR keeps it.
    """
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _best_trial(study: optuna.Study, multi: bool) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if not multi:
        return study.best_trial
    front = study.best_trials
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(front, key=lambda t: (sign * t.values[0], -t.number))


def _finish(
    study, config, tracker, parent_id, dataset, space, started, runner, notes, reports
) -> TuningResult:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    mine = [by_number[n] for n in runner.ran if n in by_number]
    counts = {
        "complete": sum(t.state == states.COMPLETE for t in mine),
        "reused": sum(t.state == states.COMPLETE and "reused_from" in t.user_attrs for t in mine),
        "shared": len(runner.shared),
        # Models this worker fitted: its trials less the reused (and shared) ones.
        "fits": sum(
            t.state in (states.PRUNED, states.FAIL)
            or (t.state == states.COMPLETE and "reused_from" not in t.user_attrs)
            for t in mine
        ),
        "pruned": sum(t.state == states.PRUNED for t in mine),
        "failed": sum(t.state == states.FAIL for t in mine),
        "study_finished": StudyProgress.of_trials(
            trials, count_shared=config.count_shared
        ).finished,
        "study_shared": sum(studies.is_shared(t) for t in trials),
        "study_total": len(trials),
    }
    best = _best_trial(study, config.multi_objective)
    objectives = config.resolved_objectives
    best_params = best_values = None
    if best is not None:
        # The trial's own full parameters: a resumed study's fixed values may have changed.
        sampled = best.user_attrs.get("params", {**space.fixed, **best.params})
        delivered = delivered_params(best.user_attrs, sampled)
        order = list(HYPERPARAMETERS[config.model])  # the model's own order, for reading
        best_params = _jsonable(dict(sorted(delivered.items(), key=lambda kv: order.index(kv[0]))))
        best_values = {o.name: float(v) for o, v in zip(objectives, best.values, strict=True)}
        best_run = best.user_attrs.get("mlflow_run_id")
        if best_run:
            previous = study.user_attrs.get("best_run_id")
            if previous and previous != best_run:
                tracker.set_tags(previous, {"best_trial": "false"})
            tracker.set_tags(best_run, {"best_trial": "true"})
            study.set_user_attr("best_run_id", best_run)
        # Tags, not params: a resumed or shared study's best may change (params cannot).
        tracker.log(
            parent_id,
            metrics={f"best_{name}": value for name, value in best_values.items()},
            tags={
                **{f"best_{name}": value for name, value in best_params.items()},
                "best_run_id": best_run or "",
                "best_trial_number": best.number,
            },
        )
        write_best_hyperparameters(
            config.output,
            config.model,
            best_params,
            {
                "objectives": list(best_values),
                "values": best_values,
                "metric": objectives[0].name,
                "value": best_values[objectives[0].name],
                "k": objectives[0].k,
                "study_name": study.study_name,
                "storage": redact_url(config.resolved_storage),
                "trial_number": best.number,
                "parent_run_id": parent_id,
                "best_run_id": best_run,
                "dataset": config.dataset,
                "dataset_fingerprint": dataset.fingerprint,
                # Interactions each trial fitted (the mean over folds): BPR's final fit
                # makes as many SGD steps (model_training.py --final-epochs-from steps).
                "trained_interactions": round(
                    float(np.mean([train.nnz for train, _ in runner.folds]))
                ),
                "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "rectune_version": __version__,
            },
        )
    tracker.log(
        parent_id,
        metrics={
            "trials_total": counts["study_total"],
            "trials_finished": counts["study_finished"],
            "trials_failed": sum(
                t.state == states.FAIL and not t.user_attrs.get("surplus") for t in trials
            ),
        },
    )
    wall = time.perf_counter() - started
    summary = {
        "study": study.study_name,
        "model": config.model,
        "dataset": config.dataset,
        "objectives": [o.name for o in objectives],
        "sampler": config.resolved_sampler,
        "pruner": "none" if config.multi_objective else config.pruner,
        "best_trial": best.number if best else None,
        "best_values": best_values,
        "best_params": best_params,
        "counts": counts,
        "wall_seconds": round(wall, 1),
        "parent_run_id": parent_id,
    }
    report_path = reports.write_study_reports(
        study, summary, config.reports_dir, tracker, parent_id, seed=config.seed
    )
    return TuningResult(
        study=study,
        config=config,
        parent_run_id=parent_id,
        best_params=best_params,
        best_values=best_values,
        best_trial_number=best.number if best else None,
        counts=counts,
        wall_seconds=wall,
        report_path=report_path,
        experiment_name=tracker.experiment_name,
        tracking_uri=redact_url(tracker.uri),
        ui_hint=tracker.ui_hint(),
        notes=notes,
    )


__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "TUNING_METRICS",
    "Objective",
    "TuningConfig",
    "TuningResult",
    "checkpoint_iterations",
    "find_completed",
    "make_pruner",
    "open_study",
    "parse_objectives",
    "provenance_path",
    "read_best_hyperparameters",
    "run_tuning",
    "write_best_hyperparameters",
]
