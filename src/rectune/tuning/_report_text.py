"""What the study report says in words: each trial's kind and note, the study's counts,
the best trial against the runner-up and the defaults, and what the importances mean.

Every function returns plain text (the report escapes it) or table rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from rectune.models import DEFAULT_HYPERPARAMETERS
from rectune.tuning.attributes import (
    BEST_ITERATION,
    ERROR,
    REUSED_FROM,
    SHARED_FIT_OF,
    STUDY_ATTR,
    SURPLUS,
    same_value,
)

TrialKind = Literal["complete", "shared", "reused", "pruned", "failed", "surplus", "running"]

#: How each kind of trial is named in the report's table, legends and counts.
KIND_LABELS: dict[str, str] = {
    "complete": "complete",
    "shared": "recorded from another trial's fit",
    "reused": "reused an earlier trial's values",
    "pruned": "pruned (value when stopped)",
    "failed": "failed",
    "surplus": "surplus",
    "running": "running",
}

#: Metrics that run lower on a split holding out fewer items per user.
_LOWER_WITH_FEWER_HELD_OUT = ("precision", "ndcg", "map")

#: What each importance method measures, in one line.
METHOD_LINES = {
    "fanova": (
        "fANOVA fits a random forest from the parameters to the objective over the complete "
        "trials and splits the variance of its predictions by parameter: the share of the "
        "objective's variation each parameter explains on its own."
    ),
    "ped_anova": (
        "PED-ANOVA compares where each parameter's values lie in the best 10% of trials "
        "with where they lie in all of them: a parameter the top trials crowd into one part "
        "of its range scores high, whatever it does to the rest."
    ),
}
METHOD_NAMES = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA"}


def trial_kind(trial: FrozenTrial) -> TrialKind:
    """A trial's kind: its state, with complete trials that were not fits of their own
    (iteration sharing, reused values) and failed surplus trials told apart."""
    if trial.state == TrialState.COMPLETE:
        if SHARED_FIT_OF in trial.user_attrs:
            return "shared"
        return "reused" if REUSED_FROM in trial.user_attrs else "complete"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    if trial.state == TrialState.FAIL:
        return "surplus" if trial.user_attrs.get(SURPLUS) else "failed"
    return "running"


def trial_note(trial: FrozenTrial) -> str:
    """Where a trial's values came from, or why it has none, in a few words."""
    attrs = trial.user_attrs
    notes = []
    if SHARED_FIT_OF in attrs:
        notes.append(f"recorded from trial {attrs[SHARED_FIT_OF]}'s fit")
    if REUSED_FROM in attrs:
        notes.append(f"reused trial {attrs[REUSED_FROM]}'s values")
    if trial.state == TrialState.PRUNED:
        last = max(trial.intermediate_values, default=None)
        notes.append("pruned" + (f" at iteration {last}" if last is not None else ""))
    if BEST_ITERATION in attrs:
        notes.append(f"best at iteration {attrs[BEST_ITERATION]}")
    if ERROR in attrs:
        notes.append(str(attrs[ERROR]))
    return "; ".join(notes)


@dataclass(frozen=True)
class StudyCounts:
    """A study's trials by kind (the whole study, every worker's)."""

    total: int
    complete: int
    shared: int
    reused: int
    pruned: int
    failed: int
    surplus: int
    running: int

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> StudyCounts:
        kinds = [trial_kind(t) for t in trials]
        return cls(total=len(trials), **{kind: kinds.count(kind) for kind in KIND_LABELS})

    def sentence(self) -> str:
        """``50 trials: 40 complete (0 recorded ...), 10 pruned, 0 failed``."""
        own = self.complete + self.shared + self.reused
        borrowed = (
            f" ({self.shared} of them recorded from another trial's fit, {self.reused} "
            "reused an earlier trial's values)"
            if self.shared or self.reused
            else ""
        )
        parts = [
            f"{own} complete{borrowed}",
            f"{self.pruned} pruned",
            f"{self.failed} failed",
        ]
        if self.surplus:
            parts.append(f"{self.surplus} surplus (started after the study was full)")
        if self.running:
            parts.append(f"{self.running} still running")
        return f"{self.total} trials: {', '.join(parts)}"


