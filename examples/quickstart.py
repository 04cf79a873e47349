"""rectune from Python: split synthetic data, tune ALS (4 trials), train, evaluate.

Everything it writes (data, models, reports, the MLflow store) goes to a temporary folder,
or to the folder given as its argument:

    .venv/bin/python examples/quickstart.py [FOLDER]

(with rectune installed, ``pip install -e .``; or ``PYTHONPATH=src``).
"""

import os
import sys
import tempfile
from pathlib import Path

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(folder: Path) -> None:
    # MLflow's store in the folder too (set before rectune first talks to MLflow).
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    import rectune

    data_dir, models_dir = folder / "data", folder / "models"
    manifest = rectune.split(
        n_users=300, n_items=400, n_interactions=12_000, dataset_name="quick", data_dir=data_dir
    )
    print(f"split {manifest['name']}: {manifest['counts']['interactions']:,} interactions")

    tuned = rectune.tune(
        "als",
        dataset="quick",
        n_trials=4,
        k=10,
        data_dir=data_dir,
        models_dir=models_dir,
        experiment_name="quickstart",
    )
    print(f"tuned: best trial {tuned.best_trial_number}, {tuned.best_values}, {tuned.best_params}")

    trained = rectune.train(
        "als",
        dataset="quick",
        hyperparameters=models_dir / "best_hyperparameters.json",
        data_dir=data_dir,
        models_dir=models_dir,
        experiment_name="quickstart",
    )
    print(f"trained: test precision@10 {trained.metrics['precision@10']:.4f}")

    evaluated = rectune.evaluate(
        "als",
        k=[5, 10],
        n_bootstrap=200,
        data_dir=data_dir,
        models_dir=models_dir,
        experiment_name="quickstart",
    )
    for system, metrics in evaluated.summary["metrics"].items():
        p10 = metrics["precision@10"]
        print(f"P@10 {system:<8} {p10['mean']:.4f} [{p10['low']:.4f}, {p10['high']:.4f}]")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]).resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
