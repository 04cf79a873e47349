"""Benchmark: one tuning trial plus evaluation on MovieLens-20M-shaped data.

Runs the pipeline's own scripts as a user would, each in its own process, and reports
each one's wall time and peak resident memory (from ``wait4``):

1. ``split_data.py`` makes the synthetic data (138,493 users x 26,744 items, 20,000,263
   interactions) and its splits;
2. ``split_data.py --input ratings.csv``: the same interactions read from a CSV file
   (written first, untimed), so the cost of the split itself shows apart from the
   generator's (``--no-csv`` leaves it out);
3. ``hyperparameter_tuning.py --n-trials 1`` fits ALS (64 factors, 15 iterations, the
   evaluator benchmark's model) on ``train_val`` and scores every validation user;
4. the same with ``--eval-users 10000``, a seeded sample of validation users.

Peak memory must stay well under the machine's (24 GiB here). About 10 minutes;
``--split-only`` stops after the splits.

    python benchmarks/scale.py
    python benchmarks/scale.py --split-only --json-out scale.json
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.csv as pa_csv

from _common import CONTEXT, ROOT, SHAPES, json_option, machine, print_table, write_json
from rectune.data.synthetic import SyntheticConfig, generate_interactions

ONE_POINT = """model: als
parameters:
  factors: 64
  iterations: 15
"""


def run_measured(args: list[str], env: dict[str, str]) -> dict:
    """Run a script to completion; its wall seconds and its own peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], cwd=env["PWD"], env=env, stdout=subprocess.PIPE, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise click.ClickException(f"{' '.join(args)} failed:\n{output}")
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def write_csv(config: SyntheticConfig, path: Path) -> None:
    """The synthetic interactions as a CSV file (user_id,item_id,rating,timestamp)."""
    table = pa.Table.from_pandas(generate_interactions(config), preserve_index=False)
    pa_csv.write_csv(table, path)


@click.command(context_settings=CONTEXT)
@click.option(
    "--shape",
    type=click.Choice(list(SHAPES)),
    default="ml-20m",
    show_default=True,
    help="ml-100k makes a quick dry run of the script.",
)
@click.option(
    "--csv/--no-csv",
    default=True,
    show_default=True,
    help="Also time the split of the same data read from a CSV file.",
)
@click.option("--split-only", is_flag=True, help="Time the splits only, not the trials.")
@json_option
def main(shape: str, csv: bool, split_only: bool, json_out: Path | None) -> None:
    """Wall time and peak memory of a split, a trial and its evaluation at scale."""
    config = SHAPES[shape]
    with tempfile.TemporaryDirectory(prefix="rectune-scale-") as tmp:
        folder = Path(tmp)
        (folder / "one_point.yaml").write_text(ONE_POINT)
        env = {
            **os.environ,
            "PWD": str(folder),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "OPENBLAS_NUM_THREADS": "1",
        }
        data = ["--data-dir", str(folder / "data")]
        split = [
            str(ROOT / "src" / "split_data.py"),
            "--dataset-name",
            "scale",
            "--n-users",
            str(config.n_users),
            "--n-items",
            str(config.n_items),
            "--n-interactions",
            str(config.n_interactions),
            *data,
        ]
        tune = [
            str(ROOT / "src" / "hyperparameter_tuning.py"),
            "--model",
            "als",
            "--dataset",
            "scale",
            "--n-trials",
            "1",
            "--search-space",
            "one_point.yaml",
            "--pruner",
            "none",
            "--no-progress",
            "--output",
            str(folder / "models" / "best.json"),
            *data,
        ]
        rows = [{"step": "split_data.py (generate, split, save)", **run_measured(split, env)}]
        if csv:
            ratings = folder / "ratings.csv"
            write_csv(config, ratings)
            from_file = [str(ROOT / "src" / "split_data.py"), "--input", str(ratings), *data]
            rows.append(
                {"step": "split_data.py --input ratings.csv", **run_measured(from_file, env)}
            )
        if not split_only:
            rows.append({"step": "1 trial, all validation users", **run_measured(tune, env)})
            sampled = [*tune, "--study-name", "sampled", "--eval-users", "10000"]
            rows.append({"step": "1 trial, --eval-users 10000", **run_measured(sampled, env)})
    print_table(
        rows,
        f"{shape}: {config.n_users:,} users x {config.n_items:,} items, "
        f"{config.n_interactions:,} interactions",
    )
    click.echo(machine())
    write_json(json_out, {"shape": shape, "steps": rows})


if __name__ == "__main__":
    main()
