"""``python -m rectune``: the ``rectune`` console command."""

import os

# implicit warns when OpenBLAS runs many threads; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rectune.commands import main

if __name__ == "__main__":
    main()
