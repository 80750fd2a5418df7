"""Dot-product scoring against the item embedding table, shared by the baselines that score that way
(FMLP-Rec, Mamba4Rec).

A model that mixes in ``ItemDotScoring`` provides ``forward(item_seq, item_seq_len) -> (B, d)`` (the sequence
representation), ``item_embedding`` (an ``nn.Embedding`` over all items) and ``loss_fct`` (a cross entropy);
the mixin adds RecBole's three scoring methods:

* ``calculate_loss``: cross entropy of the logits ``f · e_i`` over all items against the target item;
* ``predict``: the score ``f · e_i`` of each row's candidate item;
* ``full_sort_predict``: the scores ``f · e_i`` of every item, (B, |I|).
"""
from __future__ import annotations

import torch


class ItemDotScoring:
    """RecBole's ``calculate_loss`` / ``predict`` / ``full_sort_predict`` for ``f · e_i`` scores (see the module)."""

    def calculate_loss(self, interaction) -> torch.Tensor:
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        logits = seq_output @ self.item_embedding.weight.t()
        return self.loss_fct(logits, interaction[self.POS_ITEM_ID])

    def predict(self, interaction) -> torch.Tensor:
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (seq_output * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return seq_output @ self.item_embedding.weight.t()
