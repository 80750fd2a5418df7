"""``compare``: Table 2 against the best baseline chosen on validation, a paired test over test users, and the
validation learning curves, for a profile whose runs may still be going (written for ``converged``).

Per dataset:

* **Table 2**: test HR@5/10, NDCG@5/10 per model, mean ± sample std over its finished seeds (no ± with one); a
  model with no finished run is listed with its state (pending, running, failed). The **best baseline** is the
  model other than ours with the highest *validation* NDCG@10 (mean over its finished seeds): chosen on
  validation, never on test; the **best rule** is chosen the same way among the no-training reference models
  (``table.REFERENCE_MODELS``). The last two columns are ours over each, ``(ours - other) / other``, per metric.
* **Paired test over test users**: per-user test NDCG@10 of ours against the best baseline on the same seed
  (every seed both have finished), from the trained checkpoints (``peruser.py``, RecBole's own full-ranking
  metric per user, checked to average to the recorded test NDCG@10), users paired by id. Two-sided Wilcoxon
  signed-rank (``scipy.stats.wilcoxon``: users with equal values dropped, normal approximation when there are
  ties) and paired t test (``scipy.stats.ttest_rel``). When ours or the baseline has no finished run, the p cell
  says so. The same test against the best rule: a rule does not depend on the seed, so each seed of ours is paired
  with the rule's one run.
* **Learning curves**: validation NDCG@10 (the runs' ``valid_metric``) after every epoch, one line per model:
  its first seed in the profile's order (other seeds are in ``curves.csv``), from the record's
  ``result.valid_scores``, or for a run still going from its resume checkpoint's metadata (``valid_scores``
  after its last validated epoch, drawn dashed).

Files (under ``--docs``/<profile>/): ``comparison.md``, ``comparison.csv``, ``significance.csv``, ``curves.csv``,
``curves_<dataset>.png``; with ``tag`` (``bench compare --datasets OR`` gives ``_OR``) ``comparison_OR.md``,
``significance_OR.csv``, ``curves_OR.csv``, so that one dataset's comparison never replaces another's. Where the
``comparison.csv`` already there counts finished runs whose records are not
here (another machine's runs), it is kept and these files get a suffix of their own, ``_<dataset>_<dataset>...``
(``comparison_Instruments.md``, ..., ``curves_Instruments_<dataset>.png``); where that suffixed set would lose runs
too, nothing is written (``suffix``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict

import numpy as np

from recbole_famous.bench import patience, peruser, plots, runs
from recbole_famous.bench.table import (METRICS, THREADS_NOTE, brief, cell, is_ours, is_reference, mean_std,
                                        more_threads, ranks, runs_dropped, to_csv, write_texts)
from recbole_famous.errors import UsageError

SELECT = "ndcg@10"  # the validation metric that picks the best baseline
TESTED = "ndcg@10"  # the per-user metric of the paired test


def paired_test(ours: dict, base: dict, metric: str = TESTED) -> dict:
    """Paired tests of per-user ``metric`` (``peruser.per_user`` dicts), users matched by ``user_id``."""
    from scipy import stats

    ua, ub = np.asarray(ours["user_id"]), np.asarray(base["user_id"])
    if len(np.unique(ua)) != len(ua) or len(np.unique(ub)) != len(ub):
        raise ValueError("per-user values must have one row per user")
    common, ia, ib = np.intersect1d(ua, ub, return_indices=True)
    a, b = np.asarray(ours[metric], dtype=np.float64)[ia], np.asarray(base[metric], dtype=np.float64)[ib]
    diff = a - b
    out = {"metric": metric, "users": int(len(common)), "only_ours": int(len(ua) - len(common)),
           "only_base": int(len(ub) - len(common)), "mean_ours": float(a.mean()) if len(a) else math.nan,
           "mean_base": float(b.mean()) if len(b) else math.nan, "mean_diff": float(diff.mean()) if len(a) else math.nan,
           "users_differ": int(np.count_nonzero(diff)), "ours_better": int((diff > 0).sum()),
           "ours_worse": int((diff < 0).sum())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            w = stats.wilcoxon(a, b)
            out["wilcoxon_stat"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
        except ValueError:
            out["wilcoxon_stat"] = out["wilcoxon_p"] = math.nan
        t = stats.ttest_rel(a, b) if len(a) > 1 else None
        out["t_stat"], out["t_p"] = (float(t.statistic), float(t.pvalue)) if t is not None else (math.nan, math.nan)
    if out["users_differ"] == 0:  # identical per-user values: no evidence of any difference
        out["wilcoxon_p"] = 1.0
    return out


# ---- gathering: which runs exist, in which state ------------------------------------------------------------------
def entries(specs, out_dir: str) -> list:
    """One dict per planned run: ``spec``, ``state`` (``runs.state``), ``record`` (finished runs), ``path``."""
    out = []
    for spec in specs:
        path = runs.record_path(out_dir, spec)
        state = runs.state(out_dir, spec)
        record = runs.load_record(path) if state == "finished" else None
        if state == "finished" and record is None:
            state = "pending"
        out.append({"spec": spec, "state": state, "record": record, "path": path})
    return out


def by_dataset(items, order=None) -> "OrderedDict":
    """``{dataset: {label: [entries, seed order]}}``, models in ``order`` first."""
    out = OrderedDict()
    for e in items:
        out.setdefault(e["spec"].dataset, OrderedDict()).setdefault(e["spec"].label, []).append(e)
    if order:
        rank = {m: i for i, m in enumerate(order)}
        for ds in out:
            out[ds] = OrderedDict(sorted(out[ds].items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return out


def _finished(model_entries) -> list:
    return [e["record"] for e in model_entries if e["record"] is not None]


def _state_text(model_entries) -> str:
    done = len(_finished(model_entries))
    if done == len(model_entries):
        return f"{done}/{done} finished"
    others = {}
    for e in model_entries:
        if e["record"] is None:
            others.setdefault(e["state"], []).append(str(e["spec"].seed))
    rest = "; ".join(f"{s}: seed {', '.join(v)}" for s, v in others.items())
    return f"{done}/{len(model_entries)} finished ({rest})"


def _missing(model_entries) -> str:
    """The cell of a model with no finished run: its runs' states, e.g. ``(running)``, ``(pending)``."""
    return "(" + " / ".join(sorted({e["state"] for e in model_entries})) + ")"


