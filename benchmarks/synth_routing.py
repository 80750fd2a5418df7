"""Does FamouSRec's router route? Train variants on a synthetic dataset of known behaviour types and report,
per type, which expert serves its users and how well (``recbole_famous.bench.synth``).

    python benchmarks/synth_routing.py --variants paper,routing,wo_router,single_attention,single_gru,\
single_mamba,single_mlp --seeds 2020,2021,2022 --out docs/results/synth

Writes ``<out>/synth_routing.json`` (every run's report) and ``<out>/synth_routing.md`` (tables), and
prints one line per run. Runs are cached by (variant, seed) in the JSON: a rerun skips finished ones.
The dataset is generated first if missing (``python -m recbole_famous.data synth``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

BASE = {  # small experts on a small, clean dataset; everything else is the protocol of props/overall.yaml
    "MAX_ITEM_LIST_LENGTH": 32, "hidden_size": 32, "inner_size": 64, "hidden_dropout_prob": 0.2,
    "attn_dropout_prob": 0.2, "d_state": 8, "learning_rate": 0.003, "epochs": 30, "stopping_step": 5,
    "train_batch_size": 256, "show_progress": False, "spe_mode": "sampled",
}
from recbole_famous.config import PROPS_DIR, read_yaml

ROUTING = read_yaml(os.path.join(PROPS_DIR, "famousrec_routing.yaml"))  # the routing options, one file


def one_expert_per_type(experts, router=True):
    """routing_bal's options (or w/o router without L_al) with one expert per behaviour type, so that the strong
    switch balance does not itself split a type over several experts."""
    if not router:
        return {**ROUTING, "use_router": False, "mu_align": 0.0, "experts": experts}
    return {**ROUTING, "gamma_balance": 1.0, "mu_align": 0.0, "experts": experts}


VARIANTS = {
    "paper": {},
    "routing": ROUTING,
    "routing_others": {**ROUTING, "align_target": "others"},
    "routing_compdrop": {**ROUTING, "dropout_position": "components"},
    "wo_router": {**ROUTING, "use_router": False},
    # the small instance's options (tests/test_synth_routing.py): a strong switch balance, no L_al
    "routing_bal": {**ROUTING, "gamma_balance": 1.0, "mu_align": 0.0},
    "wo_router_noal": {**ROUTING, "use_router": False, "mu_align": 0.0},
    "routing_bal03": {**ROUTING, "gamma_balance": 0.3, "mu_align": 0.0},
    "routing_noal": {**ROUTING, "mu_align": 0.0},  # routing_bal's two keys one at a time
    "routing_g1": {**ROUTING, "gamma_balance": 1.0},
    "routing_bal3": one_expert_per_type(["attention", "gru", "mlp"]),
    "wo_router_noal3": one_expert_per_type(["attention", "gru", "mlp"], router=False),
    # two types (SynE, SynI: periodic, drift): gru and mamba, the single kinds best on those types
    "routing_bal_gm": one_expert_per_type(["gru", "mamba"]),
    "wo_router_noal_gm": one_expert_per_type(["gru", "mamba"], router=False),
    # three types (SynH, SynJ: periodic returns of two period ranges, drift)
    "routing_bal_agm": one_expert_per_type(["attention", "gru", "mamba"]),
    "wo_router_noal_agm": one_expert_per_type(["attention", "gru", "mamba"], router=False),
    "switch_only": {"train_routing": "switch", "balance_loss": "switch"},
    "energy_only": {"gate_input": "band_energy"},
    "energy_bands": {"gate_input": "band_energy", "filter_init": "bands"},
    **{f"single_{k}": {"experts": [k], "use_router": False} for k in ("attention", "gru", "mamba", "mlp")},
    **{f"single_{k}_noal": {"experts": [k], "use_router": False, "mu_align": 0.0}
       for k in ("attention", "gru", "mamba", "mlp")},
    "all_mlp": {**ROUTING, "experts": ["mlp", "mlp", "mlp", "mlp"]},
    **{f"all_{k}_bal": {**ROUTING, "gamma_balance": 1.0, "mu_align": 0.0, "experts": [k] * 4}
       for k in ("attention", "gru", "mamba", "mlp")},  # homogeneous mixtures with routing_bal's options
}


def run_variant(dataset, data_dir, variant, seed, extra):
    from recbole_famous import pipeline
    from recbole_famous.bench.synth import separation, type_report
    from recbole_famous.data.synth import read_types
    from recbole_famous.runner import run

    tmp = tempfile.mkdtemp(prefix="synth_")
    overrides = {**BASE, **VARIANTS[variant], **extra, "seed": seed, "data_path": data_dir,
                 "checkpoint_dir": os.path.join(tmp, "saved"), "results_dir": os.path.join(tmp, "results")}
    t0 = time.perf_counter()
    result = run("FamouSRec", dataset, overrides=overrides)
    seconds = time.perf_counter() - t0
    trained = pipeline.load_trained(result["checkpoint"], overrides={"data_path": data_dir})
    model, valid_data, test_data = trained.model.eval(), trained.valid_data, trained.test_data
    types = read_types(dataset, data_dir)
    report = {"valid": type_report(model, valid_data, types), "test": type_report(model, test_data, types)}
    report["separation"] = separation(report["valid"])
    report.update(variant=variant, seed=seed, overrides={k: v for k, v in overrides.items() if k in VARIANTS[variant]},
                  best_epoch=result["best_epoch"], epochs_run=result["epochs_run"], seconds=seconds,
                  epoch_seconds=result["epoch_seconds"], valid_ndcg10=result["best_valid_result"].get("ndcg@10"),
                  test_ndcg10=result["test_result"].get("ndcg@10"))
    return report


def _fmt(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def run_label(run, common: dict) -> str:
    """The variant's name, with the ``--set`` values that not every run of the table shares (e.g. a probe run with
    ``gamma_balance=5``), so that runs of one variant under other settings are not averaged together."""
    own = {k: v for k, v in (run.get("extra") or {}).items() if common.get(k, object()) != v}
    return run["variant"] + (" (" + ", ".join(f"{k}={own[k]}" for k in sorted(own)) + ")" if own else "")


def markdown(runs, dataset, split="valid") -> str:
    extras = [r.get("extra") or {} for r in runs.values()]
    common = {k: v for k, v in extras[0].items() if all(e.get(k, object()) == v for e in extras)} if extras else {}
    by_variant = {}
    for r in runs.values():
        by_variant.setdefault(run_label(r, common), []).append(r)
    type_names = sorted({t for r in runs.values() for t in r[split]["types"] if t != "all"})
    lines = [f"## {dataset}, {split} split: NDCG@10 per behaviour type (mean ± std over seeds)", "",
             "| variant | seeds | all | " + " | ".join(type_names) + " | epochs | s/epoch |",
             "|---|---:|---:|" + "---:|" * len(type_names) + "---:|---:|"]
    for name, rs in by_variant.items():
        cells = [_fmt([r[split]["types"]["all"]["ndcg"] for r in rs])]
        cells += [_fmt([r[split]["types"][t]["ndcg"] for r in rs if t in r[split]["types"]]) for t in type_names]
        ep = statistics.mean(r["epochs_run"] for r in rs)
        sec = statistics.mean(statistics.mean(r["epoch_seconds"]) for r in rs)
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + f" | {ep:.0f} | {sec:.1f} |")
    lines += ["", f"## {dataset}, {split} split: routing (top-1 share of each type's users, per expert; seed by seed)", "",
              "| variant | seed | type | shares | forced NDCG@10 per expert |", "|---|---:|---|---|---|"]
    for name, rs in by_variant.items():
        for r in rs:
            for t in type_names:
                row = r[split]["types"].get(t)
                if not row or not row["share"]:
                    continue
                shares = ", ".join(f"{k} {v:.2f}" for k, v in row["share"].items())
                forced = ", ".join(f"{k} {v:.4f}" for k, v in row["forced"].items())
                lines.append(f"| {name} | {r['seed']} | {t} | {shares} | {forced} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="Synth")
    p.add_argument("--data-dir", default="dataset")
    p.add_argument("--variants", default="paper,routing,wo_router")
    p.add_argument("--seeds", default="2020")
    p.add_argument("--out", default="docs/results/synth")
    p.add_argument("--set", action="append", default=[], help="extra key=value (as --key=value) for every run")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from recbole_famous.config import parse_overrides

    torch.set_num_threads(args.threads)
    extra = parse_overrides(args.set, prefix="")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    from recbole_famous.data.synth import generate

    if not os.path.isfile(os.path.join(args.data_dir, args.dataset, f"{args.dataset}.inter")):
        generate(args.dataset, args.data_dir)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "synth_routing.json")
    runs = json.load(open(path)) if os.path.isfile(path) else {}
    tag = ",".join(f"{k}={extra[k]}" for k in sorted(extra))
    for seed in [int(s) for s in args.seeds.split(",")]:
        for v in variants:
            key = f"{args.dataset}|{v}|{seed}|{tag}"
            if key in runs:
                continue
            r = run_variant(args.dataset, args.data_dir, v, seed, extra)
            r["dataset"], r["extra"] = args.dataset, extra
            # re-read before writing: another process may have added its runs to the same file meanwhile
            runs = json.load(open(path)) if os.path.isfile(path) else {}
            runs[key] = r
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(runs, f, indent=1)
            os.replace(tmp, path)
            sep = r["separation"]
            print(f"{v} seed {seed}: valid NDCG@10 {r['valid_ndcg10']:.4f} test {r['test_ndcg10']:.4f} "
                  f"({r['epochs_run']} epochs, {r['seconds']:.0f} s); top experts "
                  + ", ".join(f"{t}->{lab} {s:.2f}" for t, (lab, s) in sep["top"].items())
                  + (f"; distinct {sep['distinct']}" if sep["top"] else ""), flush=True)
    runs = json.load(open(path)) if os.path.isfile(path) else runs
    mine = {k: r for k, r in runs.items() if r.get("dataset") == args.dataset}
    with open(os.path.join(args.out, "synth_routing.md"), "w") as f:
        f.write(markdown(mine, args.dataset, "valid") + "\n" + markdown(mine, args.dataset, "test"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
