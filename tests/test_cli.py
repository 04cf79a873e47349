"""rectune.cli.run: how every stage script ends."""

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# A command that prints, then exits with the code it is given; an exit handler reports
# whether the objects alive at exit were frozen out of the last garbage collection.
SCRIPT = """
import atexit, gc, sys
import click
from rectune.cli import RectuneCommand, run

atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))

@click.command(cls=RectuneCommand)
@click.argument("code", type=int)
def main(code):
    click.echo("done")
    if code:
        raise click.ClickException("failed")

run(main)
"""


@pytest.mark.parametrize("code, status, output", [(0, 0, "done"), (1, 1, "Error: failed")])
def test_run_keeps_the_exit_status_and_freezes_objects_before_exit(code, status, output):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(code)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    )
    assert result.returncode == status, result.stderr
    assert output in result.stdout + result.stderr
    assert result.stdout.strip().endswith("frozen at exit: True")
