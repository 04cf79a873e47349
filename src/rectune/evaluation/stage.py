"""Evaluating a saved model on held-out data, against baselines, with uncertainty.

A model trained with ``mode="final"`` is scored on ``test`` with its ``train`` items
excluded; a ``mode="tune"`` model on ``validation`` with ``train_val`` excluded. Every
system (the model, the most-popular and random baselines, optionally the model with
default parameters) is scored by the same evaluator that scores tuning trials
(:class:`rectune.evaluation.evaluator.Evaluator`), once at the largest K; smaller K are
cuts of the same lists. Each per-user metric gets a percentile bootstrap interval over
users, and the model is compared with each baseline on the same users (paired bootstrap
interval of the difference and a paired t-test). Coverage is one number per system,
without an interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rectune import __version__
from rectune._io import writable_folder
from rectune.config import DATA_DIR, REPORTS_DIR
from rectune.data.store import MODE_SPLITS, SplitDataset, load_dataset
from rectune.errors import ConfigError
from rectune.evaluation.baselines import popularity_factors, random_scorer
from rectune.evaluation.evaluator import Evaluator
from rectune.evaluation.metrics import USER_METRICS, RankingEvaluation
from rectune.evaluation.ranking import check_list_length, factor_scorer, factors_of
from rectune.evaluation.report import write_evaluation_reports
from rectune.evaluation.statistics import bootstrap_means, mean_intervals, paired_comparison
from rectune.models import DEFAULT_HYPERPARAMETERS, build_model, fit_model
from rectune.progress import fit_progress, scoring_bar
from rectune.recommender import Recommender
from rectune.tracking import (
    EVALUATION,
    Tracker,
    default_experiment,
    download_run_folder,
    split_inputs,
    split_metrics,
)

DEFAULT_KS = (5, 10, 20)
MODEL = "model"
BASELINES = ("popular", "random")
DEFAULTS_BASELINE = "defaults"


@dataclass(frozen=True)
class EvaluationConfig:
    """One evaluation; give exactly one of ``model_dir`` and ``run_id``."""

    model_dir: Path | None = None
    run_id: str | None = None
    dataset: str | None = None
    data_dir: Path = DATA_DIR
    ks: tuple[int, ...] = DEFAULT_KS
    defaults_baseline: bool = False
    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 42
    device: str = "auto"
    reports_dir: Path = REPORTS_DIR
    experiment_name: str | None = None
    #: Progress bars of the users scored, per system (on a terminal only).
    show_progress: bool = False

    def __post_init__(self) -> None:
        if (self.model_dir is None) == (self.run_id is None):
            raise ConfigError("give exactly one model: a model folder or an MLflow run id")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"list lengths must be positive integers, got {self.ks}")
        if self.n_bootstrap < 1:
            raise ConfigError(f"bootstrap resamples must be at least 1, got {self.n_bootstrap}")
        if not 0 < self.confidence < 1:
            raise ConfigError(
                f"confidence must lie strictly between 0 and 1, got {self.confidence}"
            )


@dataclass
class EvaluationResult:
    """What an evaluation reports back: the summary document and where it went."""

    summary: dict[str, Any]
    report_paths: list[Path]
    run_id: str
    experiment_name: str
    tracking_uri: str
    #: Evaluation runs a killed process of this machine had left RUNNING, ended now.
    ended_dead_runs: list[str] = field(default_factory=list)


def load_recommender(config: EvaluationConfig) -> tuple[Recommender, str]:
    """The model to evaluate and a description of where it came from."""
    if config.run_id is not None:
        folder = download_run_folder(config.run_id, "model")
        return Recommender.load(folder), f"MLflow run {config.run_id}"
    return Recommender.load(config.model_dir), str(config.model_dir)


def check_fingerprint(metadata: dict[str, Any], dataset: SplitDataset, source: str) -> None:
    """Refuse a model that was not trained on exactly this dataset's split."""
    trained_on = metadata.get("dataset_fingerprint")
    if trained_on == dataset.fingerprint:
        return
    raise ConfigError(
        f"model {source} was trained on dataset {metadata.get('dataset')!r} with fingerprint "
        f"{str(trained_on)[:12]}, but {dataset.path} has fingerprint "
        f"{dataset.fingerprint[:12]} (split again since, with other options or seed?); "
        "retrain it with `python src/model_training.py --model "
        f"{metadata.get('model', 'als')} --mode final --hyperparameters`"
    )


