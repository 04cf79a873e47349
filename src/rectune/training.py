"""Training a model with tuned (or default) hyperparameters, and saving it.

``mode="final"`` fits on the dataset's ``train`` matrix and scores ``test``;
``mode="tune"`` fits on ``train_val`` and scores ``validation``. The model is saved to
``models/<model>/`` (the layout is in :mod:`rectune.recommender`) and logged to an MLflow
run, both as plain files and as a pyfunc model that recommends by user id.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import scipy.sparse as sp
import yaml

from rectune import __version__
from rectune._io import writable_folder
from rectune.config import DATA_DIR, MODELS_DIR, best_parameters_path
from rectune.data.store import MODE_SPLITS, SplitDataset, load_dataset
from rectune.errors import ConfigError
from rectune.evaluation.evaluator import Evaluator
from rectune.models import (
    DEFAULT_HYPERPARAMETERS,
    build_model,
    check_model_name,
    fit_model,
    validate_hyperparameters,
)
from rectune.progress import iteration_bar, phase, scoring_bar
from rectune.recommender import write_model_folder
from rectune.seeds import REPEAT, derived_seed
from rectune.tracking import (
    EVALUATION,
    TRAINING,
    Tracker,
    default_experiment,
    split_inputs,
    split_metrics,
)
from rectune.tuning.best_params import matching_provenance, read_best_hyperparameters

Mode = Literal["tune", "final"]
#: How a tuned BPR's epochs carry over to a fit on other data (``--final-epochs-from``).
EpochsFrom = Literal["steps", "epochs"]
EPOCHS_FROM: tuple[str, ...] = get_args(EpochsFrom)
DEFAULT_HYPERPARAMETERS_FILE = best_parameters_path()
#: The alias ``--register`` points at the new version unless told otherwise.
DEFAULT_ALIAS = "champion"


def load_hyperparameters(model: str, source: Path | None) -> tuple[dict[str, Any], str]:
    """The hyperparameters to train ``model`` with, and where they came from.

    ``source=None`` gives rectune's defaults; a path gives that file's ``model`` entry.

    Raises
    ------
    ConfigError
        When the file is missing, malformed or has no entry for ``model``; the message
        names the tuning command that writes it.
    """
    check_model_name(model)
    if source is None:
        return dict(DEFAULT_HYPERPARAMETERS[model]), "defaults"
    source = Path(source)
    make = f"python src/hyperparameter_tuning.py --model {model} --output {source}"
    if not source.is_file():
        raise ConfigError(f"hyperparameters file {source} not found; make it with `{make}`")
    try:
        document = read_best_hyperparameters(source)
    except ConfigError as err:
        raise ConfigError(f"{err}; or re-create it with `{make}`") from err
    if model not in document:
        raise ConfigError(
            f"{source} has no {model!r} entry (it has: {', '.join(document) or 'none'}); "
            f"tune it with `{make}`"
        )
    return dict(document[model]), str(source)


def tuning_provenance(model: str, source: Path | None) -> dict[str, Any]:
    """The provenance the tuning stage recorded beside ``source`` for ``model``, if any."""
    if source is None:
        return {}
    return matching_provenance(Path(source), model)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["factors=128", "use_cg=false"]`` -> ``{"factors": 128, "use_cg": False}``.

    Values are read as YAML scalars, so numbers and booleans get their types.
    """
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise ConfigError(f"--param {item!r} is not NAME=VALUE, e.g. --param factors=128")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--param {item!r}: cannot read the value {text!r}") from err
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" as a string; a number is meant.
            with contextlib.suppress(ValueError):
                value = float(value)
        overrides[name.strip()] = value
    return overrides


@dataclass(frozen=True)
class TrainingConfig:
    """One training invocation; the CLI maps its options onto this."""

    model: str
    mode: Mode = "final"
    dataset: str = "synthetic"
    seed: int = 42
    device: str = "auto"
    k: int = 10
    hyperparameters: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    data_dir: Path = DATA_DIR
    models_dir: Path = MODELS_DIR
    experiment_name: str | None = None
    register: str | None = None
    alias: str | None = DEFAULT_ALIAS
    #: Progress bars of the fit's iterations and the users scored (on a terminal only).
    show_progress: bool = False
    final_epochs_from: EpochsFrom = "steps"

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.mode not in ("tune", "final"):
            raise ConfigError(f"unknown mode {self.mode!r}; choose tune or final")
        if self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k}")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be at least 1, got {self.repeats}")
        if self.final_epochs_from not in EPOCHS_FROM:
            raise ConfigError(
                f"unknown final_epochs_from {self.final_epochs_from!r}; choose steps or epochs"
            )
        if self.register is not None and not self.register.strip():
            raise ConfigError("the registered model name must not be empty")


