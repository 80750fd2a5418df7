"""Frequency-augmented router of FamouSRec (paper Section 3.2.2, Eqs. 2-6).

For a layer input ``H`` (B, n, d), left padded so that the most recent item is at position n-1:

* Eq. 2: ``Ĥ = FFT(H)`` along the sequence axis (``torch.fft.rfft``, ``norm='ortho'``), (B, n//2+1, d).
* Eq. 3: one learnable complex filter ``Q_j`` (n//2+1, d) per expert, ``Ĥ_j = Q_j ⊙ Ĥ``.
* Eq. 6: ``x_j = IFFT(Ĥ_j)`` (``irfft``, ``n=n``, ``norm='ortho'``): expert j's *component*, (B, n, d).
  With ``norm='ortho'`` a filter of all ones gives back ``x_j == H``.
* Eqs. 4-5: gate logits ``g = X W_g + b_g`` with ``X = [x_1; ...; x_K]`` concatenated along the
  feature axis, so ``W_g`` maps K·d features to K gate values. Routing is user level (paper,
  Appendix A.5): X is summarised over the sequence first, one gate vector per user, (B, K).

Decisions the paper leaves open, each a config key of ``props/model/FamouSRec.yaml``:

* ``gate_summary``: which summary of X feeds the gate, ``last`` (the last position, i.e. the most
  recent item, which is also the read-out position of Eq. 7) or ``mean`` (mean over real positions).
* ``gate_hidden_size``: 0 is Eq. 4 literally (one linear map); > 0 adds a hidden GELU layer (the
  paper calls the module "a typical MLP").
* ``filter_init``: ``fmlp`` (``randn * 0.02``, as FMLP-Rec and the spec) or ``ones`` (identity
  plus ``randn * 0.02`` noise, so every component starts as the input itself).
* ``frequency_learning: false`` is the paper's ablation "w/o frequency-domain learning": FFT and
  filters are replaced by a position-wise linear map per expert, ``x_j = H A_j + c_j``.
"""
import torch
from torch import nn


class FrequencyRouter(nn.Module):
    """K expert components of ``H`` and the user-level gate logits over them (Eqs. 2-6).

    ``forward(h, mask)`` with ``h`` (B, n, d) and ``mask`` (B, n) bool (True on real items) returns
    ``(components, gate_logits)``: (B, K, n, d) and (B, K). ``with_gate=False`` builds no gate.
    """

    def __init__(self, n_experts: int, max_len: int, hidden_size: int, *, with_gate: bool = True,
                 frequency_learning: bool = True, gate_summary: str = "last", gate_hidden_size: int = 0,
                 filter_init: str = "fmlp"):
        super().__init__()
        if gate_summary not in ("last", "mean"):
            raise ValueError(f"gate_summary must be 'last' or 'mean', got {gate_summary!r}")
        if filter_init not in ("fmlp", "ones"):
            raise ValueError(f"filter_init must be 'fmlp' or 'ones', got {filter_init!r}")
        self.n_experts, self.max_len, self.hidden_size = n_experts, max_len, hidden_size
        self.frequency_learning = frequency_learning
        self.gate_summary = gate_summary
        n_freq = max_len // 2 + 1
        if frequency_learning:
            # Complex Q_j stored as (real, imag) pairs: (K, n//2+1, d, 2).
            weight = torch.randn(n_experts, n_freq, hidden_size, 2) * 0.02
            if filter_init == "ones":
                weight[..., 0] += 1.0
            self.filters = nn.Parameter(weight)
        else:
            self.component_proj = nn.Linear(hidden_size, n_experts * hidden_size)
        in_features = n_experts * hidden_size
        if not with_gate:  # the "w/o router" ablation: components only, no gate parameters
            self.gate = None
        elif gate_hidden_size and gate_hidden_size > 0:
            self.gate = nn.Sequential(nn.Linear(in_features, gate_hidden_size), nn.GELU(),
                                      nn.Linear(gate_hidden_size, n_experts))
        else:
            self.gate = nn.Linear(in_features, n_experts)

    def components(self, h: torch.Tensor) -> torch.Tensor:
        """Eqs. 2, 3, 6: (B, n, d) -> (B, K, n, d), component j for expert j."""
        b, n, d = h.shape
        if not self.frequency_learning:
            return self.component_proj(h).view(b, n, self.n_experts, d).transpose(1, 2)
        if n != self.max_len:
            raise ValueError(f"sequence length {n} differs from the filters' MAX_ITEM_LIST_LENGTH {self.max_len}")
        spectrum = torch.fft.rfft(h.float(), dim=1, norm="ortho")  # (B, F, d)
        filters = torch.view_as_complex(self.filters.float())  # (K, F, d)
        filtered = spectrum.unsqueeze(1) * filters.unsqueeze(0)  # (B, K, F, d)
        return torch.fft.irfft(filtered, n=n, dim=2, norm="ortho").to(h.dtype)

    def gate_logits(self, comps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eqs. 4-5: (B, K, n, d) components -> (B, K) logits, from the user-level summary of X."""
        if self.gate_summary == "last":
            summary = comps[:, :, -1]  # (B, K, d); position n-1 is the most recent item
        else:
            w = mask.to(comps.dtype)[:, None, :, None]
            summary = (comps * w).sum(2) / w.sum(2).clamp(min=1.0)
        return self.gate(summary.flatten(1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor):
        comps = self.components(h)
        return comps, (self.gate_logits(comps, mask) if self.gate is not None else None)
