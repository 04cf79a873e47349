"""One trial: sample, reuse or fit, score, report to the pruner, log its MLflow run."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage

from rectune.data.store import SplitDataset
from rectune.errors import ConfigError
from rectune.failpoints import failpoint
from rectune.models import (
    fit_model,
    resolve_device,
)
from rectune.tracking import (
    PARENT_TAG,
    PendingRun,
    Tracker,
)
from rectune.tuning import sharing
from rectune.tuning.attributes import (
    BEST_ITERATION,
    METRICS,
    PARAMS,
    REUSED_FROM,
    RUN_ID,
    SURPLUS,
    same_params,
)
from rectune.tuning.best_params import delivered_params
from rectune.tuning.fitting import FoldScorer, TrialFitter
from rectune.tuning.plan import TuningConfig, parallel_trials
from rectune.tuning.runs import tuning_inputs
from rectune.tuning.search_space import SearchSpace
from rectune.tuning.sharing import IterationSharing
from rectune.tuning.storage import study_lock, trials_ahead
from rectune.tuning.trial_run import TrialRun

log = logging.getLogger(__name__)


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
        earlier = trial.user_attrs.get(PARAMS, trial.params)
        if trial.number != exclude and same_params(earlier, params):
            return trial
    return None


def _thread_shares(model: str, n_jobs: int) -> tuple[int | None, int]:
    """(fit threads, evaluation threads) of each of ``n_jobs`` trials run at once.

    Parallel trials share the cores. BPR stays on its deterministic single thread; None
    and 0 mean the defaults (all cores for ALS and for evaluation).
    """
    share = max(1, (os.cpu_count() or 1) // n_jobs)
    return (share if n_jobs > 1 and model == "als" else None), (share if n_jobs > 1 else 0)


def _is_finite(space: SearchSpace) -> bool:
    """Whether ``space`` has finitely many combinations."""
    try:
        space.grid()
    except ConfigError:
        return False
    return True


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
        self.inputs = tuning_inputs(dataset)
        self.objectives = config.resolved_objectives
        self.fit = fit
        self.device = resolve_device(config.device)
        n_jobs = parallel_trials(config, space)
        self.num_threads, eval_threads = _thread_shares(config.model, n_jobs)
        self.scorer = FoldScorer(config, dataset, self.objectives, eval_threads)
        #: The (train, held-out) pairs every trial fits and is scored on.
        self.folds = self.scorer.folds
        # Parallel trials of one process could overfill the study with shared trials
        # (each counts the room before the other records), so sharing needs n_jobs 1.
        self.sharing = IterationSharing(
            sharing.iteration_choices(space) if config.share_iterations and n_jobs == 1 else None,
            config,
            self.objectives,
            tracker,
            self._start_trial_run,
            self._sampling,
        )
        #: Set to stop every running fit at its next iteration (Ctrl-C, parallel trials).
        self.cancelled = threading.Event()
        #: The study as :meth:`prepare` read it for each trial, by number.
        self._prepared: dict[int, list[optuna.trial.FrozenTrial]] = {}
        #: Whether the space has finitely many combinations, each to be tried once.
        self.finite = _is_finite(space)
        self._sampling_lock = f"rectune/{config.resolved_study_name}/sampling"
        self.fitter = TrialFitter(
            config,
            space,
            self.objectives,
            self.scorer,
            self.sharing,
            tracker,
            fit=fit,
            device=self.device,
            num_threads=self.num_threads,
            cancelled=self.cancelled,
        )

    @property
    def shared(self) -> list[int]:
        """Numbers of the trials this worker recorded from its fits (iteration sharing)."""
        return self.sharing.shared

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
            return study_lock(self.storage, self._sampling_lock)
        return contextlib.nullcontext()

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        target = self.config.n_trials
        # One read of the study serves the surplus check, reuse and sharing.
        trials = self._prepared.pop(trial.number, None)
        if trials is None:
            trials = trial.study.get_trials(deepcopy=False)
        ahead = trials_ahead(trials, trial.number, count_shared=self.config.count_shared)
        if target is not None and ahead >= target:
            # Another worker took the last trial the study needed while this one was
            # being created: stop without a run, and let the study's count decide.
            self.surplus.append(trial.number)
            trial.set_user_attr(SURPLUS, True)
            trial.study.stop()
            raise SurplusTrial(f"the study already has {target} trials")
        self.ran.append(trial.number)
        failpoint("trial_started")
        # The run is made behind the fit; its id joins the trial's attributes as soon
        # as it exists (a killed worker's run is found and ended through it).
        run = TrialRun(
            trial,
            self._start_trial_run(trial.number, lambda made: trial.set_user_attr(RUN_ID, made)),
            self.tracker,
        )
        try:
            with run.ending():
                # In here: a failure to sample is a failed trial, counted as one.
                run.params = params = self._suggest(trial)
                trial.set_user_attr(PARAMS, params)
                previous = find_completed(trials, params, exclude=trial.number)
                if previous is not None:
                    value = self._reuse(trial, previous, run, params)
                else:
                    value = self.fitter.fit_trial(trial, params, run, trials)
                failpoint("objective_returned")
                return value
        except Exception as err:
            if not isinstance(err, optuna.TrialPruned):
                self.failed += 1
            raise

    def _start_trial_run(
        self, number: int, record_id: Callable[[str], Any], **tags: Any
    ) -> PendingRun:
        """Trial ``number``'s child run, made behind the caller; ``record_id(run_id)``
        stores its id with the Optuna trial as soon as it exists."""
        run = self.tracker.start_run_behind(
            f"trial-{number}",
            parent_id=self.parent_id,
            tags={**self._trial_tags(number), **tags},
            then=record_id,
        )
        self.tracker.log_inputs(run, self.inputs)
        return run

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
            run_id = trial.user_attrs.get(RUN_ID) or self._run_of_unrecorded(trial)
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
        run: TrialRun,
        params: dict[str, Any],
    ) -> float | tuple[float, ...]:
        trial.set_user_attr(REUSED_FROM, previous.number)
        metrics = previous.user_attrs.get(METRICS, {})
        trial.set_user_attr(METRICS, metrics)
        if BEST_ITERATION in previous.user_attrs:
            trial.set_user_attr(BEST_ITERATION, previous.user_attrs[BEST_ITERATION])
        run.complete(
            delivered_params(previous.user_attrs, params),
            metrics,
            tags={"reused_from_trial": previous.number},
        )
        values = tuple(previous.values)
        return values if self.config.multi_objective else values[0]
