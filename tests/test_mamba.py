"""The Mamba backend: our selective scan against a float64 step-by-step reference, and the block.

The first run compiles the C++ kernels (seconds; cached afterwards under ~/.cache/recbole_famous).
"""
import math

import pytest
import torch

from recbole_famous.model.mamba import MambaBlock, selective_scan
from recbole_famous.model.mamba.scan import load_extension

HAVE_CPP = load_extension() is not None
BACKENDS = ["cpp", "torch"] if HAVE_CPP else ["torch"]
needs_cpp = pytest.mark.skipif(not HAVE_CPP, reason="the C++ kernels could not be built here")


def reference_scan(u, delta, A, Bm, Cm):
    """The recurrence written out one (b, d, n) at a time, in float64; autograd gives its gradients."""
    Bt, L, D = u.shape
    N = A.shape[1]
    ys = []
    for b in range(Bt):
        rows = []
        for t in range(L):
            rows.append([None] * D)
        for d in range(D):
            h = [torch.zeros((), dtype=torch.float64)] * N
            for t in range(L):
                acc = torch.zeros((), dtype=torch.float64)
                for n in range(N):
                    h[n] = torch.exp(delta[b, t, d] * A[d, n]) * h[n] + delta[b, t, d] * Bm[b, t, n] * u[b, t, d]
                    acc = acc + Cm[b, t, n] * h[n]
                rows[t][d] = acc
        ys.append(torch.stack([torch.stack(r) for r in rows]))
    return torch.stack(ys)


def make_inputs(Bt, L, D, N, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(Bt, L, D, generator=g, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(Bt, L, D, generator=g, dtype=dtype) - 1)
    A = -torch.exp(torch.randn(D, N, generator=g, dtype=dtype) * 0.5)
    Bm = torch.randn(Bt, L, N, generator=g, dtype=dtype)
    Cm = torch.randn(Bt, L, N, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (u, delta, A, Bm, Cm)]


def grads(fn, inputs, gy):
    for x in inputs:
        x.grad = None
    y = fn(*inputs)
    (y * gy).sum().backward()
    return y.detach(), [x.grad.clone() for x in inputs]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def reference_full(u, delta, A, Bm, Cm, D, z):
    """mamba-ssm's selective_scan_fn semantics: softplus step, D skip, silu(z) gate."""
    delta = torch.nn.functional.softplus(delta)
    y = reference_scan(u, delta, A, Bm, Cm) + u * D
    return y * z * torch.sigmoid(z)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 1, 3, 4), (2, 7, 5, 3), (1, 4, 35, 2)],
                         ids=["length1", "odd_length", "channel_tail_over_block"])
def test_scan_matches_float64_reference(backend, shape):
    inputs = make_inputs(*shape)
    gy = torch.randn(*shape[:3], dtype=torch.float64)
    y_ref, g_ref = grads(reference_scan, inputs, gy)
    y, g = grads(lambda *a: selective_scan(*a, backend=backend), inputs, gy)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-12)
    for name, a, b in zip(["u", "delta", "A", "B", "C"], g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12, msg=f"grad {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 1, 3, 4), (2, 5, 33, 3)], ids=["length1", "odd_length"])
def test_gated_scan_with_softplus_and_skip_matches_reference(backend, shape):
    inputs = make_inputs(*shape)
    g = torch.Generator().manual_seed(1)
    D = torch.randn(shape[2], generator=g, dtype=torch.float64).requires_grad_()
    z = torch.randn(*shape[:3], generator=g, dtype=torch.float64).requires_grad_()
    gy = torch.randn(*shape[:3], dtype=torch.float64)
    y_ref, g_ref = grads(reference_full, inputs + [D, z], gy)
    y, g = grads(lambda u, dl, A, B, C, D, z: selective_scan(
        u, dl, A, B, C, D=D, z=z, delta_softplus=True, backend=backend), inputs + [D, z], gy)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-12)
    for name, a, b in zip(["u", "delta", "A", "B", "C", "D", "z"], g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12, msg=f"grad {name}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_float32_close_to_float64(backend):
    inputs = make_inputs(3, 50, 70, 16)
    gy = torch.randn(3, 50, 70, dtype=torch.float64)
    y64, g64 = grads(lambda *a: selective_scan(*a, backend=BACKENDS[0]), inputs, gy)
    in32 = [x.detach().float().requires_grad_() for x in inputs]
    y32, g32 = grads(lambda *a: selective_scan(*a, backend=backend), in32, gy.float())
    assert y32.dtype == torch.float32
    assert rel_err(y32.double(), y64) < 1e-5
    for a, b in zip(g32, g64):
        assert rel_err(a.double(), b) < 1e-5


@needs_cpp
def test_scan_padded_batch_rows_independent():
    """A batch of rows of different real lengths (zeros after): each row equals its own unpadded run."""
    u, delta, A, Bm, Cm = (x.detach() for x in make_inputs(3, 9, 6, 4))
    lengths = [9, 4, 1]
    for row, n in enumerate(lengths):
        u[row, n:] = 0
        delta[row, n:] = 0
    y = selective_scan(u, delta, A, Bm, Cm)
    for row, n in enumerate(lengths):
        alone = selective_scan(u[row:row + 1, :n].contiguous(), delta[row:row + 1, :n].contiguous(), A,
                               Bm[row:row + 1, :n].contiguous(), Cm[row:row + 1, :n].contiguous())
        torch.testing.assert_close(y[row:row + 1, :n], alone, rtol=1e-12, atol=1e-12)


def test_scan_rejects_bad_shapes():
    u, delta, A, Bm, Cm = (x.detach() for x in make_inputs(2, 3, 4, 5))
    with pytest.raises(ValueError, match="selective_scan"):
        selective_scan(u, delta, A, Bm[:, :, :4], Cm)
    with pytest.raises(ValueError, match="backend"):
        selective_scan(u, delta, A, Bm, Cm, backend="cuda")


# mamba_ssm.Mamba(d_model=64, d_state=32, d_conv=4, expand=2): names and shapes of its state dict.
MAMBA_SSM_LAYOUT = {
    "A_log": (128, 32), "D": (128,), "in_proj.weight": (256, 64), "conv1d.weight": (128, 1, 4),
    "conv1d.bias": (128,), "x_proj.weight": (4 + 64, 128), "dt_proj.weight": (128, 4),
    "dt_proj.bias": (128,), "out_proj.weight": (64, 128),
}


def test_block_state_dict_has_mamba_ssm_layout_and_init():
    torch.manual_seed(0)
    block = MambaBlock(64, d_state=32, d_conv=4, expand=2)
    sd = block.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == MAMBA_SSM_LAYOUT
    torch.testing.assert_close(sd["A_log"], torch.log(torch.arange(1., 33.)).repeat(128, 1))
    torch.testing.assert_close(sd["D"], torch.ones(128))
    dt = torch.nn.functional.softplus(sd["dt_proj.bias"])
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-7
    assert sd["dt_proj.weight"].abs().max() <= 4 ** -0.5
    other = MambaBlock(64, d_state=32)
    other.load_state_dict(sd)  # round trip, strict
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(other(x), block(x))


def test_block_is_causal_and_right_padding_does_not_leak():
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=8).double()
    x = torch.randn(3, 11, 16, dtype=torch.float64)
    y = block(x)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(3, 5, 16, dtype=torch.float64)  # change only the "padding" tail
    torch.testing.assert_close(block(x2)[:, :6], y[:, :6], rtol=0, atol=0)
    torch.testing.assert_close(block(x[:, :6]), y[:, :6], rtol=1e-12, atol=1e-12)


