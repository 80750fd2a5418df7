"""Tables of FamouSRec variants with their routing diagnostics (issue 12; Tables 3 and 5 and Figure 4 of the
paper: "w/o router", forced experts, homogeneous mixtures): the report of the routing study, ``props/bench/
routing.yaml`` (``bench run --profile routing --variants ...``, then ``bench routing --profile routing``).

Input: a study's runs in the benchmark's run store. The routing probe (``probe``) loads each finished FamouSRec
run's best checkpoint and computes ``recbole_famous/diagnostics.py``'s routing diagnostics on its validation users (gate
spread, entropy, shares, expert cosine, forced-expert NDCG@10, filter bands), cached beside the run record
(``seed<N>.routing.json``). ``study_record`` puts record and diagnostics in the study's row format, which is also the
format of the earlier script's records (``docs/results/routing/*.json``, read by ``read_records``). Output:
Markdown, one row per variant with the mean ± sample std over seeds (ddof=1; no spread with one seed), and one row
per ablation against a reference variant with the per-seed paired difference (same seed, same budget), so that
"removing it hurts by more than the seed spread" can be read off directly; and the rows as JSON beside it.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict

from recbole_famous.bench import runs
from recbole_famous.bench.table import mean_std, mean_std_text
from recbole_famous.files import write_json, write_text

BASE = "paper"  # the name a study's own (variant-less) FamouSRec run has in its tables


def read_records(folder: str, variants=None, seeds=None) -> list:
    """The ``<variant>-<seed>.json`` records in ``folder`` (optionally only these variants / seeds), in order."""
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            r = json.load(f)
        if (variants is None or r["variant"] in variants) and (seeds is None or r["seed"] in seeds):
            out.append(r)
    if variants is not None:
        rank = {v: i for i, v in enumerate(variants)}
        out.sort(key=lambda r: (rank[r["variant"]], r["seed"]))
    return out


def by_variant(records) -> "OrderedDict":
    out = OrderedDict()
    for r in records:
        out.setdefault(r["variant"], []).append(r)
    return out


def _ms(values, digits=4) -> str:
    return mean_std_text(*mean_std(values), digits, missing="-")


def _diag(records, key):
    return [r["diagnostics"].get(key) for r in records if r.get("diagnostics")]


def _per_expert(records, key) -> str:
    """Mean over seeds of a per-expert diagnostic (``share``, ``forced_ndcg10``), as ``a / b / c / d``."""
    rows = [r["diagnostics"].get(key) or {} for r in records if r.get("diagnostics")]
    labels = list(rows[0]) if rows and rows[0] else []
    if not labels:
        return "-"
    cells = [mean_std([row.get(lab) for row in rows])[0] for lab in labels]
    return " / ".join(f"{c:.4f}" if key != "share" else f"{c:.2f}" for c in cells) + \
        " (" + " / ".join(lab.split(":", 1)[-1] for lab in labels) + ")"


def variant_rows(records) -> list:
    """One row per variant: seeds, valid and test NDCG@10 (mean ± std), routing diagnostics (means)."""
    rows = []
    for name, rs in by_variant(records).items():
        rows.append({
            "variant": name, "seeds": ",".join(str(r["seed"]) for r in rs),
            "valid": _ms([r["valid"].get("ndcg@10") for r in rs]),
            "test": _ms([r["test"].get("ndcg@10") for r in rs]),
            "gate_spread": _ms(_diag(rs, "gate_spread"), 2), "entropy": _ms(_diag(rs, "entropy"), 2),
            "cosine": _ms(_diag(rs, "expert_cosine"), 2), "share": _per_expert(rs, "share"),
            "forced": _per_expert(rs, "forced_ndcg10"),
        })
    return rows


def paired(records, reference: str, other: str, split="valid", key="ndcg@10") -> dict:
    """``other`` minus ``reference`` seed by seed (seeds both have); mean, std and the diffs."""
    ref = {r["seed"]: r[split].get(key) for r in records if r["variant"] == reference}
    oth = {r["seed"]: r[split].get(key) for r in records if r["variant"] == other}
    seeds = sorted(set(ref) & set(oth))
    diffs = [oth[s] - ref[s] for s in seeds]
    mean, std = mean_std(diffs)
    ref_spread = mean_std([ref[s] for s in seeds])[1]
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "std": std, "reference_spread": ref_spread,
            "relative": mean / mean_std([ref[s] for s in seeds])[0] if seeds else float("nan")}


def markdown(records, title: str, reference: str = None) -> str:
    lines = [f"## {title}", "",
             "| variant | seeds | valid NDCG@10 | test NDCG@10 | gate spread | entropy | expert cosine | "
             "top-1 shares | valid NDCG@10, all forced onto |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for row in variant_rows(records):
        lines.append("| {variant} | {seeds} | {valid} | {test} | {gate_spread} | {entropy} | {cosine} | {share} | "
                     "{forced} |".format(**row))
    others = [v for v in by_variant(records) if v != reference] if reference else []
    if others:
        lines += ["", f"Paired against `{reference}` (same seed; valid NDCG@10 difference, other minus reference):",
                  "", "| variant | seeds | per-seed difference | mean ± std | relative | reference's seed spread |",
                  "|---|---|---|---:|---:|---:|"]
        for v in others:
            p = paired(records, reference, v)
            if not p["seeds"]:
                continue
            diffs = ", ".join(f"{d:+.4f}" for d in p["diffs"])
            std = "" if p["std"] != p["std"] else f" ± {p['std']:.4f}"
            spread = "-" if p["reference_spread"] != p["reference_spread"] else f"{p['reference_spread']:.4f}"
            lines.append(f"| {v} | {','.join(map(str, p['seeds']))} | {diffs} | {p['mean']:+.4f}{std} | "
                         f"{100 * p['relative']:+.1f}% | {spread} |")
    return "\n".join(lines) + "\n"


def cache_path(record_path: str) -> str:
    """``seed<N>.routing.json`` beside the run record ``seed<N>.json`` (archived and restored with it)."""
    return runs.derived_path(record_path, "routing")


def probe(record: dict, record_path: str) -> dict:
    """The routing diagnostics of a finished run's best checkpoint on its validation users (cached)."""
    cache = cache_path(record_path)
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    from recbole_famous.bench import trained
    from recbole_famous.diagnostics import routing_diagnostics

    loaded = trained.load_run(record)
    diag = routing_diagnostics(loaded.model, [batch[0] for batch in loaded.valid_data], forced=True)
    write_json(cache, diag)
    return diag


