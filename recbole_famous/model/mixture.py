"""Sparsely-gated mixture of heterogeneous experts: one FamouSRec MoE layer (paper Section 3.2.3, Eqs. 7-9).

* Eq. 9: ``Top-k(g, k)_j = g_j`` if ``g_j`` is among the k largest gate logits, else ``-inf``.
* Eq. 8: ``g' = softmax(Top-k(g, k))``: zero weight outside the top k.
* Eq. 7: ``F = Σ_j g'_j M_j(x_j)``, expert j encoding its own frequency component x_j.

Two ways to compute Eq. 7, same numbers (tested):

* **dense** (training, where the paper activates all experts, and any ``k = K``): every expert
  encodes its component for every user, then the weighted sum. Training needs every
  ``M_j(x_j)`` anyway for the alignment loss (Eq. 14), and, with ``need_pairs``, every
  ``M_k(x_j)`` for the expert-frequency loss (Eq. 11): each expert then encodes the K components
  of the batch in one call, a (B·K)-row batch.
* **sparse dispatch** (inference with ``k < K``, or ``force_expert``): the users whose top k holds
  expert j are gathered (``index_select``), expert j encodes only them, and its weighted output is
  scattered back (``index_add_``). With ``k = 1`` every user is encoded by exactly one expert.

``train_routing`` (training only): ``dense`` is Eqs. 7-9 with ``train_top_k``. With top-1 that
gives the gate no gradient from ``L_rec`` (a softmax over one logit is 1). ``switch`` routes each
user to its top-1 expert and scales that expert's output by its full-softmax probability
(Switch Transformer), so the gate learns from ``L_rec`` while each expert is trained by the users
it serves. At inference the weight of a single chosen expert is 1 (a positive scale does not
change a user's ranking).

``expert_input``: what each expert reads, a registered strategy (``EXPERT_INPUTS``, as ``EXPERT_KINDS`` for the
experts): ``window`` (every expert reads its component over the whole left-padded window) or ``history`` (each
user's real positions only, on ``expert_parts`` length-sorted parts of the batch, each trimmed to its longest
history: ``history.py``).

``component_dropout`` > 0 applies dropout to each component after the filters (instead of to the
embeddings before the FFT, ``FamouSRec``'s ``dropout_position: components``).
"""
import functools
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from recbole_famous.model.experts import build_expert
from recbole_famous.model.history import encode_history, left_to_right, length_parts
from recbole_famous.model.router import FrequencyRouter

TRAIN_ROUTINGS = ("dense", "switch")


def top_k_gates(logits: torch.Tensor, k: int):
    """Eqs. 8-9. Returns ``(weights, idx, idx_weights)``: (B, K) dense weights, zero outside the top k;
    (B, k) chosen experts (best first); (B, k) their weights."""
    top_val, top_idx = logits.topk(k, dim=-1)
    top_w = torch.softmax(top_val, dim=-1)
    weights = torch.zeros_like(logits).scatter(-1, top_idx, top_w)
    return weights, top_idx, top_w


def switch_gates(logits: torch.Tensor):
    """Top-1 routing that keeps the gate's gradient: ``(weights, idx)``, weights (B, K) zero except the
    chosen expert's full-softmax probability, idx (B, 1)."""
    probs = torch.softmax(logits, dim=-1)
    top_idx = probs.argmax(dim=-1, keepdim=True)
    weights = torch.zeros_like(probs).scatter(-1, top_idx, probs.gather(-1, top_idx))
    return weights, top_idx


