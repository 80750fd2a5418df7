"""Does FamouSRec's router route? Diagnostics of the last MoE layer on a set of users: a probe that reads a
model from outside (the trainer logs ``epoch_line`` after each validation; the routing study, ``bench/routing.py``,
reads trained checkpoints with ``routing_diagnostics``); the model itself carries none of it.

``routing_diagnostics(model, batches)`` computes, with every expert evaluated densely (dropout off):

* ``gate_spread``: the std across users of the gate logits (Eqs. 4-5), averaged over experts. A
  constant bias does not enter it, so it is the part of routing that depends on the user.
  ``gate_bias_spread``: the std across experts of the gate's output bias (linear gate only): the
  part of the routing that is the same for every user. A router that routes has ``gate_spread``
  well above ``gate_bias_spread``.
* ``entropy``: the mean over users of the entropy of the gate softmax, divided by log K (1 = uniform,
  0 = one expert with certainty); ``share``: the fraction of users whose top-1 expert is each one.
* ``expert_cosine``: the mean cosine similarity of two different experts' outputs ``M_j(x_j)`` for
  the same user (Eq. 7's terms); near 1 means the experts are interchangeable.
* ``filter_band_amplitude``: per expert, the mean ``|Q_j|`` (Eq. 3) over the low, middle and high
  third of the frequency bins.
* with ``forced=True``: ``forced_ndcg10``, NDCG@10 over all items with every user forced onto each
  expert (the paper's Table 5), and ``routed_ndcg10`` as the model routes (no history masking, as in
  RecBole's sequential full ranking).
"""
from __future__ import annotations

import math

import torch

from recbole_famous.model.ranking import ndcg_at, target_rank


def _band_amplitude(router) -> dict:
    weight = getattr(router, "filters", None)
    if weight is None:
        return {}
    amp = torch.view_as_complex(weight.detach().float().contiguous()).abs().mean(-1)  # (K, F)
    f = amp.size(1)
    cuts = (0, math.ceil(f / 3), math.ceil(2 * f / 3), f)
    return {name: amp[:, cuts[i]:cuts[i + 1]].mean(1).tolist() for i, name in enumerate(("low", "mid", "high"))}


def _ndcg10(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ndcg_at(target_rank(scores, target), 10)


@torch.no_grad()
def routing_diagnostics(model, batches, forced: bool = False) -> dict:
    """See the module docstring. ``batches``: interactions with the item sequence, its length and (for
    ``forced``) the target item. Leaves the model's mode and settings as they were."""
    was_training, eval_k, force = model.training, model.eval_top_k, model.force_expert
    model.eval()
    layer = model.layers[-1]
    k = model.n_experts
    logits, cosines, routed, forced_sums, users = [], [], [], torch.zeros(k), 0
    try:
        for inter in batches:
            seq, length = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
            model.eval_top_k, model.force_expert = k, None  # dense: every expert's own output
            out, gates = model.encode(seq, length)
            if gates[-1] is not None:
                logits.append(gates[-1].float())
            own = torch.nn.functional.normalize(out.own.float(), dim=-1)  # (B, K, d)
            if k > 1:
                sim = own @ own.transpose(1, 2)  # (B, K, K)
                off = ~torch.eye(k, dtype=torch.bool)
                cosines.append(sim[:, off].mean(1))
            if forced:
                items = model.item_embedding.weight
                target = inter[model.POS_ITEM_ID]
                model.eval_top_k = eval_k
                routed.append(_ndcg10(model.forward(seq, length) @ items.t(), target))
                for j in range(k):
                    model.force_expert = j
                    forced_sums[j] += float(_ndcg10(model.forward(seq, length) @ items.t(), target).sum())
            users += len(seq)
    finally:
        model.eval_top_k, model.force_expert = eval_k, force
        model.train(was_training)
    labels = [f"{j}:{kind}" for j, kind in enumerate(model.kinds)]
    result = {"users": users, "filter_band_amplitude": _band_amplitude(layer.router)}
    if cosines:
        result["expert_cosine"] = float(torch.cat(cosines).mean())
    if logits:
        g = torch.cat(logits)
        p = torch.softmax(g, dim=-1)
        entropy = -(p * torch.log(p.clamp(min=1e-12))).sum(-1).mean() / math.log(k)
        top = torch.bincount(g.argmax(-1), minlength=k).float() / len(g)
        result.update(gate_spread=float(g.std(0).mean()) if len(g) > 1 else 0.0, entropy=float(entropy),
                      share=dict(zip(labels, top.tolist())))
        gate = layer.router.gate
        last = gate[-1] if isinstance(gate, torch.nn.Sequential) else gate
        if isinstance(gate, torch.nn.Linear) and last.bias is not None:
            result["gate_bias_spread"] = float(last.bias.detach().float().std())
    if forced and users:
        result["routed_ndcg10"] = float(torch.cat(routed).mean())
        result["forced_ndcg10"] = dict(zip(labels, (forced_sums / users).tolist()))
    return result


def format_diagnostics(d: dict) -> str:
    """One line per diagnostic, for logs and the command line."""
    lines = [f"users {d['users']}"]
    for key in ("gate_spread", "gate_bias_spread", "entropy", "expert_cosine", "routed_ndcg10"):
        if key in d:
            lines.append(f"{key} {d[key]:.4f}")
    for key in ("share", "forced_ndcg10"):
        if key in d:
            lines.append(f"{key} " + ", ".join(f"{k} {v:.4f}" for k, v in d[key].items()))
    for band, values in d.get("filter_band_amplitude", {}).items():
        lines.append(f"filter |Q| {band} " + ", ".join(f"{v:.3f}" for v in values))
    return "; ".join(lines)


def epoch_line(model, eval_data) -> str:
    """The routing diagnostics, forced experts included, on the first ``diagnostics_users`` users (a FamouSRec
    setting) of an evaluation dataloader, as one log line (the trainer logs it after each validation); '' for a
    model without routing, or with ``diagnostics_users: 0``."""
    users_wanted = int(getattr(model, "diagnostics_users", 0) or 0)
    if users_wanted <= 0 or not hasattr(model, "kinds"):
        return ""
    batches, users = [], 0
    device = next(model.parameters()).device
    for batch in eval_data:
        inter = (batch[0] if isinstance(batch, tuple) else batch).to(device)
        batches.append(inter[: users_wanted - users])
        users += len(batches[-1])
        if users >= users_wanted:
            break
    return format_diagnostics(routing_diagnostics(model, batches, forced=True))
