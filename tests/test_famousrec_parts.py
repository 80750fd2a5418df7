"""FamouSRec's pieces on their own: padding, router, experts, mixture."""
import pytest
import torch

import recbole_famous  # noqa: F401
from recbole_famous.model.experts import EXPERT_KINDS, ExpertParams, build_expert
from recbole_famous.model.mixture import MoELayer, dense_mix, sparse_dispatch, top_k_gates
from recbole_famous.model.padding import right_to_left_pad
from recbole_famous.model.router import FrequencyRouter
from famousrec_fakes import settings

P = ExpertParams(hidden_size=8, inner_size=16, n_heads=2, hidden_dropout_prob=0.0, attn_dropout_prob=0.0,
                 d_state=4, d_conv=4, expand=2)
N = 10


def left_padded(batch=4, n=N, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([n, 1, 4, 7][:batch])
    mask = torch.arange(n)[None] >= (n - lengths)[:, None]
    x = torch.randn(batch, n, d, generator=g) * mask[..., None]
    return x, mask


def test_right_to_left_pad():
    seq = torch.tensor([[1, 2, 3, 0, 0], [4, 0, 9, 9, 9], [5, 6, 7, 8, 2]])
    out = right_to_left_pad(seq, torch.tensor([3, 1, 5]))
    assert out.tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 0, 4], [5, 6, 7, 8, 2]]


def test_all_ones_filter_returns_the_input():
    router = FrequencyRouter(settings(3), N)
    with torch.no_grad():
        router.filters.zero_()
        router.filters[..., 0] = 1.0  # Q_j = 1 + 0i everywhere
    h, _ = left_padded()
    comps = router.components(h)
    assert comps.shape == (4, 3, N, 8)
    for j in range(3):
        assert torch.allclose(comps[:, j], h, atol=1e-6)


def test_filter_acts_per_frequency():
    """A filter keeping only frequency 0 gives each channel's mean over the sequence (ortho FFT)."""
    router = FrequencyRouter(settings(1), N)
    with torch.no_grad():
        router.filters.zero_()
        router.filters[:, 0, :, 0] = 1.0
    h, _ = left_padded()
    comps = router.components(h)[:, 0]
    assert torch.allclose(comps, h.mean(1, keepdim=True).expand_as(h), atol=1e-6)


@pytest.mark.parametrize("summary", ["last", "mean"])
@pytest.mark.parametrize("freq", [True, False])
def test_router_shapes_and_user_level_gates(summary, freq):
    router = FrequencyRouter(settings(4, frequency_learning=freq, gate_summary=summary, gate_hidden_size=5), N)
    h, mask = left_padded()
    comps, logits = router(h, mask)
    assert comps.shape == (4, 4, N, 8) and logits.shape == (4, 4)
    assert comps.dtype == logits.dtype == torch.float32


@pytest.mark.parametrize("kind", sorted(EXPERT_KINDS))
def test_expert_shapes_last_position_and_causality(kind):
    torch.manual_seed(0)
    expert = build_expert(kind, P).eval()
    x, mask = left_padded()
    y = expert(x, mask)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.allclose(expert.forward_last(x, mask), y[:, -1], atol=1e-5)
    # causal: changing position 6 leaves positions < 6 unchanged
    x2 = x.clone()
    x2[:, 6] += 1.0
    assert torch.allclose(expert(x2, mask)[:, :6], y[:, :6], atol=1e-5)


def test_unknown_expert_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown expert kind 'lstm'"):
        build_expert("lstm", P)


def test_top_k_gates():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    w, idx, top_w = top_k_gates(logits, 2)
    assert idx.tolist() == [[1, 2]]
    e = torch.exp(torch.tensor([3.0, 2.0]))
    assert torch.allclose(w, torch.tensor([[0.0, e[0] / e.sum(), e[1] / e.sum(), 0.0]]))
    assert torch.allclose(top_k_gates(logits, 4)[0], torch.softmax(logits, -1))


def _layer(kinds=("attention", "gru", "mamba", "mlp")):
    torch.manual_seed(0)
    return MoELayer(settings(experts=list(kinds)), N).eval()


