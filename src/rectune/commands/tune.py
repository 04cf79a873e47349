"""The tuning stage: an Optuna study over ALS or BPR hyperparameters, tracked in MLflow.

``rectune tune`` and ``src/hyperparameter_tuning.py`` run this command.

Examples
--------
    python src/hyperparameter_tuning.py --model als
    python src/hyperparameter_tuning.py --model bpr --n-trials 30 --sampler random
    python src/hyperparameter_tuning.py --model als --objectives precision@10,coverage@10
    python src/hyperparameter_tuning.py --model als --n-trials 200 \
        --storage postgresql://postgres@127.0.0.1:5432/optuna --study-name als-big
"""

import logging
from pathlib import Path
from typing import Any

import click
import optuna

from rectune.cli import (
    COMMAND_SETTINGS,
    OneK,
    RectuneCommand,
    data_dir_option,
    experiment_option,
    models_dir_option,
    progress_option,
    reports_dir_option,
    seed_option,
    version_option,
)
from rectune.config import best_parameters_path
from rectune.models import DEVICES, MODEL_NAMES
from rectune.progress import lines_above_bars
from rectune.tuning.checkpoints import DEFAULT_CHECKPOINTS, DEFAULT_PATIENCE
from rectune.tuning.heartbeats import DEFAULT_HEARTBEAT, GRACE_FACTOR
from rectune.tuning.plan import (
    SAMPLERS,
    TUNING_METRICS,
    TuningConfig,
    parse_objectives,
)
from rectune.tuning.pruners import DEFAULT_PRUNER, PRUNERS
from rectune.tuning.results import TuningResult
from rectune.tuning.study import repair_study, run_tuning


class _LevelPrefix(logging.Formatter):
    """Warnings as ``Warning: ...`` lines, progress notes as they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"Warning: {message}" if record.levelno >= logging.WARNING else message


class JobCount(click.ParamType):
    """A positive number of trials at once, or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            self.fail(f"{value!r} is neither a positive whole number nor 'auto'", param, ctx)
        return count