def best_baseline(models: dict, ours: str, metric: str = SELECT, reference: bool = False) -> tuple:
    """``(label, mean validation metric)`` of the finished model, not ``ours`` or a variant of it, best on validation,
    among the learned models, or with ``reference=True`` among the no-training reference rules."""
    best, score = None, -math.inf
    for label, model_entries in models.items():
        if is_ours(label, ours) or is_reference(label) != reference:
            continue
        mean, _ = mean_std([r.get("valid_metrics", {}).get(metric) for r in _finished(model_entries)])
        if not math.isnan(mean) and mean > score:
            best, score = label, mean
    return best, (score if best else math.nan)


# ---- the paired test on one dataset -------------------------------------------------------------------------------
def seed_pairs(models: dict, ours: str, other) -> tuple:
    """``({seed: entry}, {seed: entry})``: the finished runs of ``ours`` and of ``other`` (None: none) by seed. A rule
    does not depend on the seed: its one run stands for every seed of ours."""
    def finished(label):
        return {e["spec"].seed: e for e in models.get(label, []) if e["record"] is not None}

    mine = finished(ours)
    theirs = finished(other) if other is not None else {}
    if other is not None and is_reference(other) and theirs:
        theirs = {seed: next(iter(theirs.values())) for seed in mine}
    return mine, theirs


def significance(models: dict, ours: str, baseline, out_dir: str, cache_dir=None, echo=print) -> dict:
    """``{"rows": [per-seed test dicts], "note": text for the p cell, "failed": bool}``."""
    if ours not in models:
        return {"rows": [], "note": f"{ours} is not in the model list", "failed": False}
    ours_runs, _ = seed_pairs(models, ours, None)
    if not ours_runs:
        return {"rows": [], "note": f"{ours} not finished yet", "failed": False}
    if baseline is None:
        return {"rows": [], "note": "no baseline finished yet", "failed": False}
    _, base_runs = seed_pairs(models, ours, baseline)
    seeds = sorted(set(ours_runs) & set(base_runs))
    if not seeds:
        return {"rows": [], "note": f"no seed finished by both {ours} (seeds {sorted(ours_runs)}) and {baseline} "
                                   f"(seeds {sorted(base_runs)})", "failed": False}
    rows, notes, failed, absent = [], [], False, []
    for seed in seeds:
        pair = [(e, peruser.cache_path(e["path"], out_dir, cache_dir)) for e in (ours_runs[seed], base_runs[seed])]
        lacking = [e["spec"].model for e, path in pair if not peruser.obtainable(e["record"], path)]
        if lacking:  # e.g. a record restored from the archive without per-user values: not a failed check
            absent.append(f"seed {seed}: no per-user values of {' and '.join(lacking)} here (neither cached nor "
                          "its checkpoint on this machine)")
            continue
        try:
            a, b = (peruser.for_record(e["record"], path, echo=echo) for e, path in pair)
            rows.append({"seed": seed, **paired_test(a, b)})
        except (peruser.PerUserMismatch, UsageError, ValueError) as exc:
            failed = True
            notes.append(f"seed {seed}: {exc}")
    note = "; ".join([f"seed {r['seed']}: Wilcoxon p {p_clause(r['wilcoxon_p'])}, t p {p_clause(r['t_p'])}" for r in rows]
                     + absent)
    if notes:
        note = "; ".join([x for x in (note, "FAILED " + "; ".join(notes)) if x])
    return {"rows": rows, "note": note, "failed": failed, "errors": notes}


