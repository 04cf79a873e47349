"""Evaluation stage: score a saved model on held-out data against baselines.

The command is :func:`rectune.commands.evaluate.main`, also run as ``rectune evaluate``; see
``--help``.
"""

import os

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rectune.cli import run
from rectune.commands.evaluate import main

if __name__ == "__main__":
    run(main)
