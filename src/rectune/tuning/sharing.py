"""Iteration sharing: one fit serves every ``iterations`` value of a search space.

ALS and BPR in implicit iterate deterministically for a fixed ``random_state`` (BPR
with one thread): after ``w`` iterations of a fit asked for ``v > w``, the factors are
bit for bit those of a fit asked for ``w`` (``tests/tuning/test_tuning.py`` checks this for
both). So a trial whose ``iterations`` is ``v`` evaluates its model, through the fit
callback, at every smaller ``iterations`` choice ``w`` of the search space, and records
each as a completed trial of its own, with the values a separate fit would have given:
its parameters with ``iterations = w``, its metrics, and ``fit_seconds`` up to ``w``.
Such a trial carries the user attribute ``shared_fit_of`` (the trial that fitted it)
and gets its own MLflow child run, tagged ``shared_fit_of_trial``. It reports no
intermediate values (the fit's curve is its parent's, and counting it again would weigh
one fit several times in the pruner's comparisons), and by default it comes on top of
``--n-trials`` (``--count-shared`` counts it). A combination that was pruned is recorded
too when a longer fit passes its iteration count: its exact value is known then.

The grid sampler here visits the largest iteration count first, so on the default ALS
grid (4 x 4 x 4) 16 fits complete all 64 combinations. Sharing needs ``iterations`` to
be a categorical parameter (a fixed, small set of values); it is off otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from rectune.tracking import PendingRun, Tracker
from rectune.tuning._optuna import (
    BaseHeartbeatThread,
    storage_of,
    study_id_of,
    trial_id_of,
)
from rectune.tuning.attributes import (
    FIT_SECONDS,
    ITERATIONS,
    METRICS,
    PARAMS,
    RUN_ID,
    SHARED_FIT_OF,
    same_value,
)
from rectune.tuning.checkpoints import mean_of_folds
from rectune.tuning.heartbeats import start_beating, stop_beating
from rectune.tuning.search_space import SearchSpace
from rectune.tuning.storage import StudyProgress
from rectune.tuning.trial_run import trial_metrics

if TYPE_CHECKING:
    from rectune.tuning.fitting import FitRecord
    from rectune.tuning.plan import Objective, TuningConfig

#: Trials whose value is known, or on its way (WAITING: a retry, queued). A PRUNED
#: trial's is not: a longer fit that passes its iteration count records the exact value.
_KNOWN = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.RUNNING,
    optuna.trial.TrialState.WAITING,
)


def iteration_choices(space: SearchSpace) -> tuple[int, ...] | None:
    """The search space's ``iterations`` values, ascending, when it lists them."""
    distribution = space.distributions.get(ITERATIONS)
    if not isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return None
    return tuple(sorted(int(choice) for choice in distribution.choices))


def pending_iterations(
    trials: Sequence[optuna.trial.FrozenTrial],
    params: Mapping[str, Any],
    choices: Sequence[int],
    room: int | None,
) -> list[int]:
    """The ``iterations`` choices below ``params``'s whose value none of a study's
    ``trials`` knows yet (pruned ones included: a pruned combination is completed).

    At most ``room`` of them (the slots left in the study, when shared trials count
    towards its size; ``None``: no limit), the largest first, so a study of fixed size
    is not overfilled.
    """
    own = int(params[ITERATIONS])
    wanted = [w for w in choices if w < own]
    if not wanted:
        return []
    known = {
        int(p[ITERATIONS])
        for t in trials
        if t.state in _KNOWN
        and (p := t.user_attrs.get(PARAMS, t.params)).keys() == params.keys()
        and ITERATIONS in p
        and all(same_value(p[key], value) for key, value in params.items() if key != ITERATIONS)
    }
    pending = sorted((w for w in wanted if w not in known), reverse=True)
    return pending if room is None else pending[: max(room, 0)]


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, visiting the largest ``iterations`` first.

    Optuna's own gives trial ``n`` grid point ``n`` while ``n`` is below the grid size,
    which assumes every trial of the study came from it; trials recorded by iteration
    sharing take numbers too, so this one always draws among the unvisited points (at
    random, by its seed), and among those with the largest iteration count.
    :meth:`system_attrs` marks a recorded trial's point as visited.
    """

    def __init__(self, search_space: dict[str, list[Any]], seed: int | None = None) -> None:
        super().__init__(search_space, seed=seed)
        # Optuna keeps the grid as tuples in sorted parameter-name order.
        self._iterations_index = (
            self._param_names.index(ITERATIONS) if ITERATIONS in self._param_names else None
        )

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return  # a retried or enqueued trial keeps its point
        targets = self._get_unvisited_grid_ids(study) or list(range(len(self._all_grids)))
        if self._iterations_index is not None:
            largest = max(self._all_grids[i][self._iterations_index] for i in targets)
            targets = [i for i in targets if self._all_grids[i][self._iterations_index] == largest]
        grid_id = int(self._rng.rng.choice(targets))
        storage, trial_id = storage_of(study), trial_id_of(trial)
        storage.set_trial_system_attr(trial_id, "search_space", self._search_space)
        storage.set_trial_system_attr(trial_id, "grid_id", grid_id)

    def system_attrs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What marks ``params``'s grid point visited, for a trial added by hand."""
        point = tuple(params[name] for name in self._param_names)
        return {"search_space": self._search_space, "grid_id": self._all_grids.index(point)}