def dense_mix(outputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 7 with every expert computed: outputs (B, K, ...), weights (B, K) -> (B, ...)."""
    w = weights.view(*weights.shape, *([1] * (outputs.dim() - 2)))
    return (outputs * w).sum(1)


def sparse_dispatch(run, comps: torch.Tensor, mask: torch.Tensor, top_idx: torch.Tensor,
                    top_w: torch.Tensor) -> torch.Tensor:
    """Eq. 7 computing only the chosen experts.

    ``run(j, x, m)`` encodes components ``x`` (b_j, n, d) with expert j; ``comps`` (B, K, n, d);
    ``top_idx``/``top_w`` (B, k). Returns (B, ...) = Σ over each user's chosen j of ``w · M_j(x_j)``.
    """
    out = None
    for j in range(comps.size(1)):
        hit = top_idx == j  # (B, k)
        users = hit.any(dim=1).nonzero().squeeze(1)
        if users.numel() == 0:
            continue
        y = run(j, comps[:, j].index_select(0, users), mask.index_select(0, users))
        if top_idx.size(1) > 1:  # with k = 1 the weight is exactly 1
            w = (top_w * hit).sum(1).index_select(0, users)
            y = y * w.view(-1, *([1] * (y.dim() - 1)))
        if out is None:
            out = y.new_zeros((comps.size(0),) + tuple(y.shape[1:]))
        out.index_add_(0, users, y)
    return out


@dataclass
class MoEOutput:
    hidden: torch.Tensor  # F (B, n, d), or (B, d) at the last position when last_only
    gate_logits: Optional[torch.Tensor]  # g (B, K); None when the router is off
    own: Optional[torch.Tensor] = None  # M_j(x_j) for every j (B, K, [n,] d): dense path only
    pairs: Optional[torch.Tensor] = None  # M_k(x_j) at the last position: (B, K_j, K_k, d) for need_pairs
    #                                       "exact"; (B, 1, K, d), one random j != k per user, for "sampled";
    #                                       only the rows of ``pair_users`` when it is given
    chosen: Optional[torch.Tensor] = None  # top-1 expert per user (B,): inference only


class MoELayer(nn.Module):
    """Router (Eqs. 2-6) + K experts (one per entry of ``kinds``) + top-k mixture (Eqs. 7-9).

    ``use_router=False`` is the paper's "w/o router" ablation: no gate, the experts' outputs on
    their components are averaged (all K run, at inference too). ``force_expert`` (inference only)
    serves every user with that expert, as in the paper's Table 5.
    """

    def __init__(self, cfg, max_len: int):
        """``cfg``: FamouSRec's settings whole (``famousrec_config.FamouSRecConfig``, validated there): the
        ``experts``, their hyper-parameters (``cfg.expert_params()``), the router's settings, ``train_routing``,
        ``expert_input`` / ``expert_parts``, and ``dropout_position: components`` (hidden dropout on each
        component after the filters)."""
        super().__init__()
        self.expert_input, self.expert_parts = cfg.expert_input, max(1, int(cfg.expert_parts))
        self.train_routing = cfg.train_routing
        params = cfg.expert_params()
        after = cfg.dropout_position == "components"
        self.component_dropout = nn.Dropout(params.hidden_dropout_prob) if after and params.hidden_dropout_prob > 0 \
            else None
        self.kinds = list(cfg.experts)
        self.n_experts = len(self.kinds)
        self.use_router = bool(cfg.use_router)
        self.router = FrequencyRouter(cfg, max_len)
        self.experts = nn.ModuleList(build_expert(kind, params) for kind in self.kinds)

    def pairs(self, encode, comps, mask, mode, users=None, shift=None):
        """M_k(x_j) at the last position for L_spe (Eq. 11), for ``users`` (an index, or None = every user):
        (b, K_j, K_k, d) every pair (``exact``), or (b, 1, K, d) one random j != k per user and expert (``sampled``;
        ``shift`` (K, b), j = k + shift mod K, drawn here when not given). ``encode(expert, x, m)``: one expert."""
        if users is not None:
            comps, mask = comps.index_select(0, users), mask.index_select(0, users)
        b, k_all = comps.shape[:2]
        if mode == "exact":
            flat = comps.reshape(b * k_all, *comps.shape[2:])  # row u*K + j = component j of user u
            flat_mask = mask.repeat_interleave(k_all, dim=0)
            return torch.stack([encode(e, flat, flat_mask).view(b, k_all, -1) for e in self.experts], dim=2)
        rows = torch.arange(b, device=comps.device)
        if shift is None:
            shift = torch.randint(1, k_all, (k_all, b), device=comps.device)  # never k
        return torch.stack([encode(e, comps[rows, (k + shift[k]) % k_all], mask)
                            for k, e in enumerate(self.experts)], dim=1).unsqueeze(1)

    def forward(self, h, mask, *, top_k: int, last_only: bool = False, need_pairs: Optional[str] = None,
                force_expert: Optional[int] = None, pair_users: Optional[torch.Tensor] = None) -> MoEOutput:
        """``h`` (B, n, d) left padded, ``mask`` (B, n) True on real items. ``pair_users`` (an index into the
        batch): compute L_spe's pairs for those users only. What each expert reads is the strategy
        ``EXPERT_INPUTS[expert_input]``."""
        return EXPERT_INPUTS[self.expert_input](self, h, mask, top_k=top_k, last_only=last_only,
                                                need_pairs=need_pairs, force_expert=force_expert,
                                                pair_users=pair_users)

    def mix(self, comps, mask, logits, encode, top_k, pairs_of, force_expert, all_pairs) -> MoEOutput:
        """Eqs. 7-9 on components ``comps`` (b, K, W, d) with gate ``logits`` (b, K): sparse dispatch at inference,
        else every expert on its component (and, with ``pairs_of(comps, mask)``, L_spe's pairs; ``all_pairs``:
        every pair, whose diagonal is then each expert's own output). ``encode(expert, x, m)``: one expert."""
        comps = self.component_dropout(comps) if self.component_dropout is not None else comps
        b, k_all = comps.shape[:2]
        sparse = not self.training and (force_expert is not None or (self.use_router and top_k < k_all))
        if sparse:
            if force_expert is not None:
                top_idx = torch.full((b, 1), force_expert, dtype=torch.long, device=comps.device)
                top_w = torch.ones(b, 1, dtype=comps.dtype, device=comps.device)
            else:
                _, top_idx, top_w = top_k_gates(logits, top_k)
            hidden = sparse_dispatch(lambda j, x, m: encode(self.experts[j], x, m), comps, mask, top_idx, top_w)
            return MoEOutput(hidden, logits, chosen=top_idx[:, 0])
        pairs = None
        if pairs_of is not None and all_pairs:
            pairs = pairs_of(comps, mask)
            own = pairs.diagonal(dim1=1, dim2=2).permute(0, 2, 1)  # (b, K, d): M_j(x_j)
        else:
            own = torch.stack([encode(self.experts[j], comps[:, j], mask) for j in range(k_all)], dim=1)
            if pairs_of is not None and k_all > 1:
                pairs = pairs_of(comps, mask)
        if self.use_router and self.training and self.train_routing == "switch":
            weights, top_idx = switch_gates(logits)
        elif self.use_router:
            weights, top_idx, _ = top_k_gates(logits, top_k)
        else:
            weights = torch.full((b, k_all), 1.0 / k_all, dtype=own.dtype, device=own.device)
            top_idx = None
        chosen = None if self.training or top_idx is None else top_idx[:, 0]
        return MoEOutput(dense_mix(own, weights), logits, own=own, pairs=pairs, chosen=chosen)


def _window_expert(expert, x, m, last_only):
    """One expert on components ``x`` (b, n, d) over the whole left-padded window (``expert_input: window``)."""
    return expert.forward_last(x, m) if last_only else expert(x, m)


def window_input(layer: MoELayer, h, mask, *, top_k, last_only, need_pairs, force_expert, pair_users) -> MoEOutput:
    """``expert_input: window``: every expert reads its component over the whole left-padded window (Eq. 7 as the
    paper writes it; padded positions included)."""
    comps = layer.router.components(h)  # (B, K, n, d)
    logits = layer.router.gate_logits(comps, mask, h) if layer.use_router else None
    encode = functools.partial(_window_expert, last_only=last_only)
    pairs_of = functools.partial(layer.pairs, encode, mode=need_pairs, users=pair_users) \
        if need_pairs and last_only else None  # pairs are read at the last position: encode is last_only
    return layer.mix(comps, mask, logits, encode, top_k, pairs_of, force_expert,
                     all_pairs=need_pairs == "exact" and pair_users is None)


def history_input(layer: MoELayer, h, mask, *, top_k, last_only, need_pairs, force_expert, pair_users) -> MoEOutput:
    """``expert_input: history``: the layer on ``expert_parts`` length-sorted parts of the batch, each trimmed
    to its longest history and laid out from the first real item: the router's components at the real
    positions only (``FrequencyRouter.history_components``), the gate, the experts and the mixture on each
    part, then every row back in batch order. What a user gets depends on its history only (tested: any
    number of parts, the same loss and gradients; the same values as the window's components read at the
    real positions)."""
    b, n = mask.shape
    lengths = mask.sum(1)
    n_pairs = b if pair_users is None else pair_users.numel()
    pair_pos = shift = None
    if need_pairs and last_only and layer.n_experts > 1:
        pair_pos = torch.full((b,), -1, dtype=torch.long, device=h.device)  # row -> its place among the pairs
        pair_pos[torch.arange(b, device=h.device) if pair_users is None else pair_users] = \
            torch.arange(n_pairs, device=h.device)
        if need_pairs == "sampled":  # drawn once for the batch, as on the window
            shift = torch.randint(1, layer.n_experts, (layer.n_experts, n_pairs), device=h.device)
    encode = functools.partial(encode_history, last_only=last_only, n=n)
    outs, rows, pair_keys = [], [], []
    for idx, width in length_parts(lengths, layer.expert_parts):
        part_len = lengths.index_select(0, idx)
        m = torch.arange(width, device=h.device).unsqueeze(0) < part_len.unsqueeze(1)
        x = left_to_right(h.index_select(0, idx), part_len, width)
        comps = layer.router.history_components(x, m)  # (b_p, K, W, d)
        logits = layer.router.gate_logits(comps, m, x, last=(part_len - 1).clamp(min=0)) \
            if layer.use_router else None
        pairs_of = None
        if pair_pos is not None:
            keys = pair_pos.index_select(0, idx)
            local = (keys >= 0).nonzero().squeeze(1)
            keys = keys.index_select(0, local)
            if keys.numel():  # this part holds pair users
                pair_keys.append(keys)
                pairs_of = functools.partial(
                    layer.pairs, encode, mode=need_pairs, users=None if local.numel() == idx.numel() else local,
                    shift=None if shift is None else shift.index_select(1, keys))
        outs.append(layer.mix(comps, m, logits, encode, top_k, pairs_of, force_expert,
                              all_pairs=need_pairs == "exact" and pair_users is None))
        rows.append(idx)
    return merge_parts(outs, torch.cat(rows), torch.cat(pair_keys) if pair_keys else None)


EXPERT_INPUTS = {"window": window_input, "history": history_input}  # expert_input -> strategy, as EXPERT_KINDS


def merge_parts(outs: List[MoEOutput], rows: torch.Tensor, pair_keys: Optional[torch.Tensor]) -> MoEOutput:
    """One ``MoEOutput`` from those of the parts of a batch: ``rows`` the batch row of each part's rows, in
    order; ``pair_keys`` each pair row's place among the pair users (None: no pairs)."""
    order = torch.argsort(rows)

    def cat(name):
        values = [getattr(o, name) for o in outs]
        if any(v is None for v in values):
            return None
        return torch.cat(values).index_select(0, order)

    pairs = None
    if pair_keys is not None:  # only the parts that hold pair users have pairs
        pairs = torch.cat([o.pairs for o in outs if o.pairs is not None]).index_select(0, torch.argsort(pair_keys))
    return MoEOutput(cat("hidden"), cat("gate_logits"), own=cat("own"), pairs=pairs, chosen=cat("chosen"))
