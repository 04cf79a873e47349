"""A trial's MLflow run and its Optuna outcome, written by one object.

Every way a trial ends goes through :class:`TrialRun`: :meth:`TrialRun.complete` logs the
result and ends the run FINISHED; :meth:`TrialRun.ending` wraps the trial so that a pruned
trial's run ends FINISHED (its result logged by :meth:`TrialRun.log_pruned`), a failed
one's FAILED with its error, and one stopped by Ctrl-C KILLED. The run's ``state`` tag
always names the state the trial ends in, in Optuna and in MLflow alike.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import optuna

from rectune.tracking import PendingRun, Tracker, split_metrics
from rectune.tuning.attributes import ERROR, INTERRUPTED

log = logging.getLogger(__name__)

#: Trials are scored on the tune split's validation part: their metrics say so.
SPLIT = "validation"


def trial_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A trial's metrics as its run logs them: ``precision_at_10`` -> ``val_precision_at_10``."""
    return split_metrics(SPLIT, metrics)


def _curves(history: Mapping[str, Mapping[int, float]]) -> dict[str, Mapping[int, float]]:
    """The pruner's curves, one metric with a step per iteration count:
    ``val_precision_at_10_by_iteration``."""
    return {f"{name}_by_iteration": steps for name, steps in trial_metrics(history).items()}


class TrialRun:
    """Trial ``trial``'s MLflow child run ``run_id``, made behind the caller.

    ``params`` are the trial's parameters once sampled: a failed or stopped trial's run
    records them (a trial that fails while sampling records none).
    """

    def __init__(self, trial: optuna.Trial, run_id: PendingRun, tracker: Tracker) -> None:
        self.trial = trial
        self.run_id = run_id
        self.tracker = tracker
        self.params: dict[str, Any] = {}

    def complete(
        self,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, Any] | None = None,
        history: Mapping[str, Mapping[int, float]] | None = None,
    ) -> None:
        """Log the trial's result (one write: parameters, metrics named for the validation
        split, tags, and ``history``: each objective's values at the checkpoints the
        pruner saw, by iteration) and end its run FINISHED."""
        self.tracker.log(
            self.run_id,
            params=params,
            metrics=trial_metrics(metrics),
            tags={"state": "COMPLETE", "trial_number": self.trial.number, **(tags or {})},
            history=_curves(history or {}),
        )
        self.tracker.end_run(self.run_id, "FINISHED")

    def log_pruned(
        self, objective: str, history: Mapping[str, Mapping[int, float]], last: float | None
    ) -> None:
        """Log a pruned trial's parameters, curve and, as the ``objective`` metric, the
        last value the pruner saw (so runs tables and MLflow's parallel coordinates have
        a value for every trial; the ``pruned`` tag says what it is); :meth:`ending` ends
        its run."""
        self.tracker.log(
            self.run_id,
            params=self.params,
            metrics={} if last is None else trial_metrics({objective: last}),
            tags={"pruned": "true", "state": "PRUNED"},
            history=_curves(history),
        )

    @contextlib.contextmanager
    def ending(self) -> Iterator[TrialRun]:
        """Run the trial in this block and end its run however the block ends.

        Returns normally once :meth:`complete` ended the run. A pruned trial's run ends
        FINISHED; an exception ends it FAILED with the error (tag and user attribute
        ``error``); Ctrl-C ends it KILLED with ``error`` = ``interrupted``. The exception
        propagates. The block never ends before the run's id is recorded.
        """
        try:
            yield self
        except optuna.TrialPruned:
            self.tracker.end_run(self.run_id, "FINISHED")
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            log.warning("trial %d failed: %s", self.trial.number, message)
            self._end_unfinished(message, "FAILED")
            raise
        except BaseException:  # Ctrl-C: the run did not fail, it was stopped
            self._end_unfinished(INTERRUPTED, "KILLED")
            raise
        finally:
            self.run_id.wait()

    def _end_unfinished(self, error: str, status: str) -> None:
        self.trial.set_user_attr(ERROR, error)
        self.tracker.log(self.run_id, params=self.params, tags={"error": error, "state": "FAIL"})
        self.tracker.end_run(self.run_id, status)
