"""The command line: one parser, one exception-to-exit-code handler, one module per subcommand.

    python run_recbole_famous.py [train] [--model=M] [--dataset=D] [--key=value ...]   train, validate, test
    python run_recbole_famous.py eval --checkpoint=PATH [--key=value ...]              evaluate a saved model
    python run_recbole_famous.py recommend --checkpoint=PATH --histories=FILE          top-N for given histories
    python run_recbole_famous.py recommend --checkpoint=PATH --all-users --out=F.csv   every user's top-N, as CSV
    python run_recbole_famous.py tune --params_file=hyper/M.hyper [--key=value ...]    hyper-parameter search
    python run_recbole_famous.py bench run|status|table|compare|... --profile NAME     the benchmark
    python run_recbole_famous.py data prepare|stats|synth ...                          datasets

``python -m recbole_famous.cli`` is the same command line; ``python -m recbole_famous.bench ...`` and ``python -m
recbole_famous.data ...`` hand over to it (``bench ...``, ``data ...``). With no subcommand, or options first, the
subcommand is ``train``. Each subcommand module (``train.py``, ``evaluate.py``, ...) declares its ``NAME``,
``HELP``, its arguments (``add_arguments``) and ``run(args, overrides)``; whether it takes free ``--key=value``
config settings (``KEY_VALUE``, read by ``config.parse_overrides``, the one parser of them); what an interruption
keeps (``INTERRUPTED``) and which further exceptions mean bad input there (``BAD_INPUT``). ``main`` parses once
and runs the subcommand inside ``errors.run_main``, the one exception-to-exit-code handler: bad input is one line
on stderr and exit code 2, a non-finite loss 1, a signal 128 + N (130 for Ctrl-C); any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys

from recbole_famous.cli import bench, data, evaluate, recommend, train, tune
from recbole_famous.errors import UsageError, run_main

COMMANDS = {module.NAME: module for module in (train, evaluate, recommend, tune, bench, data)}
PROG = "run_recbole_famous.py"


def parser() -> tuple[argparse.ArgumentParser, dict]:
    """The command line's parser, and each subcommand's own (for its error messages)."""
    top = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                  epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    parsers = {}
    for name, module in COMMANDS.items():
        parsers[name] = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                                       epilog=getattr(module, "EPILOG", None),
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(parsers[name])
    return top, parsers


def parse(argv) -> tuple:
    """``(subcommand module, args, overrides)``; ``overrides`` is the dict of free ``--key=value`` settings (None
    for a subcommand that takes none). ``args.argv`` holds the subcommand's own arguments (for "made by" lines)."""
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        argv = [train.NAME, *argv]
    top, parsers = parser()
    args, rest = top.parse_known_args(argv)
    module = COMMANDS[args.subcommand]
    overrides = None
    if getattr(module, "KEY_VALUE", False):
        from recbole_famous.config import parse_overrides

        try:
            overrides = parse_overrides(rest)
        except UsageError as exc:
            parsers[args.subcommand].error(str(exc))
    elif rest:
        parsers[args.subcommand].error("unrecognized arguments: " + " ".join(rest))
    args.argv = argv[1:]
    return module, args, overrides


def main(argv=None) -> int:
    """Run one command line (``argv`` without the program name); return its exit code."""
    module, args, overrides = parse(sys.argv[1:] if argv is None else argv)
    return run_main(lambda: module.run(args, overrides), interrupted=getattr(module, "INTERRUPTED", ""),
                    bad_input=getattr(module, "BAD_INPUT", ()))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def script(argv=None) -> int:
    """``main`` for a process of its own: there ``kill PID`` (SIGTERM) stops a benchmark as Ctrl-C does (the
    trainer handles SIGTERM itself for a single run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == bench.NAME:
        signal.signal(signal.SIGTERM, _interrupt)
    return main(argv)
