"""Benchmark: the quality rectune's defaults deliver on real data, and how fast.

The protocol is Microsoft Recommenders' for MovieLens (its README's table): every rating
counts as an interaction (``--min-rating none``), each user's interactions are split at
random with 25% in test, validation is carved from train the same way (rectune's default
20%), K = 10, and
items are ranked over the whole catalog less the user's training items. For each seed
(which drives the split, the models and the sampler, as rectune's ``--seed`` does):

1. **Pipeline.** ``split_data.py``, then for ALS and BPR ``hyperparameter_tuning.py``
   with the shipped defaults (tuned on validation only), ``model_training.py
   --hyperparameters`` (fit on train) and ``evaluate_model.py`` (test, with bootstrap
   intervals and the popularity baseline), each as a user runs it. Nothing is chosen on
   test.
2. **Pruning.** Every trial the study pruned is fitted again to its end, scored as the
   study would have (same checkpoints, same early stopping); a pruned trial that beats
   the study's best means the pruner stopped the eventual best (``--pruner-seeds`` adds
   seeds that only tune, for this count).
3. **Time to the best model.** ``_plain_loop.py`` (Optuna's TPE over the same space,
   one fit per trial to its ``iterations``, no pruning, no early stopping, no sharing,
   MLflow child runs) with the same trial budget on the same split. Each trial's end is
   timed from the launch of its process, so both pay their imports and set-up.
4. **Cornac's BPR** with the published settings (k=200, 100 epochs, learning rate
   0.01, lambda 0.001) beside implicit's BPR with the same settings, with and without
   rectune's popularity correction: same split, same evaluator (needs
   ``pip install -r benchmarks/requirements-quality.txt``).

    ../shared/data/get_ml100k.sh /tmp/ml100k
    python benchmarks/quality.py --input /tmp/ml100k/ratings.csv --json-out quality.json

About 25 minutes on 2 cores for MovieLens-100k with the defaults; ``--models als``
and ``--seeds 1`` make it shorter.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from _common import CONTEXT, ROOT, json_option, machine, print_table, write_json
from rectune.data.store import load_dataset
from rectune.evaluation.evaluator import Evaluator
from rectune.evaluation.statistics import bootstrap_means, mean_intervals
from rectune.models import build_model, fit_model
from rectune.tuning.attributes import BEST_ITERATION
from rectune.tuning.checkpoints import CheckpointPlan, Curve
from rectune.tuning.storage import is_shared

METRICS = ("precision", "ndcg", "recall", "map")
#: Published figures for MovieLens-100k under this protocol (K = 10), Microsoft
#: Recommenders' README benchmark table. Its MAP is defined otherwise (divided by all of a
#: user's held-out items), so none is shown for it.
ANCHORS = {
    "cornac-bpr (published)": {"precision": 0.388, "ndcg": 0.442, "recall": 0.213},
}
CORNAC_SETTINGS = {"k": 200, "max_iter": 100, "learning_rate": 0.01, "lambda_reg": 0.001}
IMPLICIT_AS_CORNAC = {"factors": 200, "iterations": 100, "learning_rate": 0.01}
#: Validation is carved from train with rectune's default share (20%).
PROTOCOL = {"test_fraction": 0.25, "validation_fraction": 0.2, "min_rating": "none", "k": 10}


def _script(name: str) -> list[str]:
    return [sys.executable, str(ROOT / "src" / name)]


def _run(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run a stage; its output goes to ``log``; return its wall seconds."""
    started = time.time()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise click.ClickException(f"{' '.join(args[1:3])} failed; see {log}")
    return time.time() - started


def _store(path: Path) -> str:
    """A SQLite MLflow store, created now: the timed runs find it made, as after a
    user's first run (creating one costs seconds of migrations, once)."""
    import mlflow

    uri = f"sqlite:///{path}"
    mlflow.MlflowClient(uri).search_experiments()
    return uri


