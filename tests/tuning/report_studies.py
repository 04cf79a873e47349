"""Small in-memory Optuna studies for the study report's tests (no tuning runs)."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from rectune.tuning.attributes import ERROR, REUSED_FROM, SHARED_FIT_OF, STUDY_ATTR

SPACE = {
    "factors": IntDistribution(16, 256, log=True),
    "regularization": FloatDistribution(0.01, 1000.0, log=True),
    "weighting": CategoricalDistribution(["stored", "binary", "bm25"]),
}
DEFAULTS = {"factors": 100, "regularization": 0.01, "weighting": "stored"}


def new_study(name: str = "als-report") -> optuna.Study:
    study = optuna.create_study(study_name=name, direction="maximize")
    study.set_user_attr(STUDY_ATTR, {"model": "als", "objectives": ["precision@10"], "cv_folds": 1})
    return study


def hand_study(with_defaults: bool = True) -> optuna.Study:
    """Seven trials whose report is checked by hand.

    0 the model's defaults (0.10), 1 the best (0.30), 2 the runner-up (0.25), 3 pruned
    (0.05 at iteration 3), 4 recorded from trial 2's fit (0.20), 5 reused trial 1's
    values (0.30), 6 failed.
    """
    study = new_study("hand")
    best = {"factors": 32, "regularization": 10.0, "weighting": "bm25"}
    first = (
        DEFAULTS
        if with_defaults
        else {"factors": 20, "regularization": 0.02, "weighting": "binary"}
    )
    rows = [
        (TrialState.COMPLETE, 0.10, first, {}, {10: 0.10}),
        (TrialState.COMPLETE, 0.30, best, {}, {5: 0.2, 10: 0.30}),
        (TrialState.COMPLETE, 0.25, {**best, "factors": 64}, {}, {5: 0.2, 10: 0.25}),
        (TrialState.PRUNED, 0.05, {**best, "regularization": 0.1}, {}, {3: 0.05}),
        (TrialState.COMPLETE, 0.20, {**best, "factors": 128}, {SHARED_FIT_OF: 2}, {}),
        (TrialState.COMPLETE, 0.30, best, {REUSED_FROM: 1}, {}),
        (TrialState.FAIL, None, {**best, "factors": 16}, {ERROR: "RuntimeError: boom"}, {}),
    ]
    for state, value, params, attrs, steps in rows:
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params=params,
                distributions=SPACE,
                user_attrs=attrs,
                intermediate_values=steps,
            )
        )
    return study


def fifty_trial_study() -> optuna.Study:
    """50 seeded random trials with checkpoints; every 5th pruned, every 7th recorded
    from the trial before's fit, every 11th a reuse; trial 0 runs the defaults."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = new_study()
    sampler = optuna.samplers.RandomSampler(seed=0)
    study.sampler = sampler
    study.enqueue_trial(DEFAULTS)
    for i in range(50):
        trial = study.ask(SPACE)
        p = trial.params
        value = (
            0.2
            - 0.02 * (math.log10(p["regularization"]) - 1.2) ** 2
            - 0.01 * abs(math.log2(p["factors"] / 64))
            + (0.01 if p["weighting"] == "bm25" else 0.0)
        )
        for step in (3, 6, 9, 12, 15):
            trial.report(value * step / 15, step)
        if i % 5 == 4:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        if i % 7 == 6:
            trial.set_user_attr(SHARED_FIT_OF, i - 1)
        elif i % 11 == 10:
            trial.set_user_attr(REUSED_FROM, i - 2)
        study.tell(trial, value)
    return study


def summary_of(study: optuna.Study) -> dict:
    """The summary ``finish_study`` passes to the report, for ``study``."""
    best = study.best_trial
    return {
        "study": study.study_name,
        "model": "als",
        "dataset": "synthetic",
        "objectives": ["precision@10"],
        "sampler": "random",
        "pruner": "rung",
        "best_trial": best.number,
        "best_values": {"precision@10": best.value},
        "best_params": best.params,
        "wall_seconds": 12.3,
        "parent_run_id": "0123abcd",
    }
