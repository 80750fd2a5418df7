"""Appendix A.4 like for like (issue 12): three definitions of "low-frequency users" on one SASRec and one FamouSRec
checkpoint of the same dataset (``recbole_famous/bench/lowfreq.py``), test users, full ranking.

    python benchmarks/a4_like_for_like.py --sasrec saved/SASRec-....pth --famousrec saved/FamouSRec-....pth \
        --out docs/results/a4

Writes ``<out>/a4_<dataset>.md`` (the table, the checkpoints, the command) and ``a4_<dataset>.json``.
"""
import argparse
import json
import os
import shlex
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sasrec", required=True, help="a trained SASRec checkpoint (.pth)")
    p.add_argument("--famousrec", required=True, help="a trained FamouSRec checkpoint of the same dataset")
    p.add_argument("--out", default=os.path.join("docs", "results", "a4"))
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--min-len", type=int, default=5, help="shortest history for the spectrum definition")
    p.add_argument("--note", default="", help="a line on how the checkpoints were trained")
    args = p.parse_args(argv)
    import torch

    from recbole_famous import pipeline
    from recbole_famous.bench import analysis, lowfreq
    from recbole_famous.errors import UsageError

    torch.set_num_threads(1)
    try:
        sas = pipeline.load_trained(args.sasrec)
        fam = pipeline.load_trained(args.famousrec)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dataset = sas.config["dataset"]
    if fam.config["dataset"] != dataset:
        print(f"error: the checkpoints are of two datasets ({dataset}, {fam.config['dataset']})", file=sys.stderr)
        return 2
    import time

    t0 = time.perf_counter()
    table = lowfreq.sasrec_user_table(sas, args.k)
    print(f"SASRec: {len(table['ranks'])} test users ranked under 5 bands, {time.perf_counter() - t0:.0f} s", flush=True)
    route = analysis.routing(fam)
    print(f"FamouSRec: {len(route['rank'])} test users routed, {time.perf_counter() - t0:.0f} s", flush=True)
    rows = lowfreq.compare(table, route, args.k, args.min_len)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"a4_{dataset}")
    with open(base + ".json", "w") as f:
        json.dump({"rows": rows, "sasrec": args.sasrec, "famousrec": args.famousrec, "k": args.k,
                   "min_len": args.min_len, "famousrec_kinds": route["kinds"], "shares": route["share"]}, f, indent=1)
    command = "python benchmarks/a4_like_for_like.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [f"## Appendix A.4 like for like, {dataset} (test users)", "",
             *(l for l in [args.note] if l), "",
             *lowfreq.markdown(rows, args.k), "",
             f"FamouSRec's top-1 shares over all test users: " + ", ".join(f"{k} {v:.1%}" for k, v in route["share"].items()),
             "", f"Made by: `{command}`", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
