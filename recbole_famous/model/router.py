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
* ``filter_init``: ``fmlp`` (``randn * 0.02``, as FMLP-Rec (`docs/model.md` Eq. (M11), decision D3)), ``ones`` (identity
  plus ``randn * 0.02`` noise, so every component starts as the input itself) or ``bands`` (expert j
  starts as a pass filter of the j-th of K equal bands, low to high, plus the same noise: the
  components start frequency-specialised, and their band energies differ across users at once).
* ``frequency_learning: false`` is the paper's ablation "w/o frequency-domain learning": FFT and
  filters are replaced by a position-wise linear map per expert, ``x_j = H A_j + c_j``.
* ``gate_input``: what Eq. 4's ``X`` is. ``components`` feeds the summarised components themselves
  (the paper as written). Filters and ``W_g`` are then both linear, so the gate is a linear, odd
  function of the last items' embeddings: it cannot measure how much of a user's signal lies in a
  band (a quadratic, sign-invariant quantity). ``band_energy`` feeds, per expert j and hidden
  dimension, the log of component j's mean energy over the real positions relative to the input's,
  ``log(mean_t x_j[t]² + ε) - log(mean_t H[t]² + ε)``: for a band-pass ``Q_j`` this is (by Parseval,
  up to the spill into the padding) the share of the user's signal in expert j's band, the
  "informativeness" of component j. Both go through the same linear (or MLP) gate.
