"""The MLflow tracking store: which one, whether it answers, its tables, its artifacts."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.artifacts
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rectune._io import database_lock
from rectune.errors import ConfigError
from rectune.urls import redact_text, redact_url

#: Seconds to wait for a tracking server's first answer; MLflow's own retries take
#: minutes to give up on one that is not there.
REACH_TIMEOUT = 10.0
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def tracking_uri() -> str:
    """The tracking URI in use (MLflow's default when ``MLFLOW_TRACKING_URI`` is unset)."""
    return mlflow.get_tracking_uri()


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
                with quiet_mlflow():
                    _initialize_tables(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
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
