"""MLflow tracking: the only module of rectune that talks to MLflow.

Every call names its run explicitly through :class:`mlflow.MlflowClient`; nothing uses
MLflow's per-thread "active run", so trials running in parallel threads each log to
their own run. The tracking store is MLflow's own choice: ``MLFLOW_TRACKING_URI`` when
set, otherwise MLflow 3's default (``sqlite:///mlflow.db`` in the current directory,
artifacts under ``./mlruns``).

Stages link up under ``mlflow run``: it starts a run for the project and hands its id to
the command in ``MLFLOW_RUN_ID``. Each stage's top run (the tuning parent, the training
run, the evaluation run) then goes into that run's experiment as its child, so the
pipeline run in the UI leads to every stage; trials nest one level further down.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from rectune._io import database_lock
from rectune.config import PROJECT_ROOT
from rectune.errors import ConfigError
from rectune.failpoints import failpoint
from rectune.urls import redact_text, redact_url

log = logging.getLogger(__name__)

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
PARENT_TAG = "mlflow.parentRunId"
#: ``mlflow run`` passes the id of the project's run to its command in this variable.
PIPELINE_RUN_ENV = "MLFLOW_RUN_ID"
#: Tag naming the ``mlflow run`` pipeline run a stage ran under.
PIPELINE_TAG = "rectune.pipeline_run_id"
#: The pyfunc model's name inside a training run (its artifact folder).
PYFUNC_NAME = "recommender"
#: Tags of a stage run naming the machine and process it ran in.
HOST_TAG = "rectune.host"
PID_TAG = "rectune.pid"
#: MLflow keeps param values up to this length.
_MAX_PARAM_LENGTH = 6000


def tracking_uri() -> str:
    """The tracking URI in use (MLflow's default when ``MLFLOW_TRACKING_URI`` is unset)."""
    return mlflow.get_tracking_uri()


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The checked-out commit of the project, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def default_experiment(model: str) -> str:
    """The MLflow experiment a model's tuning and training runs share."""
    return f"rectune-{model}"


def source_tags() -> dict[str, str]:
    """Tags every rectune run carries: its version and, in a checkout, the git commit."""
    from rectune import __version__

    tags = {"rectune_version": __version__}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def pipeline_run_id() -> str | None:
    """The run ``mlflow run`` started for this pipeline, when running under it."""
    return os.environ.get(PIPELINE_RUN_ENV) or None


def mlflow_key(name: str) -> str:
    """A metric or param name MLflow accepts: ``precision@10`` -> ``precision_at_10``."""
    return name.replace("@", "_at_")


class PendingRun:
    """A run :meth:`Tracker.start_run_behind` asked for; the writer thread makes it.

    Pass it wherever a run id goes; writes queued for it wait for it to exist.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._settled = threading.Event()

    def settle(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._settled.set()

    def wait(self) -> str | None:
        """The run's id once it exists and its ``then`` hook ran (``None`` if creating
        it failed: the failure is in :attr:`Tracker.write_errors`)."""
        self._settled.wait()
        return self.run_id


#: A run, by id or pending.
RunRef = str | PendingRun


def _run_id(run: RunRef) -> str | None:
    return run.run_id if isinstance(run, PendingRun) else run


class _WriteQueue:
    """Writes for one background thread: urgent ones (run creations) go first."""

    def __init__(self) -> None:
        self._urgent: collections.deque[Callable[[], Any]] = collections.deque()
        self._rest: collections.deque[Callable[[], Any]] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False

    def put(self, write: Callable[[], Any], *, urgent: bool = False) -> None:
        with self._ready:
            (self._urgent if urgent else self._rest).append(write)
            self._ready.notify()

    def close(self) -> None:
        """Let the writer finish what is queued, then stop."""
        with self._ready:
            self._closing = True
            self._ready.notify()

    def get(self) -> Callable[[], Any] | None:
        """The next write; ``None`` once closing and empty."""
        with self._ready:
            self._ready.wait_for(lambda: self._closing or self._urgent or self._rest)
            if self._urgent or self._rest:
                return (self._urgent or self._rest).popleft()
            return None


def _stringify(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


#: Seconds to wait for a tracking server's first answer; MLflow's own retries take
#: minutes to give up on one that is not there.
REACH_TIMEOUT = 10.0


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT) -> None:
    """Refuse an ``http(s)://`` tracking server that does not answer in ``timeout``
    seconds (any HTTP answer will do: it is there); other stores are left to MLflow."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    # Without the credentials: urllib reads none from the URL, and /health needs none.
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        pass  # a bad port: the request below fails and says so
    health = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", "")
    )
    try:
        urllib.request.urlopen(health, timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise ConfigError(
            f"cannot reach the MLflow tracking server {redact_url(uri)} "
            f"({redact_text(str(reason))}); start it, or unset MLFLOW_TRACKING_URI to "
            "track to the local mlflow.db"
        ) from err


_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def initialize_store(uri: str) -> None:
    """Create a fresh database store's tables once, under a lock held in the database.

    MLflow creates them when a client first opens the store, with no lock: two
    processes opening a fresh store together both run its migrations, and one fails
    (``table alembic_version already exists`` on SQLite, ``Online migration expected to
    match one row`` on PostgreSQL), as two workers started at once on a new machine do.
    """
    if urllib.parse.urlsplit(uri).scheme.split("+")[0] not in _DATABASE_SCHEMES:
        return
    import sqlalchemy
    from mlflow.store.db.utils import _all_tables_exist, _initialize_tables

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(uri)
    try:
        if _all_tables_exist(engine):
            return
        with database_lock(engine, uri, "rectune/mlflow-store"):
            if not _all_tables_exist(engine):  # another process may have made them
                with _quiet_mlflow():
                    _initialize_tables(engine)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class FoundRun:
    """A run :meth:`Tracker.find_runs` found: its id, status and tags."""

    run_id: str
    status: str
    tags: dict[str, str]


class Tracker:
    """Logs runs of one MLflow experiment by explicit run id (thread-safe).

    Parameters
    ----------
    experiment_name : str, optional
        Created if it does not exist yet. ``None`` picks the experiment of the
        ``mlflow run`` pipeline run when there is one, else ``default``.
    default : str
        The experiment used when none is named and no pipeline run is found.
    """

    def __init__(self, experiment_name: str | None, *, default: str = "rectune") -> None:
        # With a tracking server MLflow prints a "View run" link whenever a run ends;
        # the scripts print one summary instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        #: Writes queued by :meth:`write_behind`, and the errors of those that failed.
        self._writes: _WriteQueue | None = None
        self.write_errors: list[str] = []
        self.uri = tracking_uri()
        self.pipeline_run = None
        check_reachable(self.uri)
        try:
            initialize_store(self.uri)
            self.client = MlflowClient()
        except Exception as err:  # an unknown scheme, a malformed URI
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"cannot use MLflow tracking store {redact_url(self.uri)}: {redact_text(reason)}"
            ) from err
        try:
            pipeline_id = pipeline_run_id()
            if pipeline_id is not None:
                self.pipeline_run = self.client.get_run(pipeline_id)
            if experiment_name is None and self.pipeline_run is not None:
                self.experiment_id = self.pipeline_run.info.experiment_id
                self.experiment_name = self.client.get_experiment(self.experiment_id).name
                return
            self.experiment_name = experiment_name or default
            self.experiment_id = self._find_or_create_experiment(self.experiment_name)
        except MlflowException as err:
            raise ConfigError(
                f"cannot use MLflow tracking store {redact_url(self.uri)}: "
                f"{redact_text(str(err).splitlines()[0])}"
            ) from err

    def _find_or_create_experiment(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException as err:
            # Another worker created it between the lookup and the create.
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise err from None
            return experiment.experiment_id

    def start_stage_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> str:
        """Create a stage's top run: a child of the ``mlflow run`` pipeline run if any.

        The run carries :func:`source_tags`. It is nested only when the pipeline run is
        in the same experiment (the UI nests within one experiment); it is tagged with
        the pipeline run's id either way.
        """
        # Where it runs: a run this machine's killed process left RUNNING is found by it.
        tags = {
            **(tags or {}),
            **source_tags(),
            HOST_TAG: socket.gethostname(),
            PID_TAG: os.getpid(),
        }
        parent_id = None
        if self.pipeline_run is not None:
            tags[PIPELINE_TAG] = self.pipeline_run.info.run_id
            if self.pipeline_run.info.experiment_id == self.experiment_id:
                parent_id = self.pipeline_run.info.run_id
        return self.start_run(run_name, parent_id=parent_id, tags=tags)

    def start_run(
        self, run_name: str, *, parent_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Create a run (nested under ``parent_id`` when given); return its id."""
        all_tags = {key: _stringify(value) for key, value in (tags or {}).items()}
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        return run.info.run_id

    def start_run_behind(
        self,
        run_name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        then: Callable[[str], Any] | None = None,
    ) -> PendingRun:
        """Like :meth:`start_run`, but within :meth:`write_behind` the run is made by the
        writer thread (before any other queued write) and the caller goes on at once.

        ``then(run_id)`` runs as soon as the run exists (a tuning trial records the id
        with Optuna there); :meth:`PendingRun.wait` returns once it has.
        """
        pending = PendingRun()

        def create() -> None:
            run_id = None
            try:
                run_id = self.start_run(run_name, parent_id=parent_id, tags=tags)
                failpoint("trial_run_created")
                if then is not None:
                    then(run_id)
                    failpoint("trial_run_recorded")
            finally:
                pending.settle(run_id)

        if self._writes is None:
            create()
        else:
            self._writes.put(lambda: self._attempt(create), urgent=True)
        return pending

    def log(
        self,
        run_id: RunRef,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
        history: Mapping[str, Mapping[int, float]] | None = None,
    ) -> None:
        """Log params, metrics (at ``step``), tags and metric histories (``{name: {step:
        value}}``) in one batch call."""
        now = int(time.time() * 1000)
        self._write(
            self.client.log_batch,
            run_id,
            metrics=[
                Metric(mlflow_key(key), float(value), now, step)
                for key, value in (metrics or {}).items()
            ]
            + [
                Metric(mlflow_key(key), float(value), now, at)
                for key, values in (history or {}).items()
                for at, value in values.items()
            ],
            params=[
                Param(mlflow_key(key), _stringify(value)) for key, value in (params or {}).items()
            ],
            tags=[RunTag(key, _stringify(value)) for key, value in (tags or {}).items()],
        )

    def set_tags(self, run_id: RunRef, tags: Mapping[str, Any]) -> None:
        self.log(run_id, tags=tags)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def end_run(self, run_id: RunRef, status: RunStatus = "FINISHED") -> None:
        def end(run: str, status: RunStatus) -> None:
            self.client.set_terminated(run, status=status)
            failpoint("run_ended")

        self._write(end, run_id, status=status)

    @contextlib.contextmanager
    def write_behind(self) -> Iterator[None]:
        """Within the block, :meth:`start_run_behind`, :meth:`log`, :meth:`set_tags` and
        :meth:`end_run` are queued and done by one background thread (run creations
        first, the rest in order), so the caller goes on (a tuning study fits its next
        model) while MLflow writes. The block ends when every queued write is done. A
        write that fails is logged as a warning and kept in :attr:`write_errors`; it does
        not stop the caller.
        """
        if self._writes is not None:  # already writing behind
            yield
            return
        writes = _WriteQueue()

        def drain() -> None:
            while (write := writes.get()) is not None:
                self._attempt(write)

        writer = threading.Thread(target=drain, name="mlflow-writer", daemon=True)
        writer.start()
        self._writes = writes
        try:
            yield
        finally:
            self._writes = None
            writes.close()
            writer.join()

    def _attempt(self, write: Callable[[], Any]) -> None:
        """Do a queued write; a failure becomes a warning (the study goes on)."""
        try:
            write()
        except Exception as err:
            message = redact_text(f"{type(err).__name__}: {str(err).splitlines()[0]}")
            self.write_errors.append(message)
            log.warning("an MLflow write failed: %s", message)

    def _write(self, call: Callable[..., Any], run: RunRef, **kwargs: Any) -> None:
        """``call(run_id, **kwargs)``, now or queued; skipped for a run whose creation
        failed (that failure was reported once)."""

        def write() -> None:
            run_id = _run_id(run)
            if run_id is not None:
                call(run_id, **kwargs)

        if self._writes is None:
            write()
        else:
            self._writes.put(write)

    def find_runs(self, **tags: Any) -> list[FoundRun]:
        """Live runs of this experiment carrying every tag of ``tags`` (values as
        strings), newest first."""
        conditions = " and ".join(
            f"tags.`{name}` = '{str(value).replace(chr(39), chr(39) * 2)}'"
            for name, value in tags.items()
        )
        found, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=conditions,
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            found += [FoundRun(r.info.run_id, r.info.status, dict(r.data.tags)) for r in page]
            token = page.token
            if not token:
                return found

    def end_dead_runs(self, role: str) -> list[str]:
        """End the stage runs of ``role`` that a killed process of this machine left
        RUNNING (its pid is gone); return their ids. Runs of live processes, and of
        other machines, are left be."""
        ended = []
        for run in self.find_runs(role=role, **{HOST_TAG: socket.gethostname()}):
            pid = run.tags.get(PID_TAG, "")
            if run.status != "RUNNING" or not pid.isdigit() or _alive(int(pid)):
                continue
            self.set_tags(run.run_id, {"error": "its process was killed before it ended"})
            self.end_run(run.run_id, "KILLED")
            ended.append(run.run_id)
        return ended

    def status(self, run_id: str) -> str | None:
        """``run_id``'s status (``RUNNING``, ``FINISHED``...), ``None`` if there is none."""
        try:
            return self.client.get_run(run_id).info.status
        except MlflowException:
            return None

    def run_in_experiment(self, run_id: str) -> bool:
        """Whether ``run_id`` is a live (not deleted) run of this tracker's experiment."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active"

    def reopen_run(self, run_id: str) -> None:
        """Mark a finished run RUNNING again (a resumed study's parent run)."""
        self.client.update_run(run_id, status="RUNNING")

    def ui_hint(self) -> str:
        """How to look at this store's runs in a browser."""
        shown = redact_url(self.uri)
        if self.uri.startswith(("http://", "https://")):
            return f"open {shown} in a browser"
        if self.uri in (f"sqlite:///{Path.cwd() / 'mlflow.db'}", "sqlite:///mlflow.db"):
            command = "mlflow ui"
        else:
            command = f"mlflow ui --backend-store-uri '{shown}'"
        return f"see it with `{command}`, then open http://127.0.0.1:5000"

    def log_recommender(
        self, run_id: str, model_dir: Path, example_users: list[Any], k: int
    ) -> str:
        """Log a model folder to ``run_id`` as an MLflow pyfunc model; return its URI.

        The pyfunc model carries the folder and the ``rectune`` package itself, so it
        loads anywhere the pinned requirements are installed. Its signature takes a
        ``user_id`` column and returns ``user_id, rank, item_id, score`` rows, with a
        ``k`` parameter (default: the ``k`` the model was scored with).
        """
        from rectune.recommender import Recommender

        recommender = Recommender.load(model_dir)
        example = pd.DataFrame({"user_id": example_users})
        signature = ModelSignature(
            inputs=Schema([ColSpec(_id_type(recommender.user_ids), "user_id")]),
            outputs=Schema(
                [
                    ColSpec(_id_type(recommender.user_ids), "user_id"),
                    ColSpec("long", "rank"),
                    ColSpec(_id_type(recommender.item_ids), "item_id"),
                    ColSpec("double", "score"),
                ]
            ),
            params=ParamSchema([ParamSpec("k", "long", k)]),
        )
        # The package travels with the model (without byte-code caches).
        with tempfile.TemporaryDirectory() as tmp:
            package_dir = Path(tmp) / "rectune"
            shutil.copytree(
                Path(__file__).resolve().parent,
                package_dir,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            # mlflow's log_model logs into the active run; make it ours for the call only.
            with (
                _quiet_mlflow(),
                mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None),
            ):
                info = mlflow.pyfunc.log_model(
                    name=PYFUNC_NAME,
                    python_model=str(package_dir / "pyfunc_model.py"),
                    artifacts={"model_dir": str(model_dir)},
                    code_paths=[str(package_dir)],
                    signature=signature,
                    input_example=example,
                    pip_requirements=_pyfunc_requirements(),
                )
        return info.model_uri

    def register(self, model_uri: str, name: str, alias: str | None) -> int:
        """Register ``model_uri`` as a new version of model ``name``; point ``alias`` at it.

        Returns the new version number.
        """
        try:
            # register_model prints its own "Successfully registered" lines to stderr.
            with _quiet_mlflow(), contextlib.redirect_stderr(io.StringIO()):
                registered = mlflow.register_model(model_uri, name)
            if alias:
                self.client.set_registered_model_alias(name, alias, registered.version)
        except MlflowException as err:
            raise ConfigError(
                f"cannot register the model as {name!r}: {redact_text(str(err).splitlines()[0])}"
            ) from err
        return int(registered.version)


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc form of :class:`rectune.recommender.Recommender`.

    ``predict`` takes a DataFrame with a ``user_id`` column and returns each user's top-K
    items as rows ``user_id, rank, item_id, score``; ``params={"k": 20}`` sets K. Users
    not seen in training get the most popular items (score NaN).
    """

    def load_context(self, context: Any) -> None:
        from rectune.recommender import Recommender

        self.recommender = Recommender.load(context.artifacts["model_dir"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if "user_id" not in model_input.columns:
            raise ValueError("the input needs a user_id column")
        users = model_input["user_id"].tolist()
        k = (params or {}).get("k")
        return self.recommender.recommend(users, None if k is None else int(k))


@contextlib.contextmanager
def _quiet_mlflow():
    """Silence MLflow's INFO lines and artifact progress bars for a block."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    logger.setLevel(logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous


def _id_type(ids: Any) -> str:
    """The signature type of an id map: long for integer ids, else string."""
    return "long" if pd.api.types.is_integer_dtype(ids.dtype) else "string"


def _pyfunc_requirements() -> list[str]:
    """The pinned packages the pyfunc model imports (MLflow adds itself)."""
    return [f"{name}=={version(name)}" for name in ("implicit", "numpy", "scipy", "pandas")]


def download_run_folder(run_id: str, artifact_path: str) -> Path:
    """Download a folder of a run's artifacts to a new temporary folder; return its path.

    Raises
    ------
    ConfigError
        When the run does not exist or has no such artifacts.
    """
    destination = Path(tempfile.mkdtemp(prefix=f"rectune-{run_id[:8]}-"))
    try:
        MlflowClient().get_run(run_id)
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(destination)
        )
    except (MlflowException, OSError) as err:
        raise ConfigError(
            f"cannot fetch {artifact_path}/ of MLflow run {run_id} from "
            f"{redact_url(tracking_uri())}: {redact_text(str(err).splitlines()[0])}"
        ) from err
    return Path(path)
