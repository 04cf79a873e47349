"""``rectune report``: re-render a tuning study's HTML report from its Optuna storage.

The tuning stage writes the report when it finishes; this writes it again from what the
storage holds now (after more workers joined, or when the run that would have written it
was killed), without touching MLflow.
"""

from pathlib import Path

import click

from rectune.cli import (
    COMMAND_SETTINGS,
    RectuneCommand,
    models_dir_option,
    reports_dir_option,
    seed_option,
    version_option,
)


@click.command(cls=RectuneCommand, context_settings=COMMAND_SETTINGS)
@click.option("--study-name", help="The study [default: the storage's only study].")
@click.option(
    "--storage",
    help="Optuna storage: a journal file path or a database URL, as the study was tuned "
    "with [default: MODELS_DIR/optuna.journal].",
)
@models_dir_option("Where the default storage lies; reports go to MODELS_DIR/reports/.")
@reports_dir_option("Where the report goes.")
@seed_option("Seed of the parameter importances.")
@version_option
def main(
    study_name: str | None,
    storage: str | None,
    models_dir: Path,
    reports_dir: Path | None,
    seed: int,
) -> None:
    """Re-render a tuning study's HTML report (REPORTS_DIR/STUDY.html) from its storage.

    The page is the one the tuning stage writes: summary, best parameters, importances,
    trials and plots; MLflow is not touched.
    """
    from rectune.api import report

    path = report(
        study_name or None,
        storage=storage or None,
        models_dir=models_dir,
        reports_dir=reports_dir,
        seed=seed,
    )
    click.echo(f"Report: {path}")
