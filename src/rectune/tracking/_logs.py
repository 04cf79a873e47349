"""Logging to a run: params, metrics, tags and artifacts, now or behind the caller."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from rectune.tracking._tags import mlflow_key, stringify
from rectune.tracking._writes import RunRef, WriteBehind

#: What a split is to a run, as MLflow's dataset inputs name it (the UI shows it).
TRAINING, VALIDATION, EVALUATION = "training", "validation", "evaluation"


def split_inputs(dataset: Any, contexts: Mapping[str, str]) -> list[DatasetInput]:
    """``dataset``'s splits as MLflow dataset inputs, for the UI's Dataset column.

    Parameters
    ----------
    dataset : rectune.data.SplitDataset
        The processed dataset (its ``name``, ``path``, ``fingerprint``, ``matrices``).
    contexts : mapping of str to str
        Each split the run uses and what for: ``{"train": TRAINING, "test": EVALUATION}``.
    """
    inputs = []
    for split, context in contexts.items():
        matrix = dataset.matrices[split]
        entity = Dataset(
            name=f"{dataset.name}/{split}",
            # The dataset's fingerprint names its exact matrices; one digest per split.
            digest=hashlib.sha256(f"{dataset.fingerprint}/{split}".encode()).hexdigest()[:16],
            source_type="local",
            source=json.dumps({"uri": str(dataset.path)}),
            profile=json.dumps(
                {"users": matrix.shape[0], "items": matrix.shape[1], "interactions": matrix.nnz}
            ),
        )
        inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)]))
    return inputs


class RunLogging(WriteBehind):
    """The logging part of :class:`rectune.tracking.Tracker`.

    :meth:`log` and :meth:`set_tags` go behind the caller within
    :meth:`~WriteBehind.write_behind`; artifacts are always copied at once.
    """

    client: MlflowClient

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
                Param(mlflow_key(key), stringify(value)) for key, value in (params or {}).items()
            ],
            tags=[RunTag(key, stringify(value)) for key, value in (tags or {}).items()],
        )

    def log_inputs(self, run_id: RunRef, inputs: Sequence[DatasetInput]) -> None:
        """Record the datasets a run used (see :func:`split_inputs`)."""
        if inputs:
            self._write(self.client.log_inputs, run_id, datasets=list(inputs))

    def set_tags(self, run_id: RunRef, tags: Mapping[str, Any]) -> None:
        self.log(run_id, tags=tags)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)
