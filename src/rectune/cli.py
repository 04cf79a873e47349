"""Shared command-line plumbing: one-line errors and the options every stage takes."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import click

from rectune import __version__
from rectune.config import DEFAULT_SEED, MODELS_DIR, default_data_dir, parse_ks
from rectune.errors import RectuneError
from rectune.urls import protect, redact_text

#: click settings shared by every stage script.
COMMAND_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InputError(click.ClickException):
    """Bad input from the user: printed as one ``Error:`` line, exit code 2."""

    exit_code = 2


class RectuneCommand(click.Command):
    """A click command whose input errors are one line on stderr and exit code 2.

    Option errors (click's usage errors) are shown without the usage block; domain
    errors (:class:`rectune.errors.RectuneError`) become :class:`InputError`.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            raise InputError(f"{err.format_message()} (see --help)") from err

    def invoke(self, ctx: click.Context) -> Any:
        # Every URL the command was given, so that no message can quote its password.
        protect(
            os.environ.get("MLFLOW_TRACKING_URI"),
            *(value for value in ctx.params.values() if isinstance(value, str) and "://" in value),
        )
        try:
            return super().invoke(ctx)
        except RectuneError as err:
            # Messages may quote a driver's error, which can quote a URL with a password.
            raise InputError(redact_text(str(err))) from err


def run(command: click.Command, **kwargs: Any) -> None:
    """Run a stage script's command (``kwargs`` go to its ``main``: ``args``,
    ``prog_name``), then let the process exit without a last full
    garbage collection.

    At exit Python collects every object it still tracks: with implicit, Optuna, MLflow
    and plotly loaded, some 450,000 objects, which kept a finished stage waiting about
    0.9 s after its last line. Freezing them first (:func:`gc.freeze`) leaves them out
    of that pass. Exit handlers still run and output is still flushed; objects caught
    in reference cycles are not collected, so their finalizers may not run (Python
    does not promise that at exit anyway; every file rectune writes is complete before
    the command returns), and the memory goes back to the system when the process ends.
    """
    try:
        command(**kwargs)
    finally:
        gc.freeze()


def seed_option(help: str) -> Any:
    """``--seed``; ``help`` says what the seed drives in this stage."""
    return click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help=help)


def progress_option(help: str) -> Any:
    """``--progress/--no-progress``; ``help`` says what the bars show (on a terminal)."""
    return click.option("--progress/--no-progress", default=True, show_default=True, help=help)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    click.echo(f"Warning: {message}", err=True)


def data_dir_option(func: Any) -> Any:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=lambda: str(default_data_dir()),
        show_default="data/ in the project (or $RECTUNE_DATA_DIR)",
        help="Root of raw/ (downloads) and processed/ (split datasets).",
    )(func)


def experiment_option(func: Any) -> Any:
    return click.option(
        "--experiment-name",
        help="MLflow experiment [default: under `mlflow run`, its run's; else rectune-MODEL].",
    )(func)


def version_option(func: Any) -> Any:
    """``--version``: rectune's version, the same for the ``rectune`` group and every stage."""
    return click.version_option(
        __version__, "--version", prog_name="rectune", message="%(prog)s %(version)s"
    )(func)


def models_dir_option(help: str) -> Any:
    """``--models-dir`` (default ``models/``); ``help`` says what the stage keeps there."""
    return click.option(
        "--models-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=MODELS_DIR,
        show_default="models/",
        help=help,
    )


def reports_dir_option(help: str) -> Any:
    """``--reports-dir`` (default ``None``: the stage's ``MODELS_DIR/reports``)."""
    return click.option(
        "--reports-dir",
        type=click.Path(file_okay=False, path_type=Path),
        show_default="MODELS_DIR/reports",
        help=help,
    )


class KList(click.ParamType):
    """``--k K[,K...]``: one or more list lengths, comma-separated (a tuple, ascending)."""

    name = "K[,K...]"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_ks(value)
        except RectuneError as err:
            self.fail(str(err), param, ctx)


class OneK(click.IntRange):
    """``--k K`` of a stage whose objective is one list length: the ``K[,K...]`` syntax of
    every stage's ``--k``, refusing more than one K with what to do instead."""

    name = "K"

    def __init__(self, instead: str) -> None:
        super().__init__(min=1)
        self.instead = instead

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, str) and "," in value:
            try:
                ks = parse_ks(value)
            except RectuneError as err:
                self.fail(str(err), param, ctx)
            if len(ks) > 1:
                self.fail(f"{value!r}: this stage scores one K: {self.instead}", param, ctx)
            value = ks[0]
        return super().convert(value, param, ctx)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "K"
