"""CL4SRec: SASRec plus contrastive learning between two augmented views of each sequence.

Xie, Sun, Liu, Gao, Ding, Lin, Cui. "Contrastive Learning for Sequential Recommendation". ICDE 2022.
The authors released no code; this follows the implementation in the DuoRec authors' repository
(github.com/RuihongQiu/DuoRec, ``recbole/model/sequential_recommender/cl4srec.py`` and the augmentation in
``recbole/data/dataloader/sequential_dataloader.py``):

    L = CE(next item over all items) + lmd * NT-Xent(f(a1(s)), f(a2(s)))       (CL4SRec Eqs. 4-6)

with ``a1 != a2`` drawn per sequence from crop (``crop_eta``), mask (``mask_gamma``) and reorder
(``reorder_beta``), ``f`` SASRec's encoder, in-batch negatives (2N - 2), temperature ``tau`` and dot-product or
cosine similarity (``sim``). Masked items become an extra item id ``n_items`` with its own learned embedding
(as in the reference code); it is never a candidate for recommendation. Augmentation runs on the batch in
tensor ops (``augment.py``) instead of the reference code's per-sequence Python loop.
"""
from __future__ import annotations

import torch
from torch import nn
from recbole.model.sequential_recommender import SASRec

from recbole_famous.errors import UsageError
from recbole_famous.model.baselines import augment
from recbole_famous.model.baselines.contrastive import SIMILARITIES, nt_xent


def check_ce_and_sim(name: str, config) -> None:
    """One-line errors for the settings every contrastive baseline here shares."""
    if config["loss_type"] != "CE":
        raise UsageError(f"{name}: only loss_type CE is supported (the project protocol), got {config['loss_type']!r}")
    if config["sim"] not in SIMILARITIES:
        raise UsageError(f"{name}: sim must be one of {list(SIMILARITIES)}, got {config['sim']!r}")
    if not config["tau"] > 0:
        raise UsageError(f"{name}: tau must be > 0, got {config['tau']}")


class CL4SRec(SASRec):
    # The encoder is exact on trimmed batches and the augmentations only touch real positions, but NT-Xent takes its
    # negatives from the batch: length-grouped batches give each sequence negatives of its own length.
    length_batches = "allowed"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_ce_and_sim("CL4SRec", config)
        for key in ("crop_eta", "mask_gamma", "reorder_beta"):
            if not 0 < config[key] <= 1:
                raise UsageError(f"CL4SRec: {key} must be in (0, 1], got {config[key]}")
        self.lmd, self.tau, self.sim = config["lmd"], config["tau"], config["sim"]
        self.rates = (config["crop_eta"], config["mask_gamma"], config["reorder_beta"])
        self.mask_token = self.n_items
        # one more row than SASRec's table: the mask token
        self.item_embedding = nn.Embedding(self.n_items + 1, self.hidden_size, padding_idx=0)
        self._init_weights(self.item_embedding)

    def item_table(self) -> torch.Tensor:
        """Embeddings of the recommendable items (the mask token's row left out)."""
        return self.item_embedding.weight[: self.n_items]

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        seq_output = self.forward(item_seq, item_seq_len)
        loss = self.loss_fct(seq_output @ self.item_table().t(), interaction[self.POS_ITEM_ID])
        if self.lmd > 0:
            s1, l1, s2, l2 = augment.two_views(item_seq, item_seq_len, *self.rates, mask_token=self.mask_token)
            loss = loss + self.lmd * nt_xent(self.forward(s1, l1), self.forward(s2, l2), self.tau, self.sim)
        return loss

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return seq_output @ self.item_table().t()
