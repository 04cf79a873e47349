"""``rectune serve``: serve a registered model over HTTP with ``mlflow models serve``.

MLflow's local model server starts ``uvicorn`` from ``PATH``; without the virtual
environment activated it is not found (``uvicorn: not found``). This command runs the
server with this interpreter's ``bin/`` first on ``PATH``, so it works from any shell.
"""

import os
import subprocess
import sys
from pathlib import Path

import click

from rectune.cli import COMMAND_SETTINGS, RectuneCommand, version_option
from rectune.models import MODEL_NAMES
from rectune.training import DEFAULT_ALIAS

DEFAULT_PORT = 5001


def serve_command(model_uri: str, port: int, host: str) -> list[str]:
    """The ``mlflow models serve`` command line for ``model_uri`` (this interpreter's
    MLflow, the current environment: ``--env-manager local``)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
    ]


def serve_env() -> dict[str, str]:
    """The environment with this interpreter's ``bin/`` first on ``PATH``."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": os.pathsep.join([bin_dir, path]) if path else bin_dir}


@click.command(cls=RectuneCommand, context_settings=COMMAND_SETTINGS)
@click.option(
    "--model",
    type=click.Choice(MODEL_NAMES),
    default="als",
    show_default=True,
    help="Serve the registered model rectune-MODEL (model_training.py --register).",
)
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True, help="Registry alias served.")
@click.option(
    "--model-uri",
    help="Any MLflow model URI instead [default: models:/rectune-MODEL@ALIAS].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@version_option
def main(model: str, alias: str, model_uri: str | None, host: str, port: int) -> None:
    """Serve a registered model on http://HOST:PORT/invocations until Ctrl-C.

    Runs `mlflow models serve -m models:/rectune-MODEL@ALIAS --env-manager local` with
    this Python's bin/ first on PATH (MLflow starts uvicorn from it). Ask it with, e.g.:

    \b
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
      -d '{"dataframe_records": [{"user_id": 1}], "params": {"k": 2}}'
    """
    uri = model_uri or f"models:/rectune-{model}@{alias}"
    click.echo(f"Serving {uri} on http://{host}:{port}/invocations (Ctrl-C stops it)", err=True)
    try:
        code = subprocess.call(serve_command(uri, port, host), env=serve_env())
    except KeyboardInterrupt:
        code = 130
    if code:
        raise SystemExit(code)
