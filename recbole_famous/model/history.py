"""Experts on the real positions of each history (``expert_input: history``), on length-sorted parts of a batch.

The router works on the full, left-padded window (its filters are defined on ``MAX_ITEM_LIST_LENGTH``
positions, Eqs. 2-6). Its components are non-zero in the padded positions too: a filter is a circular
convolution over the window, so every component spills into the padding. Two ways for the experts (Eq. 7)
to read a component:

* ``window`` (the first implementation): every expert reads the whole window, left padded. The attention
  expert masks the padded keys; the GRU and Mamba experts run over every padded position (the spill, and
  their biases, move their state before the first real item); the MLP expert reads the last position.
* ``history``: every expert reads only the user's real positions of its component, laid out from the
  first real item (right padded, as RecBole stores a history) and read out at the last real item. What an
  expert computes for a user then depends on that user's history only, never on how many padded positions
  precede it, so a batch can be cut into length-sorted parts, each trimmed to its longest history
  (``expert_parts``), with the same result per user as untrimmed (float tolerance; tested). Most training
  samples are short (Instruments: mean length 6.2 of 50), so the experts cost a fraction of the window.

``left_to_right`` / ``right_to_left`` move a tensor between the two layouts, ``length_parts`` cuts a batch into
length-sorted parts, ``encode_history`` runs an expert on one part. ``MoELayer`` (``mixture.py``) runs the whole
layer part by part: the router's components are computed on each part's real positions directly
(``FrequencyRouter.history_components``), never on the whole window.
"""
from __future__ import annotations

import torch

def left_to_right(x: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(b, n, d) left padded -> (b, width, d) right padded: ``out[u, :len_u] == x[u, n - len_u:]``, zeros after."""
    n, d = x.size(1), x.size(2)
    pos = torch.arange(width, device=x.device).unsqueeze(0)
    lengths = lengths.unsqueeze(1)
    src = (n - lengths + pos).clamp(0, n - 1)
    out = x.gather(1, src.unsqueeze(-1).expand(-1, -1, d))
    return out * (pos < lengths).unsqueeze(-1).to(x.dtype)


def right_to_left(y: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """(b, width, d) right padded -> (b, n, d) left padded, zeros before each history (inverse of the above)."""
    width, d = y.size(1), y.size(2)
    pos = torch.arange(n, device=y.device).unsqueeze(0)
    src = pos - (n - lengths.unsqueeze(1))
    real = src >= 0
    out = y.gather(1, src.clamp(0, width - 1).unsqueeze(-1).expand(-1, -1, d))
    return out * real.unsqueeze(-1).to(y.dtype)


def length_parts(lengths: torch.Tensor, n_parts: int):
    """Indices of ``n_parts`` (or fewer) groups of consecutive rows in length order, each with its longest
    length: ``[(idx, width), ...]``, covering every row once."""
    order = torch.argsort(lengths, stable=True)
    size = -(-lengths.numel() // max(1, n_parts))
    parts = []
    for start in range(0, lengths.numel(), size):
        idx = order[start:start + size]
        parts.append((idx, max(1, int(lengths[idx[-1]]))))
    return parts


def encode_history(expert, x: torch.Tensor, mask: torch.Tensor, last_only: bool, n: int) -> torch.Tensor:
    """``expert`` on histories laid out from their first real item: ``x`` (b, W, d), ``mask`` (b, W) True on real
    items. Returns the output at each last real item, (b, d), if ``last_only``, else every position back in the
    left-padded window of ``n`` positions, (b, n, d), zero on the padding."""
    lengths = mask.sum(1)
    if last_only:
        return expert.forward_history(x, mask, (lengths - 1).clamp(min=0))
    return right_to_left(expert(x, mask), lengths, n)
