"""Training stage: fit ALS or BPR with tuned (or default) hyperparameters and save it.

The command is :func:`rectune.commands.train.main`, also run as ``rectune train``; see
``--help``.
"""

import os

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rectune.cli import run
from rectune.commands.train import main

if __name__ == "__main__":
    run(main)
