"""``python -m recbole_famous.cli COMMAND ...``: the same command line as ``run_recbole_famous.py``."""

import sys

from recbole_famous.cli import script

if __name__ == "__main__":
    sys.exit(script())
