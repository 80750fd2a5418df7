#!/usr/bin/env python
"""Train, validate and test any model (the plugin's or RecBole's) on any dataset, under the paper's protocol.

Examples:
  python run_recbole_famous.py                                   # default job: default model on ml-100k
  python run_recbole_famous.py --model=SASRec --dataset=Instruments
  python run_recbole_famous.py --model=FamouSRec --dataset=Arts --config_files="a.yaml b.yaml" --epochs=20

Configuration, lowest to highest: RecBole's defaults < props/overall.yaml (the paper's protocol)
< props/model/<Model>.yaml < props/dataset/<Dataset>.yaml < --config_files (in order) < --key=value.
Any RecBole or model key can be set with --key=value (values are read as RecBole reads them: numbers,
lists like "[5,10]", dicts, strings). With no --dataset, props/default_job.yaml (the default job's budget) is
applied before --config_files.

Output: progress and per-epoch logs, then one table of the best-validation and test metrics; a machine-readable
result (model, dataset, full config, metrics, best epoch, seconds per epoch) in <results_dir>/<run_id>/result.json
(results_dir defaults to results/), next to the run's log; the best model in <checkpoint_dir> (saved/).
Exit codes: 0 success, 2 bad input (unknown model or dataset, missing or broken yaml, unknown metric, ...).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run_recbole_famous.py",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", "-m", default=None, help="model name (default: FamouSRec, or SASRec before it exists)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: ml-100k, RecBole's packaged copy)")
    parser.add_argument("--config_files", default="", help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    for arg in rest:
        if not arg.startswith("--") or "=" not in arg:
            parser.error(f"unrecognised argument '{arg}': settings are written --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = _parse_value(value)
    return args, overrides


def _parse_value(text: str):
    """A command-line value read as yaml (so [5,10], {a: 1}, 1e-3, true work as in a config file)."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError:
        return text


def _loader():
    from recbole_famous.config import _yaml_loader

    return _yaml_loader()


def main(argv=None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from recbole_famous.errors import UsageError

    try:
        from recbole_famous import runner

        config_files = args.config_files.split()
        if args.dataset is None:
            config_files = [runner.DEFAULT_JOB_CONFIG] + config_files
        result = runner.run(args.model, args.dataset, config_files, overrides)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(runner.format_result_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
