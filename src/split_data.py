"""Data stage: load interactions, make implicit feedback, split and save CSR matrices.

The command is :func:`rectune.commands.split.main`, also run as ``rectune split``; see
``--help``.
"""

import os

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rectune.cli import run
from rectune.commands.split import main

if __name__ == "__main__":
    run(main)
