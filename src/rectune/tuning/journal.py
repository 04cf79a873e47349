"""The journal file, the default Optuna storage of one machine, and its mending.

A journal file appends one line per change and answers reads from memory, so a trial's
bookkeeping costs about a tenth of what it costs in SQLite (see
``benchmarks/overhead.py``). A worker killed while writing can leave a torn or merged
last line, or a stale lock: :func:`mend_journal` repairs them before the file is read."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from rectune._io import write_bytes_atomic
from rectune.errors import ConfigError
from rectune.tuning._optuna import LOCK_FILE_SUFFIX, BaseHeartbeat, trial_id_of
from rectune.tuning.attributes import HEARTBEAT_ATTR
from rectune.tuning.heartbeats import (
    GRACE_FACTOR,
    BeatFromTheStart,
    SilentTrials,
    StaleTrialHandler,
)
from rectune.urls import first_line

log = logging.getLogger(__name__)

_SQLITE_HEADER = b"SQLite format 3\x00"


class JournalFile(BeatFromTheStart, JournalStorage, BaseHeartbeat):
    """An Optuna journal file with heartbeats: studies of one machine's processes.

    Every change is one appended JSON line (under a file lock, so several processes may
    share the file); reads come from the state replayed in memory. A running trial's
    heartbeat is its system attribute :data:`HEARTBEAT_ATTR`; a trial silent for
    ``grace_period`` seconds is stale (clocks of one machine agree).
    """

    def __init__(
        self, path: Path, heartbeat: int, grace_period: int, on_stale: StaleTrialHandler
    ) -> None:
        self.path = path
        #: What messages show (a path holds no password).
        self.url = str(path)
        self._heartbeat = heartbeat
        self._grace_period = grace_period
        self._on_stale = on_stale
        self._silent = SilentTrials(grace_period)
        super().__init__(JournalFileBackend(str(path)))

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial_id)  # beats from the start; see SilentTrials
        return trial_id

    def record_heartbeat(self, trial_id: int) -> None:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        beats = {trial_id_of(t): t.system_attrs.get(HEARTBEAT_ATTR) for t in running}
        old = [
            t for t, beat in beats.items() if beat is not None and now - beat > self._grace_period
        ]
        return old + self._silent.stale(study_id, [t for t, beat in beats.items() if beat is None])

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialHandler:
        return self._on_stale


def _check_journal_line(path: Path, line: bytes) -> None:
    """Refuse a file whose first line is not an Optuna journal operation."""
    try:
        entry = json.loads(line)
        error = None if isinstance(entry, dict) and "op_code" in entry else "no op_code"
    except ValueError as err:  # not JSON (or not text)
        error = first_line(err)
    if error is not None:
        raise ConfigError(
            f"--storage {path} is not an Optuna journal file ({error}); give a new path, "
            "or a database URL"
        )


#: A journal's lock this old was left by a killed process: an append holds it for
#: milliseconds. (Optuna breaks it after 30 s of waiting, silently.)
STALE_LOCK_SECONDS = 10.0


_RECORD_START = b'{"op_code"'


def mend_journal(path: Path) -> list[str]:
    """Mend what a process killed while writing to journal ``path`` leaves behind, and
    return what was done (also logged as warnings).

    * A lock file older than :data:`STALE_LOCK_SECONDS` is removed.
    * A torn last record (no line end: the process died mid-append) is cut off. Left
      there, the next append would run on from it and make a line that Optuna cannot
      read, and the journal would be broken for good.
    * A line that is such a torn record with a whole one appended to it keeps only
      the whole record.
    """
    done = []
    lock = Path(f"{path}{LOCK_FILE_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        age = time.time() - os.lstat(lock).st_mtime
        if age > STALE_LOCK_SECONDS:
            lock.unlink(missing_ok=True)
            done.append(f"removed the lock {lock}, left {age:.0f} s ago by a killed process")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if data and (not data.endswith(b"\n") or data.count(_RECORD_START) > data.count(b"\n")):
        journal_lock = JournalFileSymlinkLock(str(path))
        journal_lock.acquire()
        try:
            data = path.read_bytes()  # as it is now, under the lock
            lines = data.split(b"\n")
            torn = lines.pop()  # after the last line end: empty, or a torn record
            mended = [_whole_record(line) for line in lines]
            if torn or mended != lines:
                write_bytes_atomic(path, b"".join(line + b"\n" for line in mended))
                if torn:
                    done.append(
                        f"cut a torn last record ({len(torn)} bytes) from {path}; a process "
                        "was killed while writing it"
                    )
                if mended != lines:
                    count = sum(a != b for a, b in zip(mended, lines, strict=True))
                    done.append(f"mended {count} record(s) of {path} run on from torn ones")
        finally:
            journal_lock.release()
    for line in done:
        log.warning(line)
    return done


def _whole_record(line: bytes) -> bytes:
    """``line``, or its last whole JSON record where a torn one runs into it."""
    with contextlib.suppress(ValueError):
        json.loads(line)
        return line
    start = line.rfind(_RECORD_START)
    if start > 0:
        with contextlib.suppress(ValueError):
            json.loads(line[start:])
            return line[start:]
    return line  # left for Optuna to refuse, with its own message


def open_journal(path: Path, heartbeat: int, on_stale: StaleTrialHandler | None) -> JournalFile:
    """A journal file (made if missing, mended if a killed process left it torn; see
    :func:`mend_journal`), or a ConfigError naming what is wrong with it."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 16)  # enough for one journal line
    except FileNotFoundError:
        first = b""
    except OSError as err:
        raise ConfigError(f"cannot open Optuna journal file {path}: {first_line(err)}") from err
    if first.startswith(_SQLITE_HEADER):
        raise ConfigError(
            f"--storage {path} is a SQLite database, not an Optuna journal file; "
            f"give it as a URL: sqlite:///{path.resolve()}"
        )
    if first:
        _check_journal_line(path, first)
        mend_journal(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalFile(
            path, heartbeat, GRACE_FACTOR * heartbeat, on_stale or StaleTrialHandler()
        )
    except (OSError, ValueError) as err:  # unreadable, or a broken line further on
        raise ConfigError(f"cannot open Optuna journal file {path}: {first_line(err)}") from err
