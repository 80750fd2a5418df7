"""Mamba's selective scan as two fused Triton kernels (forward, backward): the CUDA path without mamba-ssm.

Same maths and interface as ``selective_scan_cpu.cpp`` (see its header): for a batch row b and channel d,

    h_t[d,n]  = exp(delta_t[d] A[d,n]) h_{t-1}[d,n] + delta_t[d] u_t[d] B_t[n],      h_{-1} = 0
    out_t[d]  = (sum_n C_t[n] h_t[d,n] + D[d] u_t[d]) * silu(z_t[d])

with ``delta`` put through softplus inside the kernel when asked. One program takes one batch row and a block of
``BD`` channels, keeps its (BD, d_state) state in registers and walks the positions once; nothing of size
(batch, length, channel, state) is written.

Positions go in chunks of ``CHUNK``: a chunk's inputs are read as (CHUNK, channels) tiles in one go, and the steps
inside it take their rows from registers, so a step never waits on memory. The forward also keeps the state at the
start of every chunk (when a gradient is needed). The backward walks the chunks and their positions in reverse,
carrying dL/dh; the state h_{t-1} a position needs is recomputed in registers from its chunk's checkpoint (at most
CHUNK - 1 steps, no memory access). dA, dD are summed
per program and dB, dC per channel block, then reduced by torch (deterministic, no atomics). Gradients:

    g_t = dL/dh_t = gy_t[d] C_t[n] + exp(delta_{t+1} A) g_{t+1}          gy = dL/dy (before the gate)
    dC_t[n] = sum_d gy_t h_t     dB_t[n] = sum_d g_t delta_t u_t      du_t = delta_t sum_n g_t B_t + D gy_t
    ddelta_t = u_t sum_n g_t B_t + sum_n g_t h_{t-1} exp(delta_t A) A      (x sigmoid(raw step) with softplus)
    dA[d,n]  = sum_{b,t} g_t h_{t-1} exp(delta_t A) delta_t

Computes in float32 (float64 for float64 inputs). Runs on CUDA tensors, or on CPU tensors under Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests run it. Without
triton the module still imports (``MISSING`` says why), so that tools importing every module work; nothing runs.
"""
import contextlib
import os

import torch
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl

    jit, MISSING = triton.jit, None
except ImportError as exc:
    triton, MISSING = None, f"triton does not import ({type(exc).__name__}: {exc})"

    class tl:  # stand-in so that the kernel signatures below evaluate; no kernel runs without triton
        constexpr = None

    def jit(fn):
        return fn

CHUNK = 8  # positions per chunk (a power of 2): checkpoint memory (length / CHUNK states a row) against recompute


@jit
def _softplus(x):
    """log(1 + exp(x)) without overflow, accurate where exp(-|x|) is below the float epsilon."""
    e = tl.exp(-tl.abs(x))
    p = 1.0 + e
    return tl.maximum(x, 0.0) + tl.where(p == 1.0, e, tl.log(p) * e / tl.where(p == 1.0, 1.0, p - 1.0))


@jit
def _row(tile, sel):
    """Row ``sel`` (a (CHUNK, 1) one-hot mask) of a (CHUNK, X) tile, as an (X,) vector: no memory access."""
    return tl.sum(tl.where(sel, tile, 0.0), axis=0)


