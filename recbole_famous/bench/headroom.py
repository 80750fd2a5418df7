"""Is there anything for FamouSRec's router to exploit? Per-user expert preference, measured without the test split
(issue 12: "if routing still does not matter on real data, say so plainly, with the diagnostics that show why").

The paper's Table 5 forces *every* user onto one expert. Here each expert is forced in turn and the rank of two
targets is kept per user: the validation item (RecBole's full ranking, history masked), and a *probe*: the last
item of the user's training history predicted from the items before it (the history's own items masked, the
probe item itself kept). Then, on validation:

* ``forced``: NDCG@10 with everyone on expert j (Table 5); ``routed``: the model as it routes;
* ``oracle``: each user on the expert that ranks *their validation item* best. An upper bound that selects on the
  target itself (with 4 noisy experts it is above every forced expert even when no user prefers any expert);
* ``probe_routed``: each user on the expert that ranked their probe item best (a tie: the best forced expert
  overall): what a router would get that knew which expert served each user on the step before;
* ``agreement``: among users whose probe-best and validation-best experts are both strict, how often the two
  coincide, against ``chance`` = Σ_j p_j q_j of the two marginals.

A per-user preference a router could learn shows as ``probe_routed`` above the best forced expert and agreement
above chance; probe_routed at or below the best forced expert means that, at this budget, which expert serves a
user best on one step does not carry to the next: there is nothing stable per user to route on.
"""
from __future__ import annotations

import math

import torch
from recbole.data.interaction import Interaction

from recbole_famous.bench.analysis import hr_ndcg
from recbole_famous.bench.synth import eval_batches, user_ranks
from recbole_famous.model.ranking import target_rank


@torch.no_grad()
def probe_ranks(model, data, force=None, back: int = 1) -> dict:
    """``{user token: 0-based rank}`` of each user's history item ``back`` steps from the end (1: the last) given
    the history before it (users with more than ``back`` history items), every other item of that shorter
    history masked, as RecBole masks the history."""
    uid = data._dataset.uid_field
    out = {}
    for inter, _, tokens in eval_batches(model, data, force):
        seq, length = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
        keep = length > back
        if not bool(keep.any()):
            continue
        seq, length, users = seq[keep].clone(), length[keep] - back, inter[uid][keep]
        rows = torch.arange(len(seq), device=seq.device)
        target = seq[rows, length].clone()
        cols = torch.arange(seq.shape[1], device=seq.device)
        seq[cols.unsqueeze(0) >= length.unsqueeze(1)] = 0  # right-padded: the probe item and after become padding
        scores = model.full_sort_predict(Interaction({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: length,
                                                      uid: users})).view(len(seq), -1)
        ranks = target_rank(scores, target, masked_items=seq)  # the shorter history and padding (item 0)
        for u, r in zip([t for t, k in zip(tokens, keep.tolist()) if k], ranks.tolist()):
            out[u] = r
    return out


def _strict_best(ranks_by_label: dict, user) -> "str | None":
    """The label whose rank (or rank list: the mean of log(1 + rank)) is lowest for ``user``; None on a tie."""
    def cost(r):
        return r if not isinstance(r, (list, tuple)) else sum(math.log1p(x) for x in r) / len(r)
    values = sorted((cost(r[user]), label) for label, r in ranks_by_label.items())
    return values[0][1] if len(values) == 1 or values[0][0] < values[1][0] else None


def headroom(valid: dict, probe: dict, routed: dict = None, k: int = 10) -> dict:
    """See the module docstring. ``valid``: ``{expert label: {user: rank}}``; ``probe``: the same labels, each
    user's rank or list of ranks (several probes: the expert with the lowest mean log(1 + rank) is their best);
    ``routed``: ``{user: rank}`` of the model as it routes. Users: those with a probe and a validation rank."""
    labels = list(valid)
    users = sorted(set.intersection(*(set(valid[j]) for j in labels), *(set(probe[j]) for j in labels)))
    ndcg = {j: hr_ndcg((valid[j][u] for u in users), k)[1] for j in labels}
    best_forced = max(labels, key=ndcg.get)
    oracle = hr_ndcg((min(valid[j][u] for j in labels) for u in users), k)[1]
    picks = {u: _strict_best(probe, u) or best_forced for u in users}
    probe_routed = hr_ndcg((valid[picks[u]][u] for u in users), k)[1]
    both = [(p, v) for u in users for p, v in [(_strict_best(probe, u), _strict_best(valid, u))] if p and v]
    agree = sum(p == v for p, v in both) / len(both) if both else math.nan
    chance = sum((sum(p == j for p, _ in both) / len(both)) * (sum(v == j for _, v in both) / len(both))
                 for j in labels) if both else math.nan
    out = {"users": len(users), "forced": ndcg, "best_forced": best_forced, "oracle": oracle,
           "probe_routed": probe_routed, "probe_picks": {j: sum(picks[u] == j for u in users) / len(users)
                                                         for j in labels},
           "strict_pairs": len(both), "agreement": agree, "chance": chance}
    if routed is not None:
        out["routed"] = hr_ndcg((routed[u] for u in users if u in routed), k)[1]
    return out


def measure(model, valid_data, k: int = 10, probes: int = 1, echo=print) -> dict:
    """``headroom`` of a trained FamouSRec on its validation dataloader, each user's best expert on the
    previous item judged from their last ``probes`` history items (users with more than ``probes`` items):
    K (probes + 1) + 1 passes over the users."""
    kinds = list(model.kinds)
    valid, probe = {}, {}
    for j, kind in enumerate(kinds):
        label = f"{j}:{kind}"
        echo(f"headroom: expert {label} forced: validation ranks, probe ranks")
        valid[label] = {u: r for u, (r, _) in user_ranks(model, valid_data, force=j).items()}
        by_back = [probe_ranks(model, valid_data, force=j, back=b) for b in range(1, probes + 1)]
        probe[label] = {u: [p[u] for p in by_back] for u in by_back[-1]}
    routed = {u: r for u, (r, _) in user_ranks(model, valid_data).items()}
    out = headroom(valid, probe, routed, k)
    out["probes"] = probes
    return out


def markdown(result: dict, title: str) -> str:
    labels = list(result["forced"])
    n = result.get("probes", 1)
    lines = [f"## {title}", "", f"Validation users with {n} probe item(s) (their last {n} history item(s), each "
             f"predicted from the items before it): {result['users']:,}", "",
             "| quantity | valid NDCG@10 |", "|---|---:|"]
    if "routed" in result:
        lines.append(f"| routed (the model as it routes) | {result['routed']:.4f} |")
    for j in labels:
        lines.append(f"| forced onto {j}{' (best)' if j == result['best_forced'] else ''} | {result['forced'][j]:.4f} |")
    picks = ", ".join(f"{j} {v:.2f}" for j, v in result["probe_picks"].items())
    lines += [f"| probe-routed (each user on the expert best for their probe item(s); shares {picks}) | "
              f"{result['probe_routed']:.4f} |",
              f"| oracle (each user on the expert best for their validation item: selects on the target) | "
              f"{result['oracle']:.4f} |", "",
              f"Probe-best = validation-best expert for {100 * result['agreement']:.1f}% of the "
              f"{result['strict_pairs']:,} users with a strict best expert on both, chance {100 * result['chance']:.1f}%."]
    return "\n".join(lines) + "\n"
