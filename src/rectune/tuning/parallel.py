"""Trials in parallel threads, with the study a seed reproduces.

Optuna's ``study.optimize(n_jobs=N)`` runs N trials in threads, and each thread asks
the sampler for its next trial when its last one ends; what a trial is proposed then
depends on which trials happened to finish first, so the same seed gives another study
on every run. :func:`optimize_in_order` runs N trials at once too, but moves the study
in trial order:

* trials are asked, and their parameters sampled, one at a time in the calling thread,
  trial ``n`` as soon as trial ``n - N`` has been told;
* results are told in trial order: a trial that ends before an earlier one waits,
  RUNNING with its heartbeat going, until every trial before it has been told.

So when trial ``n`` is proposed, trials up to ``n - N`` are finished and the N - 1
after them are running with known parameters, whatever the timing. Pruning is kept to
the same view by :class:`InTrialOrder`: trial ``n``'s pruner sees only the trials up
to ``n - N``. The result depends on N, not on how fast each trial runs.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from rectune.tuning._optuna import (
    BaseHeartbeatThread,
    clear_stop,
    is_heartbeat_enabled,
    set_in_optimize_loop,
    stop_requested,
    storage_of,
    trial_id_of,
)
from rectune.tuning.heartbeats import start_beating, stop_beating

TrialFunction = Callable[[optuna.Trial], float | Sequence[float]]
Callback = Callable[[optuna.Study, FrozenTrial], None]


class InTrialOrder(optuna.pruners.BasePruner):
    """Shows ``pruner`` only the trials told before the pruned trial was asked.

    With ``lag`` trials running at once, trial ``n`` was asked once trial ``n - lag``
    had been told, so those up to it are the ones every run sees (later ones may or
    may not have finished by the time ``n`` reaches a checkpoint).
    """

    def __init__(self, pruner: optuna.pruners.BasePruner, lag: int) -> None:
        self.pruner = pruner
        self.lag = lag

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.pruner.prune(_TrialsUpTo(study, trial.number - self.lag), trial)


class _TrialsUpTo:
    """``study`` as it reads with only its trials numbered up to ``last``."""

    def __init__(self, study: optuna.Study, last: int) -> None:
        self._study = study
        self._last = last

    def get_trials(
        self, deepcopy: bool = True, states: Iterable[TrialState] | None = None
    ) -> list[FrozenTrial]:
        states = None if states is None else tuple(states)
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.number <= self._last]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def in_trial_order(pruner: optuna.pruners.BasePruner, n_jobs: int) -> optuna.pruners.BasePruner:
    """``pruner`` for a study run by :func:`optimize_in_order` with ``n_jobs``.

    Optuna's Hyperband pruner is returned as it is: Optuna recognises it by its class to
    give the sampler its bracket's trials, so it cannot be wrapped, and its decisions
    depend on timing when trials run in parallel.
    """
    if n_jobs == 1 or isinstance(pruner, optuna.pruners.HyperbandPruner | optuna.pruners.NopPruner):
        return pruner
    return InTrialOrder(pruner, n_jobs)


@dataclass
class _Running:
    trial: optuna.Trial
    heartbeat: BaseHeartbeatThread
    result: Future[tuple[TrialState, Any, BaseException | None]]


def optimize_in_order(
    study: optuna.Study,
    func: TrialFunction,
    *,
    n_jobs: int,
    n_trials: int | None = None,
    timeout: float | None = None,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Iterable[Callback] | None = None,
    prepare: Callable[[optuna.Trial], Any] | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Run ``func`` on up to ``n_trials`` trials, ``n_jobs`` at once, in trial order.

    Like ``study.optimize`` (``catch``, ``callbacks``, ``study.stop()`` and heartbeats
    work as there), except that the study moves in trial order (see the module's
    docstring). ``prepare(trial)`` runs in the calling thread right after each ask:
    sample the trial's parameters there (``func``'s own suggestions then return them),
    so that the sampler is called in trial order too. When this raises, the trials
    still running are waited for and told as they ended; on Ctrl-C (an exception that
    is not an ``Exception``) ``cancel`` is set first, so that ``func`` can stop them.
    """
    cancel = cancel or threading.Event()
    cancel.clear()
    callbacks = list(callbacks or ())
    deadline = None if timeout is None else _now() + timeout
    window: deque[_Running] = deque()
    asked = 0
    # study.stop() may only be called inside an optimize loop, which Optuna tracks per
    # thread; the same flag is set in each worker thread below.
    set_in_optimize_loop(study, True)
    clear_stop(study)

    def may_ask() -> bool:
        return (
            not stop_requested(study)
            and (n_trials is None or asked < n_trials)
            and (deadline is None or _now() < deadline)
        )

    pool = ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="rectune-trial")
    try:
        while True:
            while len(window) < n_jobs and may_ask():
                window.append(_start(study, func, pool, prepare))
                asked += 1
            if not window:
                return
            running = window.popleft()
            state, values, error = running.result.result()
            frozen = _tell(study, running, state, values)
            for callback in callbacks:
                callback(study, copy.deepcopy(frozen))
            if state == TrialState.FAIL and error is not None and not isinstance(error, catch):
                raise error
    except BaseException as err:
        if not isinstance(err, Exception):
            cancel.set()  # Ctrl-C: func stops the running trials at its next check
        # The trials still in the window end (an error elsewhere leaves them be) and are
        # told as they ended; where the storage refuses that (it is what failed, say),
        # their heartbeats have stopped and they are failed as stale later.
        for running in window:
            state, values, _ = running.result.result()
            with contextlib.suppress(Exception):
                _tell(study, running, state, values)
        window.clear()
        raise
    finally:
        pool.shutdown(wait=True)
        set_in_optimize_loop(study, False)
        storage_of(study).remove_session()


def _start(
    study: optuna.Study,
    func: TrialFunction,
    pool: ThreadPoolExecutor,
    prepare: Callable[[optuna.Trial], Any] | None,
) -> _Running:
    if is_heartbeat_enabled(storage_of(study)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    trial = study.ask()
    heartbeat = start_beating(storage_of(study), trial_id_of(trial))
    try:
        if prepare is not None:
            prepare(trial)
        return _Running(trial, heartbeat, pool.submit(_call, study, func, trial))
    except BaseException:
        stop_beating(heartbeat)
        study.tell(trial, state=TrialState.FAIL)
        raise


def _call(
    study: optuna.Study, func: TrialFunction, trial: optuna.Trial
) -> tuple[TrialState, Any, BaseException | None]:
    set_in_optimize_loop(study, True)
    try:
        return TrialState.COMPLETE, func(trial), None
    except optuna.TrialPruned as err:
        return TrialState.PRUNED, None, err
    except (Exception, KeyboardInterrupt) as err:
        return TrialState.FAIL, None, err
    finally:
        set_in_optimize_loop(study, False)


def _tell(study: optuna.Study, running: _Running, state: TrialState, values: Any) -> FrozenTrial:
    stop_beating(running.heartbeat)
    if state == TrialState.COMPLETE:
        # No state: Optuna completes the trial, or fails it for a value it refuses (NaN,
        # say), as study.optimize does.
        return study.tell(running.trial, values, skip_if_finished=True)
    return study.tell(running.trial, state=state, skip_if_finished=True)


def _now() -> float:
    return time.monotonic()
