"""``bench headroom | a4 | by-period``: probes that read trained checkpoints, each writing its table (the
commands that were ``benchmarks/routing_headroom.py``, ``a4_like_for_like.py`` and ``synth_by_period.py``).

  bench headroom CHECKPOINT --out FILE.md [--probes N]     per-user expert preference of a FamouSRec, validation
                                                           split (bench/headroom.py): anything for its router?
  bench a4 --sasrec P --famousrec Q [--out DIR]            Appendix A.4 like for like: three definitions of
                                                           low-frequency users on one SASRec and one FamouSRec of a
                                                           dataset, test users (bench/lowfreq.py)
  bench by-period CHECKPOINT [--out FILE.md]               a FamouSRec on a synthetic dataset: per periodic user's
                                                           period and repeat user's run length, expert shares and
                                                           NDCG@10, validation split (bench/synth.py)
"""

from __future__ import annotations

import json
import os
import time

from recbole_famous.errors import UsageError
from recbole_famous.files import write_json, write_text

NAMES = ("headroom", "a4", "by-period")


def add_arguments(sub) -> None:
    """The probes' parsers, under ``bench``'s subcommands."""
    sp = sub.add_parser("headroom", help="per-user expert preference of a FamouSRec checkpoint (validation)")
    sp.add_argument("checkpoint", help="a trained FamouSRec checkpoint (.pth) with two experts or more")
    sp.add_argument("--out", required=True, help="the Markdown file to write (the numbers go beside it, .json)")
    sp.add_argument("--title", default=None)
    sp.add_argument("--probes", type=int, default=1, help="judge each user's best expert on their last N history "
                                                          "items (each predicted from the items before it)")
    sp = sub.add_parser("a4", help="Appendix A.4 like for like on a SASRec and a FamouSRec checkpoint (test)")
    sp.add_argument("--sasrec", required=True, help="a trained SASRec checkpoint (.pth)")
    sp.add_argument("--famousrec", required=True, help="a trained FamouSRec checkpoint of the same dataset")
    sp.add_argument("--out", default=os.path.join("docs", "results", "a4"))
    sp.add_argument("--k", type=int, default=10)
    sp.add_argument("--min-len", type=int, default=5, help="shortest history for the spectrum definition")
    sp.add_argument("--note", default="", help="a line on how the checkpoints were trained")
    sp = sub.add_parser("by-period", help="a FamouSRec on a synthetic dataset: shares and NDCG@10 per period")
    sp.add_argument("checkpoint", help="a FamouSRec checkpoint trained on a synthetic dataset (data synth)")
    sp.add_argument("--out", help="also write the table to this Markdown file (the numbers beside it, .json)")


def run(args, command: str, echo) -> int:
    import torch

    torch.set_num_threads(1)
    if args.command == "headroom":
        return _headroom(args, command, echo)
    if args.command == "a4":
        return _a4(args, command, echo)
    return _by_period(args, command, echo)


def _load_famousrec(path, experts: int = 1):
    from recbole_famous import pipeline

    trained = pipeline.load_trained(path)
    if len(getattr(trained.model, "kinds", []) or []) < experts:
        raise UsageError(f"{path} is not a FamouSRec with {experts} experts or more")
    trained.model.eval()
    return trained


def _headroom(args, command, echo) -> int:
    from recbole_famous.bench import headroom

    if args.probes < 1:
        raise UsageError("--probes must be at least 1")
    trained = _load_famousrec(args.checkpoint, experts=2)
    t0 = time.perf_counter()
    result = headroom.measure(trained.model, trained.valid_data, probes=args.probes, echo=echo)
    result["seconds"] = time.perf_counter() - t0
    title = args.title or f"Per-user expert preference, {trained.config['dataset']} (validation)"
    text = headroom.markdown(result, title) + f"\nCheckpoint: `{args.checkpoint}`; {result['seconds']:.0f} s. " \
                                              f"Made by: `{command}`.\n"
    _write(args.out, text, result)
    echo(text)
    return 0


def _a4(args, command, echo) -> int:
    from recbole_famous import pipeline
    from recbole_famous.bench import analysis, lowfreq

    sas, fam = pipeline.load_trained(args.sasrec), _load_famousrec(args.famousrec)
    dataset = sas.config["dataset"]
    if fam.config["dataset"] != dataset:
        raise UsageError(f"the checkpoints are of two datasets ({dataset}, {fam.config['dataset']})")
    t0 = time.perf_counter()
    table = lowfreq.sasrec_user_table(sas, args.k)
    echo(f"SASRec: {len(table['ranks'])} test users ranked under 5 bands, {time.perf_counter() - t0:.0f} s")
    route = analysis.routing(fam)
    echo(f"FamouSRec: {len(route['rank'])} test users routed, {time.perf_counter() - t0:.0f} s")
    rows = lowfreq.compare(table, route, args.k, args.min_len)
    lines = [f"## Appendix A.4 like for like, {dataset} (test users)", "", *(n for n in [args.note] if n), "",
             *lowfreq.markdown(rows, args.k), "",
             "FamouSRec's top-1 shares over all test users: "
             + ", ".join(f"{k} {v:.1%}" for k, v in route["share"].items()), "", f"Made by: `{command}`", ""]
    base = os.path.join(args.out, f"a4_{dataset}")
    _write(base + ".md", "\n".join(lines), {
        "rows": rows, "sasrec": args.sasrec, "famousrec": args.famousrec, "k": args.k, "min_len": args.min_len,
        "famousrec_kinds": route["kinds"], "shares": route["share"]})
    echo("\n".join(lines))
    return 0


def _by_period(args, command, echo) -> int:
    from recbole_famous.bench import synth
    from recbole_famous.data import stats
    from recbole_famous.data.synth import read_types

    trained = _load_famousrec(args.checkpoint)
    name = trained.config["dataset"]
    data_dir = os.path.dirname(os.path.normpath(str(trained.config["data_path"])))
    try:
        types = read_types(name, data_dir)
    except FileNotFoundError as exc:  # not a synthetic dataset
        raise UsageError(f"{exc}; bench by-period reads datasets of known behaviour types") from None
    users, items, times = stats.inter_columns(os.path.join(data_dir, name, f"{name}.inter"), with_time=True)
    histories = {}
    for user, item, t in sorted(zip(users, items, times), key=lambda r: (r[0], r[2])):
        histories.setdefault(user, []).append(item)
    groups = synth.by_period(trained.model, trained.valid_data, types, histories)
    lines = [f"## {name}: per period (periodic) and run length (repeat), validation split", "",
             "| users | n | NDCG@10 | top-1 expert shares |", "|---|---:|---:|---|"]
    lines += [f"| {g} | {row['users']} | {row['ndcg']:.3f} | "
              + ", ".join(f"{k} {v:.2f}" for k, v in row["share"].items()) + " |" for g, row in groups.items()]
    lines += ["", f"Checkpoint: `{args.checkpoint}`. Made by: `{command}`.", ""]
    if args.out:
        _write(args.out, "\n".join(lines), groups)
    echo("\n".join(lines))
    return 0


def _write(md_path: str, text: str, numbers) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
    write_text(md_path, text)
    write_json(os.path.splitext(md_path)[0] + ".json", json.loads(json.dumps(numbers, default=str)))
