"""Routing on data built to need it: per behaviour type, who serves the users and how well.

The synthetic datasets of ``recbole_famous.data.synth`` name each user's behaviour type. For a trained
FamouSRec (or any sequential model) ``type_report`` gives, per type and over all users, on one split:

* ``share``: the fraction of the type's users whose top-1 expert (last MoE layer) is each expert;
* ``ndcg`` / ``hr``: NDCG@10 and HR@10 of the model as it routes;
* ``forced``: NDCG@10 with every user forced onto each expert in turn (the paper's Table 5, per type).

A router that routes sends each type mostly to one expert, different types to different experts, and
forcing a type onto another expert lowers its NDCG.

The study is the profile ``props/bench/synth.yaml`` (FamouSRec variants on a synthetic dataset): ``bench run
--profile synth --datasets SynD ...`` trains them, ``bench synth --profile synth --dataset SynD`` runs this probe
on each finished run's checkpoint (cached beside the record, ``seed<N>.synth.json``) and writes the tables
(``markdown``) with their rows, ``<docs>/synth/<dataset>/synth_routing.{md,json}``. The rows have the format of the
earlier script's (``benchmarks/synth_routing.py``), keyed ``dataset|variant|seed|--set keys``, and are merged into
the rows already there, so its committed runs stay in the tables.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import torch

from recbole_famous import pipeline
from recbole_famous.bench.analysis import gt_rank, hr_ndcg
from recbole_famous.bench.table import mean_std, mean_std_text


@contextmanager
def forcing(model, force=None):
    """Within the block, ``model`` (eval mode) serves every user with expert ``force`` (None: as it routes);
    the model's own ``force_expert`` is restored afterwards."""
    model.eval()
    saved = getattr(model, "force_expert", None)
    if force is not None:
        model.force_expert = force
    try:
        yield model
    finally:
        if force is not None:
            model.force_expert = saved


def eval_batches(model, data, force=None):
    """Each batch of a full-ranking dataloader ``data`` on the model's device, served as ``forcing(model, force)``
    says: ``(interaction, history_index, user tokens)``."""
    dataset = data._dataset
    uid = dataset.uid_field
    device = pipeline.model_device(model)
    with forcing(model, force):
        for batch in data:
            inter = batch[0].to(device)
            yield inter, batch[1], [str(u) for u in dataset.id2token(uid, inter[uid].cpu().numpy())]


