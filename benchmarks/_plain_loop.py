"""The naive tuning loop that ``quality.py`` measures rectune against.

Optuna's TPE over the same search space, one fit per trial to the space's
``iterations``, scored once at the end (Precision@K on validation, rectune's evaluator),
an MLflow child run per trial under one parent; no pruning, no early stopping, no
iteration sharing, an in-memory study. It is a script of its own so that it pays its
imports and its MLflow set-up as the ``rectune`` command does, measured the same way:
each trial's end, in seconds after ``--t0`` (the launcher's clock before it started
the process), goes to ``--out`` as JSON.

    python benchmarks/_plain_loop.py --model als --dataset NAME --data-dir DIR \\
        --seed 1 --n-trials 50 --t0 "$(date +%s.%N)" --out plain.json
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", type=click.Choice(["als", "bpr"]), required=True)
@click.option("--dataset", required=True, help="Processed dataset name or folder.")
@click.option("--data-dir", type=click.Path(path_type=Path), required=True)
@click.option("--search-space", default=None, help="As rectune's --search-space.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--n-trials", type=int, default=50, show_default=True)
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--t0", type=float, required=True, help="The launcher's time.time() at launch.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(model, dataset, data_dir, search_space, seed, n_trials, k, t0, out):
    import mlflow
    import optuna

    from rectune.data.store import load_dataset
    from rectune.evaluation.evaluator import Evaluator
    from rectune.models import build_model, fit_model
    from rectune.tuning.search_space import load_search_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_search_space(model, search_space)
    data = load_dataset(dataset, data_dir=data_dir)
    evaluator = Evaluator(data.train_val, data.validation, k)
    metric = f"precision@{k}"
    trials = []
    mlflow.set_experiment(f"plain-loop-{model}")
    with mlflow.start_run(run_name=f"plain-loop-{model}-{seed}") as parent:

        def objective(trial: optuna.Trial) -> float:
            params = space.suggest(trial)
            with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
                fitted = build_model(model, params, device="cpu", seed=seed)
                fit_model(fitted, data.train_val)
                value = evaluator(fitted).named()[metric]
                mlflow.log_params(params)
                mlflow.log_metrics({metric.replace("@", "_at_"): value})
            trials.append({"number": trial.number, "value": value, "t": time.time() - t0})
            return value

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.optimize(objective, n_trials=n_trials)
        mlflow.log_metric("best_value", study.best_value)
        parent_id = parent.info.run_id
    out.write_text(
        json.dumps(
            {
                "trials": trials,
                "best_value": study.best_value,
                "best_params": study.best_trial.params,
                "wall": time.time() - t0,
                "parent_run_id": parent_id,
            }
        )
    )


if __name__ == "__main__":
    main()
