"""Each model under a profile's variant against the same model as the profile has it, seed by seed, on validation.

Issue 35's look at FamouSRec's settings found changes that help it on validation (dropout 0.2, learning rate
0.0005). Whether such a gain is FamouSRec's own, or any model's, is read off by giving a baseline the same change
(a variant without ``model:`` applies to every model, ``props/bench/converged.yaml``) and pairing each variant run,
named as its tables name it (``M[variant]``), with the profile's own run of ``M`` on the same seed: the difference
of their best validation NDCG@10, and the best epochs. Test values are not shown: settings are chosen on
validation (the variant runs' test metrics are in ``table2_<dataset>_<variant>.md``).

Input: finished run records only (``runs.py``; a restored record will do, no checkpoint is read). Output:
``variants_<dataset>.md`` and the rows as ``variants_<dataset>.csv``.
"""

from __future__ import annotations

import csv
import io
import math
import os

from recbole_famous.bench import runs
from recbole_famous.bench.plan import plan, plan_labels
from recbole_famous.bench.table import mean_std
from recbole_famous.errors import UsageError
from recbole_famous.files import write_text

KEY = "ndcg@10"
COLUMNS = ("model", "variant", "seed", "base_valid", "base_best_epoch", "variant_valid", "variant_best_epoch",
           "difference", "relative")


def _valid(record) -> tuple:
    """(best validation NDCG@10, best epoch) of a finished record, or None."""
    if not record or record.get("status") != "finished":
        return None
    value = (record.get("valid_metrics") or {}).get(KEY)
    return None if value is None else (float(value), (record.get("result") or {}).get("best_epoch"))


def pairs(profile, dataset: str, labels, seeds, out_dir: str) -> tuple:
    """``(rows, missing)``: one row (``COLUMNS``) per run label ``M[variant]`` and seed where both it and the
    profile's own run of ``M`` on that seed have finished; the runs that have not, as ``"M[variant] seed N"`` /
    ``"M seed N"``."""
    rows, missing = [], []
    for label in labels:
        found = plan_labels(profile, [label], [dataset], seeds)
        if found and not found[0].variant:
            raise UsageError(f"{label!r} names no variant: give M[variant], e.g. FamouSRec[settings_lr0005]")
        for spec in found:
            base = plan(profile, [spec.model], [dataset], [spec.seed])[0]
            got = {s: _valid(runs.load_record(runs.record_path(out_dir, s))) for s in (base, spec)}
            for s, value in got.items():
                name = f"{s.label} seed {s.seed}"
                if value is None and name not in missing:
                    missing.append(name)
            if None in got.values():
                continue
            (b, b_epoch), (v, v_epoch) = got[base], got[spec]
            rows.append({"model": spec.model, "variant": spec.variant, "seed": spec.seed, "base_valid": b,
                         "base_best_epoch": b_epoch, "variant_valid": v, "variant_best_epoch": v_epoch,
                         "difference": v - b, "relative": (v - b) / b if b else float("nan")})
    return rows, missing


def markdown(rows, missing, title: str, profile) -> str:
    lines = [f"## {title}", "",
             "Each model under a variant of the profile against the same model as the profile has it, same seed: "
             "best validation NDCG@10 (best epoch, 0-based). Validation only: settings are chosen there.", "",
             "| model | variant | seed | the profile's | the variant's | difference | relative |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['seed']} | {r['base_valid']:.4f} ({r['base_best_epoch']}) "
                     f"| {r['variant_valid']:.4f} ({r['variant_best_epoch']}) | {r['difference']:+.4f} | "
                     f"{100 * r['relative']:+.1f}% |")
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["variant"]), []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        lines += ["", "Over seeds (mean ± sample std of the paired differences):", "",
                  "| model | variant | seeds | difference | relative |", "|---|---|---:|---:|---:|"]
        for (model, variant), g in groups.items():
            (d, d_std), rel = mean_std([r["difference"] for r in g]), mean_std([r["relative"] for r in g])[0]
            spread = "" if math.isnan(d_std) else f" ± {d_std:.4f}"
            rel_text = "–" if math.isnan(rel) else f"{100 * rel:+.1f}%"
            lines.append(f"| {model} | {variant} | {len(g)} | {d:+.4f}{spread} | {rel_text} |")
    labels = {v: profile.variant_meta.get(v, {}).get("label", v) for v in dict.fromkeys(r["variant"] for r in rows)}
    if labels:
        lines += ["", "Variants: " + "; ".join(f"`{v}`: {label}" for v, label in labels.items()) + "."]
    if missing:
        lines += ["", "No finished record (not run, or not finished): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def write(profile, dataset: str, labels, seeds, out_dir: str, doc_dir: str, title: str, command: str) -> list:
    """``variants_<dataset>.md`` and ``.csv`` in ``doc_dir``; their paths."""
    rows, missing = pairs(profile, dataset, labels, seeds, out_dir)
    text = markdown(rows, missing, title, profile) + f"\nMade by: `{command}` (records under `{out_dir}`).\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    md, table_csv = (os.path.join(doc_dir, f"variants_{dataset}.{ext}") for ext in ("md", "csv"))
    os.makedirs(doc_dir, exist_ok=True)
    write_text(md, text)
    write_text(table_csv, buf.getvalue())
    return [md, table_csv]