@dataclass
class TrainingResult:
    """What a training run reports back."""

    params: dict[str, Any]
    origin: str
    metrics: dict[str, float]
    metrics_std: dict[str, float] | None
    model_dir: Path
    run_id: str
    experiment_name: str
    tracking_uri: str
    fit_seconds: float
    model_uri: str
    registered_version: int | None = None
    #: A tuned BPR's epochs before :func:`scaled_epochs` (``None``: not scaled).
    tuned_iterations: int | None = None
    #: Training runs a killed process of this machine had left RUNNING, ended now.
    ended_dead_runs: list[str] = field(default_factory=list)


def scaled_epochs(epochs: int, tuned_interactions: int, interactions: int) -> int:
    """BPR epochs on ``interactions`` that make as many SGD steps as ``epochs`` made on
    ``tuned_interactions``: implicit's BPR takes one step per interaction and epoch,
    and its validation score peaks after a number of steps, so the final fit on
    ``train`` (a quarter more interactions than ``train_val``, with a 20% validation
    share) would overshoot the peak by a quarter at the tuned epoch count."""
    return max(1, round(epochs * tuned_interactions / max(interactions, 1)))


def train_model(config: TrainingConfig) -> TrainingResult:
    """Fit, score, save and log one model (``repeats`` fits when asked).

    A tuned BPR's ``iterations`` (epochs) are scaled to the same number of SGD steps
    on the data it now fits (:func:`scaled_epochs`) unless ``final_epochs_from`` is
    ``epochs`` or ``--param iterations=`` sets them. ALS keeps its count: one ALS
    iteration solves every user and item once, whatever the data's size.
    """
    started = time.time()
    inputs = _prepare(config)
    # The model folder and the tracking store are checked before the fit, not after.
    problem = writable_folder(config.models_dir)
    if problem is not None:
        raise ConfigError(f"cannot write the model to {config.models_dir}: {problem}")
    phase(f"opening MLflow's tracking store for {config.model}", config.show_progress)
    tracker = Tracker(config.experiment_name, default=default_experiment(config.model))
    ended_dead_runs = tracker.end_dead_runs("training")
    fitted = _fit_and_score(config, inputs)
    run_name = f"train-{config.model}-{config.mode}"
    # The run starts when the work did: its duration covers the fit, made before it.
    with tracker.stage_run(run_name, tags=_run_tags(config, inputs), start_time=started) as run_id:
        tracker.log_inputs(
            run_id,
            split_inputs(
                inputs.dataset, {inputs.fit_split: TRAINING, inputs.score_split: EVALUATION}
            ),
        )
        metadata = _metadata(config, inputs, fitted, run_id, tracker.experiment_name)
        model_dir = Path(config.models_dir) / config.model
        write_model_folder(model_dir, fitted.model, inputs.fit_on, inputs.dataset.path, metadata)
        phase("saving the model and logging it to MLflow", config.show_progress)
        model_uri, version = _log_training(tracker, run_id, config, inputs, fitted, model_dir)
    return TrainingResult(
        params=inputs.params,
        origin=inputs.origin,
        metrics=fitted.metrics,
        metrics_std=fitted.metrics_std,
        model_dir=model_dir,
        run_id=run_id,
        experiment_name=tracker.experiment_name,
        tracking_uri=tracker.uri,
        fit_seconds=fitted.fit_seconds,
        model_uri=model_uri,
        registered_version=version,
        tuned_iterations=inputs.tuned_epochs,
        ended_dead_runs=ended_dead_runs,
    )


@dataclass(frozen=True)
class _Inputs:
    """What one training fits: the hyperparameters and where they came from, the data."""

    params: dict[str, Any]
    origin: str
    #: The provenance tuning recorded beside the hyperparameters file (may be empty).
    tuned: dict[str, Any]
    #: A tuned BPR's epochs before :func:`scaled_epochs` (``None``: not scaled).
    tuned_epochs: int | None
    dataset: SplitDataset
    fit_split: str
    score_split: str

    @property
    def fit_on(self) -> sp.csr_matrix:
        return self.dataset.matrices[self.fit_split]

    @property
    def score_on(self) -> sp.csr_matrix:
        return self.dataset.matrices[self.score_split]


def _prepare(config: TrainingConfig) -> _Inputs:
    """Read the hyperparameters and the dataset; refuse an empty split to score."""
    loaded, origin = load_hyperparameters(config.model, config.hyperparameters)
    params = validate_hyperparameters(config.model, {**loaded, **config.overrides})
    dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    fit_split, score_split = MODE_SPLITS[config.mode]
    tuned = tuning_provenance(config.model, config.hyperparameters)
    tuned_epochs = None
    if (
        config.model == "bpr"
        and config.final_epochs_from == "steps"
        and config.hyperparameters is not None
        and "iterations" not in config.overrides
    ):
        # Studies made before this was recorded tuned on the dataset's train_val.
        seen = int(tuned.get("trained_interactions") or dataset.train_val.nnz)
        tuned_epochs = params["iterations"]
        params["iterations"] = scaled_epochs(tuned_epochs, seen, dataset.matrices[fit_split].nnz)
    if dataset.matrices[score_split].nnz == 0:
        raise ConfigError(
            f"the {score_split} split of {config.dataset!r} is empty; nothing to score"
        )
    return _Inputs(params, origin, tuned, tuned_epochs, dataset, fit_split, score_split)


