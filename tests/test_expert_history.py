"""``expert_input: history`` (model/history.py): experts on each history's real positions, in length-sorted parts.

What must hold: the re-layout is exact; an expert's output for a user depends on that user's history only (not
on the trailing padding, the batch, or how the batch is cut into parts), in the forward pass and the gradient;
the attention and MLP experts, which already ignore the padding, give the same numbers in both layouts; and
``spe_users`` computes L_spe on exactly the drawn users.
"""
import pytest
import torch

from famousrec_fakes import make_batch, make_model, settings
from recbole_famous.errors import UsageError
from recbole_famous.model.experts import ExpertParams, build_expert
from recbole_famous.model.history import encode_history, left_to_right, length_parts, right_to_left
from recbole_famous.model.losses import specialization_loss

KINDS = ["attention", "gru", "mamba", "mlp"]


def _left_padded(lengths, n=9, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths)
    mask = torch.arange(n)[None] >= (n - lengths)[:, None]
    x = torch.randn(len(lengths), n, d, generator=g)  # non-zero in the padding too: the filters' spill
    return x, mask, lengths


def encode_histories(expert, x, mask, last_only, n_parts):
    """``expert`` on each row's real positions of left-padded ``x``, on ``n_parts`` length-sorted parts, rows
    back in batch order: what ``MoELayer`` does with the components in ``expert_input: history``."""
    lengths, outs, rows = mask.sum(1), [], []
    for idx, width in length_parts(lengths, n_parts):
        part_len = lengths[idx]
        xs = left_to_right(x[idx], part_len, width)
        outs.append(encode_history(expert, xs, torch.arange(width)[None] < part_len[:, None], last_only, x.size(1)))
        rows.append(idx)
    return torch.cat(outs)[torch.argsort(torch.cat(rows))]


def test_layouts_round_trip_on_the_real_positions():
    x, mask, lengths = _left_padded([9, 4, 1, 6])
    right = left_to_right(x, lengths, 9)
    for u, t in enumerate(lengths.tolist()):
        assert torch.equal(right[u, :t], x[u, 9 - t:]) and not right[u, t:].any()
    back = right_to_left(right, lengths, 9)
    assert torch.equal(back, x * mask.unsqueeze(-1))


