"""The heterogeneous experts ``M_j`` of FamouSRec (paper Section 3.2.3, Eq. 7), behind one interface.

Every expert maps its component ``x_j`` (B, n, d) and the real-item mask (B, n) to (B, n, d); the
sequences are left padded (most recent item at position n-1) and every kind reads only the prefix
of a position (causal), so position n-1 summarises the whole history. ``forward_last`` returns only
position n-1, (B, d): the same numbers as ``forward(x, mask)[:, -1]`` (tested), computed with less
work where the kind allows it (attention: one query row and one feed-forward row; mlp: one row).
The last MoE layer only ever needs that position (Eqs. 7, 10, 11-14), so it uses ``forward_last``.

``forward_history(x, mask, last)`` is the same for a right-padded input (``expert_input: history``,
``history.py``): x starts at the first real item, ``last`` indexes the last one, and the output is read there.
Every kind is causal, so that output depends on the real items only (the trailing padding is never read).

Kinds (config list ``experts``; repeats allowed):

* ``attention``: a SASRec layer: multi-head causal self-attention, then the point-wise
  feed-forward network, each with dropout, residual and LayerNorm.
* ``gru``: GRU4Rec-style: a one-layer GRU, a linear projection, dropout, residual and LayerNorm.
* ``mamba``: a Mamba4Rec-style layer: ``recbole_famous.model.mamba.MambaBlock`` (selective SSM,
  causal), dropout, residual and LayerNorm, then the point-wise feed-forward network.
* ``mlp``: the point-wise feed-forward network alone (no mixing across positions).

The residual connections inside each expert are our choice (the paper names the architectures
only); they give every kind the same "block" shape so that the mixture sums comparable outputs.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MASK_VALUE = -10000.0  # additive attention bias for masked keys (RecBole's value; finite, so no NaN rows)

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu, "silu": F.silu,
               "tanh": torch.tanh, "sigmoid": torch.sigmoid}


@dataclass
class ExpertParams:
    """Hyper-parameters shared by the expert kinds (the matching keys of FamouSRec.yaml)."""
    hidden_size: int = 64
    inner_size: int = 256
    n_heads: int = 2
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[u, index[u]]`` for x (B, L, d): (B, d)."""
    return x.gather(1, index.view(-1, 1, 1).expand(-1, 1, x.size(-1))).squeeze(1)


class PointwiseFFN(nn.Module):
    """``LayerNorm(x + Dropout(W2 act(W1 x)))`` on the last axis (any leading shape)."""

    def __init__(self, p: ExpertParams):
        super().__init__()
        if p.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {p.hidden_act!r}")
        self.fc1 = nn.Linear(p.hidden_size, p.inner_size)
        self.fc2 = nn.Linear(p.inner_size, p.hidden_size)
        self.act = ACTIVATIONS[p.hidden_act]
        self.dropout = nn.Dropout(p.hidden_dropout_prob)
        self.norm = nn.LayerNorm(p.hidden_size, eps=p.layer_norm_eps)

    def forward(self, x):
        return self.norm(x + self.dropout(self.fc2(self.act(self.fc1(x)))))


