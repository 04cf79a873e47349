"""Optuna storage for studies that several workers share, and that survive crashes.

* A storage is a database URL (Optuna's RDB storage: PostgreSQL or MySQL for workers on
  several machines, ``sqlite:///`` for one) or the path of an Optuna **journal file**
  (:class:`JournalFile`, the default: one machine). A journal file appends one line per
  change and answers reads from memory, so a trial's bookkeeping costs about a tenth of
  what it costs in SQLite (see ``benchmarks/overhead.py``).
* Both kinds have **heartbeats**: a running trial whose worker stops beating for
  ``grace_period`` seconds (killed, or cut off from the database) is marked FAIL by the
  next worker that looks, and its parameters are queued to run once more. A trial beats
  from the moment it runs, and one that never beat (its worker lost between the two
  writes) is stale once a worker has watched it silent for the grace period.
* :func:`study_lock` is a lock across processes and machines, held in the storage itself
  (a PostgreSQL or MySQL advisory lock, a file lock beside a SQLite or journal file).
  Workers take it to find or create the study's MLflow parent run, so two never make two
  parents.
* :class:`StudyProgress` counts a study's trials by state; workers stop when the study
  holds the requested number of finished (complete or pruned) trials.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage

# Optuna's heartbeat interface, which RDBStorage implements, and the RDB storage's tables;
# not exported (pinned 5.0.0).
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.storages.journal._file import LOCK_FILE_SUFFIX
from optuna.trial import FrozenTrial, TrialState

from rectune import __version__
from rectune._io import database_lock, file_lock, write_bytes_atomic
from rectune.errors import ConfigError, RectuneError
from rectune.urls import has_raw_at_in_password, redact_text, redact_url

log = logging.getLogger(__name__)

#: Key in the study's user attributes describing what the study optimises.
STUDY_ATTR = "rectune"
#: Seconds between a running trial's heartbeats; a trial is stale after GRACE_FACTOR of them.
DEFAULT_HEARTBEAT = 10
GRACE_FACTOR = 3
#: The database driver's errors (through SQLAlchemy) meaning the storage could not be
#: reached, as opposed to bad input; Optuna raises them wrapped (see lost_connection).
CONNECTION_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: The ``error`` user attribute of a trial the user stopped (Ctrl-C): no fault of its
#: parameters.
INTERRUPTED = "interrupted"
#: User attribute of a trial recorded from another trial's fit: that trial's number.
SHARED_FIT_OF = "shared_fit_of"
#: System attribute of a journal file's running trial: its last heartbeat (Unix time).
HEARTBEAT_ATTR = "rectune:heartbeat"
_CREATE_ATTEMPTS = 5
_SQLITE_HEADER = b"SQLite format 3\x00"


class StorageUnavailableError(RectuneError):
    """The Optuna storage stopped answering and retries did not bring it back."""


def is_url(storage: str) -> bool:
    """Whether a ``--storage`` value is a database URL (else: a journal file's path)."""
    return "://" in storage


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other URLs)."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def same_database(a: str, b: str) -> bool:
    """Whether two SQLAlchemy-style URLs name the same database (SQLite by file)."""
    path_a, path_b = sqlite_path(a), sqlite_path(b)
    if path_a is not None and path_b is not None:
        return path_a.resolve() == path_b.resolve()
    return a.split("?")[0] == b.split("?")[0]


def lost_connection(err: BaseException) -> BaseException | None:
    """The storage connection error (:data:`CONNECTION_ERRORS`) behind ``err``, if any.

    Optuna wraps the driver's errors in a StorageInternalError (as it wraps every
    database error), and its bookkeeping can fail in turn while it handles one (5.0.0's
    ``_run_trial`` then raises an UnboundLocalError), so the chain of causes and of
    errors being handled is searched, as Python prints it.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, CONNECTION_ERRORS):
            return current
        seen.add(id(current))
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return None


def first_line(err: BaseException) -> str:
    """An exception's first line with any password in it redacted."""
    text = str(err).strip()
    return redact_text(text.splitlines()[0] if text else type(err).__name__)


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


class _BeatFromTheStart:
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


