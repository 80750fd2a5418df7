"""Short runs of FamouSRec through the runner, one per variant of an open decision, same data and seed.

Prints, per variant, the per-epoch training loss parts (L_rec, λ·L_spe, μ·L_al, γ·L_bal, from
RecBole's log) and the best validation / test NDCG@10 and HR@10. A budget tool, not a tuned
study: a few epochs on one dataset say which way a decision leans, not by how much in the limit.

    nice python benchmarks/ablate_famousrec_decisions.py --dataset ml-100k --epochs 3 \
        --variants default gate_summary=mean inter_layer=none align_stop_grad=false filter_init=ones
"""
import argparse
import json
import os
import re


import yaml

from recbole_famous.runner import run

LOSS_LINE = re.compile(r"epoch (\d+) training .*?train_loss1: ([\d.]+), train_loss2: ([\d.]+), "
                       r"train_loss3: ([\d.]+), train_loss4: ([\d.]+)")


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_variant(text):
    if text == "default":
        return {}
    out, depth, start = {}, 0, 0
    for i, ch in enumerate(text + ","):  # split on commas outside brackets: experts=[a,b],n_layers=2
        depth += ch in "[{" and 1 or ch in "]}" and -1 or 0
        if ch == "," and depth == 0:
            key, value = text[start:i].split("=", 1)
            out[key] = yaml.safe_load(value)
            start = i + 1
    return out


def loss_parts(log_file):
    rows = []
    with open(log_file, encoding="utf-8") as fh:
        for line in fh:
            m = LOSS_LINE.search(ANSI.sub("", line))
            if m:
                rows.append([int(m.group(1))] + [round(float(x), 4) for x in m.groups()[1:]])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["default"], help="'default' or key=value[,key=value]")
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides shared by every variant")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    shared = parse_variant(",".join(args.set)) if args.set else {}
    results = []
    for text in args.variants:
        overrides = {"epochs": args.epochs, "stopping_step": args.epochs, "show_progress": False,
                     **shared, **parse_variant(text)}
        r = run("FamouSRec", args.dataset, overrides=overrides, saved=False)
        row = {"variant": text, "overrides": overrides, "best_epoch": r["best_epoch"],
               "valid_ndcg@10": r["best_valid_result"].get("ndcg@10"),
               "test_ndcg@10": r["test_result"].get("ndcg@10"), "test_hit@10": r["test_result"].get("hit@10"),
               "epoch_seconds": [round(s, 1) for s in r["epoch_seconds"]],
               "loss_parts_per_epoch [epoch, L_rec, λL_spe, μL_al, γL_bal] (sums over batches)":
                   loss_parts(os.path.join(r["output_dir"], "run.log"))}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
