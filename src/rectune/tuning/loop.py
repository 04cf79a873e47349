"""The study loop: run trials until the study holds the requested number of finished ones."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage

from rectune.failpoints import failpoint
from rectune.progress import StudyBar
from rectune.tuning import parallel
from rectune.tuning.heartbeats import fail_stale_trials
from rectune.tuning.plan import TuningConfig
from rectune.tuning.storage import (
    StorageUnavailableError,
    StudyProgress,
    lost_connection,
)
from rectune.tuning.trial import TrialRunner
from rectune.urls import first_line

log = logging.getLogger(__name__)

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


def optimize(
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
    """The loop of :func:`optimize`, showing its progress on ``bar``."""
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    target = config.n_trials
    retries = 0
    waiting_noted = False
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        try:
            fail_stale_trials(study)
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
            _run_some(study, runner, config.n_jobs, missing, remaining, callbacks)
            retries = 0
            if target is None or len(runner.ran) + len(runner.surplus) == attempted:
                return  # the timeout, or a sampler that stopped the study
        except Exception as err:
            _wait_for_storage(err, storage, config.shown_storage, retries)
            retries += 1


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines (the progress bar says enough).

    Only ever raises the level: a caller that asked for ERROR keeps it.
    """
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _run_some(
    study: optuna.Study,
    runner: TrialRunner,
    n_jobs: int,
    n_trials: int | None,
    timeout: float | None,
    callbacks: list[Callable[[optuna.Study, Any], None]] | None,
) -> None:
    """Up to ``n_trials`` trials, one at a time (Optuna's loop) or ``n_jobs`` at once in
    trial order (:func:`rectune.tuning.parallel.optimize_in_order`)."""
    if n_jobs == 1:
        study.optimize(
            runner,
            n_trials=n_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=callbacks,
            show_progress_bar=False,  # the study's own bar counts shared trials too
        )
    else:
        parallel.optimize_in_order(
            study,
            runner,
            n_jobs=n_jobs,
            n_trials=n_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=callbacks,
            prepare=runner.prepare,
            cancel=runner.cancelled,
        )


def _wait_for_storage(err: Exception, storage: BaseStorage, shown: str, retries: int) -> None:
    """After ``err``: re-raise it unless it is a lost storage connection; then wait before
    retry ``retries + 1``, or give up once every delay of :data:`STORAGE_RETRY_DELAYS`
    was waited."""
    lost = lost_connection(err)
    if lost is None:
        raise err
    cause = first_line(lost)
    if retries == len(STORAGE_RETRY_DELAYS):
        raise StorageUnavailableError(
            f"lost the Optuna storage {shown} ({cause}) and "
            f"{retries} retries over {sum(STORAGE_RETRY_DELAYS):g} s did not bring "
            "it back; finished trials are kept: run the same command to resume"
        ) from err
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()  # its transaction died with the connection
    delay = STORAGE_RETRY_DELAYS[retries]
    log.warning(
        "lost the Optuna storage %s (%s); retry %d of %d in %g s",
        shown,
        cause,
        retries + 1,
        len(STORAGE_RETRY_DELAYS),
        delay,
    )
    time.sleep(delay)
