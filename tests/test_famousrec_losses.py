"""FamouSRec's auxiliary losses against hand computations, edge cases, and L_spe's memory bound."""
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import recbole_famous  # noqa: F401
from recbole_famous.model.losses import alignment_loss, load_balance_loss, specialization_loss


def spe_reference(pairs, items, eps=1e-6):
    """L_spe pair by pair with F.kl_div, holding everything (spec §5)."""
    b, k = pairs.shape[:2]
    logp = torch.log_softmax(pairs @ items.t(), dim=-1)

    def kl(a, c):  # KL(p_a || p_c), summed over items, averaged over users
        return F.kl_div(c, a, log_target=True, reduction="sum") / b

    numer = [kl(logp[:, i, i], logp[:, j, j]) for i in range(k) for j in range(k) if i != j]
    denom = [kl(logp[:, kk, kk], logp[:, j, kk]) for kk in range(k) for j in range(k) if j != kk]
    return torch.stack(numer).mean() / (torch.stack(denom).mean() + eps)


def diag(pairs):
    return pairs.diagonal(dim1=1, dim2=2).permute(0, 2, 1)


def test_load_balance_hand_computation():
    g = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax rows (1/4, 3/4), (1/2, 1/2)
    assert load_balance_loss(g).item() == pytest.approx((0.375 - 0.5) ** 2 + (0.625 - 0.5) ** 2, abs=1e-7)


def test_load_balance_zero_for_uniform_gates():
    assert load_balance_loss(torch.zeros(7, 4)).item() == 0.0
    # uniform on average (not per user) is also zero
    g = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert load_balance_loss(g).item() == pytest.approx(0.0, abs=1e-12)


def test_alignment_hand_computation():
    own = torch.tensor([[[1.0]], [[2.0]]])  # B=2, K=1, d=1
    f = torch.tensor([[1.0], [-1.0]])
    want = (-math.log(math.exp(1) / (math.exp(1) + math.exp(-1)))
            - math.log(math.exp(-2) / (math.exp(2) + math.exp(-2)))) / 2
    assert alignment_loss(own, f, temperature=1.0).item() == pytest.approx(want, rel=1e-6)
    # temperature divides the logits
    want_t = (-math.log(math.exp(2) / (math.exp(2) + math.exp(-2)))
              - math.log(math.exp(-4) / (math.exp(4) + math.exp(-4)))) / 2
    assert alignment_loss(own, f, temperature=0.5).item() == pytest.approx(want_t, rel=1e-6)


def test_alignment_stop_grad_leaves_f_without_gradient():
    own = torch.randn(4, 3, 5, requires_grad=True)
    f = torch.randn(4, 5, requires_grad=True)
    alignment_loss(own, f, 1.0, stop_grad=True).backward()
    assert f.grad is None and own.grad.abs().sum() > 0
    alignment_loss(own, f, 1.0, stop_grad=False).backward()
    assert f.grad.abs().sum() > 0


def test_specialization_hand_computation():
    # K=2, B=1, |I|=2, d=1; item vectors 0 and 1 so p = softmax([0, z]) for z = M_k(x_j)
    z = {(0, 0): 0.5, (0, 1): -1.0, (1, 0): 2.0, (1, 1): 1.5}  # (j, k) -> scalar representation
    pairs = torch.tensor([[[[z[0, 0]], [z[0, 1]]], [[z[1, 0]], [z[1, 1]]]]])  # (1, 2, 2, 1)
    items = torch.tensor([[0.0], [1.0]])

    def p(j, k):
        e = math.exp(z[j, k])
        return [1 / (1 + e), e / (1 + e)]

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))

    numer = (kl(p(0, 0), p(1, 1)) + kl(p(1, 1), p(0, 0))) / 2
    denom = (kl(p(0, 0), p(1, 0)) + kl(p(1, 1), p(0, 1))) / 2  # expert k on x_k vs expert k on x_j
    want = numer / (denom + 1e-6)
    assert specialization_loss(diag(pairs), pairs, items).item() == pytest.approx(want, rel=1e-5)