class Database(_BeatFromTheStart, optuna.storages.RDBStorage):
    """Optuna's RDB storage (a database URL), with heartbeats that leave no trial behind.

    Trials beat from the moment they run, a trial that never beat goes stale too
    (:class:`SilentTrials`), and a beat lost in a short outage does not stop the next.
    """

    def __init__(
        self,
        url: str,
        *,
        heartbeat: int,
        grace_period: int,
        on_stale: StaleTrialHandler,
        engine_kwargs: dict[str, Any],
    ) -> None:
        with warnings.catch_warnings():
            # heartbeat_interval is marked experimental; stable since Optuna 2.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale,
            )
        self._silent = SilentTrials(grace_period)

    def record_heartbeat(self, trial_id: int) -> None:
        # Optuna's heartbeat thread dies, with a traceback, at its first error: one beat
        # lost in a short outage would stop every later one and fail a trial that lived
        # through it. A trial whose beats stay lost goes stale, as it should.
        try:
            super().record_heartbeat(trial_id)
        except Exception as err:
            lost = lost_connection(err)
            if lost is None:
                raise
            log.warning(
                "lost the Optuna storage %s while recording a heartbeat (%s); a running "
                "trial is failed as stale if it stays lost for %d s",
                redact_url(self.url),
                first_line(lost),
                self.grace_period,
            )

    # Optuna's cache in front of an RDB storage creates trials through this one.
    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial._trial_id)
        return trial

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna's own check, which skips trials with no heartbeat, and the silent trials
        # it leaves, from one read of the running trials with their last beats.
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        with _create_scoped_session(self.scoped_session) as session:
            # The database's clock, which stamps the beats; naive, as the beats are
            # (PostgreSQL's now() is timezone-aware).
            now = session.scalar(sqlalchemy.select(sqlalchemy.func.now())).replace(tzinfo=None)
            beats = dict(
                session.query(trial.trial_id, beat.heartbeat)
                .outerjoin(beat, beat.trial_id == trial.trial_id)
                .filter(trial.study_id == study_id, trial.state == TrialState.RUNNING)
                .all()
            )
        grace = timedelta(seconds=self.grace_period)
        old = [t for t, at in beats.items() if at is not None and now - at > grace]
        return old + self._silent.stale(study_id, [t for t, at in beats.items() if at is None])


class JournalFile(_BeatFromTheStart, JournalStorage, BaseHeartbeat):
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
        beats = {t._trial_id: t.system_attrs.get(HEARTBEAT_ATTR) for t in running}
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


def _open_journal(path: Path, heartbeat: int, on_stale: StaleTrialHandler | None) -> JournalFile:
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


def _engine_kwargs(url: str) -> dict[str, Any]:
    if sqlite_path(url) is not None:
        # Two local processes (ALS and BPR tuned at once) take turns writing SQLite;
        # wait for the other's write instead of failing with "database is locked".
        return {"connect_args": {"timeout": 60}}
    # Connections a restarted database dropped are replaced, not used and failed.
    return {"pool_pre_ping": True}


def make_storage(
    url: str, heartbeat: int = DEFAULT_HEARTBEAT, on_stale: StaleTrialHandler | None = None
) -> BaseStorage:
    """A storage with heartbeats (stale after ``GRACE_FACTOR * heartbeat`` seconds): an
    RDB storage for a database URL, a :class:`JournalFile` for a path.

    Raises
    ------
    ConfigError
        When the URL's driver is missing or its database cannot be reached (the message
        has any password redacted), or the path is not a journal file.
    """
    if not is_url(url):
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.\-]+):/", url)
        if scheme:  # a mistyped URL, not a file name to create
            raise ConfigError(
                f"--storage {redact_url(url)} is neither a URL ({scheme[1]}://...) nor a "
                "journal file path; write the URL in full, e.g. "
                "postgresql://user@host:5432/optuna"
            )
        return _open_journal(Path(url), heartbeat, on_stale)
    if has_raw_at_in_password(url):
        raise ConfigError(
            f"--storage {redact_url(url)}: the password holds a raw '@', which the driver "
            "would read as the start of the host; write it percent-encoded, as %40"
        )
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            return Database(
                url,
                heartbeat=heartbeat,
                grace_period=GRACE_FACTOR * heartbeat,
                on_stale=on_stale or StaleTrialHandler(),
                engine_kwargs=_engine_kwargs(url),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
            # Workers starting together on an empty database race to create Optuna's
            # tables; the loser finds them made once the winner commits.
            error: Exception = err
            if attempt < _CREATE_ATTEMPTS:
                time.sleep(0.2 + random.random())
        except Exception as err:  # SQLAlchemy, driver and URL errors
            error = err
            break
    shown = redact_url(url)
    raise ConfigError(f"cannot open Optuna storage {shown}: {first_line(error)}") from error


def open_study(
    storage: BaseStorage,
    name: str,
    *,
    description: dict[str, Any],
    search_space_fingerprint: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    directions: list[str],
) -> optuna.Study:
    """Create the study, or load it to resume; refuse one made for something else.

    ``description`` (model, objectives, dataset fingerprint, ...) is stored with a new
    study; an existing study with a different one is refused, naming the difference.
    """
    shown = redact_url(storage.url)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
            load_if_exists=True,
        )
        existing = study.user_attrs.get(STUDY_ATTR)
        if existing is None:
            study.set_user_attr(
                STUDY_ATTR,
                {
                    **description,
                    "search_space": search_space_fingerprint,
                    "created_by": f"rectune {__version__}",
                },
            )
    except ValueError as err:  # a study of this name with other directions
        raise ConfigError(f"study {name!r} in {shown}: {first_line(err)}") from err
    except Exception as err:
        raise ConfigError(f"cannot open Optuna storage {shown}: {first_line(err)}") from err
    if existing is not None:
        for key, value in description.items():
            if existing.get(key) != value:
                raise ConfigError(
                    f"study {name!r} in {shown} was created with {key}={existing.get(key)!r}, "
                    f"not {value!r}; pick another --study-name to start a new study"
                )
    return study