def study_record(record: dict, diagnostics: dict) -> dict:
    """A benchmark run record as one row of the study (the earlier script's record format)."""
    spec, result = record["spec"], record.get("result") or {}
    return {"variant": spec.get("variant") or BASE, "seed": spec["seed"], "overrides": spec.get("overrides", {}),
            "epochs": spec.get("overrides", {}).get("epochs"), "best_epoch": result.get("best_epoch"),
            "valid": record.get("valid_metrics") or {}, "test": record.get("metrics") or {},
            "epoch_seconds": result.get("epoch_seconds"), "valid_scores": result.get("valid_scores"),
            "diagnostics": diagnostics}


def write(specs, out_dir: str, doc_dir: str, dataset: str, title: str, reference: str, command: str,
          echo=print) -> list:
    """``routing_<dataset>.md`` (the table) and ``routing_<dataset>.json`` (its rows, diagnostics included) from the
    finished runs among ``specs``; the runs not finished are named under the table."""
    rows, missing = [], []
    for spec in specs:
        path = runs.record_path(out_dir, spec)
        record = runs.load_record(path)
        if record is None:
            missing.append(f"{spec.variant or BASE} seed {spec.seed}")
            continue
        echo(f"  routing probe: {spec.label} seed {spec.seed}")
        rows.append(study_record(record, probe(record, path)))
    text = markdown(rows, title, reference=reference) if rows else f"## {title}\n\nNo finished run yet.\n"
    if missing:
        text += "\nNo record (not run, or not finished): " + ", ".join(missing) + "\n"
    text += f"\nMade by: `{command}` (runs under `{out_dir}`; rows with diagnostics: `routing_{dataset}.json`).\n"
    md, js = (os.path.join(doc_dir, f"routing_{dataset}.{ext}") for ext in ("md", "json"))
    os.makedirs(doc_dir, exist_ok=True)
    write_text(md, text)
    write_json(js, rows)
    return [md, js]
