"""Command line: `python -m recbole_famous.data prepare NAME --source PATH [--out dataset/] [--format FMT]`,
`python -m recbole_famous.data stats NAME [--out dataset/]`. Bad input: one line on stderr, exit 2."""

import argparse
import sys

from .errors import SourceError


def _parser():
    p = argparse.ArgumentParser(prog="python -m recbole_famous.data",
                                description="Convert the paper's published datasets into RecBole atomic files.")
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="convert a source file or folder into <out>/NAME/NAME.inter")
    prep.add_argument("name", help="dataset name: Arts, Instruments, Office, OR, Tmall, or your own")
    prep.add_argument("--source", required=True, help="a file, a dataset folder, or a folder with NAME/ inside")
    prep.add_argument("--out", default="dataset", help="output folder (default: dataset)")
    prep.add_argument("--format", dest="fmt", default=None,
                      help="reader to use instead of sniffing: user-json, unisrec, online-retail, sessions, "
                           "amazon-reviews")
    st = sub.add_parser("stats", help="Table-1 statistics of a prepared dataset")
    st.add_argument("name")
    st.add_argument("--out", default="dataset", help="folder holding NAME/NAME.inter (default: dataset)")
    return p


def _stats(name, out):
    from . import stats
    from .prepare import stats_after_filter

    path = __import__("pathlib").Path(out) / name / f"{name}.inter"
    if not path.is_file():
        raise SourceError(path, f"not prepared; run: python -m recbole_famous.data prepare {name} --source PATH")
    users, items = [], []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            u, i, _ = line.split("\t", 2)
            users.append(u)
            items.append(i)
    print(stats.format_table({f"{name} as converted": stats.from_columns(users, items),
                              f"{name} after RecBole filter": stats_after_filter(name, users, items)}))


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == "prepare":
            from .prepare import prepare

            prepare(args.name, args.source, out=args.out, fmt=args.fmt)
        else:
            _stats(args.name, args.out)
    except (SourceError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
