"""Selective scan in plain PyTorch: the fallback when the C++ kernel cannot be compiled.

Same recurrence and the same hand-written backward as ``selective_scan_cpu.cpp`` (see its header),
vectorised over (batch, channel, state) with a loop over time. To bound memory, the backward
recomputes the states for a slice of the batch at a time (``chunk`` rows), never for all of it.
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


def scan_backward(u, delta, A, Bm, Cm, gy, chunk=64):
    """Gradients (u, delta, A, B, C) of sum(y * gy), recomputing states ``chunk`` rows at a time."""
    parts = [_backward_rows(*(x[i:i + chunk] for x in (u, delta)), A,
                            *(x[i:i + chunk] for x in (Bm, Cm, gy)))
             for i in range(0, u.shape[0], chunk)]
    gu, gdelta, _, gB, gC = (torch.cat([p[k] for p in parts]) if k != 2 else None for k in range(5))
    gA = sum(p[2] for p in parts)
    return gu, gdelta, gA, gB, gC
