"""Heartbeats: a trial whose worker died is found, failed and queued once more.

Both storage kinds have heartbeats: a running trial whose worker stops beating for
``grace_period`` seconds (killed, or cut off from the database) is marked FAIL by the
next worker that looks, and its parameters are queued to run once more. A trial beats
from the moment it runs, and one that never beat (its worker lost between the two
writes) is stale once a worker has watched it silent for the grace period."""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from rectune.tuning._optuna import BaseHeartbeatThread, get_heartbeat_thread
from rectune.tuning.attributes import HEARTBEAT_ATTR

#: Seconds between a running trial's heartbeats; a trial is stale after GRACE_FACTOR of them.
DEFAULT_HEARTBEAT = 10


GRACE_FACTOR = 3


class StaleTrialHandler:
    """Called by Optuna for each trial it fails for lack of heartbeats.

    ``on_stale`` hooks run first (the tuner ends the trial's MLflow run there); then the
    trial's parameters are queued again, once (:class:`optuna.storages.
    RetryHeartbeatStaleTrialCallback` with ``max_retry=1``).
    """

    def __init__(self) -> None:
        self.on_stale: list[Callable[[FrozenTrial], None]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        for hook in self.on_stale:
            hook(trial)
        # The retry copies the attributes. The user attributes are the dead trial's own
        # (its MLflow run id, its metrics so far, the fit it was shared from), and its
        # worker's last heartbeat would make the retry look stale the moment it starts.
        trial = copy.copy(trial)
        trial.user_attrs = {}
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_ATTR}
        self._retry(study, trial)


class SilentTrials:
    """Running trials that never sent a heartbeat, and since when this worker saw them.

    Optuna calls a trial stale only when its last heartbeat is old, so a trial whose
    worker was killed or cut off after creating it and before its first heartbeat would
    run for ever, and workers waiting for the study to fill would wait for it for ever.
    Trials beat from the moment they run (see :class:`Database` and
    :class:`JournalFile`), so a silent one has lost its worker; it is stale once this
    worker has watched it silent for ``grace_period`` seconds, on this worker's clock
    (no clocks of two machines compared).
    """

    def __init__(self, grace_period: float, clock: Callable[[], float] = time.monotonic):
        self.grace_period = grace_period
        self._clock = clock
        self._since: dict[int, dict[int, float]] = {}  # study id -> trial id -> first seen
        self._lock = threading.Lock()  # parallel trials of one process look too

    def stale(self, study_id: int, silent: Iterable[int]) -> list[int]:
        """Of study ``study_id``'s trials now ``silent`` (ids read just before), those
        silent for the grace period."""
        now = self._clock()
        with self._lock:
            seen = self._since.get(study_id, {})
            seen = self._since[study_id] = {t: seen.get(t, now) for t in silent}
        return [t for t, since in seen.items() if now - since > self.grace_period]


class BeatFromTheStart:
    """A heartbeat storage whose trials beat from the moment they run.

    Optuna records a trial's first heartbeat only once ``study.ask()`` has returned, and
    never calls a trial with no heartbeat stale; see :class:`SilentTrials`. Creating a
    running trial beats too (:class:`Database` and :class:`JournalFile` each at their
    storage's point of creation).
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:  # a waiting trial taken to run
            self.record_heartbeat(trial_id)
        return changed


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials whose workers stopped sending heartbeats FAIL (and retry them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def start_beating(storage: BaseStorage, trial_id: int) -> BaseHeartbeatThread:
    """Start running trial ``trial_id``'s heartbeat, as Optuna's own loop does (a thread
    that does nothing where the storage has no heartbeats); :func:`stop_beating` stops it.

    Every heartbeat rectune runs outside Optuna's loop (trials run in trial order, trials
    recorded from another's fit) starts and stops here.
    """
    thread = get_heartbeat_thread(trial_id, storage)
    thread.start()
    return thread


def stop_beating(thread: BaseHeartbeatThread) -> None:
    """Stop a heartbeat :func:`start_beating` started, and wait for its thread."""
    thread.join()
