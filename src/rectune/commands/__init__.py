"""The ``rectune`` console command: one click group over the stages' commands.

``rectune split|tune|train|evaluate`` run the very click commands that
``src/split_data.py``, ``src/hyperparameter_tuning.py``, ``src/model_training.py`` and
``src/evaluate_model.py`` run (same objects, same options, output and exit codes);
``rectune report`` re-renders a study's HTML report and ``rectune serve`` serves a
registered model over HTTP. Each subcommand's module is imported when it is used, so
``rectune split`` does not load Optuna or MLflow.
"""

from __future__ import annotations

import os

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported
# (the console script imports this module first, before any stage's).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import importlib
from typing import Any

import click

from rectune.cli import COMMAND_SETTINGS, run, version_option

#: Subcommand -> (module of rectune.commands, one-line help for ``rectune --help``).
COMMANDS = {
    "split": ("split", "Split interactions into the train/test and tune splits."),
    "tune": ("tune", "Tune a model's hyperparameters in an Optuna study tracked in MLflow."),
    "train": ("train", "Train the final model with the tuned parameters and save it."),
    "evaluate": ("evaluate", "Evaluate a saved model against baselines on held-out data."),
    "report": ("report", "Re-render a tuning study's HTML report from its Optuna storage."),
    "serve": ("serve", "Serve a registered model over HTTP (mlflow models serve)."),
}


class StageGroup(click.Group):
    """A group whose subcommands are imported on first use; ``--help`` lists them from
    :data:`COMMANDS` without importing any."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"rectune.commands.{COMMANDS[name][0]}").main

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group("rectune", cls=StageGroup, context_settings=COMMAND_SETTINGS)
@version_option
def group() -> None:
    """rectune: tune, train and evaluate implicit-feedback recommenders (ALS, BPR).

    The stages in order: split, tune, train, evaluate; `rectune COMMAND --help` lists a
    command's options. Each stage is also a script: src/split_data.py,
    src/hyperparameter_tuning.py, src/model_training.py, src/evaluate_model.py.
    """


def main(args: list[str] | None = None) -> Any:
    """The console script ``rectune`` (and ``python -m rectune``)."""
    run(group, args=args, prog_name="rectune")
