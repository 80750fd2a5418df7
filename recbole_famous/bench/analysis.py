"""The paper's analyses, on trained checkpoints (FamouSRec, WWW 2025, Section 2 and Appendix A.4).

* **Figure 1** (``frequency_component_users``): on a trained SASRec, take the transformer's output at every
  position, apply five filters along the sequence axis in the frequency domain (rFFT, ``norm='ortho'``),
  transform back, read the most recent position, score all items; a user is "driven" by the component
  whose representation ranks the user's ground-truth test item highest. Ties split the user equally.
  Decisions (the paper gives no cut-offs): SASRec's right-padded states are moved to left padding first
  (most recent item at the last position, as FamouSRec's router sees them); the ``n//2+1`` frequency bins
  are cut in thirds: LPF keeps the low third, BPF the middle, HPF the high third, BSF low and high, APF all.
* **Figure 2** (``filter_amplitudes``): the mean over hidden dimensions of ``|Q_j|`` per frequency bin for
  each expert's learned filter of FamouSRec's router (Eq. 3), and the same for single encoders with one
  learnable filter in front (FamouSRec with one expert and no router: exactly "a filter layer between the
  embedding and the encoder").
* **Expert share** and **Appendix A.4** (``routing``, ``a4_table``): each test user's top-1 expert at
  inference (``FamouSRec.encode`` returns the last MoE layer's choice; the model has no narrower accessor);
  the share of users per expert; among "low-frequency users" (users whose Figure-1 winner is LPF), the share
  routed to the attention expert, and HR@10 / NDCG@10 of SASRec and FamouSRec on all vs those users
  (the paper's Table 4).
"""

from __future__ import annotations

import math

import torch

from recbole_famous import pipeline
from recbole_famous.model.ranking import target_rank

FILTERS = ("LPF", "HPF", "BPF", "BSF", "APF")


def band_masks(n: int) -> dict:
    """``{filter: (n//2+1,) float mask}`` over rFFT bins, thirds of the bins (see the module docstring)."""
    f = n // 2 + 1
    low_end, high_start = math.ceil(f / 3), math.ceil(2 * f / 3)
    idx = torch.arange(f)
    low, high = idx < low_end, idx >= high_start
    mid = ~low & ~high
    return {"LPF": low, "HPF": high, "BPF": mid, "BSF": low | high, "APF": torch.ones(f, dtype=torch.bool)}


