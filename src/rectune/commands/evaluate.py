"""The evaluation stage: score a saved model on held-out data against baselines.

``rectune evaluate`` and ``src/evaluate_model.py`` run this command.

Examples
--------
    python src/evaluate_model.py --model als
    python src/evaluate_model.py --model-dir models/als --k 5,10,20 --defaults-baseline
    python src/evaluate_model.py --run-id 0e150a1d5eed4451af20b7f9f4964a46
"""

from pathlib import Path

import click

from rectune.cli import (
    COMMAND_SETTINGS,
    InputError,
    KList,
    RectuneCommand,
    data_dir_option,
    experiment_option,
    models_dir_option,
    progress_option,
    reports_dir_option,
    seed_option,
    version_option,
)
from rectune.config import default_reports_dir
from rectune.evaluation.report import evaluation_tables
from rectune.evaluation.stage import (
    DEFAULT_KS,
    EvaluationConfig,
    EvaluationResult,
    run_evaluation,
)
from rectune.models import DEVICES, MODEL_NAMES
from rectune.urls import redact_url


@click.command(cls=RectuneCommand, context_settings=COMMAND_SETTINGS)
@click.option(
    "--model",
    type=click.Choice(MODEL_NAMES),
    help="Evaluate the model saved in MODELS_DIR/MODEL/ by model_training.py.",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Evaluate the model saved in this folder.",
)
@click.option("--run-id", help="Evaluate the model logged by this MLflow training run.")
@click.option(
    "--dataset",
    help="Processed dataset name or folder [default: the one the model was trained on]. "
    "It must be the very split the model was trained on (checked by fingerprint).",
)
@click.option(
    "--k",
    "ks",
    type=KList(),
    default=",".join(map(str, DEFAULT_KS)),
    show_default=True,
    help="List lengths to score, comma-separated.",
)
@click.option(
    "--defaults-baseline",
    is_flag=True,
    help="Also train and score the same model with rectune's default hyperparameters.",
)
@click.option(
    "--n-bootstrap",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of users for the confidence intervals.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence level of the intervals.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Device for --defaults-baseline training.",
)
@models_dir_option("Where --model looks; reports go to MODELS_DIR/reports/.")
@reports_dir_option("Where the evaluation reports go.")
@experiment_option
@progress_option("Show the users scored for each system (on a terminal).")
@seed_option("Seed of the bootstrap, the random baseline and --defaults-baseline.")
@data_dir_option
@version_option
def main(
    model: str | None,
    model_dir: Path | None,
    run_id: str | None,
    dataset: str | None,
    ks: tuple[int, ...],
    defaults_baseline: bool,
    n_bootstrap: int,
    confidence: float,
    device: str,
    models_dir: Path,
    reports_dir: Path | None,
    experiment_name: str | None,
    progress: bool,
    seed: int,
    data_dir: Path,
) -> None:
    """Evaluate a saved model on its held-out split against popular and random baselines.

    Give the model as --model, --model-dir or --run-id. Metrics (precision, recall, nDCG,
    MAP, MRR, hit rate, coverage) come with bootstrap intervals over users and a paired
    comparison with each baseline; the report is written to MODELS_DIR/reports/ and
    logged to an MLflow evaluation run.
    """
    _check_one_model(model, model_dir, run_id)
    config = EvaluationConfig(
        model_dir=Path(models_dir) / model if model else model_dir,
        run_id=run_id,
        dataset=dataset,
        data_dir=data_dir,
        ks=ks,
        defaults_baseline=defaults_baseline,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        device=device,
        reports_dir=reports_dir or default_reports_dir(models_dir),
        experiment_name=experiment_name,
        show_progress=progress,
    )
    result = run_evaluation(config)
    _print_results(result)


def _check_one_model(model: str | None, model_dir: Path | None, run_id: str | None) -> None:
    """Refuse anything but exactly one way of naming the model."""
    chosen = [given for given in (model, model_dir, run_id) if given is not None]
    if len(chosen) != 1:
        raise InputError("give exactly one of --model, --model-dir and --run-id (see --help)")


def _print_results(result: EvaluationResult) -> None:
    """Print what was evaluated, the report's tables, and where reports and run are."""
    summary = result.summary
    data = summary["dataset"]
    click.echo(
        f"Evaluated {summary['model']['name']} ({summary['model']['source']}) on the "
        f"{data['split']} split of {data['name']}: {data['users_evaluated']} users"
    )
    for title, header, rows in evaluation_tables(summary):
        click.echo(f"\n{title}")
        _print_table(header, rows)
    click.echo("\nReports: " + ", ".join(str(path) for path in result.report_paths))
    if result.ended_dead_runs:
        click.echo(
            f"  note: ended {len(result.ended_dead_runs)} run(s) left RUNNING by a killed "
            "process of this machine"
        )
    click.echo(
        f"MLflow run {result.run_id} in experiment {result.experiment_name} "
        f"({redact_url(result.tracking_uri)})"
    )


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print ``header`` and ``rows`` indented, in columns as wide as their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        click.echo(
            "  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
