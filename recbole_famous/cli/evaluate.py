"""``run_recbole_famous.py eval --checkpoint=PATH``: evaluate a saved model on the validation and test splits, no
training (``runner.evaluate_checkpoint``).

The checkpoint's own settings are used; --key=value may change the inference-time and environment keys (metrics,
topk, eval_top_k, force_expert, ...). A model or dataset other than the checkpoint's, a change of an architecture
key, or a dataset whose items changed since is refused with one line naming what differs (exit code 2).
Same as `run_recbole_famous.py --checkpoint=PATH --eval_only`.
"""

from __future__ import annotations

NAME = "eval"
HELP = "evaluate a saved model (validation and test), no training"
DESCRIPTION = "Evaluate a saved model on the validation and test splits, no training (runner.evaluate_checkpoint)."
EPILOG = "\n\n".join(__doc__.split("\n\n")[1:])
KEY_VALUE = True


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by a run (saved/<run_id>.pth)")
    parser.add_argument("--model", "-m", default=None, help="must be the checkpoint's (default: the checkpoint's)")
    parser.add_argument("--dataset", "-d", default=None, help="must be the checkpoint's (default: the checkpoint's)")
    parser.add_argument("--config_files", default="", help='space-separated yaml files, e.g. "a.yaml b.yaml"')


def run(args, overrides) -> int:
    from recbole_famous import runner

    result = runner.evaluate_checkpoint(args.checkpoint, args.model, args.dataset, args.config_files.split(),
                                        overrides)
    print(runner.format_result_table(result))
    return 0
