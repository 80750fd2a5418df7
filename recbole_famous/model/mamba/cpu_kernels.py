"""Call the C++ kernels of ``selective_scan_cpu.cpp`` through ctypes; built and cached by
``recbole_famous.model.native`` (compiled on first use, keyed by source, flags and CPU).

The Python wrappers check shapes, dtypes and strides before passing raw pointers: a bad call
raises a ``ValueError``, it never reaches the C++ code.
"""
import ctypes
from pathlib import Path

import torch

from recbole_famous.model import native

SOURCE = Path(__file__).with_name("selective_scan_cpu.cpp")
_P, _I, _N = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_ARGTYPES = {
    "scan_fwd": [_P] * 9 + [_I] * 7 + [_N],
    "scan_bwd": [_P] * 14 + [_I] + [_P] * 2 + [_I] * 7 + [_N],
    "conv_silu_fwd": [_P, _I, _P, _P, _P] + [_I] * 4 + [_N],
    "conv_silu_bwd": [_P, _I, _P, _P, _P, _P, _I, _P] + [_I] * 4 + [_N],
}


def build():
    """Path of the compiled library, compiling it if needed; raises RuntimeError with the reason."""
    return native.build(SOURCE)


def row_stride(x, name):
    """Stride between rows r = b*L + t of a (B, L, C) view with unit channel stride."""
    if x.dim() != 3 or (x.stride(2) != 1 and x.shape[2] != 1):
        raise ValueError(f"{name}: need a (B, L, C) tensor with unit channel stride")
    if x.shape[0] == 1:
        return x.stride(1)
    if x.shape[1] == 1:
        return x.stride(0)
    if x.stride(0) != x.shape[1] * x.stride(1):
        raise ValueError(f"{name}: need a uniform row stride")
    return x.stride(1)


_ptr = native.pointer