@torch.no_grad()
def user_ranks(model, data, force=None):
    """``{user token: (rank, chosen expert or None)}`` over ``data`` (a full-ranking eval dataloader)."""
    out = {}
    for inter, history_index, tokens in eval_batches(model, data, force):
        chosen = None
        if hasattr(model, "encode"):
            res, _ = model.encode(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
            scores = res.hidden @ model.item_embedding.weight.t()
            chosen = res.chosen
        else:
            scores = model.full_sort_predict(inter).view(len(inter), -1)
        r = gt_rank(scores, history_index, inter[model.POS_ITEM_ID])
        picks = chosen.tolist() if chosen is not None else [None] * len(tokens)
        for u, rr, j in zip(tokens, r.tolist(), picks):
            out[u] = (rr, j)
    return out


def type_report(model, data, types: dict) -> dict:
    """See the module docstring. ``types``: ``{user token: type}``; ``data``: the valid or test dataloader."""
    kinds = list(getattr(model, "kinds", []) or [])
    routed = user_ranks(model, data)
    forced = {}
    if len(kinds) > 1:
        forced = {f"{j}:{k}": user_ranks(model, data, force=j) for j, k in enumerate(kinds)}
    groups = {}
    for u in routed:
        groups.setdefault(types.get(u, "?"), []).append(u)
    groups["all"] = list(routed)
    report = {"kinds": kinds, "types": {}}
    for name, users in groups.items():
        hr, ndcg = hr_ndcg(routed[u][0] for u in users)
        share = {}
        if kinds and routed[users[0]][1] is not None:
            share = {f"{j}:{k}": sum(1 for u in users if routed[u][1] == j) / len(users) for j, k in enumerate(kinds)}
        report["types"][name] = {
            "users": len(users), "hr": hr, "ndcg": ndcg, "share": share,
            "forced": {label: hr_ndcg(ranks[u][0] for u in users)[1] for label, ranks in forced.items()},
        }
    return report


def separation(report: dict) -> dict:
    """Per type (not ``all``): its top expert and that expert's share; and whether the types' top experts differ."""
    tops = {}
    for name, row in report["types"].items():
        if name == "all" or not row["share"]:
            continue
        label = max(row["share"], key=row["share"].get)
        tops[name] = (label, row["share"][label])
    distinct = len({label for label, _ in tops.values()}) == len(tops)
    return {"top": tops, "distinct": distinct, "min_share": min((s for _, s in tops.values()), default=0.0)}


BASE = "paper"  # the name of the profile's own (variant-less) FamouSRec run in the tables


def cache_path(record_path: str) -> str:
    """``seed<N>.synth.json`` beside the run record ``seed<N>.json``."""
    return record_path[: -len(".json")] + ".synth.json"


def probe(record: dict, record_path: str) -> dict:
    """Per behaviour type, on the validation and test splits, of a finished run's best checkpoint (cached):
    ``{"valid": type_report, "test": type_report, "separation": separation(valid)}``."""
    cache = cache_path(record_path)
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    from recbole_famous.bench import trained
    from recbole_famous.data.synth import read_types
    from recbole_famous.files import write_json

    from recbole_famous.errors import UsageError

    loaded = trained.load_run(record)
    data_dir = os.path.dirname(os.path.normpath(str(loaded.config["data_path"])))
    try:
        types = read_types(record["spec"]["dataset"], data_dir)
    except FileNotFoundError as exc:  # not a synthetic dataset: say so in one line
        raise UsageError(f"{exc}; bench synth reads datasets of known behaviour types") from None
    report = {"valid": type_report(loaded.model, loaded.valid_data, types),
              "test": type_report(loaded.model, loaded.test_data, types)}
    report["separation"] = separation(report["valid"])
    write_json(cache, report)
    return report


def study_row(record: dict, report: dict, variant_keys: dict, extra: dict) -> dict:
    """A benchmark run record and its probe as one row of the study (the earlier script's format): ``extra`` is
    what the run had beyond the profile and the variant (``bench run --set``), so runs under other settings stay
    apart in the tables (``run_label``)."""
    spec, result = record["spec"], record.get("result") or {}
    return {**report, "variant": spec.get("variant") or BASE, "seed": spec["seed"], "overrides": dict(variant_keys),
            "best_epoch": result.get("best_epoch"), "epochs_run": result.get("epochs_run"),
            "seconds": record.get("wall_seconds"), "epoch_seconds": result.get("epoch_seconds"),
            "valid_ndcg10": (record.get("valid_metrics") or {}).get("ndcg@10"),
            "test_ndcg10": (record.get("metrics") or {}).get("ndcg@10"), "dataset": spec["dataset"], "extra": extra}


def row_key(row: dict) -> str:
    extra = row.get("extra") or {}
    return f"{row['dataset']}|{row['variant']}|{row['seed']}|" + ",".join(f"{k}={extra[k]}" for k in sorted(extra))


def write(profile, specs, out_dir: str, doc_dir: str, dataset: str, command: str, echo=print) -> list:
    """``<doc_dir>/<dataset>/synth_routing.json`` (every row: the finished runs among ``specs`` merged into the
    rows there) and ``synth_routing.md`` (the valid and test tables of the dataset's rows)."""
    from recbole_famous.bench import plan, runs
    from recbole_famous.files import write_json, write_text

    folder = os.path.join(doc_dir, dataset)
    path = os.path.join(folder, "synth_routing.json")
    rows = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    for spec in specs:
        record_path = runs.record_path(out_dir, spec)
        record = runs.load_record(record_path)
        if record is None:
            echo(f"  not finished: {spec.label} seed {spec.seed}")
            continue
        keys = profile.variants.get(spec.variant, {}) if spec.variant else {}
        planned = plan.run_overrides(profile, spec.model, spec.seed, keys)
        extra = {k: v for k, v in (record["spec"].get("overrides") or {}).items() if planned.get(k, object()) != v}
        echo(f"  synth probe: {spec.label} seed {spec.seed}")
        row = study_row(record, probe(record, record_path), keys, extra)
        rows[row_key(row)] = row
    mine = {k: r for k, r in rows.items() if r.get("dataset") == dataset}
    text = markdown(mine, dataset, "valid") + "\n" + markdown(mine, dataset, "test") if mine else \
        f"## {dataset}\n\nNo finished run yet.\n"
    os.makedirs(folder, exist_ok=True)
    write_json(path, rows)
    md = os.path.join(folder, "synth_routing.md")
    write_text(md, text + f"\nMade by: `{command}` (runs under `{out_dir}`), with the rows already in `{path}`.\n")
    return [md, path]


def run_label(run, common: dict) -> str:
    """The variant's name, with the ``--set`` values that not every run of the table shares (e.g. a probe run with
    ``gamma_balance=5``), so that runs of one variant under other settings are not averaged together."""
    own = {k: v for k, v in (run.get("extra") or {}).items() if common.get(k, object()) != v}
    return run["variant"] + (" (" + ", ".join(f"{k}={own[k]}" for k in sorted(own)) + ")" if own else "")


def _cell(values) -> str:
    return mean_std_text(*mean_std([v for v in values if v is not None]), missing="-")


def markdown(runs, dataset, split="valid") -> str:
    """Per variant (and ``--set`` values): NDCG@10 per behaviour type, mean ± std over seeds; then each run's top-1
    shares and forced-expert NDCG@10 per type."""
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
        cells = [_cell([r[split]["types"]["all"]["ndcg"] for r in rs])]
        cells += [_cell([r[split]["types"][t]["ndcg"] for r in rs if t in r[split]["types"]]) for t in type_names]
        ep = mean_std([r["epochs_run"] for r in rs])[0]
        sec = mean_std([mean_std(r["epoch_seconds"])[0] for r in rs])[0]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + f" | {ep:.0f} | {sec:.1f} |")
    lines += ["", f"## {dataset}, {split} split: routing (top-1 share of each type's users, per expert; seed by seed)",
              "", "| variant | seed | type | shares | forced NDCG@10 per expert |", "|---|---:|---|---|---|"]
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


