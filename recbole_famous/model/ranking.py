"""The target's rank in a full ranking, as RecBole's full-sort evaluation sees it: the one helper behind every probe
that ranks a batch (per-user ranks of the bench's analyses, synthetic routing, headroom; the routing diagnostics).

RecBole sets the padding item's score (item 0) to ``-inf`` and, when it excludes seen items, those of each user's
history (``history_index``); the target's 0-based rank is then the number of items scored strictly above it (ties
rank the target first, as ``(scores > target).sum()``)."""

from __future__ import annotations

import torch


def target_rank(scores: torch.Tensor, target: torch.Tensor, history_index=None, masked_items=None) -> torch.Tensor:
    """0-based rank of ``target`` (B,) in each row of ``scores`` (B, |I|), with the padding item and the
    ``history_index`` of RecBole's dataloader (a pair of index tensors) masked as RecBole masks them (a masked
    target ranks last, as RecBole would miss it); ``masked_items`` (B, L) item ids of each row (padding 0
    included) are taken out of the competition only: the target keeps its own score even where it is among
    them (a probe of a history item). ``scores`` is not modified."""
    scores = scores.clone()
    scores[:, 0] = -torch.inf
    if history_index is not None:
        scores[history_index] = -torch.inf
    gt = scores.gather(1, target.view(-1, 1))
    if masked_items is not None:
        scores.scatter_(1, masked_items, -torch.inf)
    return (scores > gt).sum(1)


def ndcg_at(rank: torch.Tensor, k: int = 10) -> torch.Tensor:
    """NDCG@k of one relevant item at 0-based ``rank``: ``1 / log2(rank + 2)`` inside the top k, else 0."""
    return torch.where(rank < k, 1.0 / torch.log2(rank.float() + 2), torch.zeros_like(rank, dtype=torch.float))