@dataclass(frozen=True)
class SharedTrial:
    """A trial recorded from another's fit (iteration sharing), running until the fit ends."""

    trial_id: int
    number: int
    values: list[float]
    run_id: PendingRun
    heartbeat: BaseHeartbeatThread


class IterationSharing:
    """Iteration sharing for one worker: which smaller counts a fit records, recording
    them as trials while the fit runs, and completing them when it ends.

    ``choices`` is ``None`` where sharing is off (then :meth:`pending` is always empty).
    ``start_run(number, record_id, **tags)`` makes a trial's MLflow run behind the fit;
    ``sampling()`` is the study's sampling lock.
    """

    def __init__(
        self,
        choices: tuple[int, ...] | None,
        config: TuningConfig,
        objectives: tuple[Objective, ...],
        tracker: Tracker,
        start_run: Callable[..., PendingRun],
        sampling: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> None:
        self.choices = choices
        self.config = config
        self.objectives = objectives
        self.tracker = tracker
        self._start_run = start_run
        self._sampling = sampling
        #: Numbers of the trials this worker recorded from its fits.
        self.shared: list[int] = []

    def pending(self, trials: list[optuna.trial.FrozenTrial], params: dict[str, Any]) -> list[int]:
        """The smaller ``iterations`` choices this trial's fit will record (sharing)."""
        if self.choices is None:
            return []
        room = None
        if self.config.n_trials is not None and self.config.count_shared:
            progress = StudyProgress.of_trials(trials, count_shared=True)  # this one runs
            room = self.config.n_trials - progress.finished - progress.running
        return pending_iterations(trials, params, self.choices, room)

    def record(
        self, trial: optuna.Trial, params: dict[str, Any], fits: list[FitRecord], w: int
    ) -> SharedTrial | None:
        """Start recording the fit's scores at ``w`` iterations as a trial of its own.

        Done as soon as every fold reached ``w``, while the fit goes on, so its MLflow run
        is made behind the fit; the trial runs (with a heartbeat, like any other) until
        :meth:`complete`. ``None`` when the study has no room left for it.
        """
        study = trial.study
        if self.config.n_trials is not None and self.config.count_shared:
            # Other workers may have filled the study since this fit began.
            progress = StudyProgress.of(study, count_shared=True)  # this trial runs
            if progress.finished + progress.running >= self.config.n_trials:
                return None
        grid = study.sampler if isinstance(study.sampler, GridSampler) else None
        metrics = mean_of_folds([f.shared[w] for f in fits], sums=(FIT_SECONDS, "eval_seconds"))
        full = {**params, ITERATIONS: w}
        storage = storage_of(study)
        # Under the sampling lock, and only if no trial has taken the combination since
        # the fit began (another worker may have sampled it meanwhile).
        with self._sampling():
            now = study.get_trials(deepcopy=False)
            if not pending_iterations(now, params, [w], None):
                return None
            # Straight to the storage (as Study.add_trial does), running, to learn its
            # number, which names its MLflow run.
            trial_id = storage.create_new_trial(
                study_id_of(study),
                template_trial=optuna.trial.create_trial(
                    state=optuna.trial.TrialState.RUNNING,
                    params={name: full[name] for name in trial.params},
                    distributions=trial.distributions,
                    user_attrs={
                        PARAMS: full,
                        METRICS: metrics,
                        SHARED_FIT_OF: trial.number,
                    },
                    system_attrs=grid.system_attrs(full) if grid else None,
                ),
            )
        number = storage.get_trial_number_from_id(trial_id)
        # It beats until completed, like the trial whose fit it comes from: were this
        # worker killed, it would go stale and be retried, not be left running.
        heartbeat = start_beating(storage, trial_id)
        try:
            run_id = self._start_run(
                number,
                lambda made: storage.set_trial_user_attr(trial_id, RUN_ID, made),
                shared_fit_of_trial=trial.number,
                state="COMPLETE",
            )
            self.tracker.log(run_id, params=full, metrics=trial_metrics(metrics))
            self.tracker.end_run(run_id, "FINISHED")
        except BaseException:
            # Not to be completed: it must stop beating, go stale and be retried, not
            # beat for ever while every worker waits for it.
            stop_beating(heartbeat)
            raise
        values = [metrics[o.name] for o in self.objectives]
        return SharedTrial(trial_id, number, values, run_id, heartbeat)

    def complete(self, trial: optuna.Trial, recorded: list[SharedTrial]) -> None:
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
                stop_beating(shared.heartbeat)
        storage = storage_of(trial.study)
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
