"""FamouSRec as a RecBole model: shapes, padding, gradients, sparse inference, config errors, yaml."""
import dataclasses
import os

import pytest
import torch
import yaml

from famousrec_fakes import make_batch, make_model
from recbole_famous.errors import UsageError
from recbole_famous.model import famousrec_yaml
from recbole_famous.model.famousrec_config import FamouSRecConfig

FAST = ["attention", "gru", "mlp"]  # the mamba expert is covered by the tests that name it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("experts", [["attention", "gru", "mamba", "mlp"], ["mlp", "mlp"], ["attention"]])
def test_shapes_per_layer_count_and_expert_mix(n_layers, experts):
    torch.manual_seed(0)
    model = make_model(experts=experts, n_layers=n_layers)
    batch = make_batch()
    losses = model.calculate_loss(batch)
    assert len(losses) == 4 and all(t.shape == () and torch.isfinite(t) for t in losses)
    model.eval()
    with torch.no_grad():
        assert model.full_sort_predict(batch).shape == (5, 30)
        assert model.predict(batch).shape == (5,)
        assert model.forward(batch["item_id_list"], batch["item_length"]).dtype == torch.float32


@pytest.mark.parametrize("n_layers", [1, 2])
def test_prediction_ignores_anything_after_the_last_real_item(n_layers):
    torch.manual_seed(0)
    model = make_model(experts=FAST, n_layers=n_layers).eval()
    batch = make_batch(lengths=[8, 3, 1, 5])
    dirty = dict(batch)
    seq = batch["item_id_list"].clone()
    pad = torch.arange(8)[None] >= batch["item_length"][:, None]
    seq[pad] = 7  # garbage where RecBole writes padding zeros
    dirty["item_id_list"] = seq
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(batch), model.full_sort_predict(dirty), atol=1e-5)
        # and a user's scores do not depend on who else is in the batch
        alone = {k: v[1:2] for k, v in batch.items()}
        assert torch.allclose(model.full_sort_predict(alone)[0], model.full_sort_predict(batch)[1], atol=1e-5)


@pytest.mark.parametrize("overrides", [
    {"n_layers": 2},
    {"n_layers": 2, "inter_layer": "none", "gate_summary": "mean", "gate_hidden_size": 8},
    {"frequency_learning": False},
    {"use_router": False},
])
def test_every_parameter_gets_a_gradient(overrides):
    torch.manual_seed(0)
    experts = ["attention", "gru", "mamba", "mlp"] if overrides.get("n_layers") == 2 else FAST
    model = make_model(experts=experts, hidden_dropout_prob=0.1, attn_dropout_prob=0.1, **overrides)
    sum(model.calculate_loss(make_batch(batch=6))).backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_each_loss_part_reaches_its_parameters():
    torch.manual_seed(0)
    model = make_model(experts=FAST, lambda_spe=1.0, mu_align=1.0, gamma_balance=1.0)
    batch = make_batch()
    l_rec, l_spe, l_al, l_bal = model.calculate_loss(batch)
    gate = model.layers[0].router.gate.weight
    filters = model.layers[0].router.filters
    assert torch.autograd.grad(l_bal, gate, retain_graph=True)[0].abs().sum() > 0
    assert torch.autograd.grad(l_spe, filters, retain_graph=True)[0].abs().sum() > 0
    assert torch.autograd.grad(l_al, filters, retain_graph=True)[0].abs().sum() > 0


def test_weights_zero_the_parts():
    model = make_model(experts=FAST, lambda_spe=0.0, mu_align=0.0, gamma_balance=0.0)
    l_rec, l_spe, l_al, l_bal = model.calculate_loss(make_batch())
    assert l_rec.item() > 0 and l_spe.item() == l_al.item() == l_bal.item() == 0.0


def test_sparse_inference_with_all_experts_equals_training_mixture():
    torch.manual_seed(0)
    model = make_model(experts=FAST, eval_top_k=3)  # dropout 0: train and eval forwards agree
    batch = make_batch()
    seq, lens = batch["item_id_list"], batch["item_length"]
    with torch.no_grad():
        dense = model.forward(seq, lens)
        model.eval()
        assert torch.allclose(model.forward(seq, lens), dense, atol=1e-5)


