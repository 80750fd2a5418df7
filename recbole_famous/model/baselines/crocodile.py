"""Crocodile, single-domain: a mixture of item-embedding experts disentangled by a cross-covariance loss.

Lin, Pan, et al. (Tencent). "Crocodile: Cross Experts Covariance for Disentangled Learning in Multi-Domain
Recommendation". arXiv, 2024 (reference [15] of the FamouSRec paper). We found no authors' code to follow. Crocodile is a multi-domain CTR model: several
embedding tables (multi-embedding), an expert per table, a Covariance Loss (CovLoss) between the tables'
embeddings so they learn different things, and a prior-informed element-wise gate (PeG) that mixes the experts.

The FamouSRec paper (Section 4.1.2) re-implements it for single-domain sequential recommendation "by
instantiating multiple item embeddings within a single domain and inputting them for sequential encoders".
Our reading of that sentence, which is all the paper says:

- ``n_experts`` = K item-embedding tables E_k; expert k is a SASRec encoder over E_k[s], giving h_k (B, d).
- Gate (PeG without a domain prior, which a single domain lacks): element-wise weights
  g = softmax_k(W [h_1; ...; h_K] + b), a softmax over the K experts per dimension.
- Scores: each expert scores the items in its own table, y = sum_k (g_k * h_k) E_k^T (equivalently the
  concatenated gated states against the concatenated tables).
- CovLoss: for the items of the batch (history items and targets, deduplicated), X_k = E_k[items] centred
  over the items; C_ij = X_i^T X_j / (M - 1) is the d x d cross-covariance of tables i and j;
  L_cov = mean_{i<j} ||C_ij||_F^2, zero exactly when every dimension of one table is uncorrelated with every
  dimension of another over the batch's items.
- L = CE(y, next item) + cov_weight * L_cov.
"""
from __future__ import annotations

import torch
from torch import nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.sequential_recommender import SASRec

from recbole_famous.errors import UsageError
from recbole_famous.model.baselines.sasrec_encoder import SASRecEncoder


def cross_covariance_loss(tables: list[torch.Tensor]) -> torch.Tensor:
    """Mean over table pairs i < j of the squared Frobenius norm of their cross-covariance over rows.

    ``tables``: K >= 2 tensors (M, d), row m of each being the same item in a different embedding table.
    """
    if len(tables) < 2 or tables[0].size(0) < 2:
        return tables[0].new_zeros(())
    m = tables[0].size(0)
    centred = [t - t.mean(dim=0, keepdim=True) for t in tables]
    terms = [((centred[i].t() @ centred[j]) / (m - 1)).pow(2).sum()
             for i in range(len(tables)) for j in range(i + 1, len(tables))]
    return torch.stack(terms).mean()


class Crocodile(SequentialRecommender):
    # CE is per sample and exact on trimmed batches; the covariance loss is over the batch's items, which length
    # grouping changes (a batch of short histories holds fewer items).
    length_batches = "allowed"

    _init_weights = SASRec._init_weights  # normal(0, initializer_range) for Linear / Embedding; LayerNorm 1, 0

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] != "CE":
            raise UsageError(f"Crocodile: only loss_type CE is supported, got {config['loss_type']!r}")
        if int(config["n_experts"]) < 1:
            raise UsageError(f"Crocodile: n_experts must be >= 1, got {config['n_experts']}")
        self.n_experts, self.cov_weight = int(config["n_experts"]), float(config["cov_weight"])
        self.hidden_size, self.initializer_range = config["hidden_size"], config["initializer_range"]
        d, k = self.hidden_size, self.n_experts
        self.item_embeddings = nn.ModuleList(nn.Embedding(self.n_items, d, padding_idx=0) for _ in range(k))
        self.experts = nn.ModuleList(SASRecEncoder(config, self.max_seq_length) for _ in range(k))
        self.gate = nn.Linear(k * d, k * d)
        self.loss_fct = nn.CrossEntropyLoss()
        self.apply(self._init_weights)

    def forward(self, item_seq, item_seq_len):
        """Gated expert states (B, K, d): row k is g_k * h_k, to be scored against table k."""
        mask = self.get_attention_mask(item_seq)
        h = torch.stack([expert(table(item_seq), mask, item_seq_len)
                         for table, expert in zip(self.item_embeddings, self.experts)], dim=1)  # (B, K, d)
        g = self.gate(h.flatten(1)).view_as(h).softmax(dim=1)
        return g * h

    def scores(self, gated: torch.Tensor) -> torch.Tensor:
        tables = torch.stack([t.weight for t in self.item_embeddings], dim=1)  # (I, K, d)
        return gated.flatten(1) @ tables.flatten(1).t()

    def covariance_loss(self, item_seq, targets) -> torch.Tensor:
        items = torch.unique(torch.cat([item_seq[item_seq > 0], targets]))
        return cross_covariance_loss([t(items) for t in self.item_embeddings])

    def calculate_loss(self, interaction):
        item_seq, target = interaction[self.ITEM_SEQ], interaction[self.POS_ITEM_ID]
        loss = self.loss_fct(self.scores(self.forward(item_seq, interaction[self.ITEM_SEQ_LEN])), target)
        if self.cov_weight > 0 and self.n_experts > 1:
            loss = loss + self.cov_weight * self.covariance_loss(item_seq, target)
        return loss

    def predict(self, interaction):
        gated = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item = interaction[self.ITEM_ID]
        return sum((gated[:, k] * t(item)).sum(-1) for k, t in enumerate(self.item_embeddings))

    def full_sort_predict(self, interaction):
        return self.scores(self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))
