"""The selective scan and its backends: our C++/OpenMP kernel with a hand-written backward (CPU, compiled on
first use), our fused Triton kernel (CUDA, ``scan_triton.py``), mamba-ssm's CUDA kernel where it imports, and a
plain PyTorch loop with the same maths (any device) when none of those can run.

``selective_scan(u, delta, A, B, C, D=None, z=None, delta_softplus=False)`` returns ``y_t[d] = sum_n C_t[n] h_t[d, n]`` with
``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`` (Mamba, Gu & Dao 2023, Eq. 2a-2b after
zero-order-hold discretisation of A and Euler discretisation of B, as in mamba-ssm's kernel).
plus ``D u``, gated by ``silu(z)`` (mamba-ssm's ``selective_scan_fn`` in a (batch, length, channel)
layout). Shapes: u, delta, z (Bt, L, D); A (D, N); B, C (Bt, L, N); D (D,).

Backend, chosen per call by the tensors' device (``choose_backend``): CPU -> "cpp" (else "torch"); CUDA ->
"mamba_ssm" when mamba-ssm imports, else "triton" when triton imports, else "torch".
``RECBOLE_FAMOUS_MAMBA_SCAN=cpp|triton|torch|mamba_ssm`` forces one, and fails with one line saying why
when it cannot run. The C++ kernels are built and cached by ``cpu_kernels.py`` (a few seconds, once per
machine and source).
"""
import functools
import logging
import os

import torch
import torch.nn.functional as F

from recbole_famous.errors import UsageError

from recbole_famous.model.mamba import cpu_kernels, scan_torch

logger = logging.getLogger(__name__)
_ext = None
_ext_failed = False
_logged = set()
ENV = "RECBOLE_FAMOUS_MAMBA_SCAN"
BACKENDS = ("cpp", "triton", "torch", "mamba_ssm")
NAMES = {"cpp": "our C++ CPU kernel", "triton": "our fused Triton kernel", "mamba_ssm": "mamba-ssm's CUDA kernel",
         "torch": "plain PyTorch (slow path)"}


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
    if os.environ.get(ENV, "").strip().lower() == "torch":
        _ext_failed = True
        return None
    try:
        _ext = cpu_kernels.CpuKernels(cpu_kernels.build())
    except Exception as exc:  # any build or load problem: fall back, say why, once
        _ext_failed = True
        logger.warning("Mamba: could not build the C++ selective scan (%s: %s); "
                       "using the slower PyTorch scan", type(exc).__name__, exc)
    return _ext


@functools.lru_cache(maxsize=None)
def mamba_ssm_kernels():
    """(selective_scan_fn, mamba_inner_fn or None) from mamba-ssm, or None if it does not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:
        return None
    try:
        import causal_conv1d  # noqa: F401  (mamba_inner_fn needs it)
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn
    except Exception:
        mamba_inner_fn = None
    return selective_scan_fn, mamba_inner_fn


@functools.lru_cache(maxsize=None)
def triton_module():
    """(the ``scan_triton`` module, None), or (None, why it cannot be imported)."""
    try:
        from recbole_famous.model.mamba import scan_triton
    except Exception as exc:  # triton broken: say why once asked
        return None, f"triton does not import ({type(exc).__name__}: {exc})"
    return (None, scan_triton.MISSING) if scan_triton.MISSING else (scan_triton, None)


def why_not(backend, device_type):
    """None when ``backend`` can run on tensors of ``device_type`` here, else the reason in a few words."""
    if backend not in BACKENDS:
        return f"unknown backend (use one of {', '.join(BACKENDS)})"
    if backend == "cpp":
        if device_type != "cpu":
            return f"the C++ kernel runs on CPU tensors only, these are on {device_type}"
        return None if load_extension() is not None else "the C++ kernel could not be built on this machine"
    if backend == "mamba_ssm":
        if device_type != "cuda":
            return f"mamba-ssm runs on CUDA tensors only, these are on {device_type}"
        return None if mamba_ssm_kernels() is not None else "mamba-ssm is not importable"
    if backend == "triton":
        module, reason = triton_module()
        if module is None:
            return reason
        if device_type != "cuda" and not (device_type == "cpu" and module.interpreted()):
            return (f"the Triton kernel runs on CUDA tensors (CPU only under TRITON_INTERPRET=1), "
                    f"these are on {device_type}")
    return None


def choose_backend(device_type):
    """The scan backend for tensors of ``device_type``: the forced one (``RECBOLE_FAMOUS_MAMBA_SCAN``; a one-line
    ``UsageError`` when it cannot run, which the command line prints without a traceback), else cpp / mamba_ssm / triton / torch as the module docstring says."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        reason = why_not(forced, device_type)
        if reason:
            raise UsageError(f"{ENV}={forced}: this backend cannot run here: {reason}")
        return forced
    if device_type == "cpu":
        return "cpp" if load_extension() is not None else "torch"
    if device_type == "cuda":
        for backend in ("mamba_ssm", "triton"):
            if why_not(backend, "cuda") is None:
                return backend
    return "torch"


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
    (Bt, L, D); A (D, N); B, C (Bt, L, N). ``backend``: "cpp", "triton", "torch" or "mamba_ssm";
    None picks one by device (``choose_backend``).
    """
    if u.dim() != 3 or delta.shape != u.shape or A.dim() != 2 or A.shape[0] != u.shape[2] \
            or Bm.shape != (*u.shape[:2], A.shape[1]) or Cm.shape != Bm.shape \
            or (z is not None and z.shape != u.shape) or (D is not None and D.shape != u.shape[2:]):
        raise ValueError(f"selective_scan: expected u, delta, z (B, L, D), A (D, N), B, C (B, L, N), "
                         f"D (D,); got u {tuple(u.shape)}, delta {tuple(delta.shape)}, "
                         f"A {tuple(A.shape)}, B {tuple(Bm.shape)}, C {tuple(Cm.shape)}")
    if backend is None:
        backend = choose_backend(u.device.type)
    elif backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
    reason = why_not(backend, u.device.type) if backend != "torch" else None
    if reason:
        raise RuntimeError(f"selective_scan: backend {backend!r} cannot run here: {reason}")
    log_once(backend, "Mamba: selective scan runs in %s on %s", NAMES[backend], u.device.type)
    if backend == "cpp":
        return _CppScan.apply(u, delta, A, Bm, Cm, D, z, delta_softplus)
    if backend == "triton":
        return triton_module()[0].selective_scan_triton(u, delta, A, Bm, Cm, D, z, delta_softplus)
    if backend == "mamba_ssm":
        t = lambda x: None if x is None else x.transpose(1, 2).contiguous()  # noqa: E731  (B, L, C) -> (B, C, L)
        return mamba_ssm_kernels()[0](t(u), t(delta), A, t(Bm), t(Cm), None if D is None else D.float(), z=t(z),
                                      delta_softplus=delta_softplus).transpose(1, 2)
    if delta_softplus:
        delta = F.softplus(delta)
    y = _TorchScan.apply(u, delta, A, Bm, Cm)
    if D is not None:
        y = y + u * D
    return y if z is None else y * F.silu(z)
