"""Table-2-style tables (FamouSRec, WWW 2025, Table 2) from finished run records, as Markdown and CSV.

Per dataset: one row per metric (HR@5, HR@10, NDCG@5, NDCG@10), one column per model, each cell the mean
over seeds ± the sample standard deviation (ddof=1; no spread with one seed); the best mean is **bold**, the
second best _underlined_ (``<u>``), and the last two columns are the improvement of the proposed model
(FamouSRec), ``(ours - best) / best`` in percent, negative when it is behind: over the best learned baseline and over
the best reference rule (``REFERENCE_MODELS``: models that train nothing), each chosen by **validation** NDCG@10
(mean over its seeds), never by test.
A second table gives the efficiency columns from the same runs. Every table names the budget profile.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import OrderedDict

# The no-training reference models (recbole_famous/model/rules): every table has their rows, and ours is compared
# with the best of them as well as with the best learned baseline.
REFERENCE_MODELS = ("Pop", "RecentItems", "ItemTransition", "ItemCoOccurrence")
SELECT = "ndcg@10"  # what chooses the best baseline and the best rule, on validation
METRICS = (("hit@5", "HR@5"), ("hit@10", "HR@10"), ("ndcg@5", "NDCG@5"), ("ndcg@10", "NDCG@10"))
EFFICIENCY = (
    ("params_total", "params (total)", "{:,.0f}"),
    ("params_active", "params (active / user)", "{:,.0f}"),
    ("train_seconds_per_epoch", "train s / epoch", "{:.1f}"),
    ("infer_ms_per_1k_users", "inference ms / 1k users", "{:.0f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("cpu_seconds_run", "CPU s, whole run", "{:,.0f}"),
)


PER_PROCESS = ("cpu_seconds_run",)  # summed over a resumed run's processes only since efficiency.processes exists


def last_process_only(record) -> bool:
    """A resumed run whose earlier processes were not counted: its record predates the per-process sums
    (``worker.Attempts``), or it counts one process only although it resumed (its earlier processes ran code that
    kept no ``attempts.json``). Its CPU and wall seconds are those of its last process only."""
    resumed = bool((record.get("result") or {}).get("resumed_from"))
    return resumed and (record.get("efficiency") or {}).get("processes", 1) < 2


THREAD_BOUND = ("train_seconds_per_epoch", "cpu_seconds_run")  # depend on the torch threads a run trained with
THREADS_NOTE = ("§ trained, at least in part, with more torch threads than the profile's (`bench run --threads`, "
                "efficiency.train_threads in its record): its training and CPU seconds are not the profile's figures; "
                "its inference was timed with the profile's threads.")


def more_threads(record) -> bool:
    """Trained (some epochs) with more torch threads than the profile's, which timed its inference (``worker.py``)."""
    eff = record.get("efficiency") or {}
    timing = eff.get("timing_threads")
    return timing is not None and any(t > timing for t in eff.get("train_threads") or ())


def mean_std(values) -> tuple:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def label(record) -> str:
    spec = record["spec"]
    return f"{spec['model']}[{spec['variant']}]" if spec.get("variant") else spec["model"]


