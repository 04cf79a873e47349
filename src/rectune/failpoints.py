"""Named points where a test makes the process kill itself, to test crash safety.

``RECTUNE_FAILPOINT=NAME:COUNT`` (read once, when this module is first imported) makes
the process send itself SIGKILL the COUNT-th time it reaches the point NAME: no
``finally``, no exit handler, no flush runs, as when the machine dies. Unset, every
point is a no-op costing one comparison. Tests start real workers with it and then
check what the others and the next run make of what was left (FoundationDB, TiKV and
etcd test crash safety this way, instead of timing kills from outside).

The points, in the order a trial meets them:

``trial_started``
    the objective has the trial (created, parameters sampled), before anything else
``trial_run_created``
    MLflow made the trial's run; its id is not yet recorded with the trial
``trial_run_recorded``
    the run id is recorded with the trial
``objective_returned``
    the trial's result is computed (and queued for MLflow), not yet told to Optuna
``result_recorded``
    Optuna recorded the trial's result; its MLflow writes may still be queued
``run_ended``
    an MLflow run was ended (its writes before it are done)
``parent_run_created``
    the study's parent run exists, not yet recorded in the study
``parent_run_recorded``
    the parent run is recorded in the study
``before_rename``
    a file is written in full beside its target, not yet renamed over it
``provenance_written``
    the best parameters' provenance is written, the parameters not yet
``before_link``
    a folder's new version is written, its link not yet turned
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "RECTUNE_FAILPOINT"
POINTS = (
    "trial_started",
    "trial_run_created",
    "trial_run_recorded",
    "objective_returned",
    "result_recorded",
    "run_ended",
    "parent_run_created",
    "parent_run_recorded",
    "before_rename",
    "provenance_written",
    "before_link",
)


def _armed() -> tuple[str, int] | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in POINTS or not (count or "1").isdigit() or int(count or "1") < 1:
        raise SystemExit(f"{ENV}={value!r}: expected NAME[:COUNT] with NAME one of {POINTS}")
    return name, int(count or "1")


_ARMED = _armed()
_hits = 0
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Die here (SIGKILL) if ``RECTUNE_FAILPOINT`` names this point and its count is up."""
    global _hits
    if _ARMED is None or name != _ARMED[0]:
        return
    with _lock:
        _hits += 1
        if _hits == _ARMED[1]:
            os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "POINTS", "failpoint"]
