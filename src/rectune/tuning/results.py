"""A finished study's results: the best trial, the output file, the parent run's
summary and the study report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from rectune import __version__
from rectune.models import (
    HYPERPARAMETERS,
)
from rectune.tuning.attributes import PARAMS, REUSED_FROM, RUN_ID, SURPLUS
from rectune.tuning.best_params import (
    delivered_params,
    jsonable,
    write_best_hyperparameters,
)
from rectune.tuning.plan import TuningConfig
from rectune.tuning.storage import (
    StudyProgress,
    is_shared,
)
from rectune.tuning.trial_run import trial_metrics
from rectune.urls import redact_url

if TYPE_CHECKING:
    from rectune.data.store import SplitDataset
    from rectune.tracking import Tracker
    from rectune.tuning.search_space import SearchSpace
    from rectune.tuning.trial import TrialRunner


@dataclass
class TuningResult:
    """What a finished tuning run reports back."""

    study: optuna.Study
    config: TuningConfig
    parent_run_id: str
    best_params: dict[str, Any] | None
    best_values: dict[str, float] | None
    best_trial_number: int | None
    counts: dict[str, int]
    wall_seconds: float
    report_path: Path | None
    experiment_name: str
    tracking_uri: str
    ui_hint: str
    resumed_trials: int = 0
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    #: The study held all its trials before this run: nothing was left to run.
    already_complete: bool = False


def _best_trial(study: optuna.Study, multi: bool) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if not multi:
        return study.best_trial
    front = study.best_trials
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(front, key=lambda t: (sign * t.values[0], -t.number))


def finish_study(
    study: optuna.Study,
    config: TuningConfig,
    tracker: Tracker,
    parent_id: str,
    dataset: SplitDataset,
    space: SearchSpace,
    started: float,
    runner: TrialRunner,
    notes: list[str],
    reports: ModuleType,
) -> TuningResult:
    """Write out a study this worker is done with: the best trial's parameters to the
    output file and the parent run, the study's counts, and the study report."""
    trials = study.get_trials(deepcopy=False)
    counts = _counts(trials, runner.ran, len(runner.shared), config.count_shared)
    best = _best_trial(study, config.multi_objective)
    objectives = config.resolved_objectives
    best_params = best_values = None
    if best is not None:
        # The trial's own full parameters: a resumed study's fixed values may have changed.
        sampled = best.user_attrs.get(PARAMS, {**space.fixed, **best.params})
        delivered = delivered_params(best.user_attrs, sampled)
        order = list(HYPERPARAMETERS[config.model])  # the model's own order, for reading
        best_params = jsonable(dict(sorted(delivered.items(), key=lambda kv: order.index(kv[0]))))
        best_values = {o.name: float(v) for o, v in zip(objectives, best.values, strict=True)}
        best_run = _mark_best(study, tracker, parent_id, best, best_params, best_values)
        write_best_hyperparameters(
            config.output,
            config.model,
            best_params,
            _provenance(study, config, best, best_values, parent_id, best_run, dataset, runner),
        )
    _log_counts(tracker, parent_id, counts, trials)
    wall = time.perf_counter() - started
    summary = {
        "study": study.study_name,
        "model": config.model,
        "dataset": config.dataset,
        "objectives": [o.name for o in objectives],
        "sampler": config.resolved_sampler,
        "pruner": "none" if config.multi_objective else config.pruner,
        "best_trial": best.number if best else None,
        "best_values": best_values,
        "best_params": best_params,
        "counts": counts,
        "wall_seconds": round(wall, 1),
        "parent_run_id": parent_id,
    }
    report_path = reports.write_study_reports(
        study, summary, config.resolved_reports_dir, tracker, parent_id, seed=config.seed
    )
    return TuningResult(
        study=study,
        config=config,
        parent_run_id=parent_id,
        best_params=best_params,
        best_values=best_values,
        best_trial_number=best.number if best else None,
        counts=counts,
        wall_seconds=wall,
        report_path=report_path,
        experiment_name=tracker.experiment_name,
        tracking_uri=redact_url(tracker.uri),
        ui_hint=tracker.ui_hint(*_sort_key(config)),
        notes=notes,
    )


