"""ItemTransition: first-order sequential rules, the successors of the last item.

Fitted on the training split: for every training sample, the pair (last item of its prefix, its target), that is
every consecutive pair of items in the training part of each sequence; ``counts[a, b]`` is how often b follows a.
Score of item j for a history ending in a: ``counts[a, j]`` (an integer), plus the popularity tie-break of
``base.py`` (below 1). So the successors of a come first, most frequent first, equal counts ordered by popularity;
every other item follows by popularity, which is all the rule says for a last item never seen before a target
in training. Kept per item: the ``rule_neighbours`` (default 100) successors ranked highest by that same key, so the
ranking is exact for every cut-off up to ``rule_neighbours``; a successor beyond them ranks by popularity alone.
"""

import torch

from recbole_famous.model.rules.base import ReferenceRule
from recbole_famous.model.rules.sparse import top_k_rows


class ItemTransition(ReferenceRule):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.k = int(config["rule_neighbours"] or 100)
        # each item's k most frequent successors and their counts, zero-padded (item 0, count 0)
        self.register_buffer("neighbours", torch.zeros(self.n_items, self.k, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(self.n_items, self.k))

    def fit(self, samples):
        last = self.last_items(samples.seqs, samples.lens)
        keep = (samples.lens > 0) & (last > 0)
        items, counts = top_k_rows(last[keep], samples.target[keep], self.n_items, self.k, self.tie_break().cpu())
        self.neighbours.copy_(items)
        self.weights.copy_(counts)

    def rule_scores(self, item_seq, item_seq_len):
        last = self.last_items(item_seq, item_seq_len)
        scores = torch.zeros(item_seq.shape[0], self.n_items, device=item_seq.device)
        scores.scatter_add_(1, self.neighbours[last], self.weights[last])
        scores[:, 0] = 0.0  # the padding item (and the zero padding of the successor lists)
        return scores