@click.command(cls=RectuneCommand, context_settings=COMMAND_SETTINGS)
@click.option("--model", type=click.Choice(MODEL_NAMES), required=True, help="Model to tune.")
@click.option(
    "--dataset",
    default="synthetic",
    show_default=True,
    help="Processed dataset name (from split_data.py) or folder; the default "
    "synthetic one is made if missing.",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Size of the study: run trials until it holds N finished (complete or pruned) "
    "ones. A re-run or a second worker runs only the missing ones.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop starting new trials after this many seconds.",
)
@click.option(
    "--k",
    type=OneK(
        "optimise several with --objectives precision@5,precision@10; the evaluate "
        "stage scores several (--k 5,10,20)"
    ),
    default=10,
    show_default=True,
    help="Length of the ranked lists scored: one K, the objective's (metric@K); the list "
    "syntax of evaluate's --k is refused with more than one K (--objectives takes several).",
)
@click.option(
    "--metric",
    type=click.Choice(TUNING_METRICS),
    default="precision",
    show_default=True,
    help="Validation metric@K to maximise.",
)
@click.option(
    "--objectives",
    help="Several objectives for a multi-objective study (NSGA-II by default), "
    "e.g. 'precision@10,coverage@10' or 'precision@10,fit_seconds'.",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    help="Optuna sampler [default: tpe; nsga2 with --objectives].",
)
@click.option(
    "--pruner",
    type=click.Choice(PRUNERS),
    default=DEFAULT_PRUNER,
    show_default=True,
    help="Stops trials whose validation scores lag at equal iteration counts, never "
    "before a third of the largest count or 10 complete trials. rung: once, at that "
    "count, the bottom quarter of all trials scored there; median, percentile: "
    "Optuna's, below the median or the 25th percentile of complete trials, at every "
    "count after.",
)
@click.option(
    "--search-space",
    metavar="PATH|default|grid",
    help="YAML search space, or a shipped one: default (wide ranges, early stopping "
    "picks the iterations) or grid (the seed plan's grid) "
    "[default: src/rectune/search_spaces/MODEL.yaml].",
)
@click.option(
    "--study-name",
    help="Optuna study; an existing one in --storage is resumed "
    "[default: MODEL-DATASET-OBJECTIVES].",
)
@click.option(
    "--storage",
    help="Optuna storage: the path of a journal file (processes of one machine), or a "
    "database URL: postgresql://USER:PASSWORD@HOST/DB lets workers on several machines "
    "share a study, sqlite:///PATH is one machine's [default: <folder of --output>/"
    "optuna.journal; never the MLflow database].",
)
@click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=DEFAULT_HEARTBEAT,
    show_default=True,
    help="Seconds between a running trial's heartbeats; a trial silent for "
    f"{GRACE_FACTOR}x this long (its worker was killed) is failed and retried once.",
)
@click.option(
    "--n-jobs",
    type=JobCount(),
    default="auto",
    show_default=True,
    help="Trials run at once, in threads sharing the cores; the study is the same "
    "whatever the machine, for a given N. auto: 2, or 1 where iteration sharing applies "
    "or the models fit on CUDA.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="auto uses CUDA when implicit reports it available.",
)
@click.option(
    "--cv-folds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Score each trial by the mean over N per-user folds of train "
    "(N fits per trial) instead of train_val/validation.",
)
@click.option(
    "--checkpoints",
    type=click.IntRange(min=1),
    default=DEFAULT_CHECKPOINTS,
    show_default=True,
    help="Validation scores per trial during its fit, evenly spaced (at the "
    "'iterations' choices instead, with iteration sharing); the pruner and early "
    "stopping read them.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=DEFAULT_PATIENCE,
    show_default=True,
    help="Where the search space does not search 'iterations' (it is the budget): stop a "
    "fit after this many checkpoints in a row without a new best, and keep the best "
    "count as its 'iterations' (0: fit the whole budget, still keeping the best).",
)
@click.option(
    "--share-iterations/--no-share-iterations",
    default=True,
    show_default=True,
    help="One fit serves every smaller 'iterations' choice of the search space: the "
    "model is scored there during the fit and recorded as a completed trial too "
    "(implicit iterates deterministically, so the values equal a separate fit's).",
)
@click.option(
    "--count-shared/--no-count-shared",
    default=False,
    show_default=True,
    help="Count the trials recorded by iteration sharing towards --n-trials (by default "
    "they come on top, so --n-trials fits are made).",
)
@click.option(
    "--eval-users",
    type=click.IntRange(min=1),
    help="Score trials on a fixed, seeded sample of N validation users instead of all "
    "(faster on large datasets; final evaluation always uses every user).",
)
@click.option(
    "--warm-start",
    is_flag=True,
    help="Enqueue the current best parameters from --output and the defaults as the first trials.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Run no trial: end the MLflow runs that killed workers left RUNNING (with the "
    "results Optuna recorded) and orphan runs, for the study that the other options name; "
    "every worker also does this when it joins and when it finishes.",
)
@models_dir_option(
    "Where the best parameters (best_hyperparameters.json), the default Optuna storage "
    "(optuna.journal) and the study report (reports/) go."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    show_default="MODELS_DIR/best_hyperparameters.json",
    help="Best parameters, merged per model; the default storage and reports/ go beside it.",
)
@reports_dir_option("Where the study's HTML report goes [default: reports/ beside --output].")
@experiment_option
@progress_option("Show the study's progress bar (on a terminal).")
@seed_option(
    "One seed for the sampler and the models (and a synthetic dataset made "
    "on the fly): same seed, same trials."
)
@data_dir_option
@version_option
def main(
    objectives: str | None,
    repair: bool,
    progress: bool,
    models_dir: Path,
    output: Path | None,
    **options: Any,
) -> None:
    """Tune MODEL's hyperparameters: train on train_val, score metric@K on validation.

    Every trial is a child run under one MLflow parent run; the best parameters are
    merged into --output as {"als": {...}, "bpr": {...}}.

    Re-running the same command resumes the study, and the same command started in
    more shells or on more machines with a shared --storage (postgresql://...) and
    MLFLOW_TRACKING_URI adds workers to it: they split the --n-trials between them.
    """
    logger = _log_to_stderr()
    # Every other option is the TuningConfig field of its name, so it is passed as is.
    config = TuningConfig(
        objectives=parse_objectives(objectives) if objectives else (),
        show_progress=progress,
        output=output or best_parameters_path(models_dir),
        **options,
    )
    if repair:
        for line in repair_study(config):
            click.echo(line)
        return
    with lines_above_bars([logger, logging.getLogger("optuna")], enabled=progress):
        result = run_tuning(config)
    _print_summary(result, config)
    if code := _exit_code(result):
        raise SystemExit(code)