def test_specialization_chunked_equals_reference_with_gradients():
    torch.manual_seed(0)
    pairs = torch.randn(7, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    items = torch.randn(11, 4, dtype=torch.float64, requires_grad=True)
    ref = spe_reference(pairs, items)
    g_ref = torch.autograd.grad(ref, (pairs, items))
    for chunk in (1, 3, 7, 100):
        got = specialization_loss(diag(pairs), pairs, items, chunk_size=chunk)
        g_got = torch.autograd.grad(got, (pairs, items))
        assert got.item() == pytest.approx(ref.item(), rel=1e-10)
        for a, b in zip(g_got, g_ref):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def kernel_or_skip():
    from recbole_famous.model import spe_kernels
    kernels = spe_kernels.load()
    if kernels is None:
        pytest.skip("the C++ L_spe kernel cannot be built here (no C++ compiler)")
    return kernels


@pytest.mark.parametrize("path", ["kernel", "torch"])
@pytest.mark.parametrize("chunk", [4, 100])  # 4 < B: recomputed per block; 100 >= B: every block kept
@pytest.mark.parametrize("m", [1, 3])
def test_specialization_blocks_give_the_same_loss_and_gradients(chunk, m, path, monkeypatch):
    """Blocks of ``block_values`` log-probabilities (allocator-friendly pieces of a chunk) change nothing:
    blocks of 1, 2 and 3 users against one block for the whole batch, loss and every gradient; and the
    blocks really are that small (the log-probabilities computed per call never exceed the bound), on the
    fused C++ passes and on the PyTorch operators."""
    from recbole_famous.model import losses, spe_kernels
    torch.manual_seed(4)
    b, k, n, d = 7, 3, 11, 4
    own = torch.randn(b, k, d, dtype=torch.float64, requires_grad=True)
    others = torch.randn(b, m, k, d, dtype=torch.float64, requires_grad=True)
    items = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    sampled = m == 1
    seen = []
    if path == "torch":
        monkeypatch.setattr(spe_kernels, "usable", lambda *tensors: False)
        real = losses._spe_log_probs
        monkeypatch.setattr(losses, "_spe_log_probs", lambda o, t, i: (seen.append(t.shape[0]), real(o, t, i))[1])
    else:
        kernels = kernel_or_skip()
        fwd, bwd = kernels.forward, kernels.backward
        monkeypatch.setattr(kernels, "forward", lambda s, t: (seen.append(t.shape[0]), fwd(s, t))[1])
        monkeypatch.setattr(kernels, "backward", lambda s, t, *a: (seen.append(t.shape[0]), bwd(s, t, *a))[1])
    one = losses.specialization_loss(own, others, items, chunk_size=chunk, sampled=sampled, block_values=10 ** 9)
    g_one = torch.autograd.grad(one, (own, others, items))
    for users in (1, 2, 3):
        seen.clear()
        got = losses.specialization_loss(own, others, items, chunk_size=chunk, sampled=sampled,
                                         block_values=users * m * k * n)
        g_got = torch.autograd.grad(got, (own, others, items))
        assert got.item() == pytest.approx(one.item(), rel=1e-12)
        for a, c in zip(g_got, g_one):
            assert torch.allclose(a, c, rtol=1e-10, atol=1e-13)
        assert max(seen) == min(users, chunk) and sum(seen) >= b, seen  # forward (+ backward)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("k, m", [(4, 1), (3, 3), (2, 1)])
@pytest.mark.parametrize("recompute", [False, True])
def test_spe_kernel_equals_the_pytorch_operators(dtype, rtol, k, m, recompute, monkeypatch):
    """The fused C++ passes against the PyTorch operators (``_SpeSums`` with the kernel switched off), on
    item counts that are not a multiple of the kernel's tile (257, 1000): both sums and every input's
    gradient, kept or recomputed, float64 and float32, sampled (M = 1) and exact (M = K)."""
    from recbole_famous.model import losses, spe_kernels
    kernel_or_skip()
    torch.manual_seed(11)
    for n in (257, 1000):
        c, d = 5, 8
        own = (torch.randn(c, k, d, dtype=dtype) * 0.8).requires_grad_()
        others = (torch.randn(c, m, k, d, dtype=dtype) * 0.8).requires_grad_()
        items = (torch.randn(n, d, dtype=dtype) * 0.8).requires_grad_()

        def run():
            numer, denom = losses._SpeSums.apply(own, others, items, recompute)
            return (numer, denom), torch.autograd.grad(0.7 * numer - 1.3 * denom, (own, others, items))

        assert spe_kernels.usable(own, others, items)
        got, g_got = run()
        with monkeypatch.context() as patch:
            patch.setattr(spe_kernels, "usable", lambda *tensors: False)
            want, g_want = run()
        for a, w in zip(got, want):
            assert a.dtype == dtype and a.item() == pytest.approx(w.item(), rel=rtol)
        for a, w in zip(g_got, g_want):
            assert a.dtype == dtype and a.shape == w.shape
            assert (a - w).abs().max() <= rtol * 10 * w.abs().max(), (a - w).abs().max()


def test_spe_kernel_rejects_bad_input_before_the_cpp_code():
    kernels = kernel_or_skip()
    s, t = torch.randn(2, 3, 10), torch.randn(2, 1, 3, 10)
    for bad_s, bad_t in [(s.double(), t), (s, t[:, :, :2]), (s.transpose(1, 2), t), (s[:, :, :0], t[..., :0]),
                         (s.int(), t.int())]:
        with pytest.raises(ValueError, match="spe kernel"):
            kernels.forward(bad_s, bad_t)
    _, _, saved = kernels.forward(s, t)
    with pytest.raises(ValueError, match="saved statistics"):
        kernels.backward(s[:1], t[:1], saved, 1.0, 1.0)


def test_spe_kernel_build_failure_falls_back_and_says_why(monkeypatch, tmp_path, caplog):
    from recbole_famous.model import spe_kernels
    torch.manual_seed(3)
    own, others = torch.randn(4, 3, 5, requires_grad=True), torch.randn(4, 1, 3, 5, requires_grad=True)
    items = torch.randn(20, 5, requires_grad=True)
    want = specialization_loss(own, others, items, sampled=True)
    monkeypatch.setattr(spe_kernels, "_kernels", None)
    monkeypatch.setattr(spe_kernels, "_failed", False)
    monkeypatch.setenv("RECBOLE_FAMOUS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a compiler that always fails
    monkeypatch.delenv("RECBOLE_FAMOUS_SPE_KERNEL", raising=False)
    with caplog.at_level("WARNING"):
        assert spe_kernels.load() is None
    assert "could not build the C++ kernel" in caplog.text
    got = specialization_loss(own, others, items, sampled=True)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert all(torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 for x in (own, others, items))


def test_sampled_estimate_is_exact_for_two_experts_and_unbiased_for_three():
    torch.manual_seed(2)
    pairs = torch.randn(1, 2, 2, 4, dtype=torch.float64)
    items = torch.randn(9, 4, dtype=torch.float64)
    others = torch.stack([pairs[:, 1, 0], pairs[:, 0, 1]], dim=1).unsqueeze(1)  # the only j != k
    exact = specialization_loss(diag(pairs), pairs, items)
    assert specialization_loss(diag(pairs), others, items, sampled=True).item() == pytest.approx(exact.item())
    # K = 3, one user: averaging the sampled denominator over every draw gives the exact one
    pairs = torch.randn(1, 3, 3, 4, dtype=torch.float64)
    own, eps = diag(pairs), 1e-6
    numer_over = lambda loss: 1.0 / loss  # loss = numer / (denom + eps), numer identical in both
    exact = specialization_loss(own, pairs, items, eps=eps)
    denoms = []
    for j0 in (1, 2):
        for j1 in (0, 2):
            for j2 in (0, 1):
                others = torch.stack([pairs[:, j, k] for k, j in enumerate((j0, j1, j2))], 1).unsqueeze(1)
                denoms.append(numer_over(specialization_loss(own, others, items, eps=eps, sampled=True)))
    assert sum(denoms) / len(denoms) == pytest.approx(numer_over(exact).item(), rel=1e-9)


def test_specialization_single_expert_is_zero():
    p = torch.randn(3, 1, 1, 4)
    assert specialization_loss(diag(p), p, torch.randn(5, 4)).item() == 0.0


@pytest.mark.parametrize("batch", [1, 4])
def test_losses_finite_for_batch_of_one_and_identical_inputs(batch):
    torch.manual_seed(1)
    # identical representations everywhere (e.g. a history of one repeated item): KLs are 0
    same = torch.randn(1, 1, 1, 8).expand(batch, 3, 3, 8).clone().requires_grad_()
    items = torch.randn(20, 8, requires_grad=True)
    spe = specialization_loss(diag(same), same, items)
    spe.backward()
    assert torch.isfinite(spe) and torch.isfinite(same.grad).all() and torch.isfinite(items.grad).all()
    own = torch.randn(1, 3, 8).expand(batch, 3, 8).clone().requires_grad_()
    f = own[:, 0].detach().clone().requires_grad_()
    al = alignment_loss(own, f, 1.0)
    al.backward()
    assert torch.isfinite(al) and torch.isfinite(own.grad).all()
    if batch == 1:
        assert al.item() == pytest.approx(0.0, abs=1e-7)  # one user: the positive is the only candidate


MEMORY_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
from recbole_famous.model.losses import specialization_loss
torch.set_num_threads(1)
B, K, I, d, chunk = {B}, {K}, {I}, {d}, {chunk}
torch.manual_seed(0)
pairs = torch.randn(B, K, K, d, requires_grad=True)
items = torch.randn(I, d, requires_grad=True)
own = pairs.diagonal(dim1=1, dim2=2).permute(0, 2, 1)
specialization_loss(own[:2], pairs[:2], items[:50], chunk_size=1).backward()  # warm up kernels
def status_kb(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1])
# Reset the peak-RSS mark (VmHWM) to the current RSS, so imports and warm-up do not count: Linux >= 4.0.
try:
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
except OSError as exc:
    print(json.dumps({{"skip": "cannot reset the peak-RSS mark: %s" % exc}}))
    sys.exit(0)
before = status_kb('VmRSS')
loss = specialization_loss(own, pairs, items, chunk_size=chunk)
loss.backward()
peak = status_kb('VmHWM')  # kB, peak resident size since the reset
print(json.dumps({{"peak_over_start_mb": (peak - before) / 1024, "loss": loss.item()}}))
"""


def _peak_mb(chunk, B=256, K=4, I=4000, d=16):
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = MEMORY_SCRIPT.format(root=root, B=B, K=K, I=I, d=d, chunk=chunk)
    # A fixed mmap threshold makes glibc return every freed large block at once, so the process's
    # peak resident size tracks the tensors alive at once rather than the allocator's caching.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    return result


def test_specialization_peak_memory_is_bounded_by_the_chunk():
    """K² x B x |I| float32 = 4*4*256*4000*4 B = 62.5 MB. Chunks of 8 users (2 MB of log-probabilities
    each) must peak well below half of that, forward and backward; one chunk of all users (the unchunked
    computation) must exceed it, so the probe can tell."""
    full_mb = 4 * 4 * 256 * 4000 * 4 / 2 ** 20
    chunked = _peak_mb(chunk=8)
    whole = _peak_mb(chunk=256)
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-4)
    assert whole["peak_over_start_mb"] > full_mb, whole  # measured ~375 MB
    assert chunked["peak_over_start_mb"] < full_mb / 2, chunked  # measured ~14 MB


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("recompute", [False, True])
def test_hand_written_spe_backward_passes_gradcheck(m, recompute):
    """_SpeSums (the training path) against finite differences, for the sampled (M = 1) and the exact
    (M = K) shapes, keeping or recomputing the log-probabilities; and its values against the
    autograd form ``_spe_chunk_sums``."""
    from recbole_famous.model.losses import _SpeSums, _spe_chunk_sums
    torch.manual_seed(3)
    own = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    others = torch.randn(4, m, 3, 5, dtype=torch.float64, requires_grad=True)
    items = torch.randn(13, 5, dtype=torch.float64, requires_grad=True)
    # weight the two outputs differently so that a swapped or missing term shows
    fn = lambda o, t, i: tuple(x * w for x, w in zip(_SpeSums.apply(o, t, i, recompute), (0.7, -1.3)))
    assert torch.autograd.gradcheck(fn, (own, others, items))
    got = _SpeSums.apply(own, others, items, recompute)
    # the pairwise sums, written directly (independent of the regrouping both implementations share)
    lp, lq = torch.log_softmax(own @ items.t(), -1), torch.log_softmax(others @ items.t(), -1)
    numer = sum((lp[:, a].exp() * (lp[:, a] - lp[:, b])).sum() for a in range(3) for b in range(3))
    denom = sum((lp[:, c].exp() * (lp[:, c] - lq[:, j, c])).sum() for j in range(m) for c in range(3))
    for value in (got, _spe_chunk_sums(own, others, items)):
        assert value[0].item() == pytest.approx(numer.item(), rel=1e-10)
        assert value[1].item() == pytest.approx(denom.item(), rel=1e-10)
