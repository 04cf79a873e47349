"""Finding a tracker's runs again: by tags, by id, and those killed processes left."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rectune.tracking._tags import HOST_TAG, PID_TAG


@dataclass(frozen=True)
class FoundRun:
    """A run :meth:`Tracker.find_runs` found: its id, status and tags."""

    run_id: str
    status: str
    tags: dict[str, str]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class RunLookup:
    """The lookup and reconcile part of :class:`rectune.tracking.Tracker`.

    It reads runs of the tracker's experiment and ends those a killed process left
    RUNNING through the tracker's own :meth:`set_tags` and :meth:`end_run`.
    """

    client: MlflowClient
    experiment_id: str

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
