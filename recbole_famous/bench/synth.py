"""Routing on data built to need it: per behaviour type, who serves the users and how well.

The synthetic datasets of ``recbole_famous.data.synth`` name each user's behaviour type. For a trained
FamouSRec (or any sequential model) ``type_report`` gives, per type and over all users, on one split:

* ``share``: the fraction of the type's users whose top-1 expert (last MoE layer) is each expert;
* ``ndcg`` / ``hr``: NDCG@10 and HR@10 of the model as it routes;
* ``forced``: NDCG@10 with every user forced onto each expert in turn (the paper's Table 5, per type).

A router that routes sends each type mostly to one expert, different types to different experts, and
forcing a type onto another expert lowers its NDCG.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from recbole_famous import pipeline
from recbole_famous.bench.analysis import gt_rank, hr_ndcg


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


@torch.no_grad()
def user_ranks(model, data, force=None):
    """``{user token: (rank, chosen expert or None)}`` over ``data`` (a full-ranking eval dataloader)."""
    dataset = data._dataset
    uid = dataset.uid_field
    device = pipeline.model_device(model)
    out = {}
    with forcing(model, force):
        for batch in data:
            inter, history_index = batch[0].to(device), batch[1]
            chosen = None
            if hasattr(model, "encode"):
                res, _ = model.encode(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
                scores = res.hidden @ model.item_embedding.weight.t()
                chosen = res.chosen
            else:
                scores = model.full_sort_predict(inter).view(len(inter), -1)
            r = gt_rank(scores, history_index, inter[model.POS_ITEM_ID])
            tokens = dataset.id2token(uid, inter[uid].cpu().numpy())
            picks = chosen.tolist() if chosen is not None else [None] * len(tokens)
            for u, rr, j in zip(tokens, r.tolist(), picks):
                out[str(u)] = (rr, j)
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