@jit
def _scan_fwd(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, out_ptr, ck_ptr,
              L, Di, N, sBb, sBl, sCb, sCl, sZb, sZl, n_ck,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE: tl.constexpr,
              CHUNK: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    r = tl.arange(0, CHUNK)
    md, mn = d < Di, n < N
    m2 = md[:, None] & mn[None, :]
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=m2, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=md, other=0.0)
    h = tl.zeros((BD, BN), dtype=A.dtype)
    for c in range(0, n_ck + 1):                 # chunks of CHUNK positions; their inputs read as tiles, once
        if SAVE:
            if c > 0:
                tl.store(ck_ptr + ((b * n_ck + c - 1) * Di + d[:, None]) * N + n[None, :], h, mask=m2)
        t = c * CHUNK + r
        mt = t < L
        off = (b * L + t[:, None]) * Di + d[None, :]
        mtd, mtn = mt[:, None] & md[None, :], mt[:, None] & mn[None, :]
        DL = tl.load(dl_ptr + off, mask=mtd, other=0.0)
        if SOFTPLUS:
            DL = _softplus(DL)
        U = tl.load(u_ptr + off, mask=mtd, other=0.0)
        BB = tl.load(B_ptr + b * sBb + t[:, None] * sBl + n[None, :], mask=mtn, other=0.0)
        CC = tl.load(C_ptr + b * sCb + t[:, None] * sCl + n[None, :], mask=mtn, other=0.0)
        W = DL * U
        Y = tl.zeros((CHUNK, BD), dtype=A.dtype)
        for s in range(0, CHUNK):
            sel = (r == s)[:, None]
            dl = _row(DL, sel)
            h = tl.exp(dl[:, None] * A) * h + _row(W, sel)[:, None] * _row(BB, sel)[None, :]
            Y = tl.where(sel, tl.sum(h * _row(CC, sel)[None, :], axis=1)[None, :], Y)
        if HAS_D:
            Y += Dv[None, :] * U
        if HAS_Z:
            Z = tl.load(z_ptr + b * sZb + t[:, None] * sZl + d[None, :], mask=mtd, other=0.0)
            Y = Y * Z / (1.0 + tl.exp(-Z))
        tl.store(out_ptr + off, Y, mask=mtd)


@jit
def _scan_bwd(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, ck_ptr, g_ptr,
              gu_ptr, gdl_ptr, gz_ptr, gB_ptr, gC_ptr, gA_ptr, gD_ptr,
              Bt_, L, Di, N, sBb, sBl, sCb, sCl, sZb, sZl, n_ck,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
              CHUNK: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    d = blk * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    r = tl.arange(0, CHUNK)
    md, mn = d < Di, n < N
    m2 = md[:, None] & mn[None, :]
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=m2, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=md, other=0.0)
    G = tl.zeros((BD, BN), dtype=A.dtype)       # dL/dh_t carried from position t + 1, times exp(delta_{t+1} A)
    gA = tl.zeros((BD, BN), dtype=A.dtype)
    gD = tl.zeros((BD,), dtype=A.dtype)
    for cc in range(0, n_ck + 1):
        c = n_ck - cc                            # chunks last to first; positions past L: all zero, G stays 0
        t = c * CHUNK + r
        mt = t < L
        off = (b * L + t[:, None]) * Di + d[None, :]
        mtd, mtn = mt[:, None] & md[None, :], mt[:, None] & mn[None, :]
        RAW = tl.load(dl_ptr + off, mask=mtd, other=0.0)
        DL = RAW
        if SOFTPLUS:
            DL = _softplus(RAW)
        U = tl.load(u_ptr + off, mask=mtd, other=0.0)
        W = DL * U
        GY = tl.load(g_ptr + off, mask=mtd, other=0.0)
        BB = tl.load(B_ptr + b * sBb + t[:, None] * sBl + n[None, :], mask=mtn, other=0.0)
        CC = tl.load(C_ptr + b * sCb + t[:, None] * sCl + n[None, :], mask=mtn, other=0.0)
        if HAS_Z:
            Z = tl.load(z_ptr + b * sZb + t[:, None] * sZl + d[None, :], mask=mtd, other=0.0)
            GZ = tl.zeros((CHUNK, BD), dtype=A.dtype)
        ck = ck_ptr + ((b * n_ck + tl.maximum(c - 1, 0)) * Di + d[:, None]) * N + n[None, :]
        h0 = tl.load(ck, mask=(d[:, None] < tl.where(c > 0, Di, 0)) & mn[None, :], other=0.0)  # chunk 0: zeros
        GU = tl.zeros((CHUNK, BD), dtype=A.dtype)
        GDL = tl.zeros((CHUNK, BD), dtype=A.dtype)
        GB = tl.zeros((CHUNK, BN), dtype=A.dtype)
        GC = tl.zeros((CHUNK, BN), dtype=A.dtype)
        for j in range(0, CHUNK):
            s = CHUNK - 1 - j
            hp = h0                              # h_{t-1}, recomputed in registers from the chunk's checkpoint
            for q in range(0, s):
                selq = (r == q)[:, None]
                hp = tl.exp(_row(DL, selq)[:, None] * A) * hp + _row(W, selq)[:, None] * _row(BB, selq)[None, :]
            sel = (r == s)[:, None]
            dl, u, w, gy = _row(DL, sel), _row(U, sel), _row(W, sel), _row(GY, sel)
            Bs, Cs = _row(BB, sel), _row(CC, sel)
            e = tl.exp(dl[:, None] * A)
            h = e * hp + w[:, None] * Bs[None, :]
            if HAS_Z:
                z = _row(Z, sel)
                sg = 1.0 / (1.0 + tl.exp(-z))
                y = tl.sum(h * Cs[None, :], axis=1)
                if HAS_D:
                    y += Dv * u
                GZ = tl.where(sel, (gy * y * sg * (1.0 + z * (1.0 - sg)))[None, :], GZ)
                gy = gy * z * sg
            GC = tl.where(sel, tl.sum(gy[:, None] * h, axis=0)[None, :], GC)
            g = G + gy[:, None] * Cs[None, :]
            GB = tl.where(sel, tl.sum(g * w[:, None], axis=0)[None, :], GB)
            sb = tl.sum(g * Bs[None, :], axis=1)
            qe = g * hp * e
            GDL = tl.where(sel, (tl.sum(qe * A, axis=1) + u * sb)[None, :], GDL)
            gu = dl * sb
            if HAS_D:
                gu += Dv * gy
                gD += gy * u
            GU = tl.where(sel, gu[None, :], GU)
            gA += qe * dl[:, None]
            G = g * e
        if SOFTPLUS:
            GDL = GDL / (1.0 + tl.exp(-RAW))
        tl.store(gdl_ptr + off, GDL, mask=mtd)
        tl.store(gu_ptr + off, GU, mask=mtd)
        if HAS_Z:
            tl.store(gz_ptr + off, GZ, mask=mtd)
        part = ((blk * Bt_ + b) * L + t[:, None]) * N + n[None, :]
        tl.store(gB_ptr + part, GB, mask=mtn)
        tl.store(gC_ptr + part, GC, mask=mtn)
    tl.store(gA_ptr + (b * Di + d[:, None]) * N + n[None, :], gA, mask=m2)
    if HAS_D:
        tl.store(gD_ptr + b * Di + d, gD, mask=md)


