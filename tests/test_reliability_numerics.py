"""Numerical safety and reproducibility, on real runs over the ml-100k slice (see reliability_common.SMALL)."""

from __future__ import annotations

import math
import os

import pytest
import torch

from recbole_famous import checkpoint  # first: RecBole's compatibility fixes (sine.py's anomaly detection)
from recbole_famous.config import find_model, plugin_model_names
from recbole_famous.runner import run
from recbole_famous.trainer import NonFiniteLoss
from reliability_common import SMALL, sha1, one_thread  # noqa: F401 (autouse fixture)

needs_famousrec = pytest.mark.skipif("FamouSRec" not in plugin_model_names(), reason="FamouSRec not registered")
SASRec = find_model("SASRec")


def _with_bad_part(monkeypatch, bad_call: int, value: float, names=None):
    """SASRec.calculate_loss returning (L, extra) where extra is 0 except on call ``bad_call`` (5 calls an epoch)."""
    original = SASRec.calculate_loss
    calls = []

    def calculate_loss(self, interaction):
        loss = original(self, interaction)
        calls.append(1)
        return loss, loss * (value if len(calls) == bad_call else 0.0)

    monkeypatch.setattr(SASRec, "calculate_loss", calculate_loss)
    if names:
        monkeypatch.setattr(SASRec, "loss_names", names, raising=False)


@pytest.mark.parametrize(
    "value, names, expected",
    [
        (float("nan"), ("rec", "extra"), "loss part 'extra' (2 of 2) is nan at epoch 1, batch 2"),
        (float("inf"), None, "loss part 2 of 2 returned by SASRec.calculate_loss is inf at epoch 1, batch 2"),
    ],
)
def test_non_finite_loss_part_stops_training_and_keeps_the_last_good_checkpoint(
    value, names, expected, quick_overrides, monkeypatch
):
    _with_bad_part(monkeypatch, bad_call=7, value=value, names=names)
    seen = {}

    def after_epoch(epoch_idx, valid_score):
        seen["best"] = sorted(os.listdir(quick_overrides["checkpoint_dir"]))
        seen["hashes"] = {f: sha1(os.path.join(quick_overrides["checkpoint_dir"], f)) for f in seen["best"]}

    with pytest.raises(NonFiniteLoss) as info:
        run("SASRec", "mlslice", overrides={**quick_overrides, **SMALL, "epochs": 3, "n_layers": 1},
            epoch_callback=after_epoch)
    message = str(info.value)
    assert expected in message and "the parameters were not updated" in message and "is intact" in message
    # the files written after epoch 0 are exactly as they were, and hold finite parameters
    files = sorted(os.listdir(quick_overrides["checkpoint_dir"]))
    assert files == seen["best"] and len(files) == 2
    for name in files:
        path = os.path.join(quick_overrides["checkpoint_dir"], name)
        assert sha1(path) == seen["hashes"][name]
        ckpt = checkpoint.load(path)
        assert ckpt["epoch"] == 0 and all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


def test_non_finite_gradient_names_the_parameter(quick_overrides, monkeypatch):
    original = SASRec.calculate_loss
    calls = []

    def calculate_loss(self, interaction):
        calls.append(1)
        loss = original(self, interaction)
        if len(calls) == 3:  # finite loss (sqrt(0) = 0), infinite gradient (1 / (2 sqrt(0)))
            w = self.item_embedding.weight[1, 0]
            loss = loss + torch.sqrt(w - w.detach())
        return loss

    monkeypatch.setattr(SASRec, "calculate_loss", calculate_loss)
    with pytest.raises(NonFiniteLoss, match="the gradient of parameter 'item_embedding.weight' is not finite at epoch 0, batch 3"):
        run("SASRec", "mlslice", overrides={**quick_overrides, **SMALL, "n_layers": 1})


@needs_famousrec
@pytest.mark.parametrize("max_len", [1, 10])
def test_famousrec_extreme_settings_stay_finite(max_len, quick_overrides):
    # temperature 0.01, lambda / mu / gamma at 10, hidden size 8; max_len 1: every sequence has one item
    extreme = {"temperature": 0.01, "lambda_spe": 10, "mu_align": 10, "gamma_balance": 10, "hidden_size": 8,
               "inner_size": 16, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": max_len, "epochs": 2}
    result = run("FamouSRec", "mlslice", overrides={**quick_overrides, **SMALL, **extreme})  # raises if non-finite
    for parts in result["train_loss"].values():
        assert len(parts) == 4 and all(math.isfinite(p) for p in parts)
    assert all(math.isfinite(v) for v in result["test_result"].values())
    ckpt = checkpoint.load(result["checkpoint"])
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


def _reproducible(model, overrides):
    first = run(model, "mlslice", overrides=overrides)
    second = run(model, "mlslice", overrides=overrides)
    for key in ("train_loss", "valid_scores", "best_valid_result", "test_result", "best_epoch"):
        assert first[key] == second[key], key
    a, b = (checkpoint.load(r["resume_checkpoint"])["state_dict"] for r in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)
    return first


@pytest.mark.parametrize("model", ["SASRec", pytest.param("FamouSRec", marks=needs_famousrec)])
def test_same_seed_and_config_give_the_same_run_to_the_last_digit(model, quick_overrides):
    # dropout on, shuffling on, FamouSRec's routing, sparse dispatch and CPU selective scan (the mamba expert)
    first = _reproducible(model, {**quick_overrides, **SMALL, "epochs": 2})
    other = run(model, "mlslice", overrides={**quick_overrides, **SMALL, "epochs": 2, "seed": 7})
    assert other["train_loss"] != first["train_loss"]  # the comparison is not vacuous: the seed matters


def test_runs_leave_autograd_anomaly_detection_off():
    assert not torch.is_anomaly_enabled()  # it makes every model several times slower (compat fix 2)