def score_systems(
    recommender: Recommender,
    dataset: SplitDataset,
    config: EvaluationConfig,
) -> tuple[str, dict[str, RankingEvaluation]]:
    """Score the model and every baseline at the largest K on the held-out split."""
    mode = recommender.metadata.get("mode", "final")
    excluded_split, split = MODE_SPLITS[mode]
    excluded, scored = dataset.matrices[excluded_split], dataset.matrices[split]
    if scored.nnz == 0:
        raise ConfigError(f"the {split} split of {dataset.name!r} is empty; nothing to score")
    k = max(config.ks)
    check_list_length(k, scored.shape[1], "--k")
    scorers = {
        MODEL: factor_scorer(recommender.user_factors, recommender.item_factors),
        "popular": factor_scorer(*popularity_factors(excluded)),
        "random": random_scorer(scored.shape[1], seed=config.seed),
    }
    if config.defaults_baseline:
        name = recommender.metadata["model"]
        model = build_model(
            name, DEFAULT_HYPERPARAMETERS[name], device=config.device, seed=config.seed
        )
        fitted = fit_model(model, excluded, show_progress=fit_progress(config.show_progress))
        scorers[DEFAULTS_BASELINE] = factor_scorer(*factors_of(fitted))
    evaluator = Evaluator(excluded, scored, k)  # one for every system
    evaluations = {}
    for system, scorer in scorers.items():
        with scoring_bar(
            len(evaluator.users), f"scoring {system}", config.show_progress
        ) as advance:
            evaluations[system] = evaluator(scorer=scorer, progress=advance)
    return split, evaluations