def blocks(Di, N):
    """(BD, BN): channels per program (at most 512 state entries in registers) and d_state padded to a power of 2."""
    BN = triton.next_power_of_2(N)
    return max(1, min(triton.next_power_of_2(Di), 512 // BN)), BN


def last_dim_unit(x):
    """``x`` itself when its last stride is 1 (read in place with its two leading strides), else a copy."""
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def launch_sites():
    """The kernels one training step of a scan launches: the forward and the backward kernel (one launch each)."""
    return [_scan_fwd, _scan_bwd]


def interpreted():
    """True when the kernels run in Triton's interpreter (TRITON_INTERPRET=1 when this module was imported)."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_scan_fwd, InterpretedFunction)


def compile_cuda(archs=(90,), d_states=(16, 32)):
    """Compile both kernels (float32, D, z and softplus on) for the CUDA archs ``archs`` without a GPU; one line
    per kernel with ptxas' register count and spilled bytes (cuobjdump -res-usage, shipped with triton)."""
    import re
    import subprocess
    import tempfile

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    lines = []
    for arch in archs:
        for N in d_states:
            BD, BN = blocks(128, N)
            for fn, extra in ((_scan_fwd, {"SAVE": True}), (_scan_bwd, {})):
                consts = dict(HAS_D=True, HAS_Z=True, SOFTPLUS=True, CHUNK=CHUNK, BD=BD, BN=BN, **extra)
                sig = {a: "constexpr" if a in consts else "*fp32" if a.endswith("_ptr") else "i32"
                       for a in fn.arg_names}
                src = ASTSource(fn, sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
                cubin = triton.compile(src, target=GPUTarget("cuda", arch, 32)).asm["cubin"]
                with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                    f.write(cubin)
                    f.flush()
                    usage = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
                regs, local = (re.search(rf"{k}:(\d+)", usage) for k in ("REG", "LOCAL"))
                lines.append(f"sm_{arch} {fn.__name__} d_state {N} (BD {BD}): {regs and regs.group(1)} registers, "
                             f"spilled {local and local.group(1)} bytes")
    return "\n".join(lines)


class TritonScan(torch.autograd.Function):
    """``out = (scan(u, delta) + D u) * silu(z)``; see the module docstring. D and z may be None."""

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm, D, z, delta_softplus, chunk=CHUNK):
        if chunk < 1 or chunk & (chunk - 1):
            raise ValueError(f"selective_scan_triton: chunk must be a power of 2, got {chunk}")
        cdt = torch.float64 if u.dtype == torch.float64 else torch.float32
        Bt, L, Di = u.shape
        N = A.shape[1]
        uu, dl, Ac = (x.to(cdt).contiguous() for x in (u, delta, A))
        Bc, Cc = last_dim_unit(Bm.to(cdt)), last_dim_unit(Cm.to(cdt))
        Dv = None if D is None else D.to(cdt).contiguous()
        zc = None if z is None else last_dim_unit(z.to(cdt))
        n_ck = max(0, (L - 1) // chunk)
        save = any(ctx.needs_input_grad[:7])
        ck = uu.new_empty((Bt, n_ck, Di, N) if save and n_ck else (1,))
        out = torch.empty_like(uu)
        BD, BN = blocks(Di, N)
        zs = (0, 0) if zc is None else zc.stride()[:2]
        with torch.cuda.device(u.device) if u.is_cuda else contextlib.nullcontext():
            _scan_fwd[(Bt, triton.cdiv(Di, BD))](
                uu, dl, Ac, Bc, Cc, uu if Dv is None else Dv, uu if zc is None else zc, out, ck,
                L, Di, N, *Bc.stride()[:2], *Cc.stride()[:2], *zs, n_ck,
                HAS_D=Dv is not None, HAS_Z=zc is not None, SOFTPLUS=bool(delta_softplus), SAVE=save,
                CHUNK=chunk, BD=BD, BN=BN)
        if save:
            ctx.save_for_backward(uu, dl, Ac, Bc, Cc, Dv, zc, ck)
        ctx.meta = (bool(delta_softplus), chunk, n_ck,
                    [None if x is None else x.dtype for x in (u, delta, A, Bm, Cm, D, z)])
        return out.to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        uu, dl, Ac, Bc, Cc, Dv, zc, ck = ctx.saved_tensors
        softplus, chunk, n_ck, dtypes = ctx.meta
        Bt, L, Di = uu.shape
        N = Ac.shape[1]
        BD, BN = blocks(Di, N)
        nb = triton.cdiv(Di, BD)
        g = gout.to(uu.dtype).contiguous()
        gu, gdl = torch.empty_like(uu), torch.empty_like(uu)
        gz = None if zc is None else torch.empty_like(uu)
        gBp, gCp = uu.new_empty(nb, Bt, L, N), uu.new_empty(nb, Bt, L, N)
        gAp, gDp = uu.new_empty(Bt, Di, N), uu.new_empty(Bt, Di)
        zs = (0, 0) if zc is None else zc.stride()[:2]
        with torch.cuda.device(uu.device) if uu.is_cuda else contextlib.nullcontext():
            _scan_bwd[(Bt, nb)](
                uu, dl, Ac, Bc, Cc, uu if Dv is None else Dv, uu if zc is None else zc, ck, g,
                gu, gdl, gu if gz is None else gz, gBp, gCp, gAp, gDp,
                Bt, L, Di, N, *Bc.stride()[:2], *Cc.stride()[:2], *zs, n_ck,
                HAS_D=Dv is not None, HAS_Z=zc is not None, SOFTPLUS=softplus, CHUNK=chunk, BD=BD, BN=BN)
        grads = [gu, gdl, gAp.sum(0), gBp.sum(0), gCp.sum(0),
                 None if Dv is None else gDp.sum(0), gz]
        return tuple(None if x is None else x.to(t) for x, t in zip(grads, dtypes)) + (None, None)


def selective_scan_triton(u, delta, A, Bm, Cm, D=None, z=None, delta_softplus=False, chunk=CHUNK):
    """``(scan(u, delta [softplus]) + D u) * silu(z)``, shapes as ``scan.selective_scan``; differentiable."""
    return TritonScan.apply(u, delta, A, Bm, Cm, D, z, delta_softplus, chunk)