def history_period(seq: list) -> int:
    """The period a history repeats with: the smallest p (< 13) with the largest share of ``seq[t] == seq[t-p]``."""
    return max(range(1, min(13, len(seq))),
               key=lambda p: (sum(seq[k] == seq[k - p] for k in range(p, len(seq))) / max(1, len(seq) - p), -p))


def run_length(seq: list) -> int:
    """The most common length of a history's runs of one item, the first run left out (it may be cut)."""
    from collections import Counter

    runs, count = [], 1
    for a, b in zip(seq, seq[1:]):
        if a == b:
            count += 1
        else:
            runs.append(count)
            count = 1
    return Counter(runs[1:] or runs).most_common(1)[0][0]


def by_period(model, data, types: dict, histories: dict, k: int = 10) -> dict:
    """Per periodic user's period (``periodic p=3``) and repeat user's run length (``repeat r=2``), each read back
    from the history (``history_period``, ``run_length``), other types whole: ``{group: {"users", "ndcg",
    "share": {kind: share}}}`` on ``data`` (the valid split), top-1 experts as the model routes."""
    from collections import Counter, defaultdict

    groups = defaultdict(list)
    for user, (rank, chosen) in user_ranks(model, data).items():
        seq, kind = histories[user], types[user]
        name = f"{kind} p={history_period(seq)}" if kind.startswith("periodic") else \
            f"{kind} r={run_length(seq)}" if kind == "repeat" else kind
        groups[name].append((rank, chosen))
    out = {}
    for name in sorted(groups):
        rows = groups[name]
        shares = Counter(model.kinds[j] for _, j in rows if j is not None)
        out[name] = {"users": len(rows), "ndcg": hr_ndcg([r for r, _ in rows], k)[1],
                     "share": {kind: n / len(rows) for kind, n in shares.most_common()}}
    return out
