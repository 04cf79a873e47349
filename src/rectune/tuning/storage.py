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
import logging
import random
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from rectune import __version__
from rectune._io import connection_errors, database_lock, file_lock
from rectune.errors import ConfigError, RectuneError
from rectune.tuning._optuna import rdb_models, scoped_session, trial_id_of
from rectune.tuning.attributes import SHARED_FIT_OF, STUDY_ATTR
from rectune.tuning.heartbeats import (
    DEFAULT_HEARTBEAT,
    GRACE_FACTOR,
    BeatFromTheStart,
    SilentTrials,
    StaleTrialHandler,
)
from rectune.tuning.journal import JournalFile, open_journal
from rectune.urls import first_line, has_raw_at_in_password, redact_url

log = logging.getLogger(__name__)

#: The database driver's errors (through SQLAlchemy) meaning the storage could not be
#: reached, as opposed to bad input; Optuna raises them wrapped (see lost_connection).
CONNECTION_ERRORS = connection_errors()
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_CREATE_ATTEMPTS = 5


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


class Database(BeatFromTheStart, optuna.storages.RDBStorage):
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
            self.record_heartbeat(trial_id_of(trial))
        return trial

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna's own check, which skips trials with no heartbeat, and the silent trials
        # it leaves, from one read of the running trials with their last beats.
        trial, beat = rdb_models.TrialModel, rdb_models.TrialHeartbeatModel
        with scoped_session(self.scoped_session) as session:
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
        return open_journal(Path(url), heartbeat, on_stale)
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


def create_or_load_study(
    storage: BaseStorage,
    name: str,
    *,
    description: dict[str, Any],
    search_space_fingerprint: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    directions: list[str],
    metric_names: list[str] | None = None,
) -> optuna.Study:
    """Create the study, or load it to resume; refuse one made for something else.

    ``description`` (model, objectives, dataset fingerprint, ...) is stored with a new
    study; an existing study with a different one is refused, naming the difference.
    ``metric_names`` name the objectives for Optuna's own tools (optuna-dashboard shows
    ``precision@10``, not "Objective 0").
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
        if metric_names and study.metric_names != metric_names:
            # Experimental in Optuna since 3.2 and unchanged since; its warning would
            # reach every user of a new study.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(metric_names)
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


def objective_names(study: optuna.Study) -> list[str]:
    """The objectives (``precision@10``, ...) :func:`create_or_load_study` recorded in the
    study's description; empty for a study rectune did not make."""
    return list(study.user_attrs.get(STUDY_ATTR, {}).get("objectives") or [])


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
