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

``--sizes 1m,5m,10m,20m`` measures how the same steps grow instead: for each size, N
million interactions are MovieLens-20M scaled by N/20 (users and items each scaled by
sqrt(N/20), so the density stays that of MovieLens-20M; 20m is exactly its shape). The
data is written to a CSV file (untimed), split in a process of its own that times
``build_dataset``'s phases (read, implicit feedback, split, write) and reports its peak
RSS, and then one trial is run on that split, with all validation users and with
``--eval-users 10000``, fitted to its whole budget (``--patience 0``: 15 iterations,
scored at all 10 checkpoints), its fit and evaluation seconds read from the study. A
least-squares line per phase (seconds = a + b x millions of interactions) ends the
output. About 11 minutes for 1m,5m,10m,20m on 2 cores.

    python benchmarks/scale.py
    python benchmarks/scale.py --split-only --json-out scale.json
    python benchmarks/scale.py --sizes 1m,5m,10m,20m --json-out sizes.json
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from _common import CONTEXT, ROOT, SHAPES, json_option, machine, print_table, write_json
from rectune.data.synthetic import SyntheticConfig, generate_interactions

HERE = Path(__file__).resolve().parent
#: The phases of ``build_dataset`` the size sweep times, and the functions they call.
PHASES = {
    "read": ("load_source", "validate_interactions"),
    "filter": ("to_implicit_feedback",),
    "split": ("split_interactions",),
    "write": ("save_dataset",),
}

ONE_POINT = """model: als
parameters:
  factors: 64
  iterations: 15
"""


def run_measured(args: list[str], env: dict[str, str], output: list | None = None) -> dict:
    """Run a script to completion; its wall seconds and its own peak RSS (its stdout
    appended to ``output`` where given)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], cwd=env["PWD"], env=env, stdout=subprocess.PIPE, text=True
    )
    text = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise click.ClickException(f"{' '.join(args)} failed:\n{text}")
    if output is not None:
        output.append(text)
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def write_csv(config: SyntheticConfig, path: Path) -> None:
    """The synthetic interactions as a CSV file (user_id,item_id,rating,timestamp)."""
    table = pa.Table.from_pandas(generate_interactions(config), preserve_index=False)
    pa_csv.write_csv(table, path)


def sized(size: str) -> SyntheticConfig:
    """``5m``: MovieLens-20M scaled by 5/20, users and items each by sqrt(5/20)."""
    text = size.strip().lower()
    try:
        millions = float(text[:-1] if text.endswith("m") else text)
    except ValueError:
        raise click.BadParameter(f"{size!r} is not a size such as 1m or 2.5m") from None
    full = SHAPES["ml-20m"]
    share = millions * 1e6 / full.n_interactions if millions != 20 else 1.0
    if not 0 < share <= 4:
        raise click.BadParameter(f"{size!r}: sizes from above 0 to 80m")
    side = math.sqrt(share)
    return SyntheticConfig(
        n_users=max(1, round(full.n_users * side)),
        n_items=max(1, round(full.n_items * side)),
        n_interactions=round(full.n_interactions * share),
    )


def split_phases(csv: str, data_dir: str) -> None:
    """Run the data stage on ``csv`` as ``split_data.py --input`` does, and print the
    seconds of each phase as JSON (run in a process of its own, for its peak RSS)."""
    from rectune.data import build
    from rectune.data.feedback import FeedbackConfig
    from rectune.data.splits import SplitConfig

    seconds = dict.fromkeys(PHASES, 0.0)
    for phase, names in PHASES.items():
        for name in names:
            original = getattr(build, name)

            def timed(*args, _original=original, _phase=phase, **kwargs):
                started = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    seconds[_phase] += time.perf_counter() - started

            setattr(build, name, timed)
    build.build_dataset(
        build.SourceSpec(input_path=Path(csv)),
        FeedbackConfig(),
        SplitConfig(),
        name="scale",
        data_dir=Path(data_dir),
    )
    print(json.dumps({phase: round(value, 2) for phase, value in seconds.items()}))


def trial_seconds(storage: str, study: str) -> dict:
    """The one trial's fit and evaluation seconds, as the study recorded them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metrics = optuna.load_study(study_name=study, storage=storage).trials[0].user_attrs["metrics"]
    return {"fit_s": round(metrics["fit_seconds"], 1), "eval_s": round(metrics["eval_seconds"], 1)}