"""
import torch
from torch import nn

FILTER_INITS = ("fmlp", "ones", "bands")


def band_init(n_experts: int, n_freq: int) -> torch.Tensor:
    """(K, F) real gains: expert j passes the j-th of K equal, contiguous bands of the F bins (low to high)."""
    edges = torch.linspace(0, n_freq, n_experts + 1).round().long()
    gains = torch.zeros(n_experts, n_freq)
    for j in range(n_experts):
        gains[j, edges[j]:max(edges[j + 1], edges[j] + 1)] = 1.0
    return gains
ENERGY_EPS = 1e-6  # floor of the band energies before the log (their scale is ~1 after the LayerNorm)


# ---- Eq. 4's X: the gate inputs, registered by name (``gate_input``) ---------------------------------------------
# Each maps (router, comps (B, K, n, d), mask (B, n), h (B, n, d) or None, last (B,) or None) to (B, K·d).
def summarised_components(router, comps, mask, h=None, last=None) -> torch.Tensor:
    """``components``: the components summarised per user (``gate_summary``): at the most recent item (``last``,
    the index of each user's most recent item for components laid out from the first real item; without it, the
    window's last position), or their mean over the real positions. Eq. 4 as written."""
    if router.gate_summary == "last" and last is not None:
        summary = comps[torch.arange(comps.size(0), device=comps.device), :, last]  # (B, K, d)
    elif router.gate_summary == "last":
        summary = comps[:, :, -1]  # (B, K, d); position n-1 is the most recent item
    else:
        w = mask.to(comps.dtype)[:, None, :, None]
        summary = (comps * w).sum(2) / w.sum(2).clamp(min=1.0)
    return summary.flatten(1)


def band_energy(router, comps, mask, h=None, last=None) -> torch.Tensor:
    """``band_energy``: per expert j and hidden dimension, the log mean energy of component j over the real
    positions relative to the input's (``h``), normalised per user (the router's ``energy_norm``)."""
    w = mask.to(comps.dtype)[:, None, :, None]  # (B, 1, n, 1)
    count = w.sum(2).clamp(min=1.0)
    energy = (comps.square() * w).sum(2) / count  # (B, K, d)
    ref = (h.square() * w[:, 0]).sum(1, keepdim=True) / count if h is not None else 1.0
    return router.energy_norm((torch.log(energy + ENERGY_EPS) - torch.log(ref + ENERGY_EPS)).flatten(1))


GATE_INPUTS = {"components": summarised_components, "band_energy": band_energy}


class FrequencyRouter(nn.Module):
    """K expert components of ``H`` and the user-level gate logits over them (Eqs. 2-6).

    ``forward(h, mask)`` with ``h`` (B, n, d) and ``mask`` (B, n) bool (True on real items) returns
    ``(components, gate_logits)``: (B, K, n, d) and (B, K). ``use_router: False`` builds no gate.
    """

    def __init__(self, cfg, max_len: int):
        """``cfg``: FamouSRec's settings whole (``famousrec_config.FamouSRecConfig``, validated there): K = the
        number of ``experts``; ``hidden_size``; ``use_router`` (False builds no gate); ``frequency_learning``,
        ``gate_summary``, ``gate_hidden_size``, ``filter_init``, ``gate_input``."""
        super().__init__()
        n_experts, hidden_size, with_gate = len(cfg.experts), int(cfg.hidden_size), bool(cfg.use_router)
        frequency_learning, filter_init, gate_input = bool(cfg.frequency_learning), cfg.filter_init, cfg.gate_input
        gate_hidden_size = int(cfg.gate_hidden_size)
        self.gate_input = gate_input
        self.n_experts, self.max_len, self.hidden_size = n_experts, max_len, hidden_size
        self.frequency_learning = frequency_learning
        self.gate_summary = cfg.gate_summary
        n_freq = max_len // 2 + 1
        if frequency_learning:
            # Complex Q_j stored as (real, imag) pairs: (K, n//2+1, d, 2).
            weight = torch.randn(n_experts, n_freq, hidden_size, 2) * 0.02
            if filter_init == "ones":
                weight[..., 0] += 1.0
            elif filter_init == "bands":
                weight[..., 0] += band_init(n_experts, n_freq).unsqueeze(-1)
            self.filters = nn.Parameter(weight)
        else:
            self.component_proj = nn.Linear(hidden_size, n_experts * hidden_size)
        in_features = n_experts * hidden_size
        # band energies share a per-expert offset (the filters' gain) and have no natural scale: normalise
        # each user's K·d features (LayerNorm), so that the gate sees how they differ, from the first step
        self.energy_norm = nn.LayerNorm(in_features) if gate_input == "band_energy" and with_gate else None
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

    def kernels(self) -> torch.Tensor:
        """(K, n, d) real circular kernels ``q_j = IFFT(Q_j)`` (``norm='backward'``): Eqs. 2, 3 and 6 in the time
        domain. With the ortho pair, ``irfft(rfft(H) ⊙ Q_j) = H ⊛ q_j``, the circular convolution along the
        sequence, per hidden dimension (both drop the imaginary part of the DC and Nyquist bins alike)."""
        return torch.fft.irfft(torch.view_as_complex(self.filters.float()), n=self.max_len, dim=1, norm="backward")

    def history_components(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eqs. 2, 3, 6 at the real positions only: ``x`` (b, W, d) histories laid out from their first real item
        (right padded, zero after the last), ``mask`` (b, W) -> (b, K, W, d), zero after each history.

        The window is left padded with zeros, so a real position of component j is the circular convolution over
        the real positions: ``x_j[t] = Σ_s x[s] q_j[(t - s) mod n]`` with t, s counted from the first real item,
        a (W x W) Toeplitz product per hidden dimension. The same values as ``components`` at the real positions
        (tested), without forming the (b, K, n, d) window: most histories are far shorter than n."""
        b, width, d = x.shape
        if not self.frequency_learning:
            comps = self.component_proj(x).view(b, width, self.n_experts, d).transpose(1, 2)
        else:
            if width > self.max_len:
                raise ValueError(f"history width {width} exceeds the filters' MAX_ITEM_LIST_LENGTH {self.max_len}")
            t = torch.arange(width, device=x.device)
            toeplitz = self.kernels()[:, (t.unsqueeze(1) - t.unsqueeze(0)) % self.max_len]  # (K, W_t, W_s, d)
            comps = torch.einsum("usc,jtsc->ujtc", x.float(), toeplitz).to(x.dtype)
        return comps * mask[:, None, :, None].to(comps.dtype)

    def gate_features(self, comps: torch.Tensor, mask: torch.Tensor, h: torch.Tensor = None,
                      last: torch.Tensor = None) -> torch.Tensor:
        """Eq. 4's ``X`` for one user, (B, K·d): the summarised components, or their band energies. ``last`` (B,):
        the index of each user's most recent item, for components laid out from the first real item
        (``history_components``); without it that item is at the window's last position."""
        return GATE_INPUTS[self.gate_input](self, comps, mask, h, last)

    def gate_logits(self, comps: torch.Tensor, mask: torch.Tensor, h: torch.Tensor = None,
                    last: torch.Tensor = None) -> torch.Tensor:
        """Eqs. 4-5: (B, K, n, d) components -> (B, K) logits, from the user-level summary of X.
        ``h`` (B, n, d), the router's input, normalises the band energies (``gate_input: band_energy``);
        ``last`` as in ``gate_features``."""
        return self.gate(self.gate_features(comps, mask, h, last))

    def forward(self, h: torch.Tensor, mask: torch.Tensor):
        comps = self.components(h)
        return comps, (self.gate_logits(comps, mask, h) if self.gate is not None else None)
