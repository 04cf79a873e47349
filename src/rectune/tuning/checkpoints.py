"""Where a trial is scored during its fit, and what those scores decide.

A trial's fit is scored on validation at a few iteration counts (checkpoints). What
they are for depends on how the search space treats ``iterations``:

* **budget** (``iterations`` not searched: fixed, or left to the default, as in the
  shipped default spaces): every trial fits up to the same count, the budget, and is
  scored at the same ``checkpoints`` evenly spaced counts, so the pruner compares
  trials at equal counts. The trial's value is its best checkpoint, and that count is
  the ``iterations`` it stands for (early stopping on validation): BPR peaks and then
  falls, and which count is best depends on the learning rate. The fit stops once
  ``patience`` checkpoints in a row have not beaten its best. The pruner is shown the
  best so far at each checkpoint, so a fit that stopped early counts at the later
  checkpoints with its best, as if it had gone on without improving.
* **choices** (``iterations`` categorical, with iteration sharing): scored at every
  choice up to its own, the counts other trials are scored at too; its value is the
  score at its own count.
* **own** (anything else): ``checkpoints`` evenly spaced counts up to its own
  ``iterations``; its value is the score at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: Checkpoints in a row without a new best after which a budget fit stops.
DEFAULT_PATIENCE = 3
#: Checkpoints per trial.
DEFAULT_CHECKPOINTS = 10

PlanKind = Literal["budget", "choices", "own"]


def checkpoint_iterations(iterations: int, checkpoints: int) -> set[int]:
    """``checkpoints`` evenly spaced counts ending at ``iterations`` (fewer when there
    are fewer iterations), e.g. 20 iterations and 5 checkpoints give {4, 8, 12, 16, 20}.
    """
    count = min(checkpoints, iterations)
    return {math.ceil(iterations * (i + 1) / count) for i in range(count)}


@dataclass(frozen=True)
class CheckpointPlan:
    """The counts one trial is scored at, and how its value is read off them.

    Attributes
    ----------
    kind : {"budget", "choices", "own"}
        See the module's docstring.
    iterations : int
        The count the fit is asked for (the budget, for ``budget``).
    steps : tuple of int
        The checkpoints, ascending; the last is ``iterations``.
    patience : int
        ``budget`` only: checkpoints in a row without a new best before the fit stops;
        0 never stops it early.
    """

    kind: PlanKind
    iterations: int
    steps: tuple[int, ...]
    patience: int = 0

    @classmethod
    def make(
        cls,
        kind: PlanKind,
        iterations: int,
        *,
        checkpoints: int = DEFAULT_CHECKPOINTS,
        choices: Sequence[int] = (),
        patience: int = DEFAULT_PATIENCE,
    ) -> CheckpointPlan:
        if kind == "choices":
            steps = {c for c in choices if c <= iterations} | {iterations}
        else:
            steps = checkpoint_iterations(iterations, checkpoints)
        return cls(kind, iterations, tuple(sorted(steps)), patience if kind == "budget" else 0)

    @property
    def best_of(self) -> bool:
        """Whether the trial's value is its best checkpoint (early stopping)."""
        return self.kind == "budget"


@dataclass
class Curve:
    """One fit's objective (to maximise) at its checkpoints, with the metrics there.

    Parameters
    ----------
    plan : CheckpointPlan
    """

    plan: CheckpointPlan
    values: dict[int, float] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)

    def add(self, step: int, value: float, metrics: dict[str, float]) -> None:
        self.values[step] = value
        self.metrics[step] = metrics

    @property
    def best_step(self) -> int | None:
        """The checkpoint with the largest value (the earliest of equal ones)."""
        if not self.values:
            return None
        return max(self.values, key=lambda step: (self.values[step], -step))

    @property
    def last_step(self) -> int | None:
        return max(self.values) if self.values else None

    def reported(self, step: int) -> float:
        """What the pruner is shown at ``step``: the best so far on a budget, else the
        value there."""
        if not self.plan.best_of:
            return self.values[step]
        return max(v for s, v in self.values.items() if s <= step)

    def should_stop(self) -> bool:
        """On a budget with patience: have the last ``patience`` checkpoints all failed
        to beat the best before them?"""
        if not self.plan.best_of or not self.plan.patience or self.best_step is None:
            return False
        after_best = [s for s in self.plan.steps if self.best_step < s <= self.last_step]
        return len(after_best) >= self.plan.patience

    def skipped_steps(self) -> list[int]:
        """Checkpoints after the one a stopped fit reached."""
        last = self.last_step or 0
        return [s for s in self.plan.steps if s > last]


def best_of_folds(curves: Sequence[Curve]) -> int:
    """The checkpoint with the best mean value over the folds' curves, among those every
    fold reached (the earliest of equal ones)."""
    common = sorted(set.intersection(*(set(c.values) for c in curves)))
    if not common:
        raise ValueError("the folds share no checkpoint")
    mean = {s: sum(c.values[s] for c in curves) / len(curves) for s in common}
    return max(common, key=lambda s: (mean[s], -s))


def mean_of_folds(records: list[dict[str, float]], sums: tuple[str, ...] = ()) -> dict[str, float]:
    """Per-key mean over folds; the keys in ``sums`` are summed (seconds)."""
    return {
        name: float((np.sum if name in sums else np.mean)([r[name] for r in records]))
        for name in records[0]
    }