def format_p(p) -> str:
    """A p-value for a table: two significant digits, scientific below 1e-3, "< 1e-300" where it underflowed."""
    if p is None or math.isnan(p):
        return "n/a"
    if p == 0.0:  # below the smallest double: say so, not "0.0e+00"
        return "< 1e-300"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def p_clause(p) -> str:
    """``"= 0.013"`` or ``"< 1e-300"``: what follows "p" in a sentence."""
    return format_p(p) if p == 0.0 else f"= {format_p(p)}"


# ---- learning curves ----------------------------------------------------------------------------------------------
def valid_curve(entry, out_dir: str) -> dict | None:
    """``{"scores": {epoch: score}, "best_epoch", "source": "finished" | state + " (resume checkpoint)"}``."""
    record = entry["record"]
    if record is not None:
        result = record.get("result") or {}
        scores = result.get("valid_scores") or {}
        return {"scores": {int(k): float(v) for k, v in scores.items()}, "best_epoch": result.get("best_epoch"),
                "source": "finished", "epochs_run": result.get("epochs_run")}
    from recbole_famous import checkpoint
    from recbole_famous.bench import worker

    point = worker.resume_point(runs.checkpoint_dir(out_dir, entry["spec"]))
    if not point:
        return None
    try:
        saved = checkpoint.load(point)
        meta = checkpoint.meta(saved)
    except (UsageError, KeyError):
        return None
    scores = meta.get("valid_scores") or {}
    if not scores:
        return None
    config = saved.get("config")
    return {"scores": {int(k): float(v) for k, v in scores.items()}, "best_epoch": meta.get("best_epoch"),
            "source": f"{entry['state']} (resume checkpoint)", "epochs_run": len(meta.get("epoch_seconds") or []),
            # what ``bench status`` needs to say how far a run still going has to go, and whether it moves
            "epoch_seconds": list(meta.get("epoch_seconds") or []), "saved_at": os.path.getmtime(point),
            "max_epochs": _setting(config, "epochs"), "patience": _setting(config, "stopping_step")}


def _setting(config, key):
    """An int setting of a checkpoint's config, or None where the checkpoint has no config or lacks the key."""
    try:
        value = config[key] if config is not None else None
    except (KeyError, TypeError):
        return None
    return int(value) if value is not None else None


def curves(models: dict, out_dir: str) -> dict:
    """``{label: {seed: valid_curve}}`` for every run with at least one validated epoch."""
    out = OrderedDict()
    for label, model_entries in models.items():
        for e in model_entries:
            c = valid_curve(e, out_dir)
            if c:
                out.setdefault(label, OrderedDict())[e["spec"].seed] = c
    return out


# ---- writing ------------------------------------------------------------------------------------------------------

def _stats(models, key, source="metrics") -> dict:
    return {m: mean_std([r.get(source, {}).get(key) for r in _finished(es)]) for m, es in models.items()
            if _finished(es)}


def _hours(seconds) -> str:
    return "–" if not seconds else f"{seconds / 3600:.2f}"


def _gain(stats, ours, other) -> float:
    if ours in stats and other in stats and stats[other][0] > 0:
        return 100.0 * (stats[ours][0] - stats[other][0]) / stats[other][0]
    return math.nan


def _gain_text(pct, other) -> str:
    return "–" if math.isnan(pct) else f"{pct:+.1f}% vs {other}"