class CpuKernels:
    """The kernels with tensor arguments; outputs are allocated here."""

    def __init__(self, path):
        self.lib = native.load(path, _ARGTYPES)
        self.lib.scan_block_size.restype = ctypes.c_int64
        self.block = self.lib.scan_block_size()

    def _fn(self, name, ref, *tensors):
        if ref.dtype not in (torch.float32, torch.float64) or ref.device.type != "cpu":
            raise ValueError(f"{name}: CPU float32 or float64 tensors expected, got {ref.dtype} on {ref.device}")
        for t in tensors:
            if t is not None and (t.dtype != ref.dtype or t.device.type != "cpu"):
                raise ValueError(f"{name}: all tensors must be CPU {ref.dtype}")
        return getattr(self.lib, f"{name}_{'f' if ref.dtype == torch.float32 else 'd'}")

    @staticmethod
    def _check_scan(u, delta, At, Bm, Cm, Dv, z):
        Bt, L, Di = u.shape
        ok = (u.is_contiguous() and delta.is_contiguous() and delta.shape == u.shape
              and At.dim() == 2 and At.shape[1] == Di and At.is_contiguous()
              and Bm.shape == (Bt, L, At.shape[0]) and Cm.shape == Bm.shape
              and Dv.shape == (Di,) and Dv.is_contiguous()
              and (z is None or z.shape == u.shape))
        if not ok:
            raise ValueError("scan: expected contiguous u, delta (B, L, D), At (N, D), D (D,); "
                             "B, C (B, L, N); z (B, L, D) or None")
        return (row_stride(Bm, "B"), row_stride(Cm, "C"), 0 if z is None else row_stride(z, "z"))

    def scan_fwd(self, u, delta, At, Bm, Cm, Dv, z):
        """(out, y): out = (scan + D u) * silu(z), y the same before the gate (out itself without z)."""
        fn = self._fn("scan_fwd", u, delta, At, Bm, Cm, Dv, z)
        sB, sC, sZ = self._check_scan(u, delta, At, Bm, Cm, Dv, z)
        out = torch.empty_like(u)
        y = out if z is None else torch.empty_like(u)
        Bt, L, Di = u.shape
        fn(_ptr(u), _ptr(delta), _ptr(At), _ptr(Bm), _ptr(Cm), _ptr(Dv), _ptr(z), _ptr(out),
           None if z is None else _ptr(y), Bt, L, Di, At.shape[0], sB, sC, sZ, torch.get_num_threads())
        return out, y

    def scan_bwd(self, u, delta, At, Bm, Cm, Dv, z, y, gout, gz):
        """(gu, gdelta, gAt, gB, gC, gD); dL/dz is written into ``gz`` (None when z is None)."""
        gout, y = gout.contiguous(), y.contiguous()
        fn = self._fn("scan_bwd", u, delta, At, Bm, Cm, Dv, z, y, gout, gz)
        sB, sC, sZ = self._check_scan(u, delta, At, Bm, Cm, Dv, z)
        if gout.shape != u.shape or y.shape != u.shape or (z is not None and (gz is None or gz.shape != z.shape)):
            raise ValueError("scan_bwd: y, grad and gz must be shaped like u")
        sGZ = 0 if z is None else row_stride(gz, "gz")
        Bt, L, Di = u.shape
        N, nt = At.shape[0], torch.get_num_threads()
        gu, gdelta = torch.empty_like(u), torch.empty_like(u)
        gB, gC = torch.zeros(Bt, L, N, dtype=u.dtype), torch.zeros(Bt, L, N, dtype=u.dtype)
        gA_parts = torch.zeros(nt, N, Di, dtype=u.dtype)
        gD_parts = torch.zeros(nt, Di + self.block, dtype=u.dtype)
        fn(_ptr(u), _ptr(delta), _ptr(At), _ptr(Bm), _ptr(Cm), _ptr(Dv), _ptr(z), _ptr(y), _ptr(gout),
           _ptr(gu), _ptr(gdelta), _ptr(gB), _ptr(gC), _ptr(gz), sGZ, _ptr(gA_parts), _ptr(gD_parts),
           Bt, L, Di, N, sB, sC, sZ, nt)
        return gu, gdelta, gA_parts.sum(0), gB, gC, gD_parts.sum(0)[:Di]

    def conv_silu_fwd(self, x, wT, bias):
        """silu(causal depthwise conv(x)): x (B, L, D) any row stride, wT (K, D), bias (D,)."""
        fn = self._fn("conv_silu_fwd", x, wT, bias)
        sx = row_stride(x, "x")
        Bt, L, Di = x.shape
        if wT.dim() != 2 or wT.shape[1] != Di or not wT.is_contiguous() or bias.shape != (Di,) \
                or not bias.is_contiguous():
            raise ValueError("conv_silu_fwd: need contiguous wT (K, D) and bias (D,)")
        out = torch.empty(Bt, L, Di, dtype=x.dtype)
        fn(_ptr(x), sx, _ptr(wT), _ptr(bias), _ptr(out), Bt, L, Di, wT.shape[0], torch.get_num_threads())
        return out

    def conv_silu_bwd(self, x, wT, bias, gxc, gx):
        """(gwT, gbias); dL/dx is written into ``gx`` (any row stride)."""
        gxc = gxc.contiguous()
        fn = self._fn("conv_silu_bwd", x, wT, bias, gxc, gx)
        sx, sgx = row_stride(x, "x"), row_stride(gx, "gx")
        Bt, L, Di = x.shape
        if gxc.shape != x.shape or gx.shape != x.shape or wT.dim() != 2 or wT.shape[1] != Di \
                or not wT.is_contiguous() or bias.shape != (Di,) or not bias.is_contiguous():
            raise ValueError("conv_silu_bwd: shapes do not match")
        K, nt = wT.shape[0], torch.get_num_threads()
        gw_parts = torch.zeros(nt, K + 1, Di, dtype=x.dtype)
        fn(_ptr(x), sx, _ptr(wT), _ptr(bias), _ptr(gxc), _ptr(gx), sgx, _ptr(gw_parts), Bt, L, Di, K, nt)
        gw = gw_parts.sum(0)
        return gw[:K].contiguous(), gw[K].contiguous()
