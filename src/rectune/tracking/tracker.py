"""The tracker: one MLflow experiment's runs, made, logged to and ended by run id."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rectune.errors import ConfigError
from rectune.failpoints import failpoint
from rectune.tracking._logs import RunLogging
from rectune.tracking._lookup import RunLookup
from rectune.tracking._store import check_reachable, initialize_store, tracking_uri
from rectune.tracking._tags import (
    HOST_TAG,
    PARENT_TAG,
    PID_TAG,
    PIPELINE_TAG,
    RunStatus,
    pipeline_run_id,
    source_tags,
    stringify,
)
from rectune.tracking._writes import PendingRun, RunRef
from rectune.tracking.pyfunc import ModelLogging
from rectune.urls import redact_text, redact_url

#: What an experiment holds, for MLflow 3's UI: without it the UI guesses and may open
#: a rectune experiment on its GenAI overview instead of its runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
#: The context tags MLflow's fluent API gives a run, which :class:`MlflowClient` does
#: not: the UI's User and Source columns.
_CONTEXT_TAGS = ("mlflow.user", "mlflow.source.name", "mlflow.source.type")


@functools.cache
def context_tags() -> dict[str, str]:
    """This process's user and entry script (source), as MLflow names them."""
    from mlflow.tracking.context.registry import resolve_tags

    return {key: value for key, value in resolve_tags().items() if key in _CONTEXT_TAGS}


@dataclass
class RunEnd:
    """How a run :meth:`Tracker.ending` holds is to end if its block returns."""

    status: RunStatus = "FINISHED"


class Tracker(RunLogging, RunLookup, ModelLogging):
    """Logs runs of one MLflow experiment by explicit run id (thread-safe).

    This class opens the store and makes and ends runs; its bases add the other
    concerns under the same object: :class:`~rectune.tracking._logs.RunLogging`
    (params, metrics, tags, artifacts; through
    :class:`~rectune.tracking._writes.WriteBehind`, writes done by a background
    thread), :class:`~rectune.tracking._lookup.RunLookup` (finding runs again, ending
    those killed processes left) and :class:`~rectune.tracking.pyfunc.ModelLogging`
    (pyfunc models, the registry).

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
        super().__init__()
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
                experiment = self.client.get_experiment(self.experiment_id)
                self.experiment_name = experiment.name
                self._mark_kind(experiment)  # `mlflow run` made it without the kind
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
            self._mark_kind(experiment)
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name, tags=EXPERIMENT_KIND)
        except MlflowException as err:
            # Another worker created it between the lookup and the create.
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise err from None
            return experiment.experiment_id

    def _mark_kind(self, experiment: Any) -> None:
        """Tag an experiment made elsewhere with :data:`EXPERIMENT_KIND` (once)."""
        for key, value in EXPERIMENT_KIND.items():
            if key not in experiment.tags:
                self.client.set_experiment_tag(experiment.experiment_id, key, value)

    def ui_hint(self, sort_by: str | None = None, descending: bool = True) -> str:
        """How to look at this experiment's runs in a browser (sorted by the metric
        ``sort_by`` when given)."""
        shown = redact_url(self.uri)
        page = self.experiment_page(sort_by, descending)
        if self.uri.startswith(("http://", "https://")):
            return f"open {shown.rstrip('/')}/{page}"
        if self.uri in (f"sqlite:///{Path.cwd() / 'mlflow.db'}", "sqlite:///mlflow.db"):
            command = "mlflow ui"
        else:
            command = f"mlflow ui --backend-store-uri '{shown}'"
        return f"see it with `{command}`, then open http://127.0.0.1:5000/{page}"

    def experiment_page(self, sort_by: str | None = None, descending: bool = True) -> str:
        """The UI's address of this experiment's runs table, relative to the server.

        MLflow 3.17's UI picks its GenAI or model-training pages from its own setting
        (``workflowType``, GenAI unless the user switched), not from the experiment's
        kind; the address names the model-training one, which opens on the runs table.
        """
        query = {"workflowType": "machine_learning"}
        if sort_by:
            query["orderByKey"] = f"metrics.`{sort_by}`"
            query["orderByAsc"] = "false" if descending else "true"
        return f"#/experiments/{self.experiment_id}/runs?{urllib.parse.urlencode(query)}"

    def start_stage_run(
        self,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        *,
        start_time: float | None = None,
    ) -> str:
        """Create a stage's top run: a child of the ``mlflow run`` pipeline run if any.

        The run carries :func:`source_tags`. It is nested only when the pipeline run is
        in the same experiment (the UI nests within one experiment); it is tagged with
        the pipeline run's id either way. ``start_time`` (seconds since the epoch) is
        when the stage's work began, if that was before the run is made: the run's
        duration then covers the work.
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
        return self.start_run(run_name, parent_id=parent_id, tags=tags, start_time=start_time)

    @contextlib.contextmanager
    def stage_run(
        self,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        *,
        start_time: float | None = None,
    ) -> Iterator[str]:
        """A stage's top run (:meth:`start_stage_run`) for the block; yields its id.

        The run ends FINISHED when the block returns and FAILED when it raises,
        ``KeyboardInterrupt`` included; the exception propagates (see :meth:`ending`).
        """
        run_id = self.start_stage_run(run_name, tags=tags, start_time=start_time)
        with self.ending(run_id):
            yield run_id

    @contextlib.contextmanager
    def ending(self, run: RunRef, *, interrupted: RunStatus = "FAILED") -> Iterator[RunEnd]:
        """End ``run`` when the block ends, whichever way it ends.

        Parameters
        ----------
        run : str or PendingRun
            A run made before the block.
        interrupted : {"FAILED", "KILLED"}
            The status when the block raises ``KeyboardInterrupt``.

        Yields
        ------
        RunEnd
            Its :attr:`RunEnd.status` (``FINISHED`` unless the block sets another) is
            the run's when the block returns. When the block raises, the run ends
            ``interrupted`` (on ``KeyboardInterrupt``) or ``FAILED`` (on any other
            exception, ``SystemExit`` included) and the exception propagates.
        """
        end = RunEnd()
        try:
            yield end
        except KeyboardInterrupt:
            self.end_run(run, interrupted)
            raise
        except BaseException:
            self.end_run(run, "FAILED")
            raise
        # Outside the handlers: a run whose ending fails is not ended FAILED on top.
        self.end_run(run, end.status)

    def start_run(
        self,
        run_name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        start_time: float | None = None,
    ) -> str:
        """Create a run (nested under ``parent_id`` when given), with this process's
        :func:`context_tags`; return its id. ``start_time`` is in seconds since the
        epoch (default: now)."""
        all_tags = {
            **context_tags(),
            **{key: stringify(value) for key, value in (tags or {}).items()},
        }
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags=all_tags,
            start_time=None if start_time is None else int(start_time * 1000),
        )
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

        self._write_first(create)
        return pending

    def end_run(self, run_id: RunRef, status: RunStatus = "FINISHED") -> None:
        def end(run: str, status: RunStatus) -> None:
            self.client.set_terminated(run, status=status)
            failpoint("run_ended")

        self._write(end, run_id, status=status)

    def reopen_run(self, run_id: str) -> None:
        """Mark a finished run RUNNING again (a resumed study's parent run)."""
        self.client.update_run(run_id, status="RUNNING")
