"""``run_recbole_famous.py recommend``: top-N recommendations from a checkpoint, in the dataset's original ids
(``recbole_famous.serving``, whose docstring describes the answers).

  recommend --checkpoint=PATH --histories=FILE [--top_n=10]     JSON in ({user: [item, ...]}, - for stdin), JSON out
  recommend --checkpoint=PATH --history="242 302 377"           one history
  recommend --checkpoint=PATH --all-users --top_n=10 --out F.csv
                                                                every user of the checkpoint's dataset, from the
                                                                whole history it has there: user_id, rank, item_id,
                                                                original_id, score (written when complete)
Items already in a history are not recommended unless --include_seen.
"""

from __future__ import annotations

import json
import sys

from recbole_famous.errors import UsageError

NAME = "recommend"
HELP = "top-N recommendations from a checkpoint (JSON), or every user's top-N (CSV)"
DESCRIPTION = "Top-N recommendations from a checkpoint, in the dataset's original ids (recbole_famous.serving)."
EPILOG = "\n\n".join(__doc__.split("\n\n")[1:])
BAD_INPUT = (OSError,)


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by a run (saved/<run_id>.pth)")
    parser.add_argument("--histories", help="JSON file (- for stdin): {user: [item, ...]} or [[item, ...], ...]")
    parser.add_argument("--history", help="one history, item ids separated by spaces or commas, oldest first")
    parser.add_argument("--top_n", type=int, default=10)
    parser.add_argument("--include_seen", action="store_true", help="allow items already in the history")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the checkpoint's config)")
    parser.add_argument("--all-users", "--all_users", dest="all_users", action="store_true",
                        help="every user of the checkpoint's dataset, from the whole history it has there (CSV)")
    parser.add_argument("--out", help="with --all-users: the CSV to write (user_id, rank, item_id, original_id, "
                                      "score)")


def read_histories(args):
    """The histories a command line names: ``--history`` (one), or ``--histories`` (a JSON file, ``-`` stdin)."""
    if args.history is not None:
        return {"user": args.history.replace(",", " ").split()}
    if args.histories is None:
        raise UsageError("give --histories=FILE (JSON; - for stdin) or --history='ITEM ITEM ...'")
    try:
        if args.histories == "-":
            return json.load(sys.stdin)
        with open(args.histories, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UsageError(f"histories file not found: {args.histories}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"histories file {args.histories} is not valid JSON: {exc}") from None


def run(args, overrides=None) -> int:
    from recbole_famous import serving

    if args.all_users:
        if not args.out or args.histories or args.history:
            raise UsageError("--all-users writes a CSV: give --out=FILE.csv, and no --histories / --history")
        counts = serving.export_all_users(args.checkpoint, args.out, args.top_n, exclude_seen=not args.include_seen,
                                          device=args.device, echo=lambda m: print(m, file=sys.stderr))
        print(f"top {counts['top_n']} of {counts['users']:,} users written to {counts['path']}", file=sys.stderr)
        return 0
    histories = read_histories(args)
    answers = serving.Recommender(args.checkpoint, device=args.device).recommend(
        histories, top_n=args.top_n, exclude_seen=not args.include_seen)
    json.dump(answers, sys.stdout, indent=1, default=str)
    print()
    print(serving.summary(answers), file=sys.stderr)
    return 0
