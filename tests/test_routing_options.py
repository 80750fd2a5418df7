"""The options that let FamouSRec's router route (issue 12): band-energy gate input, switch routing, its
load balance, L_al's 'others' target, dropout after the filters, band-initialised filters, diagnostics."""
import pytest
import torch

from famousrec_fakes import make_batch, make_model, settings
from recbole_famous import diagnostics
from recbole_famous.model.losses import others_target, switch_balance_loss
from recbole_famous.model.mixture import switch_gates
from recbole_famous.model.router import FrequencyRouter, band_init

N, D = 8, 6


def _router(**kw):
    torch.manual_seed(0)
    return FrequencyRouter(settings(3, hidden_size=D, use_router=kw.pop("with_gate", True), **kw), N)


def test_band_energy_gate_is_sign_invariant_and_components_gate_is_odd():
    h = torch.randn(4, N, D, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(4, N, dtype=torch.bool)
    mask[1, :3] = False
    energy = _router(gate_input="band_energy", filter_init="ones")
    comps = energy.components(h)
    x_pos = energy.gate_features(comps, mask, h)
    x_neg = energy.gate_features(energy.components(-h), mask, -h)
    assert torch.allclose(x_pos, x_neg, atol=1e-5)
    # scale-invariant too: the energies are relative to the input's
    assert torch.allclose(x_pos, energy.gate_features(energy.components(3 * h), mask, 3 * h), atol=1e-3)  # up to the energy floor
    linear = _router()
    lc = linear.components(h)
    assert torch.allclose(linear.gate_features(lc, mask), -linear.gate_features(linear.components(-h), mask), atol=1e-6)


def test_band_energy_sees_where_the_signal_lies():
    """A slow and a fast signal, band-initialised filters: each one's largest energy is in its own band."""
    router = _router(gate_input="band_energy", filter_init="bands")
    t = torch.arange(N, dtype=torch.float)
    slow = torch.ones(N, D)
    fast = torch.cos(torch.pi * t).unsqueeze(1).expand(N, D)
    h = torch.stack([slow, fast])
    comps = router.components(h)
    energy = comps.square().mean((2, 3))  # (2, K)
    assert energy[0].argmax() == 0 and energy[1].argmax() == 2


def test_band_init_partitions_the_bins():
    gains = band_init(4, 26)
    assert torch.equal(gains.sum(0), torch.ones(26))
    assert all(gains[j].sum() >= 6 for j in range(4))
    first = [int(gains[j].nonzero()[0]) for j in range(4)]
    assert first == sorted(first)


def test_switch_gates_pick_top1_and_pass_gradient_to_the_gate():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], requires_grad=True)
    weights, idx = switch_gates(logits)
    assert idx.view(-1).tolist() == [1, 0]
    p = torch.softmax(logits, -1)
    assert torch.allclose(weights.sum(1), p.max(1).values)
    assert (weights > 0).sum(1).tolist() == [1, 1]
    out = torch.randn(2, 3, 4)
    (out * weights.unsqueeze(-1)).sum().backward()
    assert logits.grad.abs().sum() > 0  # top-1 with a plain softmax over the chosen logit would give 0


def test_switch_balance_loss_zero_when_uniform_and_positive_when_collapsed():
    uniform = torch.eye(3) * 5  # each user to a different expert, confidently
    assert switch_balance_loss(uniform) < 0.2
    collapsed = torch.tensor([[5.0, 0.0, 0.0]] * 3)
    assert switch_balance_loss(collapsed) > 1.5
    g = collapsed.clone().requires_grad_(True)
    switch_balance_loss(g).backward()
    assert g.grad[:, 0].gt(0).all()  # pushes the collapsed expert's logit down


def test_others_target_excludes_the_anchor():
    own = torch.randn(5, 3, 4)
    w = torch.softmax(torch.randn(5, 3), -1)
    target = others_target(own, w)
    j = 1
    expected = (own[:, [0, 2]] * w[:, [0, 2]].unsqueeze(-1)).sum(1) / w[:, [0, 2]].sum(1, keepdim=True)
    assert torch.allclose(target[:, j], expected, atol=1e-6)


