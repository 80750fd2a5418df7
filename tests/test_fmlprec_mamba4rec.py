"""FMLP-Rec and Mamba4Rec: the filter, the padding, the read-out, and one real epoch through the runner."""
from __future__ import annotations

import math

import pytest
import torch

from famousrec_fakes import BASE, FakeConfig, FakeDataset
from recbole_famous.errors import UsageError
from recbole_famous.model.baselines.fmlprec import FMLPRec, FilterLayer, frequency_filter
from recbole_famous.model.baselines.mamba4rec import Mamba4Rec
from recbole_famous.runner import run
from recbole_famous.trainer import Trainer

N_ITEMS, MAX_LEN = 40, 9


def build(cls, **overrides):
    cfg = {"MAX_ITEM_LIST_LENGTH": MAX_LEN, "loss_type": "CE", "hidden_size": 16, "inner_size": 32,
           "n_layers": 2, "hidden_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
           "initializer_range": 0.02, "num_layers": 1, "dropout_prob": 0.2, "d_state": 4, "d_conv": 4,
           "expand": 2, **overrides}
    torch.manual_seed(0)
    return cls(FakeConfig({**BASE, **cfg}), FakeDataset(N_ITEMS)).eval()


def histories():
    """Item histories of lengths 9, 4, 1, 6 as Python lists."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(1, N_ITEMS, (n,), generator=g).tolist() for n in (9, 4, 1, 6)]


def right_padded(hists, garbage=False):
    seq = torch.randint(1, N_ITEMS, (len(hists), MAX_LEN)) if garbage else torch.zeros(len(hists), MAX_LEN, dtype=torch.long)
    for b, h in enumerate(hists):
        seq[b, :len(h)] = torch.tensor(h)
        if not garbage:
            seq[b, len(h):] = 0
    return seq, torch.tensor([len(h) for h in hists])


@pytest.mark.parametrize("n", [8, 9, 1])
def test_filter_with_all_ones_weight_is_identity(n):
    x = torch.randn(3, n, 5, dtype=torch.float64)
    ones = torch.ones(n // 2 + 1, 5, dtype=torch.complex128)
    torch.testing.assert_close(frequency_filter(x, ones), x)
    half = torch.full((n // 2 + 1, 5), 0.5, dtype=torch.complex128)
    torch.testing.assert_close(frequency_filter(x, half), 0.5 * x)


def test_filter_layer_shapes_and_init():
    layer = FilterLayer(max_len=9, hidden_size=6, dropout=0.0, layer_norm_eps=1e-12)
    assert layer.complex_weight.shape == (5, 6, 2)
    assert 0.005 < layer.complex_weight.std().item() < 0.05
    with torch.no_grad():
        layer.complex_weight.zero_()
        layer.complex_weight[..., 0] = 1.0  # all-ones complex weight: the block is LayerNorm(x + x)
    x = torch.randn(2, 9, 6)
    torch.testing.assert_close(layer(x), layer.LayerNorm(2 * x))


def test_fmlprec_sees_the_authors_left_padded_sequence():
    model = build(FMLPRec)
    hists = histories()
    seq, lengths = right_padded(hists)
    left = torch.zeros(len(hists), MAX_LEN, dtype=torch.long)  # written out by hand: [0, .., 0, i1, .., it]
    for b, h in enumerate(hists):
        left[b, MAX_LEN - len(h):] = torch.tensor(h)
    with torch.no_grad():
        ours = model(seq, lengths)
        authors = model.encode(left)[:, -1]
        torch.testing.assert_close(ours, authors)
        # anything RecBole leaves after the real items does not matter
        torch.testing.assert_close(model(*right_padded(hists, garbage=True)), ours)
        # and the filter does see the padding: the same items right-padded give another output
        assert not torch.allclose(model.encode(seq)[torch.arange(4), lengths - 1], ours)


def test_mamba4rec_reads_the_last_real_position_and_ignores_what_follows():
    model = build(Mamba4Rec)
    hists = histories()
    with torch.no_grad():
        ours = model(*right_padded(hists))
        torch.testing.assert_close(model(*right_padded(hists, garbage=True)), ours)
        for b, h in enumerate(hists):  # each history alone, unpadded
            alone = model(torch.tensor([h]), torch.tensor([len(h)]))
            torch.testing.assert_close(alone[0], ours[b], rtol=1e-5, atol=1e-6)


def test_mamba4rec_layers_follow_the_authors():
    one, two = build(Mamba4Rec), build(Mamba4Rec, num_layers=2)
    assert [layer.residual for layer in one.mamba_layers] == [False]
    assert [layer.residual for layer in two.mamba_layers] == [True, True]
    block = one.mamba_layers[0].mamba
    assert (block.dt_proj.bias == 0).all()  # the authors' _init_weights zeroes every Linear bias
    assert block.A_log.shape == (32, 4) and one.mamba_layers[0].ffn.w_1.out_features == 64


@pytest.mark.parametrize("cls", [FMLPRec, Mamba4Rec])
def test_bad_settings_give_one_line_errors(cls):
    with pytest.raises(UsageError, match="loss_type CE"):
        build(cls, loss_type="BPR")
    if cls is Mamba4Rec:
        with pytest.raises(UsageError, match="d_state must be a positive integer"):
            build(cls, d_state=0)


@pytest.fixture
def one_thread():
    """On a busy 2-core machine two OpenMP threads make each small op wait for a descheduled
    thread (measured: an FMLPRec epoch on the slice took 84 s with 2 threads, 4 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("model", ["FMLPRec", "Mamba4Rec"])
def test_model_trains_through_the_runner_and_the_loss_falls(model, quick_overrides, monkeypatch, one_thread):
    losses = []
    train_epoch = Trainer._train_epoch

    def spy(self, *args, **kwargs):
        losses.append(train_epoch(self, *args, **kwargs))
        return losses[-1]

    monkeypatch.setattr(Trainer, "_train_epoch", spy)
    overrides = {**quick_overrides, "epochs": 2, "stopping_step": 10, "train_batch_size": 128,
                 "learning_rate": 0.005, "hidden_size": 16, "inner_size": 32, "d_state": 8}
    result = run(model, "mlslice", overrides=overrides)
    assert result["model"] == model and result["epochs_run"] == 2
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert 0 <= result["test_result"]["ndcg@10"] <= 1
