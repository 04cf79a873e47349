"""Optuna's private API, in one place: what rectune needs that Optuna does not export.

Checked against optuna 5.0.0, the version ``requirements.txt`` pins; on an upgrade,
check these first. The rest of rectune uses Optuna's public API only.

* Heartbeats: the interface RDB storages implement (rectune's journal file implements it
  too) and the thread that beats while a trial runs.
* The RDB storage's tables and session, to read running trials and their last beats in
  one query.
* The journal file's lock suffix, to mend a lock a killed writer left.
* A study's storage and ids, and its per-thread "inside an optimize loop" flag (which
  ``study.stop()`` requires) with the stop flag, for trials run in trial order.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import (
    BaseHeartbeat,
    BaseHeartbeatThread,
    get_heartbeat_thread,
    is_heartbeat_enabled,
)
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session as scoped_session
from optuna.storages.journal._file import LOCK_FILE_SUFFIX
from optuna.trial import FrozenTrial


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage ``study`` reads and writes."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """``study``'s id in its storage."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    """``trial``'s id in its storage (unique across the storage's studies)."""
    return trial._trial_id


def set_in_optimize_loop(study: optuna.Study, inside: bool) -> None:
    """Mark the calling thread as inside (or outside) an optimize loop of ``study``, as
    ``study.optimize`` does; ``study.stop()`` refuses to run outside one."""
    study._thread_local.in_optimize_loop = inside


def stop_requested(study: optuna.Study) -> bool:
    """Whether ``study.stop()`` was called since :func:`clear_stop`."""
    return study._stop_flag


def clear_stop(study: optuna.Study) -> None:
    """Forget an earlier ``study.stop()``, as ``study.optimize`` does when it starts."""
    study._stop_flag = False


__all__ = [
    "LOCK_FILE_SUFFIX",
    "BaseHeartbeat",
    "BaseHeartbeatThread",
    "clear_stop",
    "get_heartbeat_thread",
    "is_heartbeat_enabled",
    "rdb_models",
    "scoped_session",
    "set_in_optimize_loop",
    "stop_requested",
    "storage_of",
    "study_id_of",
    "trial_id_of",
]
