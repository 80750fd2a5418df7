"""The paper's ablation suite as FamouSRec config variants (FamouSRec, WWW 2025, Table 3, Figure 4, Table 5).

The variants are data: ``props/bench/studies/famousrec_ablations.yaml``, which the shipped profiles include.

* ``table3``: the full model and, one change each (keys of ``props/model/FamouSRec.yaml``):
  w/o router (``use_router: false``: the experts' outputs averaged), w/o frequency-domain learning
  (``frequency_learning: false``: a linear map per expert instead of FFT + filters), w/o load balance
  (``gamma_balance: 0``), w/o L_spe (``lambda_spe: 0``), w/o L_al (``mu_align: 0``).
* ``figure4``: homogeneous mixtures, four copies of one kind, against the heterogeneous full model.
* ``figure2``: single encoders with one learnable frequency filter in front (``experts: [kind]``, no router,
  no auxiliary losses), trained for the filter-amplitude analysis (``analysis.filter_amplitudes``).
* ``table5``: no training; the full model's checkpoint evaluated with every user forced to one expert at
  inference (``force_expert``), against learned routing.

The full model is the benchmark's own FamouSRec run (same record, never trained twice). Every variant is a
benchmark run (``runs.py``): one JSON each, resumable. Table 5 evaluations are cached as JSON beside the full
model's record (``seed<N>.table5.json``), which ``archive.py`` carries with it.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict

from recbole_famous.bench import plots, runs, table
from recbole_famous.bench.plan import make_spec
from recbole_famous.errors import UsageError
from recbole_famous.files import write_json

MODEL = "FamouSRec"
GROUPS = ("table3", "figure4", "figure2", "table5")  # the paper's suite (props/bench/studies/famousrec_ablations.yaml)
TITLES = {"table3": "Table 3: components", "figure4": "Figure 4: homogeneous vs heterogeneous experts",
          "figure2": "Single encoders with one learnable filter in front (for Figure 2)"}
STUDY = "studies/famousrec_ablations.yaml"  # where the shipped profiles take these variants from (``include``)


def profile_groups(profile) -> list:
    """The variant groups of ``profile`` in the order its yaml lists them, then ``table5`` (no training: the full
    model's checkpoints) where the paper's suite is there. A profile of its own may declare other groups (e.g.
    ``decisions``), each tabled against the full model."""
    found = []
    for meta in profile.variant_meta.values():
        group = meta.get("group")
        if group and meta.get("model", MODEL) == MODEL and group not in found:
            found.append(group)
    return found + (["table5"] if "table3" in found else [])


def variants(profile, groups=GROUPS) -> "OrderedDict":
    """``{variant name: (group, display name, config keys)}`` of the trained variants in ``groups``: the full model
    (``""``, the profile's own FamouSRec run) and the profile's variants of those groups (``variants:`` with
    ``group``; the shipped profiles include them from ``props/bench/studies/famousrec_ablations.yaml``)."""
    out = OrderedDict()
    trained = [g for g in groups if g != "table5"]
    if [g for g in groups if g != "figure2"]:
        out[""] = ("", "full (heterogeneous)", {})
    for group in trained:
        for name in profile.variants_in(group):
            out[name] = (group, profile.variant_meta[name].get("label", name), profile.variants[name])
    if trained and len(out) <= 1:
        raise UsageError(f"profile '{profile.name}' has no variants of {trained}: add `include: [{STUDY}]` to it, "
                         "or variants with those groups")
    return out


def specs(profile, dataset: str, seeds, groups=GROUPS) -> list:
    return [make_spec(profile, MODEL, dataset, seed, name, keys)
            for name, (_, _, keys) in variants(profile, groups).items() for seed in seeds]


def check_groups(groups, profile=None) -> list:
    """The groups asked for (default: all of the profile's, ``profile_groups``), each one the profile has."""
    known = profile_groups(profile) if profile is not None else list(GROUPS)
    groups = list(groups or known)
    bad = [g for g in groups if g not in known]
    if bad:
        raise UsageError(f"unknown ablation group(s) {bad}; known: {known}")
    return groups


def forced_expert_results(record: dict, record_path: str, out_dir: str) -> dict:
    """Table 5 for one full-model record: ``{"learned": metrics, "<j>:<kind>": metrics}``, cached beside the
    record as ``seed<N>.table5.json`` (archived and restored with it)."""
    from recbole_famous import pipeline
    from recbole_famous.bench import trained

    cache = runs.derived_path(record_path, "table5")
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    base = trained.load_run(record)
    results = OrderedDict()
    tb_dir = os.path.join(out_dir, "runner", "table5")
    os.makedirs(tb_dir, exist_ok=True)
    choices = [("learned", None)] + [(f"{j}:{k}", j) for j, k in enumerate(base.model.kinds)]
    for name, force in choices:
        loaded = base if force is None else trained.load_run(record, {"force_expert": force}, data=base)
        trainer = pipeline.get_trainer(loaded.config, loaded.model, tb_dir)
        results[name] = {k: float(v) for k, v in trainer.evaluate(loaded.test_data, load_best_model=False).items()}
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    write_json(cache, results)
    return results


def _stats(records, key):
    return table.mean_std([r["metrics"].get(key) for r in records])


def _fmt(mean, std) -> str:
    return table.mean_std_text(mean, std)


def paired_lines(name: str, display: str, recs: list, where: dict, echo=print) -> list:
    """Markdown rows: variant ``name``'s runs against the full model's of the same seed, paired over the test users
    (per-user test NDCG@10, ``compare.paired_test``), for each seed both finished whose per-user values are at hand
    (cached beside the record, or its checkpoint on this machine). ``where``: ``(variant, seed)`` -> record path
    (the full model's variant is ``""``)."""
    from recbole_famous.bench import compare, peruser

    full = {seed: path for (variant, seed), path in where.items() if variant == ""}
    rows = []
    for rec in recs:
        seed = rec["spec"]["seed"]
        if seed not in full:
            continue
        pair = [(rec, peruser.cache_path(where[(name, seed)])), (runs.load_record(full[seed]),
                                                                 peruser.cache_path(full[seed]))]
        if not all(peruser.obtainable(r, path) for r, path in pair):
            continue
        a, b = (peruser.for_record(r, path, echo=echo) for r, path in pair)
        t = compare.paired_test(a, b)
        rows.append(f"| {display} | {seed} | {t['users']:,} | {t['mean_base']:.4f} | {t['mean_ours']:.4f} | "
                    f"{t['mean_diff']:+.4f} | {t['ours_better']:,} / {t['ours_worse']:,} | "
                    f"{compare.format_p(t['wilcoxon_p'])} | {compare.format_p(t['t_p'])} |")
    return rows


def table5_per_seed(records, per_seed, key: str = "ndcg@10") -> list:
    """Table 5 seed by seed (Markdown lines): each inference's test ``key`` per full-model run, the share of test
    users the router sends to each expert in that run (its last layer, ``expert_share``), and how often learned
    routing beats a fixed expert of the same seed, with its margin over that seed's best fixed expert."""
    seeds = [r["spec"]["seed"] for r in records]
    lines = [f"Seed by seed (test {key.upper()}; share: the test users whose top-1 expert it is under learned "
             "routing, last layer):", "",
             "| inference | " + " | ".join(f"seed {s}" for s in seeds) + " | share routed there |",
             "|---|" + "---:|" * len(seeds) + "---|"]
    for choice in per_seed[0]:
        vals = " | ".join(f"{s[choice][key]:.4f}" if choice in s else "–" for s in per_seed)
        shares = [(r.get("expert_share") or [{}])[-1].get(choice) for r in records]
        share = "" if choice == "learned" else " / ".join("–" if x is None else f"{100 * x:.0f}%" for x in shares)
        display = "learned routing" if choice == "learned" else f"all users -> expert {choice}"
        lines.append(f"| {display} | {vals} | {share} |")
    wins = pairs = 0
    margins = []
    for seed, s in zip(seeds, per_seed):
        fixed = {c: m[key] for c, m in s.items() if c != "learned"}
        if not fixed or "learned" not in s:
            continue
        wins += sum(s["learned"][key] > v for v in fixed.values())
        pairs += len(fixed)
        best = max(fixed, key=fixed.get)
        margins.append(f"{100 * (s['learned'][key] - fixed[best]) / fixed[best]:+.1f}% (seed {seed}, {best})")
    lines += ["", f"Learned routing is above the fixed expert in {wins} of {pairs} (seed, expert) pairs; over each "
              f"seed's best fixed expert: {', '.join(margins)}.", ""]
    return lines


def report(profile, dataset: str, seeds, out_dir: str, doc_dir: str, groups=GROUPS, echo=print) -> list:
    """Write ``ablations.md`` / ``ablations.csv`` and the Figure-4 and Table-5 plots from finished runs."""
    found, where = {}, {}  # where: (variant, seed) -> the finished record's path in the store
    for name, (group, display, _) in variants(profile, groups).items():
        recs = []
        for spec in specs(profile, dataset, seeds, groups):
            path = runs.record_path(out_dir, spec) if spec.variant == name else None
            record = runs.load_record(path) if path else None
            if record:
                recs.append(record)
                where[(name, spec.seed)] = path
        found[name] = (group, display, recs)
    full = found.get("", (None, None, []))[2]
    lines = [f"## Ablations of FamouSRec on {dataset}", "",
             f"Budget profile **`{profile.name}`**: {profile.description}. Test metrics, full ranking; mean ± "
             "sample std over the seeds that finished (n = seeds); Δ = relative change of NDCG@10 vs the full model.", ""]
    rows = []
    f_mean = _stats(full, "ndcg@10")[0]
    for group in [g for g in groups if g != "table5"]:
        title = TITLES.get(group, f"{group}: each variant against the full model")
        lines += [f"### {title}", "", "| variant | n | HR@10 | NDCG@10 | HR@5 | NDCG@5 | Δ NDCG@10 |", "|---|---:|---:|---:|---:|---:|---:|"]
        names = [n for n, (g, _, _) in found.items() if g == group or (n == "" and group != "figure2")]
        for name in names:
            _, display, recs = found[name]
            st = {k: _stats(recs, k) for k in ("hit@10", "ndcg@10", "hit@5", "ndcg@5")}
            delta = "" if not recs or name == "" or math.isnan(f_mean) or f_mean == 0 else \
                f"{100 * (st['ndcg@10'][0] - f_mean) / f_mean:+.1f}%"
            lines.append(f"| {display} | {len(recs)} | " + " | ".join(_fmt(*st[k]) for k in st) + f" | {delta} |")
            rows.append({"group": group, "variant": name or "full", "display": display, "n": len(recs),
                         **{f"{k}_mean": st[k][0] for k in st}, **{f"{k}_std": st[k][1] for k in st}})
        lines.append("")
        paired = []
        for name in names:
            if name:
                paired += paired_lines(name, found[name][1], found[name][2], where, echo)
        if paired:
            lines += [f"Paired over the test users, each variant against the full model of the same seed (per-user "
                      "test NDCG@10; two-sided Wilcoxon signed-rank and paired t test):", "",
                      "| variant | seed | users | full model | variant | mean diff | variant better / worse | "
                      "Wilcoxon p | paired t p |", "|---|---:|---:|---:|---:|---:|---|---:|---:|"] + paired + [""]
        if group == "figure4":
            vals = {found[n][1]: _stats(found[n][2], "ndcg@10") for n in names if found[n][2]}
            if vals:
                path = plots.bars({k: v[0] for k, v in vals.items()}, os.path.join(doc_dir, f"figure4_{dataset}.png"),
                                  f"{dataset}: homogeneous vs heterogeneous experts (test NDCG@10)", "NDCG@10",
                                  errors={k: v[1] for k, v in vals.items()}, note=f"profile {profile.name}",
                                  highlight=found[""][1])
                lines += [f"![Figure 4]({os.path.basename(path)})", ""]
    if "table5" in groups and full:
        per_seed = []
        for record in full:
            seed = record["spec"]["seed"]
            echo(f"  Table 5: forced-expert inference of seed {seed}")
            per_seed.append(forced_expert_results(record, where[("", seed)], out_dir))
        lines += ["### Table 5: one fixed expert at inference vs learned routing", "",
                  "| inference | n | HR@10 | NDCG@10 | HR@5 | NDCG@5 |", "|---|---:|---:|---:|---:|---:|"]
        vals = {}
        for choice in per_seed[0]:
            st = {k: table.mean_std([s[choice].get(k) for s in per_seed if choice in s])
                  for k in ("hit@10", "ndcg@10", "hit@5", "ndcg@5")}
            display = "learned routing" if choice == "learned" else f"all users -> expert {choice}"
            lines.append(f"| {display} | {len(per_seed)} | " + " | ".join(_fmt(*st[k]) for k in st) + " |")
            rows.append({"group": "table5", "variant": choice, "display": display, "n": len(per_seed),
                         **{f"{k}_mean": st[k][0] for k in st}, **{f"{k}_std": st[k][1] for k in st}})
            vals[display.replace("all users -> ", "")] = st["ndcg@10"]
        path = plots.bars({k: v[0] for k, v in vals.items()}, os.path.join(doc_dir, f"table5_{dataset}.png"),
                          f"{dataset}: fixed expert at inference vs learned routing (test NDCG@10)", "NDCG@10",
                          errors={k: v[1] for k, v in vals.items()}, note=f"profile {profile.name}",
                          highlight="learned routing")
        lines += ["", f"![Table 5]({os.path.basename(path)})", ""] + table5_per_seed(full, per_seed)
    os.makedirs(doc_dir, exist_ok=True)
    md = os.path.join(doc_dir, f"ablations_{dataset}.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    csv_path = os.path.join(doc_dir, f"ablations_{dataset}.csv")
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write(table.to_csv(rows, profile.name))
    return [md, csv_path]
