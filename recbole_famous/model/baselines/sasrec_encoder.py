"""SASRec's sequence encoder as a module of its own, for models that hold several of them (Crocodile, EMKD).

It is RecBole's ``SASRec.forward`` after the item lookup: learned positions, LayerNorm, dropout, RecBole's
``TransformerEncoder`` under a causal mask, and the state at the last real position. The item embeddings come
from the caller, so each expert / network can own its table. The settings are SASRec's keys.
"""
from __future__ import annotations

import torch
from torch import nn
from recbole.model.layers import TransformerEncoder

SASREC_KEYS = ("n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob", "attn_dropout_prob",
               "hidden_act", "layer_norm_eps")


class SASRecEncoder(nn.Module):
    def __init__(self, config, max_seq_length: int):
        super().__init__()
        c = {k: config[k] for k in SASREC_KEYS}
        self.position_embedding = nn.Embedding(max_seq_length, c["hidden_size"])
        self.layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])
        self.trm_encoder = TransformerEncoder(**c)

    def forward(self, item_emb: torch.Tensor, attention_mask: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """``item_emb`` (B, L, d), RecBole's extended causal ``attention_mask``, lengths (B,) -> (B, d)."""
        positions = torch.arange(item_emb.size(1), device=item_emb.device)
        x = self.dropout(self.layer_norm(item_emb + self.position_embedding(positions).unsqueeze(0)))
        h = self.trm_encoder(x, attention_mask, output_all_encoded_layers=True)[-1]
        last = (item_seq_len - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, h.size(-1))
        return h.gather(1, last).squeeze(1)