def test_top1_inference_serves_each_user_with_its_chosen_expert_and_counts_usage():
    torch.manual_seed(0)
    model = make_model(experts=FAST).eval()
    batch = make_batch(batch=9)
    seq, lens = batch["item_id_list"], batch["item_length"]
    with torch.no_grad():
        f = model.forward(seq, lens)
        gates = model.encode(seq, lens)[1][0]
        chosen = gates.argmax(-1)
        for j in range(3):  # force expert j: users who chose j get exactly the same f
            model.force_expert = j
            fj = model.forward(seq, lens)
            assert torch.allclose(fj[chosen == j], f[chosen == j], atol=1e-6)
        model.force_expert = None
    model.reset_expert_usage()
    with torch.no_grad():
        model.forward(seq, lens)
    share = model.expert_usage_share()[0]
    assert sum(share.values()) == pytest.approx(1.0)
    assert share["0:attention"] == pytest.approx((chosen == 0).float().mean().item())


def test_force_expert_by_name():
    model = make_model(experts=FAST, force_expert="gru").eval()
    assert model.force_expert == 1
    with torch.no_grad():
        model.forward(make_batch()["item_id_list"], make_batch()["item_length"])
    assert model.expert_usage_share()[0]["1:gru"] == 1.0


@pytest.mark.parametrize("overrides, message", [
    ({"experts": ["attention", "lstm"]}, "unknown expert kind"),
    ({"experts": []}, "non-empty list"),
    ({"eval_top_k": 4}, "eval_top_k must be between 1 and 3"),
    ({"train_top_k": 0}, "train_top_k must be between 1 and 3"),
    ({"force_expert": "mamba"}, "force_expert 'mamba' is not in experts"),
    ({"force_expert": 5}, "out of range"),
    ({"loss_type": "BPR"}, "only loss_type CE"),
    ({"inter_layer": "skip"}, "inter_layer must be"),
])
def test_bad_config_is_one_clear_error(overrides, message):
    with pytest.raises(UsageError, match=message):
        make_model(**{"experts": FAST, **overrides})


def test_yaml_is_generated_from_the_settings_declared_once():
    """props/model/FamouSRec.yaml is the generator's text, and it parses to the dataclass's defaults."""
    with open(os.path.join(ROOT, famousrec_yaml.YAML_PATH)) as fh:
        text = fh.read()
    assert text == famousrec_yaml.yaml_text()
    props = yaml.safe_load(text)
    defaults = dataclasses.asdict(FamouSRecConfig())
    assert set(props) == set(defaults) - {"loss_type"}  # loss_type comes from props/overall.yaml
    for key, value in props.items():
        assert value == defaults[key], key


def test_settings_have_roles_that_the_checkpoint_checks_use():
    from recbole_famous import checkpoint

    roles = checkpoint.model_roles("FamouSRec")
    assert {"lambda_spe", "spe_users", "train_top_k"} <= roles["training"]
    assert roles["inference"] == {"eval_top_k", "force_expert"}
    assert roles["environment"] == {"expert_parts"}
    assert roles["legacy"] == {"expert_input": "window", "spe_users": 0, "spe_items": 0}
    assert checkpoint.model_roles("SASRec")["training"] == frozenset()
    assert "expert_parts" in checkpoint.env_keys("FamouSRec") and "expert_parts" not in checkpoint.env_keys("SASRec")


def test_registered_in_the_model_package():
    import recbole_famous.model as models
    from recbole_famous.model.famousrec import FamouSRec
    assert models.FamouSRec is FamouSRec


def test_trains_and_evaluates_through_the_runner(quick_overrides):
    """One epoch on the real ml-100k slice through RecBole's data pipeline, trainer and full-ranking eval."""
    from recbole_famous.runner import run
    experts = ["attention", "mlp"]  # the cheapest pair: this test is about the pipeline, not the kinds
    result = run("FamouSRec", "mlslice", overrides={**quick_overrides, "experts": experts,
                                                    "hidden_size": 16, "inner_size": 32}, saved=False)
    assert result["epochs_run"] == 1 and result["test_result"]["hit@10"] >= 0
    assert result["config"]["eval_top_k"] == 1 and result["config"]["experts"] == experts


def test_a_length_trimmed_batch_gives_the_same_scores_and_losses():
    """Length-grouped batches trim RecBole's right padding; FamouSRec pads back to its filters' window."""
    model = make_model()
    batch = make_batch(lengths=[3, 2, 4, 1])
    width = int(batch["item_length"].max())
    trimmed = dict(batch, item_id_list=batch["item_id_list"][:, :width])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(batch), model.full_sort_predict(trimmed), atol=1e-5)
        model.train()  # dropout is 0 in these fakes
        torch.manual_seed(0)
        full = model.calculate_loss(batch)
        torch.manual_seed(0)
        cut = model.calculate_loss(trimmed)
    for a, b in zip(full, cut):
        assert torch.allclose(a, b, atol=1e-5)