def _sort_key(config: TuningConfig) -> tuple[str, bool]:
    """The trials' metric that ranks them in the runs table, and whether descending."""
    objective = config.resolved_objectives[0]
    (name,) = trial_metrics({objective.name: 0.0})
    return name, objective.direction == "maximize"


def _log_counts(
    tracker: Tracker,
    parent_id: str,
    counts: dict[str, int],
    trials: list[optuna.trial.FrozenTrial],
) -> None:
    """The study's trial counts on its parent run (surplus trials are not failures)."""
    tracker.log(
        parent_id,
        metrics={
            "trials_total": counts["study_total"],
            "trials_finished": counts["study_finished"],
            "trials_failed": sum(
                t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS) for t in trials
            ),
        },
    )


def _counts(
    trials: list[optuna.trial.FrozenTrial], ran: list[int], shared: int, count_shared: bool
) -> dict[str, int]:
    """This worker's trials (``ran``, and the ``shared`` ones it recorded) by outcome,
    and the study's."""
    by_number = {t.number: t for t in trials}
    mine = [by_number[n] for n in ran if n in by_number]
    complete = [t for t in mine if t.state == TrialState.COMPLETE]
    return {
        "complete": len(complete),
        "reused": sum(REUSED_FROM in t.user_attrs for t in complete),
        "shared": shared,
        # Models this worker fitted: its trials less the reused (and shared) ones.
        "fits": sum(
            t.state in (TrialState.PRUNED, TrialState.FAIL)
            or (t.state == TrialState.COMPLETE and REUSED_FROM not in t.user_attrs)
            for t in mine
        ),
        "pruned": sum(t.state == TrialState.PRUNED for t in mine),
        "failed": sum(t.state == TrialState.FAIL for t in mine),
        "study_finished": StudyProgress.of_trials(trials, count_shared=count_shared).finished,
        "study_shared": sum(is_shared(t) for t in trials),
        "study_total": len(trials),
    }


def _mark_best(
    study: optuna.Study,
    tracker: Tracker,
    parent_id: str,
    best: optuna.trial.FrozenTrial,
    best_params: dict[str, Any],
    best_values: dict[str, float],
) -> str | None:
    """Tag the best trial's run (and untag the one a resumed study had marked); log the
    best to the parent run. Returns the best run's id."""
    best_run = best.user_attrs.get(RUN_ID)
    if best_run:
        previous = study.user_attrs.get("best_run_id")
        if previous and previous != best_run:
            tracker.set_tags(previous, {"best_trial": "false"})
        tracker.set_tags(best_run, {"best_trial": "true"})
        study.set_user_attr("best_run_id", best_run)
    # Tags, not params: a resumed or shared study's best may change (params cannot).
    tracker.log(
        parent_id,
        metrics={f"best_{name}": value for name, value in trial_metrics(best_values).items()},
        tags={
            **{f"best_{name}": value for name, value in best_params.items()},
            "best_run_id": best_run or "",
            "best_trial_number": best.number,
        },
    )
    return best_run


def _provenance(
    study: optuna.Study,
    config: TuningConfig,
    best: optuna.trial.FrozenTrial,
    best_values: dict[str, float],
    parent_id: str,
    best_run: str | None,
    dataset: SplitDataset,
    runner: TrialRunner,
) -> dict[str, Any]:
    """Where the best parameters came from, written beside the output file."""
    objective = config.resolved_objectives[0]
    return {
        "objectives": list(best_values),
        "values": best_values,
        "metric": objective.name,
        "value": best_values[objective.name],
        "k": objective.k,
        "study_name": study.study_name,
        "storage": config.shown_storage,
        "trial_number": best.number,
        "parent_run_id": parent_id,
        "best_run_id": best_run,
        "dataset": config.dataset,
        "dataset_fingerprint": dataset.fingerprint,
        # Interactions each trial fitted (the mean over folds): BPR's final fit makes as
        # many SGD steps (model_training.py --final-epochs-from steps).
        "trained_interactions": round(float(np.mean([train.nnz for train, _ in runner.folds]))),
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rectune_version": __version__,
    }
