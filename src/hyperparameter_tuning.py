"""Tuning stage: an Optuna study over ALS or BPR hyperparameters, tracked in MLflow.

The command is :func:`rectune.commands.tune.main`, also run as ``rectune tune``; see
``--help``.
"""

import os

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rectune.cli import run
from rectune.commands.tune import main

if __name__ == "__main__":
    run(main)
