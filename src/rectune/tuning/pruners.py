"""Optuna pruners by name; their steps are training iterations.

Early scores mislead: a strongly regularised ALS or a slowly learning BPR converges later
and overtakes (on MovieLens-100k the median pruner without a warm-up stopped the shipped
ALS grid's best combination after 2 of its 10 iterations, at 0.135 against its 0.191 at
the end). So no pruner here stops a trial before a third of the largest iteration
count, nor before 10 trials have completed.

The default, ``rung``, decides once per trial, at its first checkpoint past that
warm-up (one rung of successive halving): it stops the trial when it is in the bottom
quarter of every finished trial scored at that count, pruned ones included. Optuna's
median and percentile pruners compare with complete trials only and decide at every
later checkpoint again; as the study goes on its complete trials are the survivors, so
the bar rises and late trials are pruned nearly all (on MovieLens-100k, every ALS trial
after the 34th of 50), and TPE learns from them as if they were bad.
``benchmarks/quality.py`` counts how often a pruner stopped the study's eventual best.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

PRUNERS = ("rung", "median", "percentile", "hyperband", "successive-halving", "none")
DEFAULT_PRUNER = "rung"
#: Complete trials before any pruning, and trials scored at a count before it is used.
STARTUP_TRIALS = 10
MIN_TRIALS_AT_STEP = 5
#: The share of trials the rung pruner stops where it decides.
RUNG_QUANTILE = 0.25


def warmup_iterations(max_iterations: int) -> int:
    """Iterations before which no trial is pruned: a third of the largest count."""
    return max_iterations // 3


class RungPruner(optuna.pruners.BasePruner):
    """Stops a trial, once, if it is in the bottom ``quantile`` at its rung.

    A trial's rung is its first reported step at or past ``warmup``. There it is
    compared with every other finished (complete or pruned) trial's value at that very
    step, so trials pruned earlier keep counting and the bar does not rise as the study
    goes on. Complete trials recorded without intermediate values (iteration sharing)
    do not count.

    Parameters
    ----------
    warmup : int
        Steps (iterations) before the rung.
    quantile : float
        The share of trials below which a trial is stopped.
    n_startup_trials : int
        Complete trials the study needs before any pruning.
    n_min_trials : int
        Trials scored at the step needed for a comparison.
    """

    def __init__(
        self,
        warmup: int,
        quantile: float = RUNG_QUANTILE,
        n_startup_trials: int = STARTUP_TRIALS,
        n_min_trials: int = MIN_TRIALS_AT_STEP,
    ) -> None:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile}")
        self.warmup = warmup
        self.quantile = quantile
        self.n_startup_trials = n_startup_trials
        self.n_min_trials = n_min_trials

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.warmup:
            return False
        if any(self.warmup <= s < step for s in trial.intermediate_values):
            return False  # past its rung: decided there already
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if sum(t.state == TrialState.COMPLETE for t in finished) < self.n_startup_trials:
            return False
        others = [
            t.intermediate_values[step]
            for t in finished
            if step in t.intermediate_values and t.number != trial.number
        ]
        if len(others) < self.n_min_trials:
            return False
        value = trial.intermediate_values[step]
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return bool(value < np.quantile(others, self.quantile))
        return bool(value > np.quantile(others, 1 - self.quantile))


def make_pruner(name: str, max_iterations: int) -> optuna.pruners.BasePruner:
    """The pruner called ``name`` (one of :data:`PRUNERS`)."""
    warmup = warmup_iterations(max_iterations)
    if name == "rung":
        return RungPruner(warmup)
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=STARTUP_TRIALS,
            n_warmup_steps=warmup,
            n_min_trials=MIN_TRIALS_AT_STEP,
        )
    if name == "percentile":
        return optuna.pruners.PercentilePruner(
            25.0,
            n_startup_trials=STARTUP_TRIALS,
            n_warmup_steps=warmup,
            n_min_trials=MIN_TRIALS_AT_STEP,
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_iterations)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