@needs_cpp
@pytest.mark.parametrize("conv_bias", [True, False])
def test_fused_cpu_block_matches_composite_modules(conv_bias):
    """The fused C++ path (conv, scan, gates, hand-written backward) against standard modules."""
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=4, dt_rank=3, d_conv=3, conv_bias=conv_bias).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64, requires_grad=True)
    out = {}
    for path in ("fused", "composite"):
        block.zero_grad()
        x.grad = None
        if path == "fused":
            y = block(x)
        else:
            y = block.out_proj(block._inner_composite(block.in_proj(x), -torch.exp(block.A_log), "torch"))
        y.pow(2).sum().backward()
        out[path] = [y.detach(), x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    for a, b in zip(out["fused"], out["composite"]):
        assert rel_err(a, b) < 1e-9
    assert all(g.abs().sum() > 0 for g in out["fused"])


@needs_cpp
def test_fused_cpu_block_float32_close_to_float64():
    torch.manual_seed(0)
    block = MambaBlock(64, d_state=32)
    x = torch.randn(4, 50, 64)
    y32 = block(x)
    y64 = block.double()(x.double())
    assert rel_err(y32.double(), y64) < 1e-5


def test_block_rejects_bad_input():
    block = MambaBlock(8)
    with pytest.raises(ValueError, match=r"expected input \(batch, length, 8\)"):
        block(torch.randn(2, 5, 7))


def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba-ssm's selective_scan_fn contract ((B, D, L) / (B, N, L) layout) on top of our scan."""
    t = lambda v: None if v is None else v.transpose(1, 2)  # noqa: E731
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    return t(selective_scan(t(u), t(delta), A, t(B), t(C), D=D, z=t(z), delta_softplus=delta_softplus))


def test_mamba_ssm_path_plumbing_matches_our_path():
    """The CUDA branch's layout handling, run on the CPU with a stand-in for mamba-ssm's kernel."""
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=4).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    torch.testing.assert_close(block._forward_mamba_ssm(x, fake_selective_scan_fn, None), block(x))


def test_failed_build_falls_back_to_torch_and_says_why(monkeypatch, tmp_path, caplog):
    import recbole_famous.model.mamba.scan as scan_mod
    monkeypatch.setattr(scan_mod, "_ext", None)
    monkeypatch.setattr(scan_mod, "_ext_failed", False)
    monkeypatch.setenv("RECBOLE_FAMOUS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a compiler that always fails
    monkeypatch.delenv("RECBOLE_FAMOUS_MAMBA_SCAN", raising=False)
    with caplog.at_level("WARNING"):
        assert scan_mod.load_extension() is None
    assert "could not build the C++ selective scan" in caplog.text
    block = MambaBlock(8, d_state=4)
    y = block(torch.randn(2, 5, 8))
    assert y.shape == (2, 5, 8) and torch.isfinite(y).all()