def _table2(ds, models, ours, base, rule=None) -> tuple:
    """Table 2's Markdown rows (without the p rows) and its long-form CSV rows."""
    names = list(models)
    lines = ["| metric | " + " | ".join(names) + f" | {ours} vs best baseline | {ours} vs best rule |",
             "|---|" + "---:|" * (len(names) + 2)]
    rows = []
    for key, label in METRICS + (("valid:" + SELECT, "NDCG@10 (validation)"),):
        source, k = ("valid_metrics", SELECT) if key.startswith("valid:") else ("metrics", key)
        stats = _stats(models, k, source)
        marks = ranks({m: s[0] for m, s in stats.items()})
        cells = [cell(*stats[m], marks.get(m)) if m in stats else _missing(models[m]) for m in names]
        imp, imp_rule = _gain(stats, ours, base), _gain(stats, ours, rule)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_gain_text(imp, base)} | {_gain_text(imp_rule, rule)} |")
        for m in names:
            mean, std = stats.get(m, (math.nan, math.nan))
            rows.append({"dataset": ds, "model": m, "metric": label, "split": "test" if source == "metrics" else "valid",
                         "mean": mean, "std": std, "n_finished": len(_finished(models[m])), "n_planned": len(models[m]),
                         "mark": {1: "best", 2: "second"}.get(marks.get(m), ""), "best_baseline": base or "",
                         "improvement_pct": imp if m == ours and not math.isnan(imp) else "", "best_rule": rule or "",
                         "improvement_over_rule_pct": imp_rule if m == ours and not math.isnan(imp_rule) else ""})
    return lines, rows