def summarise(
    evaluations: dict[str, RankingEvaluation],
    ks: tuple[int, ...],
    n_bootstrap: int,
    confidence: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Means with intervals per system, and the model's paired comparisons.

    Returns ``metrics[system]["precision@10"] = {"mean", "low", "high"}`` (coverage:
    ``{"mean"}`` only) and ``comparisons[baseline]["precision@10"] = {"difference",
    "low", "high", "p_value"}``.
    """
    rows: list[np.ndarray] = []
    keys: list[tuple[str, str]] = []
    cuts = {(system, k): full.at(k) for system, full in evaluations.items() for k in ks}
    for (system, k), cut in cuts.items():
        for metric in USER_METRICS:
            keys.append((system, f"{metric}@{k}"))
            rows.append(cut.per_user[metric])
    values = np.vstack(rows)
    resampled = bootstrap_means(values, n_bootstrap, seed=seed)
    intervals = mean_intervals(values, resampled, confidence)
    row_of = {key: index for index, key in enumerate(keys)}

    metrics: dict[str, dict[str, dict[str, float]]] = {system: {} for system in evaluations}
    for (system, name), interval in zip(keys, intervals, strict=True):
        metrics[system][name] = {"mean": interval.mean, "low": interval.low, "high": interval.high}
    for (system, k), cut in cuts.items():
        metrics[system][f"coverage@{k}"] = {"mean": cut.coverage}

    comparisons: dict[str, dict[str, dict[str, float]]] = {}
    for baseline in evaluations:
        if baseline == MODEL:
            continue
        comparisons[baseline] = {}
        for system, name in keys:
            if system != MODEL:
                continue
            ours, theirs = row_of[(MODEL, name)], row_of[(baseline, name)]
            result = paired_comparison(
                values[ours], values[theirs], resampled[:, ours], resampled[:, theirs], confidence
            )
            comparisons[baseline][name] = {
                "difference": result.difference,
                "low": result.low,
                "high": result.high,
                "p_value": result.p_value,
            }
    return metrics, comparisons


def run_evaluation(config: EvaluationConfig) -> EvaluationResult:
    """Evaluate, write the reports, and log everything to an MLflow evaluation run."""
    started = time.time()
    recommender, source = load_recommender(config)
    metadata = recommender.metadata
    model_name = metadata["model"]
    dataset = load_dataset(config.dataset or metadata.get("dataset", ""), config.data_dir)
    check_fingerprint(metadata, dataset, source)
    # The reports' folder and the tracking store are checked before scoring.
    problem = writable_folder(config.reports_dir)
    if problem is not None:
        raise ConfigError(f"cannot write the reports to {config.reports_dir}: {problem}")
    tracker = Tracker(config.experiment_name, default=default_experiment(model_name))
    ended_dead_runs = tracker.end_dead_runs("evaluation")
    split, evaluations = score_systems(recommender, dataset, config)
    metrics, comparisons = summarise(
        evaluations, config.ks, config.n_bootstrap, config.confidence, config.seed
    )
    summary = _summary(
        config, metadata, source, dataset, split, evaluations, (metrics, comparisons)
    )

    tags = {
        "role": "evaluation",
        "model": model_name,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "split": split,
    }
    if metadata.get("mlflow_run_id"):
        tags["rectune.training_run_id"] = metadata["mlflow_run_id"]
    # The run starts when the work did: its duration covers the scoring, done before it.
    with tracker.stage_run(f"evaluate-{model_name}", tags=tags, start_time=started) as run_id:
        summary["mlflow_run_id"] = run_id
        tracker.log_inputs(run_id, split_inputs(dataset, {split: EVALUATION}))
        tracker.log(
            run_id,
            params={
                # The model's hyperparameters under the names trials and training use.
                **metadata.get("params", {}),
                "model_source": source,
                "ks": ",".join(map(str, config.ks)),
                "baselines": ",".join(s for s in evaluations if s != MODEL),
                "bootstrap_resamples": config.n_bootstrap,
                "confidence": config.confidence,
                "seed": config.seed,
            },
            metrics=_flat_metrics(metrics, split),
        )
        stem = f"evaluation-{model_name}-{dataset.name}"
        paths = write_evaluation_reports(summary, Path(config.reports_dir), stem)
        for path in paths:
            tracker.log_artifact(run_id, path, "evaluation")
    return EvaluationResult(
        summary=summary,
        report_paths=paths,
        run_id=run_id,
        experiment_name=tracker.experiment_name,
        tracking_uri=tracker.uri,
        ended_dead_runs=ended_dead_runs,
    )


def _summary(
    config: EvaluationConfig,
    metadata: dict[str, Any],
    source: str,
    dataset: SplitDataset,
    split: str,
    evaluations: dict[str, RankingEvaluation],
    summarised: tuple[dict[str, Any], dict[str, Any]],
) -> dict[str, Any]:
    """The evaluation's summary document; ``summarised`` is what :func:`summarise`
    returned for ``evaluations``."""
    metrics, comparisons = summarised
    model_eval = evaluations[MODEL]
    return {
        "model": {
            "name": metadata["model"],
            "source": source,
            "params": metadata.get("params", {}),
            "params_origin": metadata.get("params_origin"),
            "mode": metadata.get("mode", "final"),
            "training_run_id": metadata.get("mlflow_run_id"),
        },
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "split": split,
            "excluded": MODE_SPLITS[metadata.get("mode", "final")][0],
            "users_evaluated": model_eval.n_users,
            "items": model_eval.n_items,
        },
        "ks": list(config.ks),
        "bootstrap": {
            "resamples": config.n_bootstrap,
            "confidence": config.confidence,
            "seed": config.seed,
        },
        "systems": list(evaluations),
        "metrics": metrics,
        "comparisons": comparisons,
        "rectune_version": __version__,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _flat_metrics(metrics: dict[str, dict[str, dict[str, float]]], split: str) -> dict[str, float]:
    """MLflow metrics, named for the ``split`` scored: the model's as
    ``test_precision_at_10`` (with ``_ci_low``/``_ci_high``), a baseline's as
    ``popular/test_precision_at_10`` (MLflow's charts group a ``/`` prefix into one
    section). The paired comparisons stay in the reports: their differences follow
    from the means, and 2 x systems x metrics more columns would bury the trials."""
    flat: dict[str, float] = {}
    for system, values in metrics.items():
        named = split_metrics(split, {name: stats["mean"] for name, stats in values.items()})
        if system != MODEL:
            flat.update({f"{system}/{name}": value for name, value in named.items()})
            continue
        flat.update(named)
        for name, stats in values.items():
            if "low" in stats:
                flat.update(
                    split_metrics(
                        split, {f"{name}_ci_low": stats["low"], f"{name}_ci_high": stats["high"]}
                    )
                )
    return flat
