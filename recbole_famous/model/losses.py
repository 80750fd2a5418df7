"""FamouSRec's auxiliary losses (paper Section 3.3 and 3.4): L_spe (Eqs. 11-13), L_al (Eq. 14), L_bal (Eq. 16).

Shapes: B users, K experts, d hidden size, |I| items. The inputs are last-position representations.

**L_spe**, expert-frequency contrastive loss. ``p_{j,k} = softmax_i(M_k(x_j) · v_i)`` (Eq. 13) is the
item distribution predicted by expert k on component j. The OCR garbles Eq. 11; we read it as
(``docs/model.md`` §6, Eq. (M24))::

    L_spe = mean_{k≠k'} KL(p_kk || p_k'k') / (mean_k mean_{j≠k} KL(p_kk || p_jk) + ε)

matched pairs agree with one another (numerator down), each expert's prediction on its own
component differs from its predictions on the others' components (denominator up). Each KL is
summed over items and averaged over users (numerator and denominator separately, then the ratio).
Both means run over K(K-1) terms; with K = 1 the loss is 0. ``spe_mode: sampled`` (config) is a
documented cheaper estimate: one mismatched component per user and expert instead of all K-1, so
2K expert encodings instead of K² (unbiased for the denominator's mean; the numerator is exact).

Cost and memory: ``exact`` needs the K² · B · |I| log-probabilities of all pairs (for the
denominator); ``sampled`` needs 2K · B · |I|. The numerator is regrouped to K · |I| per user
(``_spe_chunk_sums``). The users are processed ``chunk_size`` at a time and, under autograd when
there is more than one chunk, each chunk keeps only its inputs (``_SpeSums`` with ``recompute``): its
log-probabilities are dropped after its forward and recomputed in its backward, so at most one
chunk's values (and a few temporaries of that size) are alive at once, in the forward and in the
backward. The result is the exact loss (tested against a direct pairwise computation).

Within that bound the work runs in *blocks* of at most ``block_values`` log-probabilities (default 2^20,
4 MB of float32; 2^22 with the fused kernel below), however large the chunk: glibc serves an allocation above its mmap threshold (at most
32 MB) with fresh pages, so a 40 MB tensor (256 users x 4 experts x 9,923 items) costs a page fault per
4 kB page on every allocation (a copy of it 45 ms instead of 6 ms, measured), and L_spe allocates several
per step. Blocks below the threshold are recycled by the allocator: same values, same memory (without
recomputation every block's values are kept, as the chunk's were), forward + backward 1.4-1.7x faster
(``benchmarks/bench_spe_loss.py``).

On CPU float32 / float64 a block's elementwise work (the log-partitions, the two sums, the logits'
gradients) runs in fused C++ passes (``spe_kernels.py``, ``spe_cpu.cpp``): the logits are read twice in
the forward and once in the backward instead of by about twenty operators; the matrix products stay
torch's. A block keeps its two logit tensors (or recomputes them) instead of its log-probabilities and
probabilities: less memory than the operators' path, which remains the fallback and the reference.

**L_al**, expert alignment (Eq. 14): InfoNCE per expert, anchor ``M_j(x_j)_u``, positive the
mixture output ``f_u``, negatives ``f_{u'}`` of the other users in the batch, temperature τ,
averaged over B·K. ``stop_grad`` makes f a fixed target ("align each expert with the more powerful
activated ones"): then L_al moves only the experts, not the mixture output.

**L_bal**, load balance (Eq. 16): ``Σ_j (mean_u softmax(g_u)_j - 1/K)²``, zero when the batch-average
gate distribution is uniform.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from recbole_famous.model import spe_kernels


def load_balance_loss(gate_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 16 from gate logits (B, K)."""
    k = gate_logits.size(-1)
    mean_gate = torch.softmax(gate_logits, dim=-1).mean(0)
    return ((mean_gate - 1.0 / k) ** 2).sum()


