"""FMLP-Rec: an all-MLP sequential recommender with learnable filters in the frequency domain.

Zhou, Yu, Zhao, Wen. "Filter-enhanced MLP is All You Need for Sequential Recommendation". WWW 2022.
Follows the authors' code (github.com/Woeee/FMLP-Rec, ``models.py`` / ``modules.py``):

    E      = Dropout(LayerNorm(item_emb + pos_emb))                       (Eq. 5)
    per layer:
      X~   = irfft(W (.) rfft(H, dim=seq, norm=ortho), n, norm=ortho)      (Eqs. 6-8, learnable filter)
      H    = LayerNorm(H + Dropout(X~))                                   (Eq. 9)
      H    = LayerNorm(H + Dropout(W2 gelu(W1 H + b1) + b2))              (Eqs. 10-11)
    f      = H at the last position

``W`` is a learnable complex weight of shape (n//2 + 1, hidden), initialised as 0.02 * randn for its
real and imaginary parts; all Linear and Embedding weights are N(0, initializer_range), as the
authors' ``init_weights`` (which also re-draws the padding item's row: a fixed, non-zero vector).

Padding: the authors left-pad (``[0, .., 0, i1, .., it]``), so the most recent item always sits at
the last position and the padding (item 0 plus its position embedding: not a zero vector) is part
of the signal the filters see. RecBole right-pads; ``forward`` moves each history to the left-padded
layout first (``model/padding.py``), so the network sees exactly what the authors' model saw, and
reads out at the last position. Trained with cross-entropy over all items (the project's protocol;
the authors used one sampled negative).
"""
from __future__ import annotations

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import FeedForward
from torch import nn

from recbole_famous.errors import UsageError
from recbole_famous.model.baselines.scoring import ItemDotScoring
from recbole_famous.model.padding import right_to_left_pad


def frequency_filter(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``irfft(weight * rfft(x))`` along dim 1 with orthonormal scaling; x (B, n, d), weight (n//2+1, d)."""
    spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
    return torch.fft.irfft(spectrum * weight, n=x.shape[1], dim=1, norm="ortho")


class FilterLayer(nn.Module):
    """Learnable filter block (Eqs. 6-9): frequency filter, dropout, residual LayerNorm."""

    def __init__(self, max_len: int, hidden_size: int, dropout: float, layer_norm_eps: float):
        super().__init__()
        self.complex_weight = nn.Parameter(torch.randn(max_len // 2 + 1, hidden_size, 2) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        filtered = frequency_filter(hidden, torch.view_as_complex(self.complex_weight))
        return self.LayerNorm(self.dropout(filtered) + hidden)


class FMLPRec(ItemDotScoring, SequentialRecommender):
    # Its filters are defined on the full length: ``forward`` pads a trimmed batch back to it, so results are exact,
    # but grouping gains nothing (data/length_batches.py).
    length_batches = "allowed"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] != "CE":
            raise UsageError(f"FMLPRec: only loss_type CE is supported (the project protocol), "
                             f"got {config['loss_type']!r}")
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        dropout, eps = config["hidden_dropout_prob"], config["layer_norm_eps"]
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList()
        for _ in range(config["n_layers"]):
            self.layers.append(FilterLayer(self.max_seq_length, self.hidden_size, dropout, eps))
            self.layers.append(FeedForward(self.hidden_size, config["inner_size"], dropout,
                                           config["hidden_act"], eps))
        self.loss_fct = nn.CrossEntropyLoss()
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def encode(self, left_padded: torch.Tensor) -> torch.Tensor:
        """The authors' network on left-padded ids (B, n) -> (B, n, hidden)."""
        positions = torch.arange(left_padded.shape[1], device=left_padded.device)
        hidden = self.item_embedding(left_padded) + self.position_embedding(positions)
        hidden = self.dropout(self.LayerNorm(hidden))
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden

    def forward(self, item_seq, item_seq_len):
        if item_seq.size(1) < self.max_seq_length:  # a trimmed batch: the filters are defined on the full length
            item_seq = torch.nn.functional.pad(item_seq, (0, self.max_seq_length - item_seq.size(1)))
        return self.encode(right_to_left_pad(item_seq, item_seq_len))[:, -1]