def _journal_trials(journal: Path, study_name: str) -> list[Any]:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def _running_best(times_values: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(seconds, best value so far) at each new best, in time order."""
    best, curve = -np.inf, []
    for t, v in sorted(times_values):
        if v > best:
            best = v
            curve.append((t, v))
    return curve


def _time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the running best first reaches ``target`` (None: never)."""
    return next((t for t, v in curve if v >= target - 1e-12), None)


def _refit_value(model: str, params: dict, data, evaluator: Evaluator, seed: int, k: int):
    """A pruned trial's value had it run to its end, as the study scores it (default
    checkpoints and patience, best checkpoint on a budget)."""
    from rectune.tuning.checkpoints import DEFAULT_CHECKPOINTS, DEFAULT_PATIENCE

    iterations = int(params["iterations"])
    plan = CheckpointPlan.make(
        "budget", iterations, checkpoints=DEFAULT_CHECKPOINTS, patience=DEFAULT_PATIENCE
    )
    curve = Curve(plan)
    fitted = build_model(model, params, device="cpu", seed=seed)

    class Stop(Exception):
        pass

    def callback(done: int) -> None:
        if done in plan.steps:
            curve.add(done, evaluator(fitted).named()[f"precision@{k}"], {})
            if curve.should_stop():
                raise Stop

    with contextlib.suppress(Stop):
        fit_model(fitted, data.train_val, callback=callback)
    return curve.values[curve.best_step]


def _best_of_first(trials: list, n: int) -> Any:
    """The best complete trial among a study's first ``n`` (by number, shared ones
    aside): what a study of ``n`` trials with the same seed would have picked."""
    first = [t for t in trials if not is_shared(t)][:n]
    done = [t for t in first if t.state.name == "COMPLETE"]
    return max(done, key=lambda t: (t.values[0], -t.number)) if done else None


def _final_test_precision(model: str, trial: Any, data, seed: int, k: int) -> float:
    """Test P@K of ``trial``'s parameters fitted on train as ``model_training.py`` fits
    them (BPR's epochs scaled to the SGD steps tuning made)."""
    from rectune.training import scaled_epochs
    from rectune.tuning.best_params import delivered_params

    params = delivered_params(trial.user_attrs, dict(trial.user_attrs["params"]))
    if model == "bpr":
        params["iterations"] = scaled_epochs(
            params["iterations"], data.train_val.nnz, data.train.nnz
        )
    fitted = fit_model(build_model(model, params, device="cpu", seed=seed), data.train)
    return Evaluator(data.train, data.test, k)(fitted).named()[f"precision@{k}"]


def _test_intervals(evaluation, seed: int = 42) -> dict[str, dict[str, float]]:
    values = np.stack([evaluation.per_user[m] for m in METRICS])
    intervals = mean_intervals(values, bootstrap_means(values, 1000, seed))
    return {
        m: {"mean": i.mean, "low": i.low, "high": i.high}
        for m, i in zip(METRICS, intervals, strict=True)
    }


def _cornac_rows(data, seed: int, k: int) -> dict[str, dict]:
    """Cornac's BPR and implicit's with the published settings, on train, scored on test."""
    evaluator = Evaluator(data.train, data.test, k)
    rows = {}
    for name, correction in (
        ("implicit-bpr, published settings", 0.0),
        ("implicit-bpr, published settings + correction", 1.0),
    ):
        model = build_model(
            "bpr",
            {**IMPLICIT_AS_CORNAC, "regularization": 0.001, "popularity_correction": correction},
            device="cpu",
            seed=seed,
        )
        fit_model(model, data.train)
        rows[name] = _test_intervals(evaluator(model))
    if importlib.util.find_spec("cornac") is None:
        return rows
    import cornac
    from cornac.data import Dataset

    train = data.train.tocoo()
    users, items = range(train.shape[0]), range(train.shape[1])
    dataset = Dataset.build(
        list(zip(train.row.astype(str), train.col.astype(str), np.ones(train.nnz), strict=True)),
        global_uid_map={str(u): u for u in users},
        global_iid_map={str(i): i for i in items},
        seed=seed,
    )
    bpr = cornac.models.BPR(**CORNAC_SETTINGS, seed=seed)
    bpr.fit(dataset)
    # Cornac's score is u . v + b_i; rectune's evaluator takes it as factors.
    user_factors = np.hstack([bpr.u_factors, np.ones((len(users), 1), np.float32)])
    item_factors = np.hstack([bpr.i_factors, bpr.i_biases[:, None]])
    rows["cornac-bpr, published settings"] = _test_intervals(
        evaluator(user_factors=user_factors, item_factors=item_factors)
    )
    return rows


def _one_seed(
    input_path: Path,
    seed: int,
    models: list[str],
    n_trials: int,
    work: Path,
    full: bool,
    shorter: tuple[int, ...] = (),
    compare: bool = True,
) -> dict[str, Any]:
    data_dir = work / f"seed-{seed}" / "data"
    out = work / f"seed-{seed}"
    models_dir = out / "models"
    log = out / "log.txt"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": _store(out / "mlflow.db")}
    name = f"quality-{seed}"
    _run(
        [
            *_script("split_data.py"),
            "--input", str(input_path),
            "--dataset-name", name,
            "--min-rating", PROTOCOL["min_rating"],
            "--test-fraction", str(PROTOCOL["test_fraction"]),
            "--validation-fraction", str(PROTOCOL["validation_fraction"]),
            "--seed", str(seed),
            "--data-dir", str(data_dir),
        ],
        env,
        log,
    )  # fmt: skip
    data = load_dataset(name, data_dir=data_dir)
    figures: dict[str, Any] = {"seed": seed}
    k = PROTOCOL["k"]
    for model in models:
        output = models_dir / "best_hyperparameters.json"
        t0 = time.time()
        tune_wall = _run(
            [
                *_script("hyperparameter_tuning.py"),
                "--model", model,
                "--dataset", name,
                "--data-dir", str(data_dir),
                "--n-trials", str(n_trials),
                "--seed", str(seed),
                "--output", str(output),
                "--no-progress",
            ],
            env,
            log,
        )  # fmt: skip
        study_name = f"{model}-{name}-precision_at_{k}"
        trials = _journal_trials(models_dir / "optuna.journal", study_name)
        done = [t for t in trials if t.state.name == "COMPLETE"]
        best = max(done, key=lambda t: (t.values[0], -t.number))
        row: dict[str, Any] = {
            "tune_wall": tune_wall,
            "validation_best": best.values[0],
            "best_params": json.loads(output.read_text())[model],
            "trials": len(trials),
            "fits": sum(not is_shared(t) for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
        }
        # Pruning: would any pruned trial have beaten the study's best?
        evaluator = Evaluator(data.train_val, data.validation, k)
        pruned_values = [
            _refit_value(model, t.user_attrs["params"], data, evaluator, seed, k)
            for t in trials
            if t.state.name == "PRUNED"
        ]
        row["pruned_best_full_value"] = max(pruned_values, default=None)
        row["pruner_stopped_best"] = bool(pruned_values) and max(pruned_values) > best.values[0]
        rectune_curve = _running_best(
            [(t.datetime_complete.timestamp() - t0, t.values[0]) for t in done]
        )
        row["rectune_curve"] = rectune_curve
        row["best_iteration"] = best.user_attrs.get(BEST_ITERATION)
        if full:
            # What a shorter study with the same seed would have delivered: TPE proposes
            # the same first trials whatever --n-trials says.
            row["shorter"] = {}
            for n in shorter:
                picked = _best_of_first(trials, n)
                row["shorter"][n] = {
                    "validation_best": picked.values[0],
                    "test_precision": _final_test_precision(model, picked, data, seed, k),
                }
            _run(
                [
                    *_script("model_training.py"),
                    "--model", model,
                    "--dataset", name,
                    "--data-dir", str(data_dir),
                    "--hyperparameters", str(output),
                    "--models-dir", str(models_dir),
                    "--seed", str(seed),
                    "--no-progress",
                ],
                env,
                log,
            )  # fmt: skip
            _run(
                [
                    *_script("evaluate_model.py"),
                    "--model", model,
                    "--models-dir", str(models_dir),
                    "--data-dir", str(data_dir),
                    "--k", str(k),
                    "--seed", str(seed),
                    "--no-progress",
                ],
                env,
                log,
            )  # fmt: skip
            report = json.loads(
                (models_dir / "reports" / f"evaluation-{model}-{name}.json").read_text()
            )
            row["test"] = {m: report["metrics"]["model"][f"{m}@{k}"] for m in METRICS}
            figures["popular"] = {m: report["metrics"]["popular"][f"{m}@{k}"] for m in METRICS}
            if compare:
                # The plain loop, same budget, same split.
                plain_out = out / f"plain-{model}.json"
                plain_store = _store(out / f"plain-{model}.db")
                t0 = time.time()
                _run(
                    [
                        sys.executable, str(ROOT / "benchmarks" / "_plain_loop.py"),
                        "--model", model,
                        "--dataset", name,
                        "--data-dir", str(data_dir),
                        "--seed", str(seed),
                        "--n-trials", str(n_trials),
                        "--t0", repr(t0),
                        "--out", str(plain_out),
                    ],
                    {**env, "MLFLOW_TRACKING_URI": plain_store},
                    log,
                )  # fmt: skip
                plain = json.loads(plain_out.read_text())
                plain_curve = _running_best([(t["t"], t["value"]) for t in plain["trials"]])
                row["plain"] = {
                    "wall": plain["wall"],
                    "validation_best": plain["best_value"],
                    "curve": plain_curve,
                }
                row["rectune_to_plain_best"] = _time_to(rectune_curve, plain["best_value"])
                row["rectune_to_own_1pct"] = _time_to(rectune_curve, 0.99 * best.values[0])
                row["plain_to_own_1pct"] = _time_to(plain_curve, 0.99 * plain["best_value"])
                row["plain_to_rectune_1pct"] = _time_to(plain_curve, 0.99 * best.values[0])
                row["rectune_to_plain_best_over_plain_wall"] = (
                    None
                    if row["rectune_to_plain_best"] is None
                    else row["rectune_to_plain_best"] / plain["wall"]
                )
        figures[model] = row
    if full and compare and "bpr" in models:
        figures["cornac"] = _cornac_rows(data, seed, k)
    return figures


def _fmt(interval: dict[str, float] | None) -> str:
    if not interval:
        return ""
    if "low" not in interval:
        return f"{interval['mean']:.4f}"
    return f"{interval['mean']:.4f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


@click.command(context_settings=CONTEXT)
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A ratings file (CSV/TSV/Parquet with user_id, item_id, rating columns), "
    "e.g. the one ../shared/data/get_ml100k.sh writes.",
)
@click.option("--models", default="als,bpr", show_default=True, help="Models to run.")
@click.option("--seeds", default="1,2,3", show_default=True, help="Seeds of the full runs.")
@click.option(
    "--pruner-seeds",
    default="4,5",
    show_default=True,
    help="More seeds that only tune, for the pruning count ('' for none).",
)
@click.option("--n-trials", type=int, default=50, show_default=True, help="Trials of every study.")
@click.option(
    "--shorter",
    default="20",
    show_default=True,
    help="Also report what studies of these sizes (the first trials of the same study) "
    "deliver, on validation and on test.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep every run's data, models, logs and MLflow store here [default: a "
    "temporary folder, removed after].",
)
@click.option(
    "--compare/--no-compare",
    default=True,
    show_default=True,
    help="Run the plain loop and Cornac's BPR beside rectune (the time-to-best table).",
)
@json_option
def main(input_path, models, seeds, pruner_seeds, n_trials, shorter, work_dir, compare, json_out):
    """Run the pipeline on a ratings file under the Microsoft Recommenders protocol and
    print test scores beside the anchors, how often pruning stopped the best, and the
    time to the best model against a plain Optuna loop (see the module's docstring)."""
    models = [m.strip() for m in models.split(",") if m.strip()]
    full_seeds = [int(s) for s in seeds.split(",") if s.strip()]
    tune_seeds = [int(s) for s in pruner_seeds.split(",") if s.strip()]
    sizes = tuple(int(n) for n in shorter.split(",") if n.strip() and int(n) < n_trials)
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="rectune-quality-")) if temporary else work_dir
    click.echo(f"{machine()}\nwork folder {work}")
    runs = []
    try:
        for seed in full_seeds + tune_seeds:
            click.echo(f"seed {seed}: {'full pipeline' if seed in full_seeds else 'tuning'}")
            runs.append(
                _one_seed(
                    input_path, seed, models, n_trials, work, seed in full_seeds, sizes, compare
                )
            )
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    full = [r for r in runs if r["seed"] in full_seeds]
    _report(full, runs, models, n_trials, compare)
    if compare and importlib.util.find_spec("cornac") is None and "bpr" in models:
        click.echo("(Cornac's BPR left out: pip install -r benchmarks/requirements-quality.txt)")
    write_json(
        json_out,
        {"protocol": PROTOCOL, "n_trials": n_trials, "input": str(input_path), "runs": runs},
    )


