"""Our selective scan (no mamba-ssm): a C++/OpenMP kernel with a hand-written backward, compiled on
first use, and a plain PyTorch fallback with the same maths when compilation is impossible.

``selective_scan(u, delta, A, B, C, D=None, z=None, delta_softplus=False)`` returns ``y_t[d] = sum_n C_t[n] h_t[d, n]`` with
``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`` (Mamba, Gu & Dao 2023, Eq. 2a-2b after
zero-order-hold discretisation of A and Euler discretisation of B, as in mamba-ssm's kernel).
plus ``D u``, gated by ``silu(z)`` (mamba-ssm's ``selective_scan_fn`` in a (batch, length, channel)
layout). Shapes: u, delta, z (Bt, L, D); A (D, N); B, C (Bt, L, N); D (D,).

The kernels are built and cached by ``cpu_kernels.py`` (a few seconds, once per machine and
source). Set ``RECBOLE_FAMOUS_MAMBA_SCAN=torch`` to force the fallback.
"""
import logging
import os

import torch
import torch.nn.functional as F

from recbole_famous.model.mamba import cpu_kernels, scan_torch

logger = logging.getLogger(__name__)
_ext = None
_ext_failed = False
_logged = set()


def log_once(key, message, *args):
    """Log ``message`` at INFO the first time ``key`` is seen in this process."""
    if key not in _logged:
        _logged.add(key)
        logger.info(message, *args)


def load_extension():
    """The compiled CPU kernels (``cpu_kernels.CpuKernels``), or None (logged once) where they
    cannot be built."""
    global _ext, _ext_failed
    if _ext is not None or _ext_failed:
        return _ext
    if os.environ.get("RECBOLE_FAMOUS_MAMBA_SCAN", "").lower() == "torch":
        _ext_failed = True
        return None
    try:
        _ext = cpu_kernels.CpuKernels(cpu_kernels.build())
    except Exception as exc:  # any build or load problem: fall back, say why, once
        _ext_failed = True
        logger.warning("Mamba: could not build the C++ selective scan (%s: %s); "
                       "using the slower PyTorch scan", type(exc).__name__, exc)
    return _ext


def kernel_dtype(x):
    """float32 or float64: the dtypes the kernel is built for (others compute in float32)."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def rows(x, dtype):
    """``x`` in ``dtype``, as a (B, L, C) view the kernel can read in place when possible."""
    x = x.to(dtype)
    uniform = x.shape[0] == 1 or x.shape[1] == 1 or x.stride(0) == x.shape[1] * x.stride(1)
    return x if uniform and (x.stride(2) == 1 or x.shape[2] == 1) else x.contiguous()


class _CppScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm, D, z, delta_softplus):
        dt = kernel_dtype(u)
        Dv = torch.zeros(u.shape[2], dtype=dt) if D is None else D.to(dt).contiguous()
        zz = None if z is None else rows(z, dt)
        dp = delta.to(dt).contiguous()
        ins = (u.to(dt).contiguous(), F.softplus(dp) if delta_softplus else dp,
               A.t().to(dt).contiguous(), rows(Bm, dt), rows(Cm, dt), Dv, zz)
        out, y = _ext.scan_fwd(*ins)
        ctx.save_for_backward(*ins, y, dp if delta_softplus else None)  # (zz may be None)
        ctx.flags = (delta_softplus, D is not None, z is not None)
        ctx.dtypes = [x.dtype for x in (u, delta, A, Bm, Cm)] + [
            None if D is None else D.dtype, None if z is None else z.dtype]
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, gout):
        *ins, y, dp = ctx.saved_tensors
        softplus, has_d, has_z = ctx.flags
        gz = torch.empty_like(ins[6]) if has_z else None
        gu, gdelta, gAt, gB, gC, gD = _ext.scan_bwd(*ins, y, gout.to(y.dtype), gz)
        if softplus:
            gdelta = gdelta * torch.sigmoid(dp)
        grads = [gu, gdelta, gAt.t(), gB, gC, gD if has_d else None, gz if has_z else None]
        return tuple(None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes)) + (None,)


class _TorchScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm):
        ctx.save_for_backward(u, delta, A, Bm, Cm)
        return scan_torch.scan_forward(u, delta, A, Bm, Cm)

    @staticmethod
    def backward(ctx, gy):
        return scan_torch.scan_backward(*ctx.saved_tensors, gy)


def selective_scan(u, delta, A, Bm, Cm, D=None, z=None, delta_softplus=False, backend=None):
    """Mamba's selective scan, mamba-ssm's ``selective_scan_fn`` in a (batch, length, channel) layout.

    ``out = (y + D * u) * silu(z)`` with ``y`` the scan of ``u`` under step ``delta`` (after
    ``softplus`` when ``delta_softplus``); ``D`` and ``z`` are optional. Shapes: u, delta, z
    (Bt, L, D); A (D, N); B, C (Bt, L, N). ``backend``: None picks "cpp" for CPU tensors when the
    kernel compiles, else "torch".
    """
    if u.dim() != 3 or delta.shape != u.shape or A.dim() != 2 or A.shape[0] != u.shape[2] \
            or Bm.shape != (*u.shape[:2], A.shape[1]) or Cm.shape != Bm.shape \
            or (z is not None and z.shape != u.shape) or (D is not None and D.shape != u.shape[2:]):
        raise ValueError(f"selective_scan: expected u, delta, z (B, L, D), A (D, N), B, C (B, L, N), "
                         f"D (D,); got u {tuple(u.shape)}, delta {tuple(delta.shape)}, "
                         f"A {tuple(A.shape)}, B {tuple(Bm.shape)}, C {tuple(Cm.shape)}")
    if backend is None:
        backend = "cpp" if u.device.type == "cpu" and load_extension() is not None else "torch"
    if backend == "cpp":
        if load_extension() is None:
            raise RuntimeError("selective_scan: the C++ kernel is not available on this machine")
        log_once("cpp", "Mamba: selective scan runs in our C++ CPU kernel")
        return _CppScan.apply(u, delta, A, Bm, Cm, D, z, delta_softplus)
    if backend != "torch":
        raise ValueError(f"selective_scan: unknown backend {backend!r} (use 'cpp' or 'torch')")
    log_once("torch", "Mamba: selective scan runs in plain PyTorch (slow path) on %s", u.device.type)
    if delta_softplus:
        delta = F.softplus(delta)
    y = _TorchScan.apply(u, delta, A, Bm, Cm)
    if D is not None:
        y = y + u * D
    return y if z is None else y * F.silu(z)