class Expert(nn.Module):
    """Interface: ``forward(x, mask) -> (B, n, d)``, ``forward_last(x, mask) -> (B, d)``."""
    kind = "?"

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_last(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward(x, mask)[:, -1]

    def forward_history(self, x: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Right-padded input (``expert_input: history``): x (B, L, d) from the first real item, ``mask`` (B, L),
        ``last`` (B,) the index of the last real item; returns (B, d), the output there."""
        return gather_rows(self.forward(x, mask), last)


class AttentionExpert(Expert):
    """SASRec layer: causal multi-head self-attention + point-wise FFN (residual + LayerNorm each)."""
    kind = "attention"

    def __init__(self, p: ExpertParams):
        super().__init__()
        if p.hidden_size % p.n_heads:
            raise ValueError(f"hidden_size {p.hidden_size} is not a multiple of n_heads {p.n_heads}")
        self.n_heads, self.d = p.n_heads, p.hidden_size
        self.qkv = nn.Linear(p.hidden_size, 3 * p.hidden_size)
        self.out = nn.Linear(p.hidden_size, p.hidden_size)
        self.attn_dropout = p.attn_dropout_prob
        self.dropout = nn.Dropout(p.hidden_dropout_prob)
        self.norm = nn.LayerNorm(p.hidden_size, eps=p.layer_norm_eps)
        self.ffn = PointwiseFFN(p)

    def _heads(self, t):  # (B, m, d) -> (B, h, m, d/h)
        b, m, _ = t.shape
        return t.view(b, m, self.n_heads, -1).transpose(1, 2)

    def _attend(self, x_q, q, k, v, allowed):
        bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill(~allowed, MASK_VALUE)
        ctx = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), attn_mask=bias,
                                             dropout_p=self.attn_dropout if self.training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(x_q.shape)
        return self.ffn(self.norm(x_q + self.dropout(self.out(ctx))))

    def forward(self, x, mask):
        n = x.size(1)
        q, k, v = self.qkv(x).split(self.d, dim=-1)
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        # a query attends to real keys at or before it; a padded query to itself only (no empty rows)
        allowed = causal[None, None] & (mask[:, None, None, :] | eye)  # (B, 1, n, n)
        return self._attend(x, q, k, v, allowed)

    def forward_last(self, x, mask):
        w, b = self.qkv.weight, self.qkv.bias
        x_last = x[:, -1:]  # the last query sees every position: only the padding is masked
        q = F.linear(x_last, w[:self.d], b[:self.d])
        k = F.linear(x, w[self.d:2 * self.d], b[self.d:2 * self.d])
        v = F.linear(x, w[2 * self.d:], b[2 * self.d:])
        return self._attend(x_last, q, k, v, mask[:, None, None, :]).squeeze(1)

    def forward_history(self, x, mask, last):
        w, b = self.qkv.weight, self.qkv.bias
        x_last = gather_rows(x, last).unsqueeze(1)  # right padded: the real keys are exactly those up to ``last``
        q = F.linear(x_last, w[:self.d], b[:self.d])
        k = F.linear(x, w[self.d:2 * self.d], b[self.d:2 * self.d])
        v = F.linear(x, w[2 * self.d:], b[2 * self.d:])
        return self._attend(x_last, q, k, v, mask[:, None, None, :]).squeeze(1)


class GRUExpert(Expert):
    """GRU4Rec-style: ``LayerNorm(x + Dropout(W GRU(x)))``."""
    kind = "gru"

    def __init__(self, p: ExpertParams):
        super().__init__()
        self.gru = nn.GRU(p.hidden_size, p.hidden_size, batch_first=True)
        self.proj = nn.Linear(p.hidden_size, p.hidden_size)
        self.dropout = nn.Dropout(p.hidden_dropout_prob)
        self.norm = nn.LayerNorm(p.hidden_size, eps=p.layer_norm_eps)

    def forward(self, x, mask):
        y, _ = self.gru(x)
        return self.norm(x + self.dropout(self.proj(y)))

    def forward_last(self, x, mask):
        _, h_last = self.gru(x)  # (1, B, d): the state after position n-1
        return self.norm(x[:, -1] + self.dropout(self.proj(h_last[0])))

    def forward_history(self, x, mask, last):
        y, _ = self.gru(x)  # causal: the state at ``last`` has read the real items only
        return self.norm(gather_rows(x, last) + self.dropout(self.proj(gather_rows(y, last))))


class MambaExpert(Expert):
    """Mamba4Rec-style: ``FFN(LayerNorm(x + Dropout(Mamba(x))))`` with the project's MambaBlock."""
    kind = "mamba"

    def __init__(self, p: ExpertParams):
        super().__init__()
        try:
            from recbole_famous.model.mamba import MambaBlock
        except ImportError as e:  # the block lives in its own package; say so plainly
            raise ImportError(f"expert 'mamba' needs recbole_famous.model.mamba.MambaBlock: {e}") from e
        self.mixer = MambaBlock(p.hidden_size, p.d_state, p.d_conv, p.expand)
        self.dropout = nn.Dropout(p.hidden_dropout_prob)
        self.norm = nn.LayerNorm(p.hidden_size, eps=p.layer_norm_eps)
        self.ffn = PointwiseFFN(p)

    def forward(self, x, mask):
        return self.ffn(self.norm(x + self.dropout(self.mixer(x))))

    def forward_last(self, x, mask):
        y = self.mixer(x)[:, -1]
        return self.ffn(self.norm(x[:, -1] + self.dropout(y)))

    def forward_history(self, x, mask, last):
        y = gather_rows(self.mixer(x), last)  # causal (its convolution pads on the left)
        return self.ffn(self.norm(gather_rows(x, last) + self.dropout(y)))


class MLPExpert(Expert):
    """The point-wise feed-forward network: each position on its own."""
    kind = "mlp"

    def __init__(self, p: ExpertParams):
        super().__init__()
        self.ffn = PointwiseFFN(p)

    def forward(self, x, mask):
        return self.ffn(x)

    def forward_last(self, x, mask):
        return self.ffn(x[:, -1])

    def forward_history(self, x, mask, last):
        return self.ffn(gather_rows(x, last))


EXPERT_KINDS = {cls.kind: cls for cls in (AttentionExpert, GRUExpert, MambaExpert, MLPExpert)}


def build_expert(kind: str, params: ExpertParams) -> Expert:
    """The expert of kind ``kind`` (a key of ``EXPERT_KINDS``)."""
    if kind not in EXPERT_KINDS:
        raise ValueError(f"unknown expert kind {kind!r}; known kinds: {', '.join(EXPERT_KINDS)}")
    return EXPERT_KINDS[kind](params)