@contextlib.contextmanager
def study_lock(storage: BaseStorage, name: str) -> Iterator[None]:
    """Hold a lock named ``name`` across every process using ``storage``.

    PostgreSQL: a session advisory lock; MySQL: ``GET_LOCK``; SQLite and journal files:
    an exclusive ``flock`` on a file beside the database (they share one machine).
    """
    if isinstance(storage, JournalFile):
        # Not PATH.lock: Optuna's own lock on the journal's appends is named so.
        with file_lock(storage.path.with_name(storage.path.name + ".study")):
            yield
        return
    assert isinstance(storage, optuna.storages.RDBStorage)
    with database_lock(storage.engine, storage.url, name):
        yield


@dataclass(frozen=True)
class StudyProgress:
    """How many of a study's trials finished (complete or pruned) and are running.

    Trials recorded from another trial's fit (user attribute :data:`SHARED_FIT_OF`) are
    counted only with ``count_shared``: by default they come on top of ``--n-trials``.
    """

    finished: int
    running: int

    @classmethod
    def of(cls, study: optuna.Study, *, count_shared: bool = False) -> StudyProgress:
        return cls.of_trials(study.get_trials(deepcopy=False), count_shared=count_shared)

    @classmethod
    def of_trials(
        cls, trials: Sequence[optuna.trial.FrozenTrial], *, count_shared: bool = False
    ) -> StudyProgress:
        states = [t.state for t in trials if count_shared or not is_shared(t)]
        return cls(
            finished=sum(s in FINISHED for s in states),
            running=states.count(TrialState.RUNNING),
        )


def is_shared(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` was recorded from another trial's fit (iteration sharing)."""
    return SHARED_FIT_OF in trial.user_attrs


def trials_ahead(
    trials: Sequence[optuna.trial.FrozenTrial], number: int, *, count_shared: bool = False
) -> int:
    """Trials (of a study's ``trials``) numbered below ``number`` that finished, run or
    wait to run (shared ones only with ``count_shared``).

    Trial numbers are handed out one at a time under a lock on the study's row, so this
    count orders the trials of every worker: a trial with ``n_trials`` ahead of it is
    surplus.
    """
    keep = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    return sum(
        t.number < number and t.state in keep and (count_shared or not is_shared(t)) for t in trials
    )


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials whose workers stopped sending heartbeats FAIL (and retry them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


__all__ = [
    "CONNECTION_ERRORS",
    "DEFAULT_HEARTBEAT",
    "HEARTBEAT_ATTR",
    "SHARED_FIT_OF",
    "STUDY_ATTR",
    "Database",
    "JournalFile",
    "SilentTrials",
    "StaleTrialHandler",
    "StorageUnavailableError",
    "StudyProgress",
    "fail_stale_trials",
    "is_shared",
    "is_url",
    "lost_connection",
    "make_storage",
    "open_study",
    "same_database",
    "study_lock",
    "trials_ahead",
]
