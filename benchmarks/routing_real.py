"""FamouSRec variants on a real dataset at one budget, with the routing diagnostics of each trained model.

    python benchmarks/routing_real.py --dataset Instruments --variants routing,paper,routing_wo_router \
        --seeds 2020 --epochs 3 --out results/routing_real

Each (variant, seed) is one run of the plugin's runner with a fixed run id: a stopped run continues from its
last finished epoch when the same command is given again (``runner.run(resume=...)``), a finished one is
skipped. After training, the best checkpoint's routing diagnostics (``model/diagnostics.py``: gate spread,
entropy, shares, expert cosine, forced-expert NDCG@10, filter bands) are computed on the validation users.
Writes ``<out>/<dataset>/<variant>-<seed>.json`` and prints one summary line per run. With ``--report PATH`` it
trains nothing and writes the finished runs as one Markdown table (``recbole_famous/bench/routing.py``), the
first variant being the reference of the paired per-seed differences.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from recbole_famous.config import PROPS_DIR, read_yaml

ROUTING = read_yaml(os.path.join(PROPS_DIR, "famousrec_routing.yaml"))  # the routing options, one file
FAST = {"expert_input": "history", "spe_users": 64}
VARIANTS = {
    "paper": {},
    "paper_wo_router": {"use_router": False},
    "routing": ROUTING,
    "routing_wo_router": {**ROUTING, "use_router": False},
    **{f"routing_all_{k}": {**ROUTING, "experts": [k] * 4} for k in ("attention", "gru", "mamba", "mlp")},
    # issue 13's faster FamouSRec: experts on the real positions of each history, L_spe on 64 users per batch
    "paper_history": {"expert_input": "history"},
    "paper_history_wo_router": {"expert_input": "history", "use_router": False},
    # Figure 4 with the defaults of the full-vs-w/o-router runs: four experts of one kind
    **{f"paper_history_all_{k}": {"expert_input": "history", "experts": [k] * 4}
       for k in ("attention", "gru", "mamba", "mlp")},
    "paper_fast": FAST,
    "paper_history_items1024": {"expert_input": "history", "spe_items": 1024},
    "paper_fast_wo_router": {**FAST, "use_router": False},
    **{f"paper_fast_all_{k}": {**FAST, "experts": [k] * 4} for k in ("attention", "gru", "mamba", "mlp")},
    # the synthetic benchmark's winner (docs/results/synth/README.md, SynD): routing options, switch balance 1, no L_al
    "routing_bal_history": {**ROUTING, "gamma_balance": 1.0, "mu_align": 0.0, "expert_input": "history"},
    "routing_bal_history_wo_router": {**ROUTING, "gamma_balance": 1.0, "mu_align": 0.0, "expert_input": "history",
                                      "use_router": False},
    "routing_fast": {**ROUTING, **FAST},
    "routing_fast_wo_router": {**ROUTING, **FAST, "use_router": False},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="Instruments")
    p.add_argument("--variants", default="routing,paper")
    p.add_argument("--seeds", default="2020")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default=os.path.join("results", "routing_real"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", metavar="PATH", help="train nothing: write the finished runs of these variants and "
                   "seeds as a Markdown table to PATH (the first variant is the paired reference)")
    p.add_argument("--title", default=None, help="the report's heading")
    args = p.parse_args(argv)
    if args.report:
        return report(args)
    torch.set_num_threads(args.threads)
    from recbole_famous import pipeline
    from recbole_famous.model.diagnostics import format_diagnostics, routing_diagnostics
    from recbole_famous.runner import run

    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    folder = os.path.join(args.out, args.dataset)
    os.makedirs(folder, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.variants.split(","):
            path = os.path.join(folder, f"{name}-{seed}.json")
            if os.path.isfile(path):
                continue
            run_id = f"routing-{args.dataset}-{name}-{seed}"
            overrides = {**VARIANTS[name], "seed": seed, "epochs": args.epochs, "stopping_step": args.epochs,
                         "spe_mode": "sampled", "eval_batch_size": 1024, "show_progress": False,
                         "checkpoint_dir": os.path.join(args.out, "saved"),
                         "results_dir": os.path.join(args.out, "runs")}
            best = os.path.join(args.out, "saved", f"{run_id}.pth")
            resume = os.path.join(args.out, "saved", f"{run_id}.resume.pth")
            resume = resume if os.path.isfile(resume) else (best if os.path.isfile(best) else None)
            result = run("FamouSRec", args.dataset, overrides=None if resume else overrides, run_id=run_id,
                         resume=resume)
            trained = pipeline.load_trained(result["checkpoint"])  # the run's own settings, checked
            model, valid_data = trained.model.eval(), trained.valid_data
            batches = [batch[0] for batch in valid_data]
            diag = routing_diagnostics(model, batches, forced=True)
            record = {"variant": name, "seed": seed, "overrides": VARIANTS[name], "epochs": args.epochs,
                      "best_epoch": result["best_epoch"], "valid": result["best_valid_result"],
                      "test": result["test_result"], "epoch_seconds": result["epoch_seconds"],
                      "valid_scores": result["valid_scores"], "diagnostics": diag}
            with open(path + ".tmp", "w") as f:
                json.dump(record, f, indent=1)
            os.replace(path + ".tmp", path)
            print(f"{args.dataset} {name} seed {seed}: valid NDCG@10 {record['valid'].get('ndcg@10'):.4f}, "
                  f"epochs {len(result['epoch_seconds'])} x {sum(result['epoch_seconds'])/max(1,len(result['epoch_seconds'])):.0f} s; "
                  + format_diagnostics(diag), flush=True)
    return 0


def report(args) -> int:
    from recbole_famous.bench.routing import markdown, read_records

    variants = [v for v in args.variants.split(",") if v]
    seeds = [int(s) for s in args.seeds.split(",")]
    records = read_records(os.path.join(args.out, args.dataset), variants, seeds)
    if not records:
        print(f"error: no finished runs of {variants} (seeds {seeds}) under {os.path.join(args.out, args.dataset)}",
              file=sys.stderr)
        return 2
    missing = sorted({(v, s) for v in variants for s in seeds} - {(r["variant"], r["seed"]) for r in records})
    title = args.title or f"{args.dataset}, {args.epochs} epochs"
    text = markdown(records, title, reference=variants[0])
    if missing:
        text += "\nNo record (not run, or not finished): " + ", ".join(f"{v} seed {s}" for v, s in missing) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    with open(args.report, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