def fmt_value(value: Any) -> str:
    """A parameter or objective value as the report shows it (4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


def split_line(study: optuna.Study, objective: str) -> str:
    """Where the objective is measured, and why it is lower than test scores."""
    attrs = study.user_attrs.get(STUDY_ATTR, {})
    folds = attrs.get("cv_folds") or 1
    users = attrs.get("eval_users")
    where = (
        f"the mean over {folds} per-user folds of train"
        if folds > 1
        else "the validation split carved out of train"
    )
    sample = f" (a seeded sample of {users} users)" if users else ""
    metric = objective.split("@")[0]
    effect = (
        f"so {objective} here is lower than the test {metric} of the evaluation report"
        if metric in _LOWER_WITH_FEWER_HELD_OUT
        else f"so {objective} here is not comparable with the evaluation report's test scores"
    )
    return (
        f"The objective, {objective}, is measured on {where}{sample}, which holds out "
        f"fewer items per user than test, {effect}."
    )


def runner_up(study: optuna.Study, best: FrozenTrial) -> FrozenTrial | None:
    """The best complete trial with other parameters than ``best`` (not a reuse of it)."""
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    others = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.number != best.number
        and t.user_attrs.get(REUSED_FROM) != best.number
        and not _same(t.params, best.params)
    ]
    return max(others, key=lambda t: (sign * t.values[0], -t.number), default=None)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


def _gap(best: float, other: float) -> str:
    """``0.0053 (1.9%) below the best``: how far ``other`` lies from ``best``."""
    diff = abs(best - other)
    relative = f" ({diff / abs(best):.1%})" if best else ""
    return f"{diff:.4f}{relative} {'below' if other <= best else 'above'} the best"


def comparison_sentences(
    study: optuna.Study, best: FrozenTrial, objective: str, model: str | None
) -> list[str]:
    """The best trial, then the runner-up and the defaults against it."""
    value = best.values[0]
    stopped = best.user_attrs.get(BEST_ITERATION)
    at = f", at its best checkpoint, iteration {stopped}" if stopped is not None else ""
    out = [
        f"The best trial, {best.number}, reached {objective} = {value:.4f} with "
        f"{fmt_params(best.params)}{at}."
    ]
    second = runner_up(study, best)
    if second is None:
        out.append("No other complete trial has other parameters to compare it with.")
    else:
        differs = [k for k in best.params if not same_value(best.params[k], second.params.get(k))]
        changes = ", ".join(
            f"{k}={fmt_value(second.params.get(k))} (best: {fmt_value(best.params[k])})"
            for k in differs
        )
        out.append(
            f"The runner-up, trial {second.number}, reached {second.values[0]:.4f}, "
            f"{_gap(value, second.values[0])}, with {changes}."
        )
    out.append(defaults_sentence(study, best, objective, model))
    return out


def default_trial(
    study: optuna.Study, model: str | None
) -> tuple[FrozenTrial | None, dict[str, Any], dict[str, Any]]:
    """The first complete trial with the model's defaults, and the defaults of the
    searched parameters inside and outside the search space."""
    defaults = DEFAULT_HYPERPARAMETERS.get(model or "", {})
    space = _space(study)
    searched = {k: v for k, v in defaults.items() if k in space}
    inside = {k: v for k, v in searched.items() if _inside(space[k], v)}
    outside = {k: v for k, v in searched.items() if k not in inside}
    tried = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if inside and all(same_value(t.params.get(k), v) for k, v in inside.items())
    ]
    return (tried[0] if tried else None), inside, outside


def defaults_sentence(
    study: optuna.Study, best: FrozenTrial, objective: str, model: str | None
) -> str:
    """How the model's default hyperparameters did, if the study tried them."""
    trial, inside, outside = default_trial(study, model)
    if not inside and not outside:
        return "The study searched none of the parameters the model has defaults for."
    if not inside:
        return (
            f"The model's defaults were not tried: {fmt_params(outside)} lie outside the "
            "search space."
        )
    beyond = f"; {fmt_params(outside)} lies outside the search space" if outside else ""
    if trial is not None and trial.number == best.number:
        return f"The best trial ran the model's defaults ({fmt_params(inside)}{beyond})."
    if trial is None:
        return (
            f"The model's defaults ({fmt_params(inside)}{beyond}) were not tried in this "
            "study; --warm-start enqueues them as its first trials."
        )
    return (
        f"Trial {trial.number} ran the model's defaults ({fmt_params(inside)}{beyond}): "
        f"{objective} = {trial.values[0]:.4f}, {_gap(best.values[0], trial.values[0])}."
    )


def _space(study: optuna.Study) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            space.setdefault(name, distribution)
    return space


def _inside(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return any(same_value(value, choice) for choice in distribution.choices)
    low, high = distribution.low, distribution.high  # type: ignore[attr-defined]
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def importance_sentences(importance: dict[str, Any], n_complete: int) -> list[str]:
    """One line per method, then whether they agree on the most important parameter."""
    lines = [METHOD_LINES[m] for m in importance if m in METHOD_LINES]
    ranked = {
        m: sorted(values, key=lambda p: -values[p])
        for m, values in importance.items()
        if values and "error" not in values
    }
    for method, values in importance.items():
        if "error" in values:
            lines.append(f"{METHOD_NAMES.get(method, method)} could not run: {values['error']}")
    if {"fanova", "ped_anova"} <= ranked.keys():
        top_f, top_p = ranked["fanova"][0], ranked["ped_anova"][0]
        if top_f == top_p:
            lines.append(f"Both methods rank {top_f} first.")
        else:
            lines.append(
                f"The methods disagree: fANOVA ranks {top_f} first "
                f"({importance['fanova'][top_f]:.2f}), PED-ANOVA ranks {top_p} first "
                f"({importance['ped_anova'][top_p]:.2f}). {top_f} moves the objective most "
                f"across the whole search, while the best trials agree most on {top_p}'s "
                f"value; with {n_complete} complete trials, take both as rough."
            )
    return lines
