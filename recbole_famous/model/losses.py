"""FamouSRec's auxiliary losses (paper Section 3.3 and 3.4): L_spe (Eqs. 11-13), L_al (Eq. 14), L_bal (Eq. 16).

Shapes: B users, K experts, d hidden size, |I| items. The inputs are last-position representations.

**L_spe**, expert-frequency contrastive loss. ``p_{j,k} = softmax_i(M_k(x_j) · v_i)`` (Eq. 13) is the
item distribution predicted by expert k on component j. The OCR garbles Eq. 11; we read it as
(``FAMOUSREC_SPEC.md`` §5)::

    L_spe = mean_{k≠k'} KL(p_kk || p_k'k') / (mean_k mean_{j≠k} KL(p_kk || p_jk) + ε)

matched pairs agree with one another (numerator down), each expert's prediction on its own
component differs from its predictions on the others' components (denominator up). Each KL is
summed over items and averaged over users (numerator and denominator separately, then the ratio).
Both means run over K(K-1) terms; with K = 1 the loss is 0. ``spe_mode: sampled`` (config) is a
documented cheaper estimate: one mismatched component per user and expert instead of all K-1, so
2K expert encodings instead of K² (unbiased for the denominator's mean; the numerator is exact).

Cost and memory: K² · B · |I| log-probabilities. The users are processed ``chunk_size`` at a time
and, under autograd, each chunk is checkpointed (``torch.utils.checkpoint``): its log-probabilities
are dropped after its forward and recomputed in its backward, so at most one chunk's
K² · chunk_size · |I| values (and a few temporaries of that size) are alive at once, in the forward
and in the backward. The result is the exact loss (tested against a direct computation).

**L_al**, expert alignment (Eq. 14): InfoNCE per expert, anchor ``M_j(x_j)_u``, positive the
mixture output ``f_u``, negatives ``f_{u'}`` of the other users in the batch, temperature τ,
averaged over B·K. ``stop_grad`` makes f a fixed target ("align each expert with the more powerful
activated ones"): then L_al moves only the experts, not the mixture output.

**L_bal**, load balance (Eq. 16): ``Σ_j (mean_u softmax(g_u)_j - 1/K)²``, zero when the batch-average
gate distribution is uniform.
"""
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def load_balance_loss(gate_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 16 from gate logits (B, K)."""
    k = gate_logits.size(-1)
    mean_gate = torch.softmax(gate_logits, dim=-1).mean(0)
    return ((mean_gate - 1.0 / k) ** 2).sum()


def alignment_loss(own: torch.Tensor, f: torch.Tensor, temperature: float, stop_grad: bool = False) -> torch.Tensor:
    """Eq. 14: ``own`` (B, K, d) = M_j(x_j) per user and expert, ``f`` (B, d) the mixture output."""
    b, k, _ = own.shape
    target = f.detach() if stop_grad else f
    logits = torch.einsum("ukd,vd->ukv", own, target) / temperature  # (B, K, B): anchor (u, j) vs f_v
    labels = torch.arange(b, device=own.device).repeat_interleave(k)
    return F.cross_entropy(logits.reshape(b * k, b), labels)


def _spe_chunk_sums(own: torch.Tensor, others: torch.Tensor, items: torch.Tensor):
    """For a chunk of users: Σ_{k,k'} KL(p_kk || p_k'k') and Σ_{m,k} KL(p_kk || p_{j_m,k}) (self-pairs add 0).

    ``own`` (c, K, d) = M_k(x_k); ``others`` (c, M, K, d) = M_k(x_{j_m}): all j (M = K) or sampled (M = 1).
    """
    log_own = torch.log_softmax(own @ items.t(), dim=-1)  # (c, K, |I|): log p_{k,k}
    log_oth = torch.log_softmax(others @ items.t(), dim=-1)  # (c, M, K, |I|): log p_{j,k}
    p = log_own.exp()
    numer = (p.unsqueeze(2) * (log_own.unsqueeze(2) - log_own.unsqueeze(1))).sum()  # [c, k, k', i]
    denom = (p.unsqueeze(1) * (log_own.unsqueeze(1) - log_oth)).sum()  # [c, m, k, i], p_kk broadcast over m
    return numer, denom


def specialization_loss(own: torch.Tensor, others: torch.Tensor, items: torch.Tensor, chunk_size: int = 256,
                        eps: float = 1e-6, sampled: bool = False) -> torch.Tensor:
    """Eqs. 11-13. ``own`` (B, K, d) = M_k(x_k) at the last position; ``items`` (|I|, d).

    Exact (``sampled=False``): ``others`` (B, K_j, K_k, d) = M_k(x_j) for every pair (its diagonal
    is ``own``). Cheaper estimate (``sampled=True``): ``others`` (B, 1, K, d) = M_k(x_j) for one
    j ≠ k drawn uniformly per user and expert; the denominator's inner mean over j ≠ k is then
    estimated by that one term (unbiased), and only 2K encodings are needed instead of K².
    """
    b, k = own.shape[:2]
    if k < 2:
        return own.new_zeros(())
    chunk_size = max(1, int(chunk_size))
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (own, others, items))
    numer = denom = own.new_zeros(())
    for start in range(0, b, chunk_size):
        part = (own[start:start + chunk_size], others[start:start + chunk_size], items)
        if use_ckpt:
            n_c, d_c = checkpoint(_spe_chunk_sums, *part, use_reentrant=False)
        else:
            n_c, d_c = _spe_chunk_sums(*part)
        numer, denom = numer + n_c, denom + d_c
    numer = numer / (b * k * (k - 1))
    denom = denom / (b * k * (1 if sampled else k - 1))
    return numer / (denom + eps)