@pytest.mark.parametrize("kind", KINDS)
def test_history_output_is_the_expert_on_the_unpadded_history(kind):
    torch.manual_seed(0)
    expert = build_expert(kind, ExpertParams(8, 16, 2, 0.0, 0.0, d_state=4)).eval()
    x, mask, lengths = _left_padded([9, 4, 1, 6])
    with torch.no_grad():
        got = encode_histories(expert, x, mask, True, n_parts=3)
        full = encode_histories(expert, x, mask, False, n_parts=2)
        for u, t in enumerate(lengths.tolist()):
            alone = x[u:u + 1, 9 - t:]  # the history alone, no padding at all
            want = expert.forward_last(alone, torch.ones(1, t, dtype=torch.bool))[0]
            torch.testing.assert_close(got[u], want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(full[u, -1], want, atol=1e-5, rtol=1e-5)
            assert not full[u, :9 - t].any()


@pytest.mark.parametrize("kind", ["attention", "mlp"])
def test_kinds_that_ignore_the_padding_agree_in_both_layouts(kind):
    torch.manual_seed(0)
    expert = build_expert(kind, ExpertParams(8, 16, 2, 0.0, 0.0)).eval()
    x, mask, _ = _left_padded([9, 4, 1, 6])
    with torch.no_grad():
        torch.testing.assert_close(encode_histories(expert, x, mask, True, 4), expert.forward_last(x, mask),
                                   atol=1e-5, rtol=1e-5)


def test_gru_and_mamba_in_the_window_layout_do_read_the_padding():
    """Why ``history`` is a different model for them: in ``window`` they run over the padded positions."""
    torch.manual_seed(0)
    x, mask, _ = _left_padded([3, 3])
    for kind in ("gru", "mamba"):
        expert = build_expert(kind, ExpertParams(8, 16, 2, 0.0, 0.0, d_state=4)).eval()
        with torch.no_grad():
            assert not torch.allclose(encode_histories(expert, x, mask, True, 1), expert.forward_last(x, mask),
                                      atol=1e-3)


@pytest.mark.parametrize("spe_mode", ["exact", "sampled"])
def test_loss_and_gradient_do_not_depend_on_the_parts(spe_mode):
    batch = make_batch(batch=9, lengths=[8, 1, 3, 5, 2, 8, 7, 1, 4])
    results = []
    for parts in (1, 4, 9):
        torch.manual_seed(0)
        model = make_model(experts=KINDS, expert_input="history", expert_parts=parts, spe_mode=spe_mode)
        torch.manual_seed(1)
        losses = model.calculate_loss(batch)
        sum(losses).backward()
        results.append((torch.stack(losses).detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                                       if p.grad is not None}))
    for losses, grads in results[1:]:
        torch.testing.assert_close(losses, results[0][0], atol=1e-5, rtol=1e-5)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, results[0][1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_history_prediction_depends_on_the_user_only():
    torch.manual_seed(0)
    model = make_model(experts=KINDS, expert_input="history", expert_parts=3, n_layers=2).eval()
    batch = make_batch(lengths=[8, 3, 1, 5, 6])
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        for u in (1, 2):
            alone = {k: v[u:u + 1] for k, v in batch.items()}
            torch.testing.assert_close(model.full_sort_predict(alone)[0], scores[u], atol=1e-5, rtol=1e-5)


def test_spe_users_computes_l_spe_on_the_drawn_users():
    torch.manual_seed(0)
    model = make_model(experts=["attention", "gru", "mlp"], spe_users=3, spe_mode="exact", lambda_spe=1.0)
    batch = make_batch(batch=7)
    torch.manual_seed(5)
    users = torch.randperm(7)[:3]
    torch.manual_seed(5)
    l_spe = model.calculate_loss(batch)[1]
    sub = {k: v[users] for k, v in batch.items()}
    model.spe_users = 0
    out, _ = model.encode(sub["item_id_list"], sub["item_length"], "exact")
    want = specialization_loss(out.own, out.pairs, model.item_embedding.weight)
    torch.testing.assert_close(l_spe, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bad", [{"expert_input": "padded"}, {"expert_parts": 0}, {"spe_users": -1}, {"spe_items": -2}])
def test_bad_keys_are_one_line_errors(bad):
    with pytest.raises(UsageError, match=next(iter(bad))):
        make_model(**bad)


def test_spe_items_computes_l_spe_over_the_drawn_items_only():
    torch.manual_seed(0)
    model = make_model(experts=["attention", "gru", "mlp"], spe_items=11, spe_mode="exact", lambda_spe=1.0)
    batch = make_batch(batch=7)
    torch.manual_seed(5)
    l_spe = model.calculate_loss(batch)[1]
    torch.manual_seed(5)
    model.spe_items = 0
    out, _ = model.encode(batch["item_id_list"], batch["item_length"], "exact")
    items = model.item_embedding.weight
    subset = torch.randperm(items.size(0))[:11]  # drawn after the encoding, as calculate_loss does
    want = specialization_loss(out.own, out.pairs, items[subset])
    torch.testing.assert_close(l_spe, want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(l_spe, specialization_loss(out.own, out.pairs, items))


def test_a_famousrec_checkpoint_from_before_the_keys_loads_and_resumes_as_window(quick_overrides):
    """Checkpoints written before expert_input / expert_parts / spe_users / spe_items existed are read as what they
    did (the legacy values of ``famousrec_config``, ``checkpoint.model_roles``); a SASRec checkpoint is not given FamouSRec's keys."""
    from recbole_famous import checkpoint
    from recbole_famous.pipeline import build_config

    new = ("expert_input", "expert_parts", "spe_users", "spe_items")
    now = build_config("FamouSRec", "mlslice", overrides=dict(quick_overrides))
    old = {k: v for k, v in checkpoint.fingerprint(now).items() if k not in new}
    ckpt = {checkpoint.META_KEY: {"model": "FamouSRec", "dataset": "mlslice", "fingerprint": old,
                                  "settings": dict(quick_overrides)}}
    _, _, _, settings = checkpoint.rebuild_inputs(ckpt)
    assert settings["expert_input"] == "window"
    checkpoint.check_compatible(ckpt, build_config("FamouSRec", "mlslice", overrides=settings), "resume")
    with pytest.raises(UsageError, match="expert_input"):
        checkpoint.check_compatible(ckpt, build_config("FamouSRec", "mlslice", overrides={
            **settings, "expert_input": "history"}), "eval")
    sas = build_config("SASRec", "mlslice", overrides=dict(quick_overrides))
    sas_ckpt = {checkpoint.META_KEY: {"model": "SASRec", "dataset": "mlslice", "fingerprint": checkpoint.fingerprint(sas),
                                      "settings": dict(quick_overrides)}}
    assert "expert_input" not in checkpoint.rebuild_inputs(sas_ckpt)[3]
    checkpoint.check_compatible(sas_ckpt, sas, "resume")


@pytest.mark.parametrize("router", [{}, {"gate_input": "band_energy"}, {"gate_summary": "mean"},
                                    {"frequency_learning": False}])
def test_history_layer_equals_the_window_components_read_at_the_real_positions(router):
    """``expert_input: history`` computes the router's components on each part's real positions (a Toeplitz
    product in the time domain) instead of the whole window's FFT: gate logits, every M_j(x_j), every pair
    M_k(x_j) and the mixture must equal the FFT components of the window read at each user's real positions,
    one user at a time; and so must the gradients of the filters and the gate. (Both compute the filtering in
    float32, whatever the input's precision: float32 tolerances.)"""
    from recbole_famous.model.mixture import MoELayer
    torch.manual_seed(0)
    n, d, lengths = 9, 8, [9, 4, 1, 6, 2, 9, 3]
    layer = MoELayer(settings(experts=list(KINDS), hidden_size=d, expert_input="history", expert_parts=3, **router),
                     n).double().train()
    x, mask, lengths = _left_padded(lengths, n=n, d=d)
    x = (x * mask.unsqueeze(-1)).double()  # FamouSRec zeroes the padding before each router
    out = layer(x, mask, top_k=4, last_only=True, need_pairs="exact")
    comps = layer.router.components(x)  # the window's components (B, K, n, d)
    want_logits = layer.router.gate_logits(comps, mask, x)
    want_own, want_pairs = [], []
    for u, t in enumerate(lengths.tolist()):
        one = torch.ones(1, t, dtype=torch.bool)
        real = comps[u:u + 1, :, n - t:]  # (1, K, t, d)
        want_pairs.append(torch.stack([torch.cat([e.forward_last(real[:, j], one) for e in layer.experts])
                                       for j in range(4)]))  # (K_j, K_k, d)
        want_own.append(torch.stack([want_pairs[-1][j, j] for j in range(4)]))
    want_own, want_pairs = torch.stack(want_own), torch.stack(want_pairs)
    torch.testing.assert_close(out.gate_logits, want_logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.own, want_own, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.pairs, want_pairs, atol=1e-6, rtol=1e-5)
    weights = torch.softmax(want_logits, -1).unsqueeze(-1)
    torch.testing.assert_close(out.hidden, (want_own * weights).sum(1), atol=1e-6, rtol=1e-5)
    g = torch.Generator().manual_seed(1)
    probe = lambda o, p, lg: (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() \
        + (p * torch.randn(p.shape, generator=g, dtype=p.dtype)).sum() + lg.square().sum()
    params = [p for name, p in layer.named_parameters() if name.startswith("router.")]
    got = torch.autograd.grad(probe(out.own, out.pairs, out.gate_logits), params)
    g.manual_seed(1)
    want = torch.autograd.grad(probe(want_own, want_pairs, want_logits), params)
    for a, b in zip(got, want):  # float32 filtering, through log band energies for band_energy
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
