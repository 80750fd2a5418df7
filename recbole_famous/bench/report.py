"""``analyze``: the analyses of ``analysis.py`` on a profile's finished runs, written as PNGs, JSON and Markdown.

Needs, for one dataset and seed: the SASRec run (Figure 1), the FamouSRec run (Figure 2 router filters,
expert shares; with SASRec also Appendix A.4) and the ``filter_<kind>`` ablation runs (Figure 2 single
encoders). Whatever is missing is skipped with a note saying which command makes it.
"""

from __future__ import annotations

import json
import math
import os

from recbole_famous.bench import analysis, plots, runs
from recbole_famous.bench.plan import make_spec


def _record(profile, model, dataset, seed, out_dir, variant="", keys=None):
    return runs.load_record(runs.record_path(out_dir, make_spec(profile, model, dataset, seed, variant, keys)))


def _note(profile, record) -> str:
    r = record["result"]
    return (f"profile {profile.name}; {record['spec']['model']} seed {record['spec']['seed']}, "
            f"{r['epochs_run']} epochs, best epoch {r['best_epoch']}")


def analyze(profile, dataset: str, seed: int, out_dir: str, doc_dir: str, command: str, echo=print) -> list:
    from recbole_famous.bench import trained

    os.makedirs(doc_dir, exist_ok=True)
    lines = [f"## Analyses on {dataset} (profile `{profile.name}`, seed {seed})", "",
             f"Budget profile: {profile.description}.", ""]
    data, paths = {}, []
    sas = _record(profile, "SASRec", dataset, seed, out_dir)
    fam = _record(profile, "FamouSRec", dataset, seed, out_dir)
    fig1 = route = None
    if sas:
        echo("Figure 1: frequency components on SASRec representations")
        fig1 = analysis.frequency_component_users(trained.load_run(sas))
        p = plots.frequency_users(fig1["counts"], os.path.join(doc_dir, f"figure1_{dataset}.png"), dataset,
                                  note=_note(profile, sas) + "; bins cut in thirds")
        paths.append(p)
        data["figure1_counts"] = fig1["counts"]
        total = sum(fig1["counts"].values()) or 1
        lines += ["### Figure 1: users per frequency component (SASRec)", "",
                  "| component | users | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:,.1f} | {100 * v / total:.1f}% |" for k, v in fig1["counts"].items()]
        lines += ["", f"![Figure 1]({os.path.basename(p)})", ""]
    else:
        lines += ["Figure 1 skipped: no SASRec run (`python -m recbole_famous.bench run --models SASRec`).", ""]
    curves = {}
    if fam:
        echo("Figure 2: FamouSRec router filters; expert shares")
        loaded = trained.load_run(fam)
        layers = analysis.filter_amplitudes(loaded.model)
        if layers:
            for j, kind in enumerate(layers[0]["kinds"]):
                curves[f"router filter {j} ({kind} expert)"] = layers[0]["amplitude"][j]
            data["figure2_router"] = layers
        route = analysis.routing(loaded)
        data["expert_share"] = route["share"]
        p = plots.expert_share(route["share"], os.path.join(doc_dir, f"expert_share_{dataset}.png"),
                               f"{dataset}: share of test users routed to each expert (top-1)", _note(profile, fam))
        paths.append(p)
        lines += ["### Expert share of users (FamouSRec, top-1 at inference, last MoE layer)", "",
                  "| expert | users |", "|---|---:|"]
        lines += [f"| {k} | {100 * v:.1f}% |" for k, v in route["share"].items()]
        lines += ["", f"![expert share]({os.path.basename(p)})", ""]
    else:
        lines += ["Router filters and expert shares skipped: no FamouSRec run.", ""]
    singles, missing = {}, []
    for name in profile.variants_in("figure2"):  # the single encoders of the profile's ablation study
        display = profile.variant_meta[name].get("label", name)
        rec = _record(profile, "FamouSRec", dataset, seed, out_dir, name, profile.variants[name])
        amp = analysis.filter_amplitudes(trained.load_run(rec).model) if rec else None
        if amp:
            singles[f"{display} (single encoder)"] = amp[0]["amplitude"][0]
        else:
            missing.append(display)
    if curves:
        p = plots.filter_amplitudes(curves, os.path.join(doc_dir, f"figure2_router_{dataset}.png"),
                                    f"{dataset}: learned router filter amplitude per expert", _note(profile, fam))
        paths.append(p)
        lines += ["### Figure 2: learned filter amplitudes", "", f"![router filters]({os.path.basename(p)})", ""]
    if singles:
        data["figure2_single"] = singles
        p = plots.filter_amplitudes(singles, os.path.join(doc_dir, f"figure2_single_{dataset}.png"),
                                    f"{dataset}: learned filter in front of single encoders",
                                    f"profile {profile.name}; seed {seed}")
        paths.append(p)
        lines += [f"![single encoders]({os.path.basename(p)})", ""]
    if missing:
        lines += [f"Single-encoder filters missing for {missing}: "
                  f"`python -m recbole_famous.bench ablations --profile {profile.name} --dataset {dataset} "
                  "--only figure2`.", ""]
    if fig1 and route:
        a4 = analysis.a4_table(fig1, route)
        data["a4"] = a4
        lines += ["### Appendix A.4 / Table 4: low-frequency users (LPF wins in Figure 1)", "",
                  f"{a4['low_frequency_users']:,} of {a4['users']:,} test users are low-frequency; "
                  f"**{_pct(a4['low_share_to_attention'])}** of them are routed to the attention expert "
                  f"(all users: {_pct(a4['all_users_share_to_attention'])}). Paper: 73% (Instruments), 61% (Arts).", "",
                  "| model, users | HR@10 | NDCG@10 |", "|---|---:|---:|"]
        for key in ("SASRec_all", "SASRec_low", "FamouSRec_all", "FamouSRec_low"):
            hr, nd = a4[key]
            lines.append(f"| {key.replace('_', ', ')} | {hr:.4f} | {nd:.4f} |")
        lines.append("")
    lines.append(f"Made by: `{command}` (from the run records under `{out_dir}`).")
    md = os.path.join(doc_dir, f"analysis_{dataset}.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    js = os.path.join(doc_dir, f"analysis_{dataset}.json")
    with open(js, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=float)
    return [md, js, *paths]


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"
