"""The training stage: fit ALS or BPR with tuned (or default) hyperparameters, save it.

``rectune train`` and ``src/model_training.py`` run this command.

Examples
--------
    python src/model_training.py --model als --mode final --hyperparameters
    python src/model_training.py --model als --hyperparameters tuned.json --param factors=128
    python src/model_training.py --model bpr --repeats 5
    python src/model_training.py --model als --hyperparameters --register rectune-als
"""

from pathlib import Path

import click

from rectune.cli import (
    COMMAND_SETTINGS,
    OneK,
    RectuneCommand,
    data_dir_option,
    experiment_option,
    models_dir_option,
    progress_option,
    seed_option,
    version_option,
)
from rectune.config import best_parameters_path
from rectune.data.store import MODE_SPLITS
from rectune.models import DEVICES, MODEL_NAMES
from rectune.training import (
    DEFAULT_ALIAS,
    EPOCHS_FROM,
    TrainingConfig,
    TrainingResult,
    parse_overrides,
    train_model,
)
from rectune.urls import redact_url

#: What a bare ``--hyperparameters`` stands for: the tuned file in ``--models-dir``.
TUNED_FILE = "MODELS_DIR/best_hyperparameters.json"


@click.command(cls=RectuneCommand, context_settings=COMMAND_SETTINGS)
@click.option("--model", type=click.Choice(MODEL_NAMES), required=True, help="Model to train.")
@click.option(
    "--mode",
    type=click.Choice(["tune", "final"]),
    default="final",
    show_default=True,
    help="final: fit on train, score test. tune: fit on train_val, score validation.",
)
@click.option(
    "--dataset",
    default="synthetic",
    show_default=True,
    help="Processed dataset name (from split_data.py) or folder.",
)
@click.option(
    "--hyperparameters",
    "hyperparameters",
    is_flag=False,
    flag_value=TUNED_FILE,
    type=click.Path(path_type=Path),
    help="Use tuned parameters: alone, this model's entry of "
    "MODELS_DIR/best_hyperparameters.json (what tune wrote there); with a path, that "
    "file's. Without it, rectune's defaults.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override one hyperparameter (repeatable); wins over the file.",
)
@click.option(
    "--k",
    type=OneK("the evaluate stage scores several (--k 5,10,20)"),
    default=10,
    show_default=True,
    help="Length of the ranked lists scored (one K; the evaluate stage scores several).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train N times with seeds SEED..SEED+N-1 and report mean and std.",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@models_dir_option("The model is saved to MODELS_DIR/MODEL/.")
@experiment_option
@click.option(
    "--register",
    metavar="NAME",
    help="Also register the pyfunc model as a new version of NAME in the MLflow registry.",
)
@click.option(
    "--alias",
    default=DEFAULT_ALIAS,
    show_default=True,
    help="Alias pointed at the new version with --register (load it as models:/NAME@ALIAS).",
)
@click.option(
    "--final-epochs-from",
    type=click.Choice(EPOCHS_FROM),
    default="steps",
    show_default=True,
    help="BPR with tuned parameters: steps scales the tuned epochs to make as many SGD "
    "steps on this data as tuning made on train_val (BPR peaks after a number of "
    "steps); epochs keeps the count. ALS keeps its iterations either way.",
)
@progress_option("Show the fit's iterations and the users scored (on a terminal).")
@seed_option("Seed of the model (and the first of --repeats).")
@data_dir_option
@version_option
def main(
    model: str,
    mode: str,
    dataset: str,
    hyperparameters: Path | None,
    params: tuple[str, ...],
    k: int,
    repeats: int,
    device: str,
    models_dir: Path,
    experiment_name: str | None,
    register: str | None,
    alias: str,
    final_epochs_from: str,
    progress: bool,
    seed: int,
    data_dir: Path,
) -> None:
    """Train MODEL on the dataset and save it to MODELS_DIR/MODEL/, logged to MLflow."""
    if hyperparameters == Path(TUNED_FILE):
        hyperparameters = best_parameters_path(models_dir)
    config = TrainingConfig(
        model=model,
        mode=mode,
        dataset=dataset,
        seed=seed,
        device=device,
        k=k,
        hyperparameters=hyperparameters,
        overrides=parse_overrides(params),
        repeats=repeats,
        data_dir=data_dir,
        models_dir=models_dir,
        experiment_name=experiment_name,
        register=register,
        alias=alias or None,
        show_progress=progress,
        final_epochs_from=final_epochs_from,
    )
    result = train_model(config)
    _print_fit(result, config)
    _print_outputs(result, config)


def _print_fit(result: TrainingResult, config: TrainingConfig) -> None:
    """Print the parameters the model was fitted with and its scores."""
    click.echo(f"Trained {config.model} ({config.mode}) with parameters from {result.origin}:")
    click.echo("  " + ", ".join(f"{name}={value}" for name, value in result.params.items()))
    if result.tuned_iterations is not None:
        click.echo(
            f"  (iterations: the tuned {result.tuned_iterations} epochs scaled to as many SGD "
            "steps on this data; --final-epochs-from epochs keeps them)"
        )
    scored = MODE_SPLITS[config.mode][1]
    click.echo(
        f"Scores on {scored}"
        + (f", mean ± std over {config.repeats} seeds:" if result.metrics_std else ":")
    )
    for name, value in result.metrics.items():
        spread = f" ± {result.metrics_std[name]:.4f}" if result.metrics_std else ""
        click.echo(f"  {name:<14} {value:.4f}{spread}")


def _print_outputs(result: TrainingResult, config: TrainingConfig) -> None:
    """Print where the model was saved, logged and registered."""
    click.echo(f"Saved to {result.model_dir}")
    if result.ended_dead_runs:
        click.echo(
            f"  note: ended {len(result.ended_dead_runs)} run(s) left RUNNING by a killed "
            "process of this machine"
        )
    click.echo(
        f"MLflow run {result.run_id} in experiment {result.experiment_name} "
        f"({redact_url(result.tracking_uri)})"
    )
    click.echo(f"  pyfunc model: {result.model_uri}")
    if result.registered_version is not None:
        register, alias, version = config.register, config.alias, result.registered_version
        uri = f"models:/{register}@{alias}" if alias else f"models:/{register}/{version}"
        click.echo(f"  registered as {register} version {version}: {uri}")
