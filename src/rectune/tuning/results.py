"""A finished study's results: the best trial, the output file, the parent run's
summary and the study report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna

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
from rectune.urls import redact_url


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
    study, config, tracker, parent_id, dataset, space, started, runner, notes, reports
) -> TuningResult:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    mine = [by_number[n] for n in runner.ran if n in by_number]
    counts = {
        "complete": sum(t.state == states.COMPLETE for t in mine),
        "reused": sum(t.state == states.COMPLETE and REUSED_FROM in t.user_attrs for t in mine),
        "shared": len(runner.shared),
        # Models this worker fitted: its trials less the reused (and shared) ones.
        "fits": sum(
            t.state in (states.PRUNED, states.FAIL)
            or (t.state == states.COMPLETE and REUSED_FROM not in t.user_attrs)
            for t in mine
        ),
        "pruned": sum(t.state == states.PRUNED for t in mine),
        "failed": sum(t.state == states.FAIL for t in mine),
        "study_finished": StudyProgress.of_trials(
            trials, count_shared=config.count_shared
        ).finished,
        "study_shared": sum(is_shared(t) for t in trials),
        "study_total": len(trials),
    }
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
            metrics={f"best_{name}": value for name, value in best_values.items()},
            tags={
                **{f"best_{name}": value for name, value in best_params.items()},
                "best_run_id": best_run or "",
                "best_trial_number": best.number,
            },
        )
        write_best_hyperparameters(
            config.output,
            config.model,
            best_params,
            {
                "objectives": list(best_values),
                "values": best_values,
                "metric": objectives[0].name,
                "value": best_values[objectives[0].name],
                "k": objectives[0].k,
                "study_name": study.study_name,
                "storage": config.shown_storage,
                "trial_number": best.number,
                "parent_run_id": parent_id,
                "best_run_id": best_run,
                "dataset": config.dataset,
                "dataset_fingerprint": dataset.fingerprint,
                # Interactions each trial fitted (the mean over folds): BPR's final fit
                # makes as many SGD steps (model_training.py --final-epochs-from steps).
                "trained_interactions": round(
                    float(np.mean([train.nnz for train, _ in runner.folds]))
                ),
                "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "rectune_version": __version__,
            },
        )
    tracker.log(
        parent_id,
        metrics={
            "trials_total": counts["study_total"],
            "trials_finished": counts["study_finished"],
            "trials_failed": sum(
                t.state == states.FAIL and not t.user_attrs.get(SURPLUS) for t in trials
            ),
        },
    )
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
        study, summary, config.reports_dir, tracker, parent_id, seed=config.seed
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
        ui_hint=tracker.ui_hint(),
        notes=notes,
    )