@dataclass(frozen=True)
class _Fitted:
    """The model kept from :func:`_fit_and_score` and the scores of every repeat."""

    model: Any
    metrics: dict[str, float]
    metrics_std: dict[str, float] | None
    fit_seconds: float


def _fit_and_score(config: TrainingConfig, inputs: _Inputs) -> _Fitted:
    """Fit ``config.repeats`` models (``seed`` itself, then seeds derived from it by
    :func:`rectune.seeds.derived_seed`) and score each;
    the model kept is the first, the metrics are means (and, repeated, deviations)."""
    runs: list[dict[str, float]] = []
    kept = None
    fit_seconds = 0.0
    evaluator = Evaluator(inputs.fit_on, inputs.score_on, config.k)  # one for every repeat
    for repeat in range(config.repeats):
        model = build_model(
            config.model,
            inputs.params,
            device=config.device,
            seed=derived_seed(config.seed, REPEAT, repeat),
        )
        label = f"fitting {config.model}"
        if config.repeats > 1:
            label += f" ({repeat + 1} of {config.repeats})"
        iterations = int(
            inputs.params.get("iterations", DEFAULT_HYPERPARAMETERS[config.model]["iterations"])
        )
        with iteration_bar(iterations, label, config.show_progress) as advance:
            started = time.perf_counter()
            fit_model(model, inputs.fit_on, callback=advance)
            fit_seconds += time.perf_counter() - started
        with scoring_bar(
            len(evaluator.users), f"scoring {inputs.score_split}", config.show_progress
        ) as advance:
            runs.append(evaluator(model, progress=advance).named())
        if repeat == 0:
            kept = model  # the model saved is the one trained with --seed itself
    metrics = {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}
    metrics_std = (
        {name: float(np.std([r[name] for r in runs], ddof=1)) for name in runs[0]}
        if config.repeats > 1
        else None
    )
    return _Fitted(kept, metrics, metrics_std, fit_seconds)


def _run_tags(config: TrainingConfig, inputs: _Inputs) -> dict[str, Any]:
    """The training run's tags; it names the tuning run its hyperparameters came from."""
    tags = {
        "role": "training",
        "model": config.model,
        "mode": config.mode,
        "dataset": inputs.dataset.name,
        "dataset_fingerprint": inputs.dataset.fingerprint,
        "params_origin": inputs.origin,
    }
    if inputs.tuned.get("parent_run_id"):
        tags["rectune.tuning_run_id"] = inputs.tuned["parent_run_id"]
    return tags


def _metadata(
    config: TrainingConfig, inputs: _Inputs, fitted: _Fitted, run_id: str, experiment: str
) -> dict[str, Any]:
    """The saved model's ``model.json`` (see :mod:`rectune.recommender`)."""
    return {
        "model": config.model,
        "params": inputs.params,
        "params_origin": inputs.origin,
        "overrides": config.overrides,
        "tuned_iterations": inputs.tuned_epochs,
        "final_epochs_from": config.final_epochs_from if inputs.tuned_epochs else None,
        "seed": config.seed,
        "mode": config.mode,
        "trained_on": inputs.fit_split,
        "scored_on": inputs.score_split,
        "dataset": inputs.dataset.name,
        "dataset_fingerprint": inputs.dataset.fingerprint,
        "k": config.k,
        "metrics": fitted.metrics,
        "metrics_std": fitted.metrics_std,
        "repeats": config.repeats,
        "mlflow_run_id": run_id,
        "mlflow_experiment": experiment,
        "tuning_run_id": inputs.tuned.get("parent_run_id"),
        "rectune_version": __version__,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _log_training(
    tracker: Tracker,
    run_id: str,
    config: TrainingConfig,
    inputs: _Inputs,
    fitted: _Fitted,
    model_dir: Path,
) -> tuple[str, int | None]:
    """Log the training run's params, metrics, model files and pyfunc model, and
    register it when asked; return the pyfunc model's URI and the registered version."""
    tracker.log(
        run_id,
        params={
            **inputs.params,
            "seed": config.seed,
            "mode": config.mode,
            "k": config.k,
            "repeats": config.repeats,
            **({"tuned_iterations": inputs.tuned_epochs} if inputs.tuned_epochs else {}),
            **{f"override_{k}": v for k, v in config.overrides.items()},
        },
        metrics=split_metrics(
            inputs.score_split,
            {
                **fitted.metrics,
                "fit_seconds": fitted.fit_seconds / config.repeats,
                **{f"{k}_std": v for k, v in (fitted.metrics_std or {}).items()},
            },
        ),
    )
    for path in sorted(model_dir.iterdir()):
        tracker.log_artifact(run_id, path, "model")
    model_uri = tracker.log_recommender(
        run_id, model_dir, inputs.dataset.user_ids[:3].tolist(), config.k
    )
    version = None
    if config.register:
        phase(f"registering it as {config.register}", config.show_progress)
        version = tracker.register(model_uri, config.register, config.alias)
    return model_uri, version