def _report(
    full: list[dict], runs: list[dict], models: list[str], n_trials: int, compare: bool
) -> None:
    rows = []
    for model in models:
        for run in full:
            r = run[model]
            rows.append(
                {
                    "system": f"rectune {model}, {n_trials} trials",
                    "seed": run["seed"],
                    "validation P@10": round(r["validation_best"], 4),
                    **{f"{m}@10": _fmt(r["test"][m]) for m in METRICS},
                    "tuning s": round(r["tune_wall"], 1),
                }
            )
        if full:
            rows.append(
                {
                    "system": f"rectune {model}, mean",
                    "seed": "",
                    "validation P@10": round(
                        statistics.mean(run[model]["validation_best"] for run in full), 4
                    ),
                    **{
                        f"{m}@10": "{:.4f}".format(
                            statistics.mean(run[model]["test"][m]["mean"] for run in full)
                        )
                        for m in METRICS
                    },
                    "tuning s": round(statistics.mean(run[model]["tune_wall"] for run in full), 1),
                }
            )
    for run in full:
        rows.append(
            {
                "system": "popular",
                "seed": run["seed"],
                "validation P@10": None,
                **{f"{m}@10": _fmt(run["popular"][m]) for m in METRICS},
                "tuning s": None,
            }
        )
        for name, figures in run.get("cornac", {}).items():
            rows.append(
                {
                    "system": name,
                    "seed": run["seed"],
                    "validation P@10": None,
                    **{f"{m}@10": _fmt(figures[m]) for m in METRICS},
                    "tuning s": None,
                }
            )
    for name, figures in ANCHORS.items():
        rows.append(
            {
                "system": name,
                "seed": "",
                "validation P@10": None,
                **{f"{m}@10": f"{figures[m]:.3f}" if m in figures else "" for m in METRICS},
                "tuning s": None,
            }
        )
    print_table(rows, "\nTest scores, mean [95% bootstrap interval over users]")

    rows = []
    for model in models:
        for run in runs:
            r = run[model]
            rows.append(
                {
                    "model": model,
                    "seed": run["seed"],
                    "trials": r["trials"],
                    "pruned": r["pruned"],
                    "study best": round(r["validation_best"], 4),
                    "best pruned, refitted": None
                    if r["pruned_best_full_value"] is None
                    else round(r["pruned_best_full_value"], 4),
                    "pruner stopped the best": "yes" if r["pruner_stopped_best"] else "no",
                }
            )
    print_table(rows, "\nPruning: did a pruned trial, fitted to its end, beat the study's best?")

    rows = []
    for model in models:
        for size in sorted({int(n) for run in full for n in run[model].get("shorter", {})}):
            picks = [run[model]["shorter"][size] for run in full]
            rows.append(
                {
                    "model": model,
                    "trials": size,
                    "validation P@10": [round(p["validation_best"], 4) for p in picks],
                    "test P@10": [round(p["test_precision"], 4) for p in picks],
                    "test mean": round(statistics.mean(p["test_precision"] for p in picks), 4),
                }
            )
        if full:
            rows.append(
                {
                    "model": model,
                    "trials": n_trials,
                    "validation P@10": [round(run[model]["validation_best"], 4) for run in full],
                    "test P@10": [
                        round(run[model]["test"]["precision"]["mean"], 4) for run in full
                    ],
                    "test mean": round(
                        statistics.mean(run[model]["test"]["precision"]["mean"] for run in full), 4
                    ),
                }
            )
    print_table(rows, "\nBy study size (per seed; smaller sizes are the same study's first trials)")

    if not compare:
        return
    rows = []
    for model in models:
        for run in full:
            r = run[model]
            rows.append(
                {
                    "model": model,
                    "seed": run["seed"],
                    "rectune best": round(r["validation_best"], 4),
                    "plain best": round(r["plain"]["validation_best"], 4),
                    "rectune wall s": round(r["tune_wall"], 1),
                    "plain wall s": round(r["plain"]["wall"], 1),
                    "rectune to 1% of own": r["rectune_to_own_1pct"],
                    "plain to 1% of own": r["plain_to_own_1pct"],
                    "rectune to plain's best": r["rectune_to_plain_best"],
                    "plain to 1% of rectune's": r["plain_to_rectune_1pct"],
                    "ratio": r["rectune_to_plain_best_over_plain_wall"],
                }
            )
        if full:
            rows.append(
                {
                    "model": model,
                    "seed": "median",
                    **{
                        key: _median([run[model].get(field) for run in full])
                        for key, field in (
                            ("rectune to plain's best", "rectune_to_plain_best"),
                            ("ratio", "rectune_to_plain_best_over_plain_wall"),
                        )
                    },
                }
            )
    print_table(
        [{key: row.get(key) for key in rows[0]} for row in rows],
        "\nTime to the best model (validation P@10; seconds from launch; ratio: rectune's "
        "time to the plain loop's best over the plain loop's wall time)",
    )


if __name__ == "__main__":
    main()
