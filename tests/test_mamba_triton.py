"""The fused Triton selective scan (``scan_triton.py``), run on the CPU through Triton's interpreter, against a
float64 autograd reference and the C++ kernel; the backend dispatch of ``scan.py``; the PyTorch fallback's
memory-sized backward slices. Skipped (with the reason) where triton does not import.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: kernels then run on CPU tensors

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from recbole_famous.model.mamba import MambaBlock, scan, scan_torch  # noqa: E402
from recbole_famous.model.mamba.scan import selective_scan  # noqa: E402
from recbole_famous.errors import UsageError  # noqa: E402

st, WHY = scan.triton_module()
if st is not None and not st.interpreted():
    st, WHY = None, "scan_triton was imported before TRITON_INTERPRET=1 was set: its kernels need a GPU"
needs_triton = pytest.mark.skipif(st is None, reason=f"Triton's interpreter cannot run here: {WHY}")
needs_cpp = pytest.mark.skipif(scan.load_extension() is None, reason="the C++ kernels could not be built here")
NAMES = ["out", "u", "delta", "A", "B", "C", "D", "z"]


def make(Bt, L, Di, N, pads=(), softplus=True, seed=0):
    """float64 inputs u, delta, A, B, C, D, z; row r gets ``pads[r]`` leading padding positions (u, B, C, z zero)."""
    g = torch.Generator().manual_seed(seed)
    u, raw, z = (torch.randn(Bt, L, Di, generator=g, dtype=torch.float64) for _ in range(3))
    delta = raw - 1 if softplus else F.softplus(raw - 1)  # a positive step either way
    A = -torch.exp(torch.randn(Di, N, generator=g, dtype=torch.float64) * 0.5)
    Bm, Cm = (torch.randn(Bt, L, N, generator=g, dtype=torch.float64) for _ in range(2))
    D = torch.randn(Di, generator=g, dtype=torch.float64)
    for r, p in enumerate(pads):
        for x in (u, Bm, Cm, z):
            x[r, :p] = 0
    return [u, delta, A, Bm, Cm, D, z]


def reference(u, delta, A, Bm, Cm, D, z, softplus):
    """The recurrence as plain autograd-traced torch ops (float64), one position at a time."""
    if softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) + (0 if D is None else u * D)
    return y if z is None else y * F.silu(z)


def run(fn, inputs, gy):
    """(output, grads) of sum(fn(*inputs) * gy); a None input gets a None grad."""
    xs = [None if x is None else x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*xs)
    (out * gy).sum().backward()
    return [out.detach()] + [None if x is None else x.grad for x in xs]


def compare(Bt, L, Di, N, pads=(), use_d=True, use_z=True, softplus=True):
    """Max abs difference, per output and gradient, of the float32 Triton scan against the float64 reference and
    against the float32 C++ kernel; asserts float32 tolerance (1e-5 of the largest reference value)."""
    x64 = make(Bt, L, Di, N, pads, softplus)
    x64[5], x64[6] = (x64[5] if use_d else None), (x64[6] if use_z else None)
    gy = torch.randn(Bt, L, Di, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x32 = [None if x is None else x.float() for x in x64]
    ref = run(lambda *a: reference(*a, softplus), x64, gy)
    tri = run(lambda u, dl, A, B, C, D, z: st.selective_scan_triton(u, dl, A, B, C, D, z, softplus),
              x32, gy.float())
    cpp = run(lambda u, dl, A, B, C, D, z: selective_scan(u, dl, A, B, C, D=D, z=z, delta_softplus=softplus,
                                                          backend="cpp"), x32, gy.float())
    errs = {}
    for name, t, r, c in zip(NAMES, tri, ref, cpp):
        if r is None:
            assert t is None
            continue
        assert t.dtype == torch.float32 and t.shape == r.shape
        scale = r.abs().max().item() or 1.0
        errs[name] = ((t.double() - r).abs().max().item(), (t - c).abs().max().item())
        assert errs[name][0] <= 1e-5 * scale, f"{name} vs float64: {errs[name][0]:.2e} (scale {scale:.2e})"
        assert errs[name][1] <= 1e-5 * scale, f"{name} vs C++: {errs[name][1]:.2e} (scale {scale:.2e})"
    return errs


@needs_triton
@needs_cpp
@pytest.mark.parametrize("N", [16, 32])
@pytest.mark.parametrize("L", [1, 7, 50, 64])
def test_triton_scan_matches_float64_and_cpp(L, N):
    """Mamba's setting (softplus step, D skip, z gate), 6 channels (a partial block), rows left padded by
    0, 3 and L - 1 positions; 64 ends on a checkpoint boundary, 50 does not."""
    compare(3, L, 6, N, pads=(0, min(3, L - 1), L - 1))


@needs_triton
@needs_cpp
@pytest.mark.parametrize("use_d,use_z,softplus,L", [(False, False, False, 7), (True, False, True, 7),
                                                    (False, True, False, 7), (True, True, False, 50)])
def test_triton_scan_options(use_d, use_z, softplus, L):
    compare(2, L, 5, 16, pads=(0, 2), use_d=use_d, use_z=use_z, softplus=softplus)


@needs_triton
@needs_cpp
def test_triton_scan_float64_tight_and_other_chunk():
    """float64 in, float64 out, to 1e-10 of the C++ float64 kernel; chunks of 4 positions, the last one partial."""
    x = make(2, 22, 9, 16, pads=(0, 5))
    gy = torch.randn(2, 22, 9, dtype=torch.float64)
    tri = run(lambda u, dl, A, B, C, D, z: st.selective_scan_triton(u, dl, A, B, C, D, z, True, chunk=4), x, gy)
    cpp = run(lambda u, dl, A, B, C, D, z: selective_scan(u, dl, A, B, C, D=D, z=z, delta_softplus=True,
                                                          backend="cpp"), x, gy)
    for name, a, b in zip(NAMES, tri, cpp):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@needs_triton
def test_triton_left_padding_leaves_real_positions_unchanged():
    """Leading positions with u = 0 keep the state at zero: each padded row equals its own unpadded run."""
    u, delta, A, Bm, Cm, D, z = (x.float() for x in make(3, 12, 6, 16, pads=(0, 4, 11)))
    out = selective_scan(u, delta, A, Bm, Cm, D=D, z=z, delta_softplus=True, backend="triton")
    for r, p in enumerate((0, 4, 11)):
        alone = selective_scan(*(x[r:r + 1, p:] for x in (u, delta)), A, *(x[r:r + 1, p:] for x in (Bm, Cm)),
                               D=D, z=z[r:r + 1, p:], delta_softplus=True, backend="triton")
        torch.testing.assert_close(out[r:r + 1, p:], alone, rtol=0, atol=0)


@needs_triton
@needs_cpp
def test_triton_block_reads_strided_views_like_the_cpp_block():
    """A whole MambaBlock through the Triton scan (B, C, z are strided views of the projections) against the
    fused C++ block: output and every parameter's gradient."""
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=16)
    x = torch.randn(2, 9, 8)
    out = {}
    for backend in ("triton", "cpp"):
        block.zero_grad()
        y = block._forward_ours(x, backend)
        y.square().sum().backward()
        out[backend] = [y.detach()] + [p.grad.clone() for p in block.parameters()]
    for a, b in zip(out["triton"], out["cpp"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_triton
def test_triton_no_grad_forward_keeps_no_checkpoints():
    u, delta, A, Bm, Cm, D, z = (x.float() for x in make(2, 20, 4, 16))
    with torch.no_grad():
        a = st.selective_scan_triton(u, delta, A, Bm, Cm, D, z, True)
    b = st.selective_scan_triton(u.requires_grad_(), delta, A, Bm, Cm, D, z, True)
    torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    assert len(st.launch_sites()) == 2


def test_dispatch_defaults_and_forced_backends(monkeypatch):
    monkeypatch.delenv(scan.ENV, raising=False)
    assert scan.choose_backend("cpu") == ("cpp" if scan.load_extension() is not None else "torch")
    monkeypatch.setattr(scan, "mamba_ssm_kernels", lambda: None)
    assert scan.choose_backend("cuda") == ("triton" if scan.triton_module()[0] is not None else "torch")
    monkeypatch.setattr(scan, "mamba_ssm_kernels", lambda: ("fn", None))
    assert scan.choose_backend("cuda") == "mamba_ssm"
    monkeypatch.setenv(scan.ENV, "torch")
    assert scan.choose_backend("cuda") == "torch" and scan.choose_backend("cpu") == "torch"
    monkeypatch.setenv(scan.ENV, "cpp")
    with pytest.raises(UsageError, match=r"RECBOLE_FAMOUS_MAMBA_SCAN=cpp: .*CPU tensors only"):
        scan.choose_backend("cuda")
    monkeypatch.setattr(scan, "mamba_ssm_kernels", lambda: None)
    monkeypatch.setenv(scan.ENV, "mamba_ssm")
    with pytest.raises(UsageError, match="mamba-ssm is not importable"):
        scan.choose_backend("cuda")
    monkeypatch.setenv(scan.ENV, "cuda")
    with pytest.raises(UsageError, match="unknown backend"):
        scan.choose_backend("cpu")
    monkeypatch.setattr(scan, "triton_module", lambda: (None, "triton does not import (ImportError: x)"))
    monkeypatch.setenv(scan.ENV, "triton")
    with pytest.raises(UsageError, match=r"=triton: .*triton does not import"):
        MambaBlock(8, d_state=4)(torch.randn(2, 3, 8))


def test_mamba_ssm_backend_layout(monkeypatch):
    """backend="mamba_ssm" hands mamba-ssm's selective_scan_fn its (B, D, L) layout (a stand-in here, on the CPU)."""
    def fake_fn(u, delta, A, B, C, D=None, z=None, delta_softplus=False):
        t = lambda v: None if v is None else v.transpose(1, 2)  # noqa: E731
        assert u.shape[1] == A.shape[0] and B.shape[1] == A.shape[1]
        return t(selective_scan(t(u), t(delta), A, t(B), t(C), D=D, z=t(z), delta_softplus=delta_softplus))

    monkeypatch.setattr(scan, "mamba_ssm_kernels", lambda: (fake_fn, None))
    monkeypatch.setattr(scan, "why_not", lambda backend, device_type: None)
    u, delta, A, Bm, Cm, D, z = (x.float() for x in make(2, 5, 3, 4))
    want = selective_scan(u, delta, A, Bm, Cm, D=D, z=z, delta_softplus=True)
    got = selective_scan(u, delta, A, Bm, Cm, D=D, z=z, delta_softplus=True, backend="mamba_ssm")
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_forced_torch_backend_runs_the_block(monkeypatch):
    monkeypatch.setenv(scan.ENV, "torch")
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=4).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    y = block(x)
    monkeypatch.delenv(scan.ENV)
    torch.testing.assert_close(y, block(x), rtol=1e-10, atol=1e-12)


def test_torch_fallback_backward_slices_by_free_memory():
    u = torch.zeros(4096, 50, 128)
    assert scan_torch.backward_chunk(u, 32) == 64  # CPU: unchanged
    per_row = (2 * 50 + 9) * 128 * 32 * 4
    cuda_like = type("U", (), {"device": torch.device("cuda"), "shape": (4096, 50, 128), "element_size": lambda s: 4})()
    assert scan_torch.backward_chunk(cuda_like, 32, free_bytes=100 * per_row) == 50
    assert scan_torch.backward_chunk(cuda_like, 32, free_bytes=10 ** 12) == 4096
    assert scan_torch.backward_chunk(cuda_like, 32, free_bytes=0) == 1


@pytest.mark.skipif(st is None, reason=f"{WHY}")
def test_kernels_compile_for_cuda_without_a_gpu():
    """Triton's CUDA compiler (ptxas ships in the wheel) turns both kernels into sm_80 and sm_90 code here,
    so a kernel that only the interpreter accepts cannot pass unnoticed."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = "from recbole_famous.model.mamba import scan_triton as s; print(s.compile_cuda([80, 90]))"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if res.returncode and "nvidia" in res.stderr.lower() and "backend" in res.stderr.lower():
        pytest.skip(f"triton has no CUDA backend here: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "sm_90" in res.stdout and "spilled 0" in res.stdout


def test_micro_benchmark_counts_launches_on_cpu_and_needs_cuda_to_time(capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import bench_mamba_scan_cuda as bench

    counts = bench.count_launches(8, 5, 4, 4)
    torch_ops, torch_kernels = counts["torch, backward in 64-row slices"]
    assert torch_ops > torch_kernels > 100
    if st is not None:
        assert counts["triton"]["kernel launches"] == 2 and counts["triton"]["kernels per step"] <= 6
    if not torch.cuda.is_available():
        assert bench.main(["--batch", "2"]) == 2
        assert "CUDA is not available" in capsys.readouterr().out
