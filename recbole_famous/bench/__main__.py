"""``python -m recbole_famous.bench ...``: hands over to the command line, ``run_recbole_famous.py bench ...``
(``recbole_famous/cli/bench.py``). It starts that command as the same process (``os.execv``), not by import: the
benchmark imports nothing above it."""

import os
import sys

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "recbole_famous.cli", "bench", *sys.argv[1:]])
