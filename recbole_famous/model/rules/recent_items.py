"""RecentItems: the user's own history, most recent first, each item once, then popularity.

Score of item j: ``t + 1`` where t is j's last position in the history window (``item_id_list``, at most
``MAX_ITEM_LIST_LENGTH`` items, positions 0..L-1, the most recent last), 0 for items not in it; plus the popularity
tie-break of ``base.py``, which is below 1: so the history's items come first, most recent first, and every other
item follows by popularity.
"""

import torch

from recbole_famous.model.rules.base import ReferenceRule


class RecentItems(ReferenceRule):
    def rule_scores(self, item_seq, item_seq_len):
        batch, length = item_seq.shape
        positions = torch.arange(1, length + 1, device=item_seq.device, dtype=torch.float).expand(batch, length)
        real = positions <= item_seq_len.unsqueeze(1)
        recency = torch.where(real, positions, torch.zeros_like(positions))
        scores = torch.zeros(batch, self.n_items, device=item_seq.device)
        scores.scatter_reduce_(1, item_seq, recency, reduce="amax")
        scores[:, 0] = 0.0  # the padding item
        return scores
