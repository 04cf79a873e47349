"""MLflow tracking: the only module of rectune that talks to MLflow.

Every call names its run explicitly through :class:`mlflow.MlflowClient`; nothing uses
MLflow's per-thread "active run", so trials running in parallel threads each log to
their own run. The tracking store is MLflow's own choice: ``MLFLOW_TRACKING_URI`` when
set, otherwise MLflow 3's default (``sqlite:///mlflow.db`` in the current directory,
artifacts under ``./mlruns``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rectune.config import PROJECT_ROOT
from rectune.errors import ConfigError
from rectune.urls import redact_text, redact_url

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
PARENT_TAG = "mlflow.parentRunId"
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


def mlflow_key(name: str) -> str:
    """A metric or param name MLflow accepts: ``precision@10`` -> ``precision_at_10``."""
    return name.replace("@", "_at_")


def _stringify(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


class Tracker:
    """Logs runs of one MLflow experiment by explicit run id (thread-safe).

    Parameters
    ----------
    experiment_name : str
        Created if it does not exist yet.
    """

    def __init__(self, experiment_name: str) -> None:
        self.client = MlflowClient()
        self.uri = tracking_uri()
        try:
            experiment = self.client.get_experiment_by_name(experiment_name)
            self.experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(experiment_name)
            )
        except MlflowException as err:
            raise ConfigError(
                f"cannot use MLflow tracking store {redact_url(self.uri)}: "
                f"{redact_text(str(err).splitlines()[0])}"
            ) from err

    def start_run(
        self, run_name: str, *, parent_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Create a run (nested under ``parent_id`` when given); return its id."""
        all_tags = {key: _stringify(value) for key, value in (tags or {}).items()}
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        return run.info.run_id

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """Log params, metrics (at ``step``) and tags in one batch call."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(mlflow_key(key), float(value), now, step)
                for key, value in (metrics or {}).items()
            ],
            params=[
                Param(mlflow_key(key), _stringify(value)) for key, value in (params or {}).items()
            ],
            tags=[RunTag(key, _stringify(value)) for key, value in (tags or {}).items()],
        )

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log(run_id, tags=tags)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

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