def growth(rows: list[dict], columns: list[str]) -> list[dict]:
    """A least-squares line per column: seconds = a + b * millions of interactions."""
    millions = np.array([row["interactions"] for row in rows]) / 1e6
    lines = []
    for column in columns:
        b, a = np.polyfit(millions, [row[column] for row in rows], 1)
        lines.append({"phase": column, "b_s_per_million": round(b, 2), "a_s": round(a, 1)})
    return lines


def sweep(sizes: list[str], folder: Path, env: dict[str, str], tune: list[str]) -> dict:
    """The size sweep of ``--sizes``: a row per size and a growth line per phase."""
    rows = []
    for size in sizes:
        config = sized(size)
        data = folder / size / "data"
        ratings = folder / size / "ratings.csv"
        data.mkdir(parents=True)
        write_csv(config, ratings)
        code = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); import scale; "
            f"scale.split_phases({str(ratings)!r}, {str(data)!r})"
        )
        output: list[str] = []
        measured = run_measured(["-c", code], env, output)
        ratings.unlink()
        phases = json.loads(output[0].strip().splitlines()[-1])
        row = {
            "size": size,
            "interactions": config.n_interactions,
            "users": config.n_users,
            "items": config.n_items,
            **{f"{phase}_s": value for phase, value in phases.items()},
            "split_wall_s": measured["wall_s"],
            "split_rss_gib": measured["peak_rss_gib"],
        }
        storage = f"sqlite:///{folder / size / 'optuna.db'}"
        for label, extra in (("all", []), ("10k", ["--eval-users", "10000"])):
            study = f"{size}-{label}"
            args = [
                *tune[:-2],
                "--data-dir",
                str(data),
                "--storage",
                storage,
                "--study-name",
                study,
                "--output",
                str(folder / size / f"{label}.json"),
                # The whole budget at every size (15 iterations, 10 checkpoints): early
                # stopping would stop each size at a different count.
                "--patience",
                "0",
                *extra,
            ]
            trial = run_measured(args, env)
            spent = trial_seconds(storage, study)
            row[f"trial_{label}_s"] = trial["wall_s"]
            row[f"fit_{label}_s"] = spent["fit_s"]
            row[f"eval_{label}_s"] = spent["eval_s"]
        rows.append(row)
        print_table([row])  # as it goes: a long sweep shows its sizes as they finish
        sys.stdout.flush()
    columns = ["read_s", "filter_s", "split_s", "write_s", "split_wall_s"]
    columns += [
        f"{kind}_{label}_s" for label in ("all", "10k") for kind in ("fit", "eval", "trial")
    ]
    return {"sizes": rows, "growth": growth(rows, columns) if len(rows) > 1 else []}


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
@click.option(
    "--sizes",
    help="Comma-separated sizes in millions of interactions, e.g. 1m,5m,10m,20m: "
    "MovieLens-20M scaled by N/20 (users and items each by sqrt(N/20), so the density "
    "stays the same). Times read, filter, split and write of a CSV file of that size "
    "(one process per size, with its peak RSS) and one trial, with all validation users "
    "and with --eval-users 10000 (no early stopping), then fits seconds = a + b * "
    "millions per phase. "
    "--shape, --csv and --split-only do not apply.",
)
@json_option
def main(shape: str, csv: bool, split_only: bool, sizes: str | None, json_out: Path | None) -> None:
    """Wall time and peak memory of a split, a trial and its evaluation at scale."""
    config = SHAPES[shape]
    size_list = [size.strip() for size in sizes.split(",") if size.strip()] if sizes else []
    for size in size_list:
        sized(size)  # a bad size fails before any work
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
        if size_list:
            figures = sweep(size_list, folder, env, tune)
            print_table(figures["sizes"], "Per size (seconds; RSS of the split process)")
            if figures["growth"]:
                print_table(figures["growth"], "seconds = a + b * millions of interactions")
            click.echo(machine())
            write_json(json_out, figures)
            return
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