def left_align(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, n, d) right-padded states -> left padded (row b's ``lengths[b]`` real states at the end)."""
    b, n, d = states.shape
    lengths = lengths.long().clamp(0, n).unsqueeze(1)
    src = torch.arange(n, device=states.device).unsqueeze(0) - (n - lengths)
    out = states.gather(1, src.clamp(min=0).unsqueeze(-1).expand(b, n, d))
    return out * (src >= 0).unsqueeze(-1).to(states.dtype)


def filtered_last(states: torch.Tensor, masks: dict) -> dict:
    """``{filter: (B, d)}``: each band of left-padded ``states`` (B, n, d), back in time, at position n-1."""
    n = states.size(1)
    spectrum = torch.fft.rfft(states.float(), dim=1, norm="ortho")
    out = {}
    for name, keep in masks.items():
        kept = spectrum * keep.to(states.device).view(1, -1, 1)
        out[name] = torch.fft.irfft(kept, n=n, dim=1, norm="ortho")[:, -1]
    return out


def sasrec_states(model, item_seq, item_seq_len) -> torch.Tensor:
    """SASRec's last transformer layer output at every position, (B, n, d) (RecBole's ``trm_encoder``)."""
    encoder = getattr(model, "trm_encoder", None)
    if encoder is None:
        from recbole_famous.errors import UsageError

        raise UsageError(f"Figure 1 needs a transformer model with a 'trm_encoder' (SASRec), got {type(model).__name__}")
    captured = {}
    handle = encoder.register_forward_hook(lambda mod, args, out: captured.__setitem__("h", out[-1]))
    try:
        # the model's own forward on the whole batch: a length-split model (``length_split``) would call the
        # encoder once per part and leave only the last part's states in the hook
        getattr(model, "unsplit_forward", model.forward)(item_seq, item_seq_len)
    finally:
        handle.remove()
    return captured["h"]


def gt_rank(scores: torch.Tensor, history_index, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among all items, the history and padding masked as RecBole does
    (``model.ranking.target_rank``)."""
    return target_rank(scores, target, history_index)


def test_batches(loaded):
    """(model in eval mode, test interaction, history index) per test batch of a loaded run."""
    model = loaded.model.eval()
    device = pipeline.model_device(model)
    for batch in loaded.test_data:
        interaction, history_index = batch[0].to(device), batch[1]
        yield model, interaction, history_index


@torch.no_grad()
def frequency_component_users(loaded) -> dict:
    """Figure 1 on a loaded SASRec run: ``{"counts": {filter: users}, "winner": {user_id: {filter: share}},
    "rank": {user_id: APF rank}}`` (APF = SASRec's own representation)."""
    counts = {name: 0.0 for name in FILTERS}
    winners, apf_rank = {}, {}
    masks = None
    for model, inter, history_index in test_batches(loaded):
        seq, length = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
        states = left_align(sasrec_states(model, seq, length), length)
        masks = masks or band_masks(states.size(1))
        items = model.item_embedding.weight
        target = inter[model.POS_ITEM_ID]
        ranks = torch.stack([gt_rank(rep @ items.t(), history_index, target)
                             for rep in filtered_last(states, masks).values()], dim=1)  # (B, 5)
        best = ranks == ranks.min(1, keepdim=True).values
        share = best.float() / best.sum(1, keepdim=True)
        for j, name in enumerate(FILTERS):
            counts[name] += float(share[:, j].sum())
        users = inter[model.USER_ID].tolist() if model.USER_ID in inter else list(range(len(apf_rank), len(apf_rank) + len(seq)))
        for u, row, r in zip(users, share.tolist(), ranks[:, FILTERS.index("APF")].tolist()):
            winners[u] = {name: s for name, s in zip(FILTERS, row) if s > 0}
            apf_rank[u] = r
    return {"counts": counts, "winner": winners, "rank": apf_rank, "users": len(winners)}


def filter_amplitudes(model) -> list:
    """Figure 2: per MoE layer, ``{"kinds": [...], "amplitude": K x (n//2+1) lists}`` (mean over d of |Q_j|)."""
    out = []
    for layer in getattr(model, "layers", []):
        router = getattr(layer, "router", None)
        weight = getattr(router, "filters", None)
        if weight is None:
            continue
        amp = torch.view_as_complex(weight.detach().float().contiguous()).abs().mean(-1)  # (K, F)
        out.append({"kinds": list(layer.kinds), "amplitude": amp.tolist()})
    return out


@torch.no_grad()
def routing(loaded) -> dict:
    """Each test user's top-1 expert (last MoE layer) and its 0-based ground-truth rank: ``{"kinds", "expert":
    {user: j}, "rank": {user: r}, "share": {kind label: share}}``."""
    experts, ranks = {}, {}
    kinds = None
    for model, inter, history_index in test_batches(loaded):
        kinds = list(model.kinds)
        out, gates = model.encode(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
        if out.chosen is not None:
            chosen = out.chosen
        elif gates[-1] is not None:
            chosen = gates[-1].argmax(-1)
        else:
            chosen = torch.full((len(inter),), -1, dtype=torch.long)
        scores = out.hidden @ model.item_embedding.weight.t()
        r = gt_rank(scores, history_index, inter[model.POS_ITEM_ID])
        for u, j, rr in zip(inter[model.USER_ID].tolist(), chosen.tolist(), r.tolist()):
            experts[u], ranks[u] = j, rr
    total = max(len(experts), 1)
    share = {f"{j}:{k}": sum(1 for v in experts.values() if v == j) / total for j, k in enumerate(kinds or [])}
    return {"kinds": kinds, "expert": experts, "rank": ranks, "share": share}


def hr_ndcg(ranks, k: int = 10) -> tuple:
    ranks = list(ranks)
    if not ranks:
        return float("nan"), float("nan")
    hr = sum(1 for r in ranks if r < k) / len(ranks)
    ndcg = sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return hr, ndcg


def low_frequency_users(fig1: dict, threshold: float = 0.5) -> set:
    """Users whose Figure-1 winner is LPF (alone, or LPF's tie share above ``threshold``)."""
    return {u for u, w in fig1["winner"].items() if w.get("LPF", 0.0) > threshold}


def a4_table(fig1: dict, route: dict) -> dict:
    """Appendix A.4 / Table 4: SASRec and FamouSRec HR@10, NDCG@10 on all and on low-frequency users, and the
    share of low-frequency users routed to the attention expert(s)."""
    low = low_frequency_users(fig1)
    attention = {j for j, k in enumerate(route["kinds"] or []) if k == "attention"}
    common_low = [u for u in low if u in route["expert"]]
    to_attention = sum(1 for u in common_low if route["expert"][u] in attention)
    return {
        "low_frequency_users": len(low),
        "users": fig1["users"],
        "low_share_to_attention": to_attention / len(common_low) if common_low and attention else float("nan"),
        "all_users_share_to_attention": sum(1 for v in route["expert"].values() if v in attention)
        / max(len(route["expert"]), 1) if attention else float("nan"),
        "SASRec_all": hr_ndcg(fig1["rank"].values()),
        "SASRec_low": hr_ndcg(fig1["rank"][u] for u in low),
        "FamouSRec_all": hr_ndcg(route["rank"].values()),
        "FamouSRec_low": hr_ndcg(route["rank"][u] for u in common_low),
    }
