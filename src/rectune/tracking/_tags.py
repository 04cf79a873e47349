"""The names rectune's MLflow runs share: tags, experiments, keys and values."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from rectune.config import PROJECT_ROOT

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


def pipeline_run_id() -> str | None:
    """The run ``mlflow run`` started for this pipeline, when running under it."""
    return os.environ.get(PIPELINE_RUN_ENV) or None


def mlflow_key(name: str) -> str:
    """A metric or param name MLflow accepts: ``precision@10`` -> ``precision_at_10``."""
    return name.replace("@", "_at_")


#: The prefix of a metric measured on each split, so that a runs table sorted by the
#: trials' objective (validation) does not mix in the final model's test scores.
SPLIT_PREFIXES = {"validation": "val_", "test": "test_"}


def split_metrics(split: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` measured on ``split``, named for it.

    ``precision_at_10`` scored on the validation split is logged as
    ``val_precision_at_10``, on the test split as ``test_precision_at_10``. Timings
    (``fit_seconds``, ``eval_seconds``) and counts measure no split and keep their names;
    a split without a prefix (a custom one) keeps every name.
    """
    prefix = SPLIT_PREFIXES.get(split, "")
    return {
        (name if name.endswith("_seconds") else f"{prefix}{mlflow_key(name)}"): value
        for name, value in metrics.items()
    }


def stringify(value: Any) -> str:
    """``value`` as an MLflow param or tag value, cut to the length MLflow keeps."""
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."