@pytest.mark.parametrize("last_only", [False, True])
def test_mixture_top_k_equals_dense_weighted_sum(last_only):
    layer = _layer()
    x, mask = left_padded()
    with torch.no_grad():
        out = layer(x, mask, top_k=4, last_only=last_only)
        comps, logits = layer.router(x, mask)
        own = torch.stack([(layer.experts[j].forward_last(comps[:, j], mask) if last_only else layer.experts[j](comps[:, j], mask)) for j in range(4)], 1)
        want = dense_mix(own, torch.softmax(logits, -1))
    assert torch.allclose(out.hidden, want, atol=1e-6)
    if last_only:
        full = layer(x, mask, top_k=4, last_only=False).hidden
        assert torch.allclose(out.hidden, full[:, -1], atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("last_only", [False, True])
def test_sparse_dispatch_equals_dense_masked(k, last_only):
    layer = _layer()
    x, mask = left_padded()
    with torch.no_grad():
        out = layer(x, mask, top_k=k, last_only=last_only)  # eval mode, k < K: sparse dispatch
        comps, logits = layer.router(x, mask)
        own = torch.stack([(layer.experts[j].forward_last(comps[:, j], mask) if last_only else layer.experts[j](comps[:, j], mask)) for j in range(4)], 1)
        weights, idx, _ = top_k_gates(logits, k)
        want = dense_mix(own, weights)  # all experts computed, then masked to the chosen ones
    assert out.own is None  # the sparse path never computed all experts
    assert torch.equal(out.chosen, idx[:, 0])
    assert torch.allclose(out.hidden, want, atol=1e-6)


def test_sparse_dispatch_runs_each_user_through_its_expert_only():
    calls = []
    comps = torch.arange(3 * 2 * 1 * 1, dtype=torch.float32).view(3, 2, 1, 1)
    mask = torch.ones(3, 1, dtype=torch.bool)

    def run(j, x, m):
        calls.append((j, x.shape[0]))
        return x * 10 ** j

    out = sparse_dispatch(run, comps, mask, torch.tensor([[1], [0], [1]]), torch.ones(3, 1))
    assert calls == [(0, 1), (1, 2)]
    assert out.flatten().tolist() == [10.0, 2.0, 50.0]


def test_force_expert_and_router_off():
    layer = _layer()
    x, mask = left_padded()
    with torch.no_grad():
        forced = layer(x, mask, top_k=1, force_expert=2)
        comps, _ = layer.router(x, mask)
        assert torch.allclose(forced.hidden, layer.experts[2](comps[:, 2], mask), atol=1e-6)
        assert forced.chosen.tolist() == [2] * 4
    off = MoELayer(settings(experts=["mlp", "gru"], use_router=False), N).eval()
    assert off.router.gate is None
    with torch.no_grad():
        out = off(x, mask, top_k=1)
        comps, _ = off.router(x, mask)
        want = (off.experts[0](comps[:, 0], mask) + off.experts[1](comps[:, 1], mask)) / 2
    assert out.gate_logits is None and torch.allclose(out.hidden, want, atol=1e-6)


def test_pairs_hold_every_expert_on_every_component():
    layer = _layer(("attention", "mlp", "gru"))
    x, mask = left_padded()
    with torch.no_grad():
        out = layer(x, mask, top_k=3, last_only=True, need_pairs="exact")
        comps, _ = layer.router(x, mask)
    assert out.pairs.shape == (4, 3, 3, 8)
    for j in range(3):
        for k in range(3):
            assert torch.allclose(out.pairs[:, j, k], layer.experts[k].forward_last(comps[:, j], mask), atol=1e-5)
    assert torch.allclose(out.own, torch.stack([out.pairs[:, j, j] for j in range(3)], 1))


def test_sampled_pairs_hold_one_other_component_per_expert():
    layer = _layer(("attention", "mlp", "gru"))
    x, mask = left_padded()
    with torch.no_grad():
        out = layer(x, mask, top_k=3, last_only=True, need_pairs="sampled")
        comps, _ = layer.router(x, mask)
        assert out.pairs.shape == (4, 1, 3, 8)
        for k in range(3):
            every = torch.stack([layer.experts[k].forward_last(comps[:, j], mask) for j in range(3)], 1)
            hit = (every - out.pairs[:, 0, k, None]).abs().amax(-1) < 1e-5  # (B, K): which j was drawn
            assert hit.sum(1).tolist() == [1] * 4 and not hit[:, k].any()