def _log_to_stderr() -> logging.Logger:
    """Show rectune's progress notes and warnings as plain lines; return its logger.

    One "Warning: trial N failed: ..." line per failed trial instead of Optuna's
    tracebacks; the error is also kept in the trial and its MLflow run.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    handler = logging.StreamHandler()
    handler.setFormatter(_LevelPrefix())
    logger = logging.getLogger("rectune")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


def _print_summary(result: TuningResult, config: TuningConfig) -> None:
    """Print what the run did, the best trial, and where its report and runs are."""
    click.echo(_counts_line(result, config))
    for note in result.notes:
        click.echo(f"  note: {note}")
    _print_best(result, config)
    if result.report_path:
        click.echo(f"Report: {result.report_path}")
    click.echo(
        f"MLflow parent run {result.parent_run_id} in experiment "
        f"{result.experiment_name} ({result.tracking_uri})"
    )
    click.echo(f"  {result.ui_hint}")
    click.echo(f"Wall time {result.wall_seconds:.1f} s")


def _counts_line(result: TuningResult, config: TuningConfig) -> str:
    """The one line that counts this run's trials and fits and the study's total."""
    counts = result.counts
    if result.already_complete and not counts["fits"] + counts["complete"]:
        return (
            f"Study {result.study.study_name} is complete: {counts['study_finished']} of "
            f"{config.n_trials} trials finished, nothing to run (a larger --n-trials, or "
            "another --study-name, tunes on); its best and runs are below"
        )
    complete = counts["complete"] + counts["shared"]
    on_top = counts["shared"] and not config.count_shared
    return (
        f"Study {result.study.study_name}: {complete + counts['pruned'] + counts['failed']} "
        f"trials this run from {counts['fits']} fits ({complete} complete, "
        f"{counts['shared']} of them recorded from another's fit, {counts['reused']} reused; "
        f"{counts['pruned']} pruned, "
        f"{counts['failed']} failed); "
        f"{counts['study_finished']} of {config.n_trials} finished in the study"
        + (" (recorded ones on top)" if on_top else "")
        + (f", {result.resumed_trials} trials from earlier runs" if result.resumed_trials else "")
    )


def _print_best(result: TuningResult, config: TuningConfig) -> None:
    """Print the best trial's values and parameters, or why none was written."""
    if result.best_params is None:
        click.echo("No trial completed, so no best parameters were written.")
        return
    values = ", ".join(f"{name} = {value:.4f}" for name, value in result.best_values.items())
    params = ", ".join(f"{name}={value}" for name, value in result.best_params.items())
    # Validation scores run lower than the evaluation's test scores: say which these are.
    click.echo(f"Best (trial {result.best_trial_number}), on validation: {values}")
    click.echo(f"  {params}")
    click.echo(f"Wrote the {config.model} entry of {config.output}")


def _exit_code(result: TuningResult) -> int:
    """130 after Ctrl-C (the convention), 1 when there is nothing to hand to the next
    stage, else 0."""
    if result.interrupted:
        return 130
    if result.best_params is None:
        return 1
    return 0
