"""The common part of the no-training reference models: popularity, one-pass fitting, scoring every item.

A rule is a ``SequentialRecommender`` with no parameters. Its statistics are buffers allocated in the constructor
from the item count alone (so a checkpoint loads into a model built without the data; buffers whose size only the
fitting knows, ``sized_by_fit``, take it from the checkpoint), filled by ``fit_pass(train_dataset)``, which the
plugin's trainer calls once instead of training (``is_one_pass``).

Popularity: how often each item is the target of a training sample (the training split's interactions after each
sequence's first item), as RecBole's ``Pop`` counts it. Every rule adds ``tie_scale * popularity / (max + 1)`` to its
own score: popularity orders the items the rule ties and backs the rule off where it has nothing to say, and never
outranks a difference in the rule's own score. For integer-valued or rank-valued scores (counts, positions)
``tie_scale`` is 1, the tie-break lies in [0, 1) and the order is exactly (rule score, popularity). A rule with
real-valued scores (cosine sums) sets ``tie_scale`` far below any difference its scores make (1e-9, and returns
its scores in float64): added at scale 1, popularity would reorder the rule's own ranking (on OR it cost the co-occurrence rule a
fifth of its validation NDCG@10). Items left tied after that (never a training target) keep RecBole's order of
``torch.topk``. The padding item 0 is never recommended (RecBole's full-sort evaluation sets its score to -inf).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType, ModelType

from recbole_famous.errors import UsageError


def is_one_pass(model) -> bool:
    """True for a model that is fitted in one pass and never optimised: the plugin's rules (``one_pass``) and
    RecBole's traditional models (``ModelType.TRADITIONAL``: Pop, ItemKNN), which RecBole's own
    ``TraditionalTrainer`` runs for one epoch whatever ``epochs`` says."""
    return bool(getattr(model, "one_pass", False)) or getattr(model, "type", None) == ModelType.TRADITIONAL


@dataclass
class Samples:
    """RecBole's training samples: each a user, a prefix (``item_id_list``, right-padded) of length ``lens``, and
    the target that follows it."""

    users: torch.Tensor
    seqs: torch.Tensor
    lens: torch.Tensor
    target: torch.Tensor


class ReferenceRule(SequentialRecommender):
    """Base of the rules: ``popularity`` buffer, ``fit_pass``, and full ranking from ``rule_scores``."""

    input_type = InputType.POINTWISE
    one_pass = True
    tie_scale = 1.0  # 1 for integer-valued rule scores; far below their resolution for real-valued ones

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.register_buffer("popularity", torch.zeros(self.n_items))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ---- fitting ---------------------------------------------------------------------------------
    def fit_pass(self, train_dataset) -> None:
        """Fit on RecBole's training split (its augmented samples: a prefix ``item_id_list`` and a target)."""
        inter = train_dataset.inter_feat
        samples = Samples(*(inter[f].cpu() for f in (self.USER_ID, self.ITEM_SEQ, self.ITEM_SEQ_LEN, self.POS_ITEM_ID)))
        self.popularity.copy_(torch.bincount(samples.target, minlength=self.n_items)[: self.n_items].float())
        with torch.no_grad():
            self.fit(samples)
        self.fitted.fill_(True)

    def fit(self, samples: Samples) -> None:
        """The rule's own statistics from the training samples (on the CPU); popularity is set already."""

    def tie_break(self) -> torch.Tensor:
        """``popularity / (max + 1)``: in [0, 1); times ``tie_scale``, added to every rule's score."""
        return self.popularity / (self.popularity.max() + 1)

    # ---- scoring ---------------------------------------------------------------------------------
    def rule_scores(self, item_seq, item_seq_len):
        """(batch, n_items) scores of the rule, before the popularity tie-break."""
        raise NotImplementedError

    def full_sort_predict(self, interaction):
        if not bool(self.fitted):
            raise UsageError(f"{type(self).__name__} has not been fitted: train it (one pass) or load a checkpoint")
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        scores = self.rule_scores(item_seq, item_seq_len)
        return scores + self.tie_scale * self.tie_break().to(scores.dtype).unsqueeze(0)  # in the rule's precision

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)

    def calculate_loss(self, interaction):
        raise UsageError(f"{type(self).__name__} trains nothing: it is fitted in one pass by the plugin's trainer")

    def last_items(self, item_seq, item_seq_len):
        """The most recent item of each history (RecBole pads on the right)."""
        return item_seq.gather(1, (item_seq_len - 1).clamp(min=0).unsqueeze(1)).squeeze(1)