@pytest.mark.parametrize("overrides", [
    {"gate_input": "band_energy", "train_routing": "switch", "balance_loss": "switch", "filter_init": "bands"},
    {"align_target": "others", "dropout_position": "components", "hidden_dropout_prob": 0.3},
])
def test_options_train_and_route(overrides):
    model = make_model(**overrides)
    batch = make_batch()
    model.train()
    losses = model.calculate_loss(batch)
    sum(losses).backward()
    gate = model.layers[-1].router.gate
    assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0
    assert all(torch.isfinite(part) for part in losses)
    model.eval()
    with torch.no_grad():
        assert model.full_sort_predict(batch).shape == (5, 30)


def test_switch_routing_trains_only_the_chosen_expert_through_l_rec():
    model = make_model(train_routing="switch", lambda_spe=0.0, mu_align=0.0, gamma_balance=0.0,
                       experts=["mlp", "mlp", "mlp"])
    batch = make_batch()
    model.train()
    out, gates = model.encode(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    chosen = set(gates[-1].argmax(-1).tolist())
    model.calculate_loss(batch)[0].backward()
    for j, expert in enumerate(model.layers[-1].experts):
        grad = expert.ffn.fc1.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == (j in chosen)


def test_bad_option_values_are_usage_errors():
    from recbole_famous.errors import UsageError

    for key, value in (("gate_input", "energy"), ("train_routing", "top1"), ("balance_loss", "x"),
                       ("align_target", "self"), ("dropout_position", "before"), ("filter_init", "band")):
        with pytest.raises(UsageError, match=key):
            make_model(**{key: value})


def test_routing_diagnostics_report_shares_cosine_and_forced_scores():
    model = make_model(gate_input="band_energy", filter_init="bands")
    batch = make_batch(batch=12)
    d = diagnostics.routing_diagnostics(model, [batch], forced=True)
    assert d["users"] == 12
    assert abs(sum(d["share"].values()) - 1) < 1e-6
    assert 0 <= d["entropy"] <= 1 and -1 <= d["expert_cosine"] <= 1
    assert set(d["forced_ndcg10"]) == {"0:attention", "1:gru", "2:mamba", "3:mlp"}
    assert d["gate_spread"] > 0
    assert len(d["filter_band_amplitude"]["low"]) == 4
    from recbole.data.interaction import Interaction

    line = diagnostics.epoch_line(model, [(Interaction(dict(batch)), None, None, None)])
    assert "forced_ndcg10" in line and "share" in line


def test_route_names_the_serving_expert_and_agrees_with_forced_inference():
    model = make_model(gate_input="band_energy", filter_init="bands")
    batch = make_batch(batch=9)
    chosen = model.route(batch)
    model.eval()
    with torch.no_grad():
        out, _ = model.encode(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        assert torch.equal(chosen, out.chosen)
        model.force_expert = 2
        assert model.route(batch).tolist() == [2] * 9
        model.force_expert = None
    assert make_model(use_router=False).route(batch) is None


def test_a_gate_input_is_a_registered_strategy(monkeypatch):
    """``gate_input`` names an entry of ``router.GATE_INPUTS``; a new entry is usable by name, and only the
    registered names pass the settings' check."""
    from recbole_famous.errors import UsageError
    from recbole_famous.model import router as router_module

    def first_item(router, comps, mask, h=None, last=None):
        return comps[:, :, 0].flatten(1)

    with pytest.raises(UsageError, match="gate_input must be one of"):
        settings(3, gate_input="first_item")
    monkeypatch.setitem(router_module.GATE_INPUTS, "first_item", first_item)
    router = _router(gate_input="first_item")
    h = torch.randn(2, N, D)
    mask = torch.ones(2, N, dtype=torch.bool)
    comps, logits = router(h, mask)
    assert torch.allclose(logits, router.gate(comps[:, :, 0].flatten(1)))
