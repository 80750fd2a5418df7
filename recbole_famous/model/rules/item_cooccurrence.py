"""ItemCoOccurrence: an order-free item neighbourhood (item-based kNN on the training sequences).

Fitted on the training split: each user's training items as a set (the targets of the training samples and the
first item of each prefix); ``c[i, j]`` is the number of users whose set holds both, and the weight is the cosine
``c[i, j] / sqrt(c[i, i] c[j, j])`` (i != j), as RecBole's ``ItemKNN`` computes it without shrinkage. Each item keeps
its ``rule_neighbours`` (default 100) heaviest neighbours. Score of item j for a history: the sum of the weights
of j as a neighbour of each distinct item in the history window (``item_id_list``, the last ``MAX_ITEM_LIST_LENGTH``
items), plus the popularity tie-break of ``base.py``. Order inside the history plays no part: on OR, whose invoices
carry one timestamp, this is the strongest reference measured.

Unlike RecBole's ``ItemKNN`` run through its general pipeline, the history at test time includes the validation
item and the evaluation does not exclude seen items: the plugin's protocol.
"""

import torch

from recbole_famous.model.rules.base import NeighbourRule
from recbole_famous.model.rules.sparse import cosine_neighbours


class ItemCoOccurrence(NeighbourRule):
    def fit(self, samples):
        users = torch.cat([samples.users, samples.users])
        items = torch.cat([samples.target, samples.seqs[:, 0]])
        keep = items > 0
        neighbours, weights = cosine_neighbours(users[keep], items[keep], self.n_items, self.k)
        self.neighbours.copy_(neighbours)
        self.weights.copy_(weights)

    def sources(self, item_seq, item_seq_len):
        seen = torch.zeros(item_seq.shape[0], self.n_items, dtype=torch.bool, device=item_seq.device)
        seen.scatter_(1, item_seq, True)
        seen[:, 0] = False
        return seen.nonzero(as_tuple=True)  # each distinct history item once
