"""Appendix A.4 like for like: who the "low-frequency users" are, and whether SASRec serves them better than average.

The paper (Table 4) finds that its low-frequency users are served *better* than average by SASRec (NDCG@10 0.0679
against 0.0652 on Instruments) and that 73% of them are routed to FamouSRec's attention expert. Our Figure-1
procedure (``analysis.frequency_component_users``) gives low-frequency users whom SASRec serves far *worse*
(issue 12). Three definitions side by side, each on the same test users:

* ``figure1``: the Figure-1 procedure as it was: a user's winner is the filtered representation (LPF, HPF, BPF,
  BSF, APF of SASRec's output states) that ranks the test item best; ties split; every user gets a winner, also a
  user whose item every representation ranks in the thousands.
* ``figure1_hit``: the same, but a representation can win only if it ranks the test item within the top ``k``
  (10, the metric's cut-off); a user for whom none does has no winner. Only users whom some band serves compete.
* ``spectrum``: a property of the history, not of a model's success. The share of the history's energy in the low
  third of the frequencies, over the history's own length (an FFT of its real items' SASRec item embeddings,
  no padding, so a short history is not a pulse in a long zero window); low-frequency users are the top third
  by that share among the users with at least ``min_len`` items (a 2-item history has two bins).

For each: how many users, SASRec's HR@10 / NDCG@10 on them and on all, FamouSRec's likewise, and the share of them
that FamouSRec routes to its attention expert(s) against the share of all users.
"""
from __future__ import annotations

import math

import torch

from recbole_famous.bench import analysis

DEFINITIONS = ("figure1", "figure1_hit", "spectrum")


@torch.no_grad()
def sasrec_user_table(loaded, k: int = 10) -> dict:
    """Per test user of a loaded SASRec run: the rank of the test item under each Figure-1 representation
    (``ranks``: {user: [LPF, HPF, BPF, BSF, APF]}), the history length and its low-band energy share."""
    ranks, lengths, low_share = {}, {}, {}
    masks = None
    for model, inter, history_index in analysis.test_batches(loaded):
        seq, length = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
        states = analysis.left_align(analysis.sasrec_states(model, seq, length), length)
        masks = masks or analysis.band_masks(states.size(1))
        items = model.item_embedding.weight
        target = inter[model.POS_ITEM_ID]
        r = torch.stack([analysis.gt_rank(rep @ items.t(), history_index, target)
                         for rep in analysis.filtered_last(states, masks).values()], dim=1)
        share = history_low_share(model.item_embedding(seq), length)
        for u, row, n, s in zip(inter[model.USER_ID].tolist(), r.tolist(), length.tolist(), share.tolist()):
            ranks[u], lengths[u], low_share[u] = row, n, s
    return {"ranks": ranks, "length": lengths, "low_share": low_share}


def history_low_share(emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) share of each history's energy in the low third of its rFFT bins, the FFT over the history's own real
    items (``emb`` (B, n, d) right padded); NaN for an empty history."""
    out = torch.full((emb.size(0),), float("nan"))
    for n in lengths.unique().tolist():
        if n < 1:
            continue
        rows = (lengths == n).nonzero().squeeze(1)
        power = torch.fft.rfft(emb[rows, :n].float(), dim=1, norm="ortho").abs().square().sum(-1)  # (b, n//2+1)
        low = math.ceil(power.size(1) / 3)
        out[rows] = (power[:, :low].sum(1) / power.sum(1).clamp(min=1e-12)).cpu()
    return out


def pool_users(table: dict, definition: str, k: int = 10, min_len: int = 5) -> set:
    """The users a definition chooses from: every user (``figure1``), the users some band serves within the top
    ``k`` (``figure1_hit``), the users with at least ``min_len`` items (``spectrum``). Comparing the chosen users
    with their pool, not with all users, removes what the choice itself selects (a hit, a long history)."""
    if definition == "spectrum":
        return {u for u, s in table["low_share"].items() if table["length"][u] >= min_len and s == s}
    if definition == "figure1_hit":
        return {u for u, row in table["ranks"].items() if min(row) < k}
    return set(table["ranks"])


def low_users(table: dict, definition: str, k: int = 10, min_len: int = 5) -> set:
    """The low-frequency users under ``definition`` (see the module docstring)."""
    names = analysis.FILTERS
    lpf = names.index("LPF")
    if definition == "spectrum":
        pool = [(s, u) for u, s in table["low_share"].items() if table["length"][u] >= min_len and s == s]
        pool.sort(reverse=True)
        return {u for _, u in pool[:len(pool) // 3]}
    users = set()
    for u, row in table["ranks"].items():
        best = min(row)
        if definition == "figure1_hit" and best >= k:
            continue  # no band serves this user: no winner
        winners = [j for j, r in enumerate(row) if r == best]
        if lpf in winners and 1.0 / len(winners) > 0.5:
            users.add(u)
    return users


def compare(table: dict, route: dict, k: int = 10, min_len: int = 5) -> list:
    """One row per definition: users, SASRec and FamouSRec HR/NDCG@k on them and on all, routing to attention."""
    apf = analysis.FILTERS.index("APF")
    attention = {j for j, kind in enumerate(route["kinds"] or []) if kind == "attention"}
    common = [u for u in table["ranks"] if u in route["rank"]]

    def scores(users):
        sas = analysis.hr_ndcg((table["ranks"][u][apf] for u in users), k)
        fam = analysis.hr_ndcg((route["rank"][u] for u in users), k)
        to_att = sum(1 for u in users if route["expert"].get(u) in attention) / len(users) if users else float("nan")
        return sas, fam, to_att

    rows = []
    all_sas, all_fam, all_att = scores(common)
    for definition in DEFINITIONS:
        chosen, pool = low_users(table, definition, k, min_len), pool_users(table, definition, k, min_len)
        low = [u for u in common if u in chosen]
        rest = [u for u in common if u in pool and u not in chosen]
        sas, fam, to_att = scores(low)
        rest_sas, rest_fam, rest_att = scores(rest)
        rows.append({"definition": definition, "users": len(low), "of": len(common), "pool": len(low) + len(rest),
                     "SASRec_rest": rest_sas, "FamouSRec_rest": rest_fam, "to_attention_rest": rest_att,
                     "SASRec_low": sas, "SASRec_all": all_sas, "FamouSRec_low": fam, "FamouSRec_all": all_fam,
                     "to_attention_low": to_att, "to_attention_all": all_att})
    return rows


def markdown(rows: list, k: int = 10) -> list:
    """The table: low = the chosen users, rest = the other users of their pool (``pool_users``), all = every user."""
    lines = [f"| definition | low users (of pool) | SASRec NDCG@{k} low / rest / all | SASRec HR@{k} low / rest / all "
             f"| FamouSRec NDCG@{k} low / rest / all | routed to attention: low / rest / all |",
             "|---|---:|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['definition']} | {r['users']:,} ({r['pool']:,}) | {r['SASRec_low'][1]:.4f} / "
                     f"{r['SASRec_rest'][1]:.4f} / {r['SASRec_all'][1]:.4f} | {r['SASRec_low'][0]:.4f} / "
                     f"{r['SASRec_rest'][0]:.4f} / {r['SASRec_all'][0]:.4f} | {r['FamouSRec_low'][1]:.4f} / "
                     f"{r['FamouSRec_rest'][1]:.4f} / {r['FamouSRec_all'][1]:.4f} | {r['to_attention_low']:.1%} / "
                     f"{r['to_attention_rest']:.1%} / {r['to_attention_all']:.1%} |")
    return lines