def group(records, order=None) -> "OrderedDict":
    """``{dataset: {label: [records...]}}``, models in ``order`` first, then as found."""
    out = OrderedDict()
    for r in records:
        out.setdefault(r["spec"]["dataset"], OrderedDict()).setdefault(label(r), []).append(r)
    if order:
        rank = {m: i for i, m in enumerate(order)}
        for ds in out:
            out[ds] = OrderedDict(sorted(out[ds].items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return out


def summarize(runs, key) -> tuple:
    return mean_std([r["metrics"].get(key) for r in runs])


def ranks(means: dict) -> dict:
    """``{label: 1 | 2}`` for the best and second-best distinct mean (ties share the mark); NaN never ranks."""
    distinct = sorted({v for v in means.values() if not math.isnan(v)}, reverse=True)
    out = {}
    for lab, v in means.items():
        if distinct and v == distinct[0]:
            out[lab] = 1
        elif len(distinct) > 1 and v == distinct[1]:
            out[lab] = 2
    return out


def is_reference(label_or_model: str) -> bool:
    """True for a reference rule (a table label may carry a variant: ``Model[variant]``)."""
    return label_or_model.split("[", 1)[0] in REFERENCE_MODELS


def is_ours(label: str, ours: str) -> bool:
    """True for ``ours`` and its variants (``FamouSRec[wo_router]``): an ablation of ours is never a baseline."""
    return label.split("[", 1)[0] == ours


def chosen_on_validation(models: dict, ours: str, reference: bool) -> str | None:
    """The label, not ``ours`` or a variant of it, with the best mean validation NDCG@10 among the learned models
    (``reference=False``) or the reference rules (``reference=True``); None if there is none."""
    scores = {m: mean_std([r.get("valid_metrics", {}).get(SELECT) for r in runs])[0] for m, runs in models.items()
              if not is_ours(m, ours) and is_reference(m) == reference}
    scores = {m: v for m, v in scores.items() if not math.isnan(v)}
    return max(scores, key=scores.get) if scores else None


def gain(means: dict, ours: str, other: str | None) -> float:
    """``(ours - other) / other`` in percent; NaN when either is missing or ``other`` is 0."""
    if other is None or ours not in means or other not in means:
        return float("nan")
    a, b = means[ours], means[other]
    return float("nan") if math.isnan(a) or math.isnan(b) or b == 0 else 100.0 * (a - b) / b


def mean_std_text(mean, std, digits=4, missing="–") -> str:
    """``0.0622 ± 0.0022``; the mean alone when there is no spread (one seed); ``missing`` when there is no mean."""
    if math.isnan(mean):
        return missing
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def cell(mean, std, rank, digits=4) -> str:
    """A table cell: ``mean_std_text``, **bold** for rank 1, <u>underlined</u> for rank 2."""
    text = mean_std_text(mean, std, digits)
    if text == "–":
        return text
    return f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


def quality_rows(records, ours="FamouSRec", order=None) -> list:
    """Long rows: dataset, model, metric, mean, std, n_seeds, mark (best/second), improvement_pct, best_baseline."""
    rows = []
    for ds, models in group(records, order).items():
        base, rule = chosen_on_validation(models, ours, False), chosen_on_validation(models, ours, True)
        for key, name in METRICS:
            stats = {m: summarize(runs, key) for m, runs in models.items()}
            marks = ranks({m: s[0] for m, s in stats.items()})
            means = {m: s[0] for m, s in stats.items()}
            imp, imp_rule = gain(means, ours, base), gain(means, ours, rule)
            for m, (mean, std) in stats.items():
                rows.append({"dataset": ds, "model": m, "metric": name, "mean": mean, "std": std,
                             "n_seeds": len(models[m]), "mark": {1: "best", 2: "second"}.get(marks.get(m), ""),
                             "improvement_pct": imp if m == ours and not math.isnan(imp) else "",
                             "best_baseline": base or "",
                             "improvement_over_rule_pct": imp_rule if m == ours and not math.isnan(imp_rule) else "",
                             "best_rule": rule or ""})
    return rows


def _gain_cell(pct: float, other: str | None) -> str:
    return "–" if math.isnan(pct) else f"{pct:+.1f}% vs {other}"


def markdown(records, profile_name: str, profile_description: str = "", ours="FamouSRec", order=None,
             notes=None) -> str:
    """The Markdown tables; ``notes``: ``{dataset: text}`` printed under each dataset's heading (its provenance)."""
    lines = [f"Budget profile **`{profile_name}`**" + (f": {profile_description}" if profile_description else "")
             + ". Test-set metrics, full ranking over all items; mean ± sample std over seeds "
             "(no ± with one seed); **bold** best, <u>underlined</u> second best; "
             f"the last two columns: {ours} over the best learned baseline and over the best reference rule (a model "
             "that trains nothing: " + ", ".join(REFERENCE_MODELS) + "), each chosen by validation NDCG@10.", ""]
    for ds, models in group(records, order).items():
        names = list(models)
        seeds = ", ".join(f"{m} {len(models[m])}" for m in names)
        base, rule = chosen_on_validation(models, ours, False), chosen_on_validation(models, ours, True)
        note = (notes or {}).get(ds)
        lines += [f"### {ds}", ""] + ([f"Data: {note}", ""] if note else []) + [f"Seeds per model: {seeds}.", "",
                  "| metric | " + " | ".join(names) + f" | {ours} vs best learned | {ours} vs best rule |",
                  "|---|" + "---:|" * (len(names) + 2)]
        for key, name in METRICS:
            stats = {m: summarize(models[m], key) for m in names}
            marks = ranks({m: s[0] for m, s in stats.items()})
            means = {m: s[0] for m, s in stats.items()}
            lines.append(f"| {name} | " + " | ".join(cell(*stats[m], marks.get(m)) for m in names)
                         + f" | {_gain_cell(gain(means, ours, base), base)} | {_gain_cell(gain(means, ours, rule), rule)} |")
        lines += ["", "| efficiency | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        partial = threaded = False
        for key, name, fmt in EFFICIENCY:
            cells = []
            for m in names:
                mean, _ = mean_std([r["efficiency"].get(key) for r in models[m]])
                text = "–" if math.isnan(mean) else fmt.format(mean)
                if key in PER_PROCESS and text != "–" and any(last_process_only(r) for r in models[m]):
                    text, partial = text + " ‡", True
                if key in THREAD_BOUND and text != "–" and any(more_threads(r) for r in models[m]):
                    text, threaded = text + " §", True
                cells.append(text)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        epochs = [f"{mean_std([r['result']['epochs_run'] for r in models[m]])[0]:.0f}" for m in names]
        best_ep = [f"{mean_std([r['result']['best_epoch'] for r in models[m]])[0]:.1f}" for m in names]
        lines.append("| epochs run | " + " | ".join(epochs) + " |")
        lines.append("| best epoch (0-based) | " + " | ".join(best_ep) + " |")
        lines.append("")
        if partial:
            lines += ["‡ a resumed run whose earlier processes were not counted: its CPU seconds are its last "
                      "process's only (a lower bound; train s / epoch is whole).", ""]
        if threaded:
            lines += [THREADS_NOTE, ""]
    machines = sorted({f"{r['machine']['cpus']} CPUs, torch threads {r['machine']['torch_threads']}, "
                       f"{r['machine']['device']}" for r in records if r.get("machine")})
    if machines:
        lines.append("Machine: " + "; ".join(machines) + " (times depend on the machine's other load).")
    return "\n".join(lines) + "\n"


def efficiency_rows(records, order=None) -> list:
    rows = []
    for ds, models in group(records, order).items():
        for m, runs in models.items():
            row = {"dataset": ds, "model": m, "n_seeds": len(runs)}
            for key, _, _ in EFFICIENCY:
                row[key] = mean_std([r["efficiency"].get(key) for r in runs])[0]
            row["epochs_run"] = mean_std([r["result"]["epochs_run"] for r in runs])[0]
            rows.append(row)
    return rows


def to_csv(rows, profile_name: str) -> str:
    """Long-form CSV, a ``profile`` column first; the columns are every key of any row (missing cells empty)."""
    buf = io.StringIO()
    fields = ["profile"]
    for row in rows:
        fields += [k for k in row if k not in fields]
    if rows:
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({"profile": profile_name, **row})
    return buf.getvalue()


def write(records, out_dir: str, profile_name: str, profile_description: str = "", ours="FamouSRec",
          order=None, stem="table2", notes=None) -> list:
    """Write ``<stem>.md``, ``<stem>.csv`` (quality, long form) and ``<stem>_efficiency.csv``; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    files = {
        f"{stem}.md": markdown(records, profile_name, profile_description, ours, order, notes),
        f"{stem}.csv": to_csv(quality_rows(records, ours, order), profile_name),
        f"{stem}_efficiency.csv": to_csv(efficiency_rows(records, order), profile_name),
    }
    return write_texts(out_dir, files)


def datasets_in(csv_path: str) -> list:
    """The datasets of a written ``<stem>.csv`` (none when it does not exist), in order."""
    return list(OrderedDict.fromkeys(ds for ds, _ in finished_in(csv_path)))


def finished_in(csv_path: str, count: str = "n_seeds") -> "OrderedDict":
    """``{(dataset, model): finished runs}`` of a written table CSV (``count``: ``n_seeds`` in ``table2.csv``,
    ``n_finished`` in ``comparison.csv``); empty when the file does not exist."""
    out = OrderedDict()
    if not os.path.isfile(csv_path):
        return out
    with open(csv_path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row.get("dataset"):
                continue
            key = (row["dataset"], row.get("model", ""))
            try:
                n = int(float(row.get(count) or 0))
            except ValueError:
                n = 0
            out[key] = max(out.get(key, 0), n)
    return out


def runs_dropped(csv_path: str, have: dict, count: str = "n_seeds") -> list:
    """``"<dataset> <model> (N there, M here)"`` for every model that the written CSV counts more finished runs of
    than ``have`` (``{(dataset, model): finished runs here}``): what writing over it would lose."""
    return [f"{ds} {m} ({n} there, {have.get((ds, m), 0)} here)"
            for (ds, m), n in finished_in(csv_path, count).items() if n > have.get((ds, m), 0)]


def brief(items, n: int = 4) -> str:
    """The first ``n`` of ``items``, comma-separated, and how many more."""
    items = list(items)
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def stem_keeping(out_dir: str, records, stem="table2") -> tuple:
    """``(stem, lost)``: ``stem`` unless the table already there counts finished runs that ``records`` lack (their
    run records are not on this machine: a whole dataset, or some models or seeds of one): then a table of its
    own, ``<stem>_<dataset>_<dataset>...``, so that the committed one is not replaced by a smaller one; ``lost``
    names what the committed table holds beyond ``records``. The stem is ``None`` (write nothing) when that table
    of its own exists and would lose runs too."""
    have = {}
    for r in records:
        key = (r["spec"]["dataset"], label(r))
        have[key] = have.get(key, 0) + 1
    lost = runs_dropped(os.path.join(out_dir, f"{stem}.csv"), have)
    if not lost:
        return stem, []
    own = stem + "_" + "_".join(sorted({ds for ds, _ in have}))
    also = runs_dropped(os.path.join(out_dir, f"{own}.csv"), have)
    return (None, lost + also) if also else (own, lost)


def write_texts(out_dir: str, texts: dict) -> list:
    """Write ``{file name: text}`` under ``out_dir``; return the paths."""
    paths = []
    for name, text in texts.items():
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        paths.append(path)
    return paths
