"""Per-user expert preference of a trained FamouSRec, validation split only (``recbole_famous/bench/headroom.py``):
is there anything for its router to exploit?

    python benchmarks/routing_headroom.py results/routing_e3/saved/routing-Instruments-paper_history-2020.pth \
        --out docs/results/routing/headroom_Instruments.md

Writes the Markdown table to ``--out`` and the numbers beside it (``.json``).
"""
import argparse
import json
import os
import sys
import time

import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a trained FamouSRec checkpoint (.pth) with two experts or more")
    p.add_argument("--out", required=True, help="the Markdown file to write")
    p.add_argument("--title", default=None)
    p.add_argument("--probes", type=int, default=1, help="judge each user's best expert on their last N history "
                   "items (each predicted from the items before it; default 1)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from recbole_famous import pipeline
    from recbole_famous.bench import headroom
    from recbole_famous.errors import UsageError

    try:
        trained = pipeline.load_trained(args.checkpoint)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = trained.model.eval()
    if args.probes < 1:
        print("error: --probes must be at least 1", file=sys.stderr)
        return 2
    if len(getattr(model, "kinds", []) or []) < 2:
        print(f"error: {args.checkpoint} is not a FamouSRec with two experts or more", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = headroom.measure(model, trained.valid_data, probes=args.probes, echo=lambda m: print(m, flush=True))
    result["seconds"] = time.perf_counter() - t0
    title = args.title or f"Per-user expert preference, {trained.config['dataset']} (validation)"
    text = headroom.markdown(result, title) + f"\nCheckpoint: `{args.checkpoint}`; {result['seconds']:.0f} s.\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
