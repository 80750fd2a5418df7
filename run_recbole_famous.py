#!/usr/bin/env python
"""recbole-famous's command line: train (the default), eval, recommend, tune, bench, data.

  python run_recbole_famous.py                                  # default job: default model on ml-100k
  python run_recbole_famous.py --model=SASRec --dataset=Instruments --epochs=20
  python run_recbole_famous.py COMMAND --help                   # train, eval, recommend, tune, bench, data

The parser, the subcommands and the exit codes are in recbole_famous/cli/.
"""

import sys

from recbole_famous.cli import main, script

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(script())
