"""``python -m recbole_famous.data ...``: hands over to the command line, ``run_recbole_famous.py data ...``
(``recbole_famous/cli/data.py``). It starts that command as the same process (``os.execv``), not by import: the
data layer imports nothing above it."""

import os
import sys

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "recbole_famous.cli", "data", *sys.argv[1:]])
