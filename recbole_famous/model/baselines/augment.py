"""CL4SRec's three sequence augmentations, vectorised over a batch (crop, mask, reorder), and EMKD's cloze mask.

Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022, Section III-B; the rates and the
rounding follow the reference implementation in the DuoRec authors' code
(github.com/RuihongQiu/DuoRec, ``recbole/data/dataloader/sequential_dataloader.py``): a length-``n`` sequence
keeps ``floor(eta * n)`` contiguous items (crop), has ``floor(gamma * n)`` items replaced by a mask token (mask),
or has a contiguous window of ``floor(beta * n)`` items shuffled (reorder). The reference code loops over the
batch in Python; here every operation is a handful of tensor ops on the whole batch.

All functions take RecBole's right-padded ids ``(B, L)`` (real items first, zeros after) and lengths ``(B,)``,
and return the same layout. They draw from torch's global generator (seeded by RecBole's ``init_seed``).
"""
from __future__ import annotations

import torch


def _window_start(lengths: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """A uniform start in ``[0, length - size]`` per row."""
    span = (lengths - size + 1).clamp(min=1)
    return (torch.rand(lengths.shape, device=lengths.device) * span).long().clamp(max=span - 1)


def crop(seq: torch.Tensor, lengths: torch.Tensor, eta: float):
    """Keep a random contiguous ``max(1, floor(eta * n))`` items, moved to the front; returns (seq, lengths)."""
    L = seq.size(1)
    keep = torch.floor(lengths.double() * eta).long().clamp(min=1).minimum(lengths.clamp(min=1))
    start = _window_start(lengths, keep)
    pos = torch.arange(L, device=seq.device).unsqueeze(0)
    src = (start.unsqueeze(1) + pos).clamp(max=L - 1)
    out = seq.gather(1, src).masked_fill(pos >= keep.unsqueeze(1), 0)
    return out, keep


def mask(seq: torch.Tensor, lengths: torch.Tensor, gamma: float, mask_token: int):
    """Replace ``floor(gamma * n)`` distinct random real positions with ``mask_token``; lengths are unchanged."""
    L = seq.size(1)
    n_mask = torch.floor(lengths.double() * gamma).long()
    pos = torch.arange(L, device=seq.device).unsqueeze(0)
    scores = torch.rand(seq.shape, device=seq.device).masked_fill(pos >= lengths.unsqueeze(1), 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # padding ranks last
    chosen = rank < n_mask.unsqueeze(1)
    return seq.masked_fill(chosen, mask_token), lengths


def random_mask(seq: torch.Tensor, lengths: torch.Tensor, prob: float, mask_token: int):
    """Replace each real item with ``mask_token`` independently with probability ``prob`` (a cloze-style mask,
    as BERT4Rec and EMKD draw it); lengths are unchanged."""
    pos = torch.arange(seq.size(1), device=seq.device).unsqueeze(0)
    chosen = (torch.rand(seq.shape, device=seq.device) < prob) & (pos < lengths.unsqueeze(1))
    return seq.masked_fill(chosen, mask_token), lengths


def reorder(seq: torch.Tensor, lengths: torch.Tensor, beta: float):
    """Shuffle a random contiguous window of ``floor(beta * n)`` items in place; lengths are unchanged.

    Sort keys: a position outside the window keeps its own index; a position inside the window
    ``[s, s + k)`` gets a random key in ``[s, s + k)``, so sorting permutes the window and nothing else.
    """
    L = seq.size(1)
    size = torch.floor(lengths.double() * beta).long()
    start = _window_start(lengths, size).unsqueeze(1)
    size = size.unsqueeze(1)
    pos = torch.arange(L, device=seq.device).unsqueeze(0).expand_as(seq)
    inside = (pos >= start) & (pos < start + size)
    u = torch.rand(seq.shape, device=seq.device, dtype=torch.float64)
    keys = torch.where(inside, start + u * size, pos.double())
    return seq.gather(1, keys.argsort(dim=1)), lengths


def two_views(seq, lengths, eta: float, gamma: float, beta: float, mask_token: int):
    """CL4SRec's pair of views: per sequence, two different operators drawn from {crop, mask, reorder}.

    Sequences of length <= 1 are left as they are in both views (as in the reference code).
    Returns ``(seq1, len1, seq2, len2)``.
    """
    candidates = [crop(seq, lengths, eta), mask(seq, lengths, gamma, mask_token), reorder(seq, lengths, beta)]
    all_seqs = torch.stack([c[0] for c in candidates])  # (3, B, L)
    all_lens = torch.stack([c[1] for c in candidates])  # (3, B)
    ops = torch.rand(seq.size(0), 3, device=seq.device).argsort(dim=1)[:, :2]  # two distinct operators per row
    rows = torch.arange(seq.size(0), device=seq.device)
    short = lengths <= 1
    views = []
    for v in range(2):
        s = all_seqs[ops[:, v], rows]
        n = all_lens[ops[:, v], rows]
        views += [torch.where(short.unsqueeze(1), seq, s), torch.where(short, lengths, n)]
    return tuple(views)
