"""``run_recbole_famous.py data`` (also ``python -m recbole_famous.data``): the datasets.

  data prepare NAME --source PATH [--out dataset/] [--format FMT] [--option KEY=VALUE]
  data stats [NAME ...] [--out dataset/]
  data synth NAME [--users-per-type N] [...]     (synthetic behaviour types, recbole_famous/data/synth.py)
Bad input (a missing or unreadable source, a bad option): one line on stderr, exit 2.
"""

from __future__ import annotations

from recbole_famous.errors import SourceError

NAME = "data"
HELP = "convert the paper's published datasets into RecBole atomic files; their statistics; synthetic data"
DESCRIPTION = "Convert the paper's published datasets into RecBole atomic files."
EPILOG = "\n\n".join(__doc__.split("\n\n")[1:])
BAD_INPUT = (OSError, ValueError)

def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="convert a source file or folder into <out>/NAME/NAME.inter")
    prep.add_argument("name", help="dataset name: Arts, Instruments, Office, OR, Tmall, or your own")
    prep.add_argument("--source", required=True, help="a file, a dataset folder, or a folder with NAME/ inside")
    prep.add_argument("--out", default="dataset", help="output folder (default: dataset)")
    prep.add_argument("--format", dest="fmt", default=None,
                      help="reader to use instead of sniffing: user-json, unisrec, online-retail, sessions, "
                           "ijcai15-log, amazon-reviews")
    prep.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a reader option over props/dataset/NAME.yaml's (OR: invoice_order=file|shuffled, "
                           "invoice_order_seed=N)")
    st = sub.add_parser("stats", help="Table-1 statistics of prepared datasets, with #actions in both conventions "
                                      "(true count, and the paper's: minus one per sequence)")
    st.add_argument("names", nargs="*", metavar="NAME", help="datasets (default: the paper's five)")
    st.add_argument("--out", default="dataset", help="folder holding NAME/NAME.inter (default: dataset)")
    syn = sub.add_parser("synth", help="write a synthetic dataset of known behaviour types (recbole_famous.data.synth)")
    syn.add_argument("name")
    syn.add_argument("--out", default="dataset", help="output folder (default: dataset)")
    syn.add_argument("--users-per-type", type=int, default=300)
    syn.add_argument("--topics", type=int, default=10, help="number of item topics (stable users mix two)")
    syn.add_argument("--items-per-topic", type=int, default=10)
    syn.add_argument("--min-len", type=int, default=8)
    syn.add_argument("--max-len", type=int, default=20)
    syn.add_argument("--period", type=int, default=2, help="cycle length of periodic users")
    syn.add_argument("--period-max", type=int, default=None,
                     help="periodic users draw their own period in [period, period-max] (default: all period)")
    syn.add_argument("--repeat-min", type=int, default=2, help="repeat users repeat each item r times, r >= this")
    syn.add_argument("--repeat-max", type=int, default=4, help="... and r <= this")
    syn.add_argument("--repeat-chain", choices=("shared", "own"), default="shared",
                     help="repeat users walk the drift users' chain (shared) or a second one (own)")
    syn.add_argument("--noise", type=float, default=0.1, help="probability that an item is a random one")
    syn.add_argument("--types", default="stable,periodic,drift",
                     help="comma-separated behaviour types (stable, periodic, periodicP-Q, drift, repeat)")
    syn.add_argument("--seed", type=int, default=0)


def _synth(args):
    from recbole_famous.data.synth import generate

    generate(args.name, args.out, users_per_type=args.users_per_type, n_topics=args.topics,
             items_per_topic=args.items_per_topic, min_len=args.min_len, max_len=args.max_len, period=args.period,
             noise=args.noise, types=[t for t in args.types.split(",") if t], seed=args.seed,
             period_max=args.period_max, repeat_min=args.repeat_min, repeat_max=args.repeat_max,
             repeat_chain=args.repeat_chain)


def _stats_all(names, out):
    """Each named dataset's Table 1 (default: the paper's five); the unprepared ones are named at the end, and
    the command fails only when none is prepared."""
    from recbole_famous.data.prepare import KNOWN

    missing = []
    for name in names or KNOWN:
        try:
            _stats(name, out)
        except SourceError as exc:
            if names and len(names) == 1:
                raise
            missing.append(name)
            print(f"{name}: {exc}")
        print()
    print("#Actions as the paper counts them (Table 1): the training rows of leave-one-out, one per interaction "
          "after each sequence's first (actions minus sequences).")
    if missing and len(missing) == len(names or KNOWN):
        raise SourceError(out, "no dataset prepared")


def _stats(name, out):
    from recbole_famous.data import stats
    from recbole_famous.data.prepare import stats_after_filter

    path = __import__("pathlib").Path(out) / name / f"{name}.inter"
    if not path.is_file():
        raise SourceError(path, f"not prepared; run: python -m recbole_famous.data prepare {name} --source PATH")
    users, items = stats.inter_columns(path)
    print(stats.format_table({f"{name} as converted": stats.from_columns(users, items),
                              f"{name} after RecBole filter": stats_after_filter(name, users, items)}))


def _options(pairs):
    """``--option KEY=VALUE`` pairs as {key: value}, values read as YAML (``invoice_order_seed=7`` is an int)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else value
    return out


def run(args, overrides=None) -> int:
    if args.command == "prepare":
        from recbole_famous.data.prepare import prepare

        prepare(args.name, args.source, out=args.out, fmt=args.fmt, options=_options(args.option))
    elif args.command == "synth":
        _synth(args)
    else:
        _stats_all(args.names, args.out)
    return 0
