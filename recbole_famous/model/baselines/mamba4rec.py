"""Mamba4Rec: sequential recommendation with selective state space models.

Liu, Lyu, Jin, Huang, Zhao, Cheng, Zhang. "Mamba4Rec: Towards Efficient Sequential Recommendation
with Selective State Space Models". 2024. Follows the authors' RecBole model
(github.com/chengkai-liu/Mamba4Rec, ``mamba4rec.py``):

    H = LayerNorm(Dropout(item_emb(S)))                          (no position embedding)
    per layer:
      M = Mamba(H)
      H = LayerNorm(Dropout(M))         with one layer           (no residual, as the authors)
      H = LayerNorm(Dropout(M) + H)     with more layers
      H = LayerNorm(H + Dropout(W2 Dropout(gelu(W1 H + b1)) + b2))   position-wise feed-forward
    f = H at the last real position (RecBole's right padding; the block is causal, so the
        padding after it never reaches f)

The Mamba block is ``recbole_famous.model.mamba.MambaBlock``: mamba-ssm's kernels on CUDA, our
scan on the CPU. Initialisation is the authors' ``_init_weights`` applied to every submodule: all
Linear and Embedding weights N(0, 0.02), Linear biases zero and LayerNorms (1, 0), which also
re-draws the Mamba block's projections and zeroes its ``dt_proj`` bias (their code does the same).
Cross-entropy over all items.
"""
from __future__ import annotations

from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_famous.errors import UsageError
from recbole_famous.model.baselines.scoring import ItemDotScoring
from recbole_famous.model.mamba import MambaBlock


class PointWiseFeedForward(nn.Module):
    """``LayerNorm(x + Dropout(W2 Dropout(gelu(W1 x))))`` with inner size 4 * d (the authors')."""

    def __init__(self, d_model: int, inner_size: int, dropout: float):
        super().__init__()
        self.w_1 = nn.Linear(d_model, inner_size)
        self.w_2 = nn.Linear(inner_size, d_model)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(d_model, eps=1e-12)

    def forward(self, x):
        hidden = self.dropout(self.activation(self.w_1(x)))
        return self.LayerNorm(self.dropout(self.w_2(hidden)) + x)


class MambaLayer(nn.Module):
    def __init__(self, d_model, d_state, d_conv, expand, dropout, residual: bool):
        super().__init__()
        self.residual = residual
        self.mamba = MambaBlock(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(d_model, eps=1e-12)
        self.ffn = PointWiseFeedForward(d_model, 4 * d_model, dropout)

    def forward(self, x):
        hidden = self.dropout(self.mamba(x))
        hidden = self.LayerNorm(hidden + x if self.residual else hidden)
        return self.ffn(hidden)


class Mamba4Rec(ItemDotScoring, SequentialRecommender):
    length_batches = "on"  # causal block, readout at item_length - 1: exact on trimmed batches (data/length_batches.py)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] != "CE":
            raise UsageError(f"Mamba4Rec: only loss_type CE is supported (the project protocol), "
                             f"got {config['loss_type']!r}")
        for key in ("hidden_size", "num_layers", "d_state", "d_conv", "expand"):
            if not (isinstance(config[key], int) and config[key] > 0):
                raise UsageError(f"Mamba4Rec: {key} must be a positive integer, got {config[key]!r}")
        self.hidden_size = config["hidden_size"]
        self.num_layers = config["num_layers"]
        dropout = config["dropout_prob"]
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.mamba_layers = nn.ModuleList(
            MambaLayer(self.hidden_size, config["d_state"], config["d_conv"], config["expand"],
                       dropout, residual=self.num_layers > 1)
            for _ in range(self.num_layers))
        self.loss_fct = nn.CrossEntropyLoss()
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def forward(self, item_seq, item_seq_len):
        hidden = self.LayerNorm(self.dropout(self.item_embedding(item_seq)))
        for layer in self.mamba_layers:
            hidden = layer(hidden)
        return self.gather_indexes(hidden, item_seq_len - 1)