def switch_balance_loss(gate_logits: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's load balance from gate logits (B, K): ``K Σ_j share_j · mean_u p_uj - 1``,
    share_j the fraction of users whose top-1 is j (no gradient). Unlike Eq. 16 it sees the hard
    assignment, so it also resists a collapse of the top-1 choice; 0 when both are uniform."""
    k = gate_logits.size(-1)
    probs = torch.softmax(gate_logits, dim=-1)
    share = torch.bincount(probs.argmax(-1), minlength=k).to(probs.dtype) / probs.size(0)
    return k * (share * probs.mean(0)).sum() - 1.0


def others_target(own: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per anchor (u, j), the mixture of the *other* experts' outputs: ``Σ_{k≠j} w_k M_k / Σ_{k≠j} w_k``,
    (B, K, d) from ``own`` (B, K, d) and gate weights (B, K) (``align_target: others``)."""
    w = weights.unsqueeze(-1)
    total = (own * w).sum(1, keepdim=True)
    rest = (weights.sum(1, keepdim=True) - weights).clamp(min=1e-9).unsqueeze(-1)
    return (total - own * w) / rest


def alignment_loss(own: torch.Tensor, f: torch.Tensor, temperature: float, stop_grad: bool = False) -> torch.Tensor:
    """Eq. 14: ``own`` (B, K, d) = M_j(x_j) per user and expert, ``f`` (B, d) the mixture output, or (B, K, d)
    one target per expert (``others_target``)."""
    b, k, _ = own.shape
    target = f.detach() if stop_grad else f
    if target.dim() == 3:
        logits = torch.einsum("ukd,vkd->ukv", own, target) / temperature
    else:
        logits = torch.einsum("ukd,vd->ukv", own, target) / temperature  # (B, K, B): anchor (u, j) vs f_v
    labels = torch.arange(b, device=own.device).repeat_interleave(k)
    return F.cross_entropy(logits.reshape(b * k, b), labels)


def _spe_log_probs(own: torch.Tensor, others: torch.Tensor, items: torch.Tensor):
    """``log p_kk`` (c, K, |I|) and ``log p_{j_m,k}`` (c, M, K, |I|) (Eq. 13)."""
    return torch.log_softmax(own @ items.t(), dim=-1), torch.log_softmax(others @ items.t(), dim=-1)


def _spe_chunk_sums(own: torch.Tensor, others: torch.Tensor, items: torch.Tensor):
    """For a chunk of users: Σ_{k,k'} KL(p_kk || p_k'k') and Σ_{m,k} KL(p_kk || p_{j_m,k}) (self-pairs add 0).

    ``own`` (c, K, d) = M_k(x_k); ``others`` (c, M, K, d) = M_k(x_{j_m}): all j (M = K) or sampled (M = 1).
    Both sums are regrouped so that nothing of size K² x |I| is formed beyond ``others``' own
    log-probabilities (same values, same per-item differences as the pairwise form)::

        Σ_{k,k'} KL(p_k || p_k') = K Σ_k Σ_i p_k,i (log p_k,i - mean_k' log p_k',i)
        Σ_{m,k} KL(p_kk || p_mk) = Σ_k Σ_i p_kk,i (M log p_kk,i - Σ_m log p_mk,i)

    so the numerator costs K·|I| per user instead of K²·|I|. Differentiable through autograd (the
    reference); the training path is ``_SpeSums``, the same values with a hand-written backward.
    """
    log_own, log_oth = _spe_log_probs(own, others, items)
    return _spe_sums(log_own, log_oth, log_own.exp())


def _spe_sums(log_own: torch.Tensor, log_oth: torch.Tensor, p: torch.Tensor):
    """The two regrouped sums of ``_spe_chunk_sums`` from the log-probabilities and ``p = exp(log_own)``."""
    k, m = log_own.size(1), log_oth.size(1)
    numer = k * _rowdot(p, log_own - log_own.mean(dim=1, keepdim=True)).sum()
    lq = log_oth[:, 0] if m == 1 else log_oth.sum(dim=1)
    denom = _rowdot(p, (m * log_own if m > 1 else log_own) - lq).sum()
    return numer, denom


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_i a[..., i] b[..., i] for two contiguous (c, K, |I|) tensors, as one batched matrix product
    (no (c, K, |I|) temporary, unlike ``(a * b).sum(-1)``)."""
    n = a.size(-1)
    return torch.bmm(a.reshape(-1, 1, n), b.reshape(-1, n, 1)).view(a.shape[:-1])


class _SpeSums(torch.autograd.Function):
    """``_spe_chunk_sums`` with its gradient written out (L_spe forward + backward 1.5x faster than
    through autograd's op-by-op backward, ``benchmarks/bench_spe_loss.py``; no double backward).
    With s = logits of ``own``, t = logits of ``others``, p = softmax(s), q = softmax(t), lp = log p,
    P = Σ_k p_k, L = Σ_k lp_k, R_k = Σ_m lq_mk, ne_k = Σ_i p_k,i lp_k,i::

        ∂numer/∂s_k = K p_k (lp_k - ne_k + 1) - p_k (L - p_k·L) - P
        ∂denom/∂s_k = M p_k (lp_k - ne_k) - p_k (R_k - p_k·R_k)
        ∂denom/∂t_mk = q_mk - p_k

    ``recompute=True`` keeps only the inputs and recomputes the log-probabilities in the backward
    (bounded memory over many chunks, like ``torch.utils.checkpoint``); otherwise they are kept.
    Tested against autograd through the pairwise definition (float64, rel 1e-8).

    On CPU float32 / float64 the elementwise work (log-softmax, the sums, the logits' gradients) runs in
    the fused C++ passes of ``spe_kernels`` instead (the same formulas; it keeps the logits, or recomputes
    them, instead of the log-probabilities); elsewhere, or where the kernel cannot be built, the operators
    below.
    """

    @staticmethod
    def forward(ctx, own, others, items, recompute: bool):
        ctx.recompute = recompute
        ctx.kernel = spe_kernels.usable(own, others, items)
        if ctx.kernel:  # the same sums from the logits by the fused C++ passes (spe_kernels.py)
            s, t = own @ items.t(), others @ items.t()
            numer, denom, ctx.stats = spe_kernels.load().forward(s, t)
            ctx.save_for_backward(own, others, items, *(() if recompute else (s, t)))
            return own.new_tensor(numer), own.new_tensor(denom)
        log_own, log_oth = _spe_log_probs(own, others, items)
        p = log_own.exp()
        numer, denom = _spe_sums(log_own, log_oth, p)
        if recompute:
            ctx.save_for_backward(own, others, items)
        else:
            ctx.save_for_backward(own, others, items, log_own, log_oth, p)
        return numer, denom

    @staticmethod
    @once_differentiable
    def backward(ctx, g_numer, g_denom):
        gn, gd = float(g_numer), float(g_denom)
        if ctx.kernel:
            own, others, items, *kept = ctx.saved_tensors
            s, t = kept if kept else (own @ items.t(), others @ items.t())
            g_s, g_t = spe_kernels.load().backward(s, t, ctx.stats, gn, gd)
            return (*_spe_input_grads(g_s, g_t, own, others, items), None)
        if ctx.recompute:
            own, others, items = ctx.saved_tensors
            log_own, log_oth = _spe_log_probs(own, others, items)
            p = log_own.exp()
        else:
            own, others, items, log_own, log_oth, p = ctx.saved_tensors
        k, m = own.size(1), others.size(1)
        ell = log_own.sum(1, keepdim=True)  # L (c, 1, |I|)
        r = log_oth[:, 0] if m == 1 else log_oth.sum(1)  # R (c, K, |I|)
        ne, p_r = _rowdot(p, log_own).unsqueeze(-1), _rowdot(p, r).unsqueeze(-1)
        p_ell = p @ ell.transpose(1, 2)  # (c, K, 1)
        # g_s = p ⊙ (a·lp + b_k - gn·L - gd·R) - gn·P, with a = gn·K + gd·M and b_k collecting the
        # per-(user, expert) constants; written with in-place passes over (c, K, |I|)
        a = gn * k + gd * m
        g_s = torch.add(gn * k + gn * p_ell + gd * p_r - a * ne, log_own, alpha=a)
        g_s.sub_(ell, alpha=gn).sub_(r, alpha=gd).mul_(p).sub_(p.sum(1, keepdim=True), alpha=gn)
        g_t = log_oth.exp().sub_(p.unsqueeze(1)).mul_(gd)  # (c, M, K, |I|)
        return (*_spe_input_grads(g_s, g_t, own, others, items), None)


def _spe_input_grads(g_s, g_t, own, others, items):
    """The gradients of ``own``, ``others`` and ``items`` from those of their logits ``s = own · items^T`` and
    ``t = others · items^T``."""
    d = own.size(-1)
    g_items = g_s.reshape(-1, g_s.size(-1)).t() @ own.reshape(-1, d) \
        + g_t.reshape(-1, g_t.size(-1)).t() @ others.reshape(-1, d)
    return g_s @ items, g_t @ items, g_items


BLOCK_VALUES = 1 << 20  # log-probabilities per block of L_spe: 4 MB of float32, below glibc's mmap threshold
# with the fused kernel a block allocates only its logits and their gradients, so larger blocks cost no page
# faults and keep the matrix products' inner dimension (the block's rows) from starving: 16 MB of float32
# (bench_spe_loss.py: the same time as 2^20 at 3,469 and 9,923 items, 1.3-1.4x less at 26,000 and 40,665)
KERNEL_BLOCK_VALUES = 1 << 22


def specialization_loss(own: torch.Tensor, others: torch.Tensor, items: torch.Tensor, chunk_size: int = 256,
                        eps: float = 1e-6, sampled: bool = False, block_values: int = None) -> torch.Tensor:
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
    # Recomputing in the backward (as a checkpoint would) only pays when there are several chunks: it
    # frees each one's log-probabilities before the next; with one chunk the backward holds them anyway.
    recompute = b > chunk_size
    if block_values is None:
        block_values = KERNEL_BLOCK_VALUES if spe_kernels.usable(own, others, items) else BLOCK_VALUES
    # users per block: the larger of a block's two log-probability tensors (own's K, others' M·K rows per user)
    # holds at most block_values values; a block never spans more users than a chunk
    per_user = max(1, others.size(1)) * k * items.size(0)
    block = max(1, min(chunk_size, int(block_values) // per_user))
    use_fn = torch.is_grad_enabled() and any(t.requires_grad for t in (own, others, items))
    numer = denom = own.new_zeros(())
    for start in range(0, b, block):
        part = (own[start:start + block], others[start:start + block], items)
        n_c, d_c = _SpeSums.apply(*part, recompute) if use_fn else _spe_chunk_sums(*part)
        numer, denom = numer + n_c, denom + d_c
    numer = numer / (b * k * (k - 1))
    denom = denom / (b * k * (1 if sampled else k - 1))
    return numer / (denom + eps)
