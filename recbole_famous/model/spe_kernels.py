"""L_spe's fused elementwise passes in C++ (``spe_cpu.cpp``), called through ctypes; the training path of
``losses._SpeSums`` on CPU float32 / float64 tensors, with the PyTorch operators as the fallback (and the
reference the tests hold it to).

For a block of c users with the logits ``S`` (c, K, |I|) of ``own`` and ``T`` (c, M, K, |I|) of ``others``
(Eq. 13's ``M_k(x_j) · v_i``), the forward reads the logits twice (the log-partition of every row; then, item
by item, the two regrouped sums of ``losses._spe_chunk_sums`` and three per-row statistics the backward
needs) and the backward once (the logits' gradients of ``losses._SpeSums.backward``), instead of about
twenty PyTorch operators over (c, K, |I|) tensors. The matrix products stay torch's. The library is built on
first use by ``native``; ``RECBOLE_FAMOUS_SPE_KERNEL=torch`` forces the fallback. A bad call raises a
``ValueError`` before any pointer reaches the C++ code.
"""
import ctypes
import logging
import os
from pathlib import Path

import torch

from recbole_famous.model import native

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("spe_cpu.cpp")
_P, _I, _N, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
_ARGTYPES = {
    "spe_fwd": [_P, _P, _I, _I, _I, _I, _P, _P, _P, _P, _N],
    "spe_bwd": [_P, _P, _P, _P, _P, _D, _D, _I, _I, _I, _I, _P, _P, _N],
}
_kernels = None
_failed = False


class SpeKernels:
    """The two entry points with tensor arguments; outputs are allocated here."""

    def __init__(self, path):
        self.lib = native.load(path, _ARGTYPES)

    @staticmethod
    def _check(s, t):
        ok = (s.dim() == 3 and t.dim() == 4 and s.dtype in (torch.float32, torch.float64) and t.dtype == s.dtype
              and s.device.type == "cpu" and t.device.type == "cpu" and s.is_contiguous() and t.is_contiguous()
              and t.shape[0] == s.shape[0] and t.shape[2] == s.shape[1] and t.shape[3] == s.shape[2]
              and s.shape[2] > 0)
        if not ok:
            raise ValueError("spe kernel: need contiguous CPU float32/float64 logits S (c, K, n) and T (c, M, K, n) "
                             f"of one dtype; got S {tuple(s.shape)} {s.dtype}, T {tuple(t.shape)} {t.dtype}")
        return "f" if s.dtype == torch.float32 else "d"

    def forward(self, s, t):
        """``(numer, denom, saved)``: the two sums (Python floats) and what ``backward`` needs besides the logits."""
        suffix = self._check(s, t)
        c, k, n = s.shape
        m = t.shape[1]
        lse_s, lse_t = torch.empty(c, k, dtype=s.dtype), torch.empty(c, m, k, dtype=s.dtype)
        sums, stats = torch.empty(2, dtype=torch.float64), torch.empty(c, k, 3, dtype=torch.float64)
        getattr(self.lib, f"spe_fwd_{suffix}")(native.pointer(s), native.pointer(t), c, k, m, n,
                                                 native.pointer(lse_s), native.pointer(lse_t), native.pointer(sums),
                                                 native.pointer(stats), torch.get_num_threads())
        return float(sums[0]), float(sums[1]), (lse_s, lse_t, stats)

    def backward(self, s, t, saved, g_numer: float, g_denom: float):
        """``(g_s, g_t)``: the gradients of ``g_numer · numer + g_denom · denom`` with respect to S and T."""
        suffix = self._check(s, t)
        lse_s, lse_t, stats = saved
        c, k, n = s.shape
        m = t.shape[1]
        if lse_s.shape != (c, k) or lse_t.shape != (c, m, k) or stats.shape != (c, k, 3):
            raise ValueError("spe kernel: saved statistics do not match the logits")
        g_s, g_t = torch.empty_like(s), torch.empty_like(t)
        getattr(self.lib, f"spe_bwd_{suffix}")(native.pointer(s), native.pointer(t), native.pointer(lse_s),
                                                 native.pointer(lse_t), native.pointer(stats), float(g_numer),
                                                 float(g_denom), c, k, m, n, native.pointer(g_s), native.pointer(g_t),
                                                 torch.get_num_threads())
        return g_s, g_t


def load():
    """The compiled kernels, or None (a warning, once per process) where they cannot be built or are switched off."""
    global _kernels, _failed
    if _kernels is not None or _failed:
        return _kernels
    if os.environ.get("RECBOLE_FAMOUS_SPE_KERNEL", "").lower() == "torch":
        _failed = True
        return None
    try:
        _kernels = SpeKernels(native.build(SOURCE))
    except Exception as exc:  # any build or load problem: fall back, say why, once
        _failed = True
        logger.warning("L_spe: could not build the C++ kernel (%s: %s); using the slower PyTorch operators",
                       type(exc).__name__, exc)
    return _kernels


def usable(*tensors) -> bool:
    """Whether the kernel applies to these tensors (CPU, float32 or float64, one dtype) and is available."""
    dtype = tensors[0].dtype
    return (all(x.device.type == "cpu" and x.dtype == dtype for x in tensors)
            and dtype in (torch.float32, torch.float64) and load() is not None)