def _significance_lines(ds, ours, base, sig) -> list:
    lines = []
    if sig["rows"]:
        lines += [f"### {ds}: paired test over test users, {ours} vs {base}, per-user test NDCG@10, same seed", "",
                  f"| seed | users | {ours} | {base} | mean diff | users that differ | {ours} better / worse "
                  "| Wilcoxon p | paired t p |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sig["rows"]:
            lines.append(f"| {r['seed']} | {r['users']:,} | {r['mean_ours']:.4f} | {r['mean_base']:.4f} | "
                         f"{r['mean_diff']:+.4f} | {r['users_differ']:,} | {r['ours_better']:,} / {r['ours_worse']:,} "
                         f"| {format_p(r['wilcoxon_p'])} | {format_p(r['t_p'])} |")
        lines += ["", f"Each run's per-user values average to its recorded test NDCG@10 within {peruser.TOLERANCE:g} "
                      "(checked when computed and on every read of the cache). Users with equal values for both "
                      "models are left out of the Wilcoxon test (only the users that differ count).", ""]
    if sig.get("errors"):
        lines += ["Per-user check FAILED: " + "; ".join(sig["errors"]), ""]
    return lines


def _machine(record) -> str:
    m = record.get("machine") or {}
    git = m.get("git") or {}
    return (f"{m.get('host', '?')}: {m.get('cpus', '?')} CPUs, {m.get('torch_threads', '?')} torch thread(s), "
            f"{m.get('device', '?')}, Python {m.get('python', '?')}, torch {m.get('torch', '?')}, commit "
            f"{(git.get('commit') or '?')[:10]}" + (" with uncommitted changes" if git.get("uncommitted_changes") else ""))


def _runs_lines(ds, models, cur) -> list:
    """One row per planned run: state, epochs, best epoch, time; then the machines of the finished ones."""
    lines = [f"### {ds}: runs", "", "| model | seed | state | epochs run | best epoch (0-based) | best validation "
             "NDCG@10 | train s / epoch | wall hours |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    machines, threaded = [], False
    for m, model_entries in models.items():
        for e in model_entries:
            r, seed = e["record"], e["spec"].seed
            if r is not None:
                res, spe = r["result"], r.get("efficiency", {}).get("train_seconds_per_epoch")
                machines.append(_machine(r))
                same = r.get("same_run_as")  # adopted, not trained again (runs.adopt)
                done = f"finished (the run {os.path.splitext(same)[0]}, same settings)" if same else "finished"
                mark = " §" if more_threads(r) else ""
                threaded = threaded or bool(mark)
                lines.append(f"| {m} | {seed} | {done} | {res.get('epochs_run')} | {res.get('best_epoch')} | "
                             f"{r.get('valid_metrics', {}).get(SELECT, math.nan):.4f} | "
                             f"{'–' if spe is None else f'{spe:.1f}'}{mark} | {_hours(r.get('wall_seconds'))}{mark} |")
                continue
            c = cur.get(m, {}).get(seed)
            got = (f"{c['epochs_run']} so far | {c['best_epoch']} | {max(c['scores'].values()):.4f} so far"
                   if c else "– | – | –")
            lines.append(f"| {m} | {seed} | {e['state']} | {got} | – | – |")
    lines.append("")
    if threaded:
        lines += [THREADS_NOTE, ""]
    if machines:
        lines += ["Machine (finished runs): " + "; ".join(sorted(set(machines))) + ". Times depend on the machine's "
                  "other load.", ""]
    return lines


def _curves_part(ds, cur, doc_dir, profile_name, sfx="", variant_tag="") -> tuple:
    """The learning-curve PNG (first seed of each model) and every seed's values as CSV rows."""
    rows, plotted = [], OrderedDict()
    for m, by_seed in cur.items():
        for seed, c in by_seed.items():
            rows += [{"dataset": ds, "model": m, "seed": seed, "source": c["source"], "epoch": epoch,
                      "valid_ndcg@10": score} for epoch, score in sorted(c["scores"].items())]
        seed, c = next(iter(by_seed.items()))  # the first seed (profile order) that has a curve
        epochs = sorted(c["scores"])
        running = c["source"] != "finished"
        plotted[f"{m} (seed {seed}" + (", still running" if running else "") + ")"] = {
            "epochs": epochs, "scores": [c["scores"][x] for x in epochs], "best_epoch": c["best_epoch"],
            "dashed": running}
    lines = [f"### {ds}: learning curves", ""]
    if not plotted:
        return lines + ["No validated epoch yet.", ""], rows, []
    png = plots.learning_curves(
        plotted, os.path.join(doc_dir, f"curves{sfx}_{ds}{variant_tag}.png"),
        f"{ds}: validation NDCG@10 after each epoch (profile {profile_name})", "validation NDCG@10",
        note="one line per model: its first seed with a curve; dot = best epoch; dashed = still running "
             "(from its resume checkpoint)")
    lines += ["Validation NDCG@10 after each epoch; one line per model, its first seed in the profile's order "
              f"(every seed's values: `curves{sfx}.csv`); the dot marks the best epoch (the one tested); dashed: a run "
              "still going, read from its resume checkpoint.", "", f"![learning curves {ds}]({os.path.basename(png)})",
              ""]
    return lines, rows, [png]


def dataset_section(ds, models, ours, out_dir, doc_dir, profile_name, cache_dir=None, echo=print,
                    trained_patience=None, sfx="", variant_tag="") -> dict:
    """Markdown lines, CSV rows and written files of one dataset."""
    names = list(models)
    base, base_valid = best_baseline(models, ours)
    rule, rule_valid = best_baseline(models, ours, reference=True)
    sig = significance(models, ours, base, out_dir, cache_dir, echo)
    sig_rule = significance(models, ours, rule, out_dir, cache_dir, echo) if rule else None
    from recbole_famous.bench.plan import dataset_note

    note = dataset_note(ds)
    lines = [f"## {ds}", ""] + ([f"Data: {note}", ""] if note else []) + [
        "Runs: " + "; ".join(f"{m} {_state_text(models[m])}" for m in names) + ".", ""]
    if base:
        waiting = [m for m in names if m != ours and len(_finished(models[m])) < len(models[m])]
        lines += [f"Best baseline, chosen by **validation** NDCG@10 (mean over its finished seeds): **{base}** "
                  f"({base_valid:.4f})" + (f"; among the runs finished so far ({', '.join(waiting)}: not all "
                                          "seeds finished; the choice may change)" if waiting else "") + ".", ""]
    else:
        lines += ["Best baseline: none finished yet.", ""]
    if rule:
        lines += [f"Best reference rule (trains nothing), chosen by **validation** NDCG@10: **{rule}** "
                  f"({rule_valid:.4f}).", ""]
    table_lines, quality = _table2(ds, models, ours, base, rule)
    lines += table_lines
    lines += ["| p, paired over test users (NDCG@10) | " + " | ".join("" for _ in names) + f" | {sig['note']} | "
              f"{sig_rule['note'] if sig_rule else '–'} |", ""]
    lines += _significance_lines(ds, ours, base, sig)
    sig_rows = [{"dataset": ds, "ours": ours, "baseline": base, **r} for r in sig["rows"]] or [
        {"dataset": ds, "ours": ours, "baseline": base or "", "note": sig["note"]}]
    if sig_rule:
        lines += _significance_lines(ds, ours, rule, sig_rule)
        sig_rows += [{"dataset": ds, "ours": ours, "baseline": rule, **r} for r in sig_rule["rows"]] or [
            {"dataset": ds, "ours": ours, "baseline": rule, "note": sig_rule["note"]}]
    cur = curves(models, out_dir)
    lines += _runs_lines(ds, models, cur)
    curve_lines, curve_rows, files = _curves_part(ds, cur, doc_dir, profile_name, sfx, variant_tag)
    if trained_patience is not None:
        curve_lines += patience.markdown(ds, cur, int(trained_patience))
    return {"lines": lines + curve_lines, "quality": quality, "significance": sig_rows, "curves": curve_rows,
            "files": files, "failed": sig.get("failed", False) or bool(sig_rule and sig_rule.get("failed"))}


def suffix(doc_dir: str, groups, tag: str = "") -> str:
    """``""``, or ``_<dataset>_<dataset>...`` when the ``comparison.csv`` in ``doc_dir`` counts finished runs that
    ``groups`` lack (written on another machine, whose records are not here): the new files then keep it. Raises
    ``UsageError`` when the suffixed ``comparison<suffix>.csv`` exists and would lose runs too."""
    have = {(ds, m): len(_finished(e)) for ds, models in groups.items() for m, e in models.items()}
    lost = runs_dropped(os.path.join(doc_dir, f"comparison{tag}.csv"), have, "n_finished")
    if not lost:
        return ""
    sfx = "_" + "_".join(sorted(groups))
    also = runs_dropped(os.path.join(doc_dir, f"comparison{tag}{sfx}.csv"), have, "n_finished")
    if also:
        raise UsageError(f"nothing written: {doc_dir} holds finished runs whose records are not here "
                         f"({brief(lost + also)}); bring them back first (`bench restore`) or write elsewhere "
                         "(--docs DIR)")
    return sfx


def write(profile, specs, out_dir: str, doc_dir: str, command: str, ours: str = "FamouSRec", order=None,
          cache_dir=None, echo=print, tag: str = "", variant_tag: str = "") -> tuple:
    """Write the files (see the module docstring); returns ``(paths, failed)``: ``failed`` when a per-user check
    did not hold (the p-values of that pair are then left out). ``variant_tag`` (``_grouped`` for ``--variants
    grouped``) also names the plots, ``curves_<dataset><variant_tag>.png``, so a variant's never replaces them."""
    groups = by_dataset(entries(specs, out_dir), order or list(profile.models))
    sfx = suffix(doc_dir, groups, tag)
    os.makedirs(doc_dir, exist_ok=True)
    lines = [f"# Comparison: profile `{profile.name}`", "", f"Budget profile: {profile.description}.", "",
             "Test-set metrics, full ranking over all items, of each model's best validated epoch; mean ± sample std "
             "over the finished seeds (no ± with one seed); **bold** best, <u>underlined</u> second best among the "
             f"finished models. The last two columns compare {ours} with the **best learned baseline** and with the "
             "**best reference rule** (a model that trains nothing), each chosen by **validation NDCG@10**, not by "
             "test; their last row is a paired test over the test users (per-user NDCG@10, same seed; a rule, which "
             "does not depend on the seed, with each seed of ours; two-sided Wilcoxon signed-rank and paired t "
             "test). A model whose runs have not finished is listed with its state.", ""]
    quality, sig, curve_rows, files, failed = [], [], [], [], False
    for ds, models in groups.items():
        part = dataset_section(ds, models, ours, out_dir, doc_dir, profile.name, cache_dir, echo,
                               (profile.config or {}).get("stopping_step"), sfx, variant_tag)
        lines += part["lines"]
        quality += part["quality"]
        sig += part["significance"]
        curve_rows += part["curves"]
        files += part["files"]
        failed = failed or part["failed"]
    lines.append(f"Made by: `{command}` (from the run records under `{out_dir}`).")
    t = tag + sfx
    texts = {f"comparison{t}.md": "\n".join(lines) + "\n", f"comparison{t}.csv": to_csv(quality, profile.name),
             f"significance{t}.csv": to_csv(sig, profile.name), f"curves{t}.csv": to_csv(curve_rows, profile.name)}
    return write_texts(doc_dir, texts) + files, failed
