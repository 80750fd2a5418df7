"""Selective scan in plain PyTorch: the fallback when the C++ kernel cannot be compiled.

Same recurrence and the same hand-written backward as ``selective_scan_cpu.cpp`` (see its header),
vectorised over (batch, channel, state) with a loop over time. To bound memory, the backward
recomputes the states for a slice of the batch at a time (``chunk`` rows): 64 on the CPU, and on CUDA as many
rows as half the free device memory holds (``backward_chunk``), so a GPU runs few, large slices.
Works on any device.
"""
import torch


def scan_forward(u, delta, A, Bm, Cm):
    """y (Bt, L, D) from u, delta (Bt, L, D), A (D, N), Bm, Cm (Bt, L, N)."""
    Bt, L, D = u.shape
    h = u.new_zeros(Bt, D, A.shape[1])
    ys = []
    for t in range(L):
        dt = delta[:, t, :, None]
        h = torch.exp(dt * A) * h + (dt * u[:, t, :, None]) * Bm[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, Cm[:, t]))
    return torch.stack(ys, dim=1)


def _backward_rows(u, delta, A, Bm, Cm, gy):
    Bt, L, D = u.shape
    N = A.shape[1]
    hs = [u.new_zeros(Bt, D, N)]
    es = []
    for t in range(L):
        dt = delta[:, t, :, None]
        e = torch.exp(dt * A)
        es.append(e)
        hs.append(e * hs[-1] + (dt * u[:, t, :, None]) * Bm[:, t, None, :])
    gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
    gB, gC = torch.empty_like(Bm), torch.empty_like(Cm)
    gA = torch.zeros_like(A)
    G = torch.zeros_like(hs[0])
    for t in range(L - 1, -1, -1):
        gyt = gy[:, t, :, None]
        g = G + gyt * Cm[:, t, None, :]
        gC[:, t] = (gyt * hs[t + 1]).sum(1)
        gB[:, t] = (g * (delta[:, t] * u[:, t])[:, :, None]).sum(1)
        q = g * hs[t] * es[t]
        sb = (g * Bm[:, t, None, :]).sum(-1)
        gdelta[:, t] = (q * A).sum(-1) + u[:, t] * sb
        gu[:, t] = delta[:, t] * sb
        gA += (q * delta[:, t, :, None]).sum(0)
        G = g * es[t]
    return gu, gdelta, gA, gB, gC


CPU_CHUNK = 64


def backward_chunk(u, N, free_bytes=None):
    """Rows per slice of the backward: 64 on the CPU; on CUDA the rows whose recomputed states (L + 1 states, L
    decays and about 8 (D, N) temporaries per row) fit in half of the free memory (the driver's free memory plus
    what torch's allocator holds unused), at least 1, at most the batch."""
    if u.device.type != "cuda":
        return CPU_CHUNK
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(u.device)[0] + torch.cuda.memory_reserved(u.device) \
            - torch.cuda.memory_allocated(u.device)
    Bt, L, D = u.shape
    per_row = (2 * L + 9) * D * N * u.element_size()
    return int(max(1, min(Bt, free_bytes // 2 // per_row)))


def scan_backward(u, delta, A, Bm, Cm, gy, chunk=None):
    """Gradients (u, delta, A, B, C) of sum(y * gy), recomputing states ``chunk`` rows at a time
    (default ``backward_chunk``)."""
    chunk = chunk or backward_chunk(u, A.shape[1])
    parts = [_backward_rows(*(x[i:i + chunk] for x in (u, delta)), A,
                            *(x[i:i + chunk] for x in (Bm, Cm, gy)))
             for i in range(0, u.shape[0], chunk)]
    gu, gdelta, _, gB, gC = (torch.cat([p[k] for p in parts]) if k != 2 else None for k in range(5))
    gA = sum(p[2] for p in parts)
    return gu, gdelta, gA, gB, gC
