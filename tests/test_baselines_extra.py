"""CL4SRec, DuoRec, Crocodile, EMKD: their pieces on hand-made cases, and one real epoch each through the runner."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_famous.model.baselines import augment
from recbole_famous.model.baselines.contrastive import anchored_nce, nt_xent
from recbole_famous.model.baselines.crocodile import cross_covariance_loss
from recbole_famous.model.baselines.duorec import SameTargetSampler
from recbole_famous.model.baselines.emkd import mutual_distillation
from recbole_famous.errors import UsageError
from recbole_famous.runner import run
from recbole_famous.trainer import Trainer

MASK = 99


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models on a shared 2-core machine: intra-op threads only add synchronisation (20x slower measured)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch():
    # right-padded histories of lengths 7, 5, 2, 1, 10 (ids 1..)
    lengths = torch.tensor([7, 5, 2, 1, 10])
    seq = torch.zeros(5, 10, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        seq[b, :n] = torch.arange(1, n + 1) + 10 * b
    return seq, lengths


def _real(seq, n):
    return seq[:n].tolist()


def test_crop_keeps_a_contiguous_window_moved_to_the_front():
    torch.manual_seed(0)
    seq, lengths = _batch()
    for _ in range(20):
        out, new_len = augment.crop(seq, lengths, eta=0.6)
        assert new_len.tolist() == [max(1, math.floor(0.6 * n)) for n in lengths.tolist()]
        for b in range(5):
            window = _real(out[b], new_len[b])
            original = _real(seq[b], lengths[b])
            start = original.index(window[0])
            assert window == original[start:start + len(window)]
            assert (out[b, new_len[b]:] == 0).all()


def test_mask_replaces_the_right_number_of_real_items():
    torch.manual_seed(0)
    seq, lengths = _batch()
    out, new_len = augment.mask(seq, lengths, gamma=0.3, mask_token=MASK)
    assert torch.equal(new_len, lengths)
    for b, n in enumerate(lengths.tolist()):
        masked = out[b, :n] == MASK
        assert masked.sum() == math.floor(0.3 * n)
        assert torch.equal(out[b, :n][~masked], seq[b, :n][~masked])
        assert (out[b, n:] == 0).all()  # padding untouched
    out, _ = augment.random_mask(seq, lengths, prob=1.0, mask_token=MASK)
    assert ((out == MASK) == (seq > 0)).all()


def test_reorder_permutes_one_window_only():
    torch.manual_seed(0)
    seq, lengths = _batch()
    changed = False
    for _ in range(20):
        out, new_len = augment.reorder(seq, lengths, beta=0.6)
        assert torch.equal(new_len, lengths)
        for b, n in enumerate(lengths.tolist()):
            real, orig = _real(out[b], n), _real(seq[b], n)
            assert sorted(real) == orig and (out[b, n:] == 0).all()
            moved = [i for i in range(n) if real[i] != orig[i]]
            if moved:  # the displaced positions fit in one window of floor(beta * n)
                assert moved[-1] - moved[0] < math.floor(0.6 * n)
                changed = True
    assert changed


def test_two_views_use_two_different_operators_and_leave_short_sequences():
    torch.manual_seed(0)
    seq, lengths = _batch()
    s1, l1, s2, l2 = augment.two_views(seq, lengths, 0.6, 0.3, 0.6, mask_token=MASK)
    assert torch.equal(s1[3], seq[3]) and torch.equal(s2[3], seq[3]) and l1[3] == l2[3] == 1
    for s, n in ((s1, l1), (s2, l2)):
        assert ((s > 0).sum(1) == n).all() and (n <= lengths).all()


def test_nt_xent_prefers_aligned_views():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    aligned = nt_xent(z, z, tau=0.5, sim="cos")
    shuffled = nt_xent(z, z[torch.randperm(8)], tau=0.5, sim="cos")
    assert aligned < shuffled
    assert anchored_nce(z, z, z, tau=0.5) < anchored_nce(z, z.flip(0), z, tau=0.5)
    with pytest.raises(ValueError):
        nt_xent(z, z, sim="l2")


def test_same_target_positives_share_the_next_item_and_differ_from_the_anchor():
    torch.manual_seed(0)
    # 6 training rows; targets: 5 -> rows 0, 1, 2 (rows 0 and 2 identical), 6 -> rows 3, 4; 7 -> row 5 only
    seqs = torch.tensor([[1, 2, 0], [3, 0, 0], [1, 2, 0], [4, 2, 1], [2, 0, 0], [8, 9, 0]])
    lengths = (seqs > 0).sum(1)
    targets = torch.tensor([5, 5, 5, 6, 6, 7])
    sampler = SameTargetSampler(seqs, lengths, targets)
    anchors = seqs.repeat(50, 1)
    pos, pos_len = sampler(anchors, lengths.repeat(50), targets.repeat(50))
    assert torch.equal(pos_len, (pos > 0).sum(1))
    rows = {tuple(r): t for r, t in zip(seqs.tolist(), targets.tolist())}
    for a, p, t in zip(anchors.tolist(), pos.tolist(), targets.repeat(50).tolist()):
        assert rows[tuple(p)] == t  # same next item
        if t != 7:
            assert p != a  # another sequence whenever one exists (identical rows 0 and 2 excluded too)
        else:
            assert p == a  # the only sequence with target 7: the anchor itself
    # both other rows of target 5 are drawn for row 1, uniformly enough to see both
    drawn = {tuple(p) for a, p in zip(anchors.tolist(), pos.tolist()) if a == [3, 0, 0]}
    assert drawn == {(1, 2, 0)}  # rows 0 and 2 hold the same sequence


def test_covariance_loss_zero_for_decorrelated_tables_positive_otherwise():
    # columns of a 4 x 2 Hadamard-like design: centred, and every column of x orthogonal to every column of y
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    assert cross_covariance_loss([x, y]).item() == pytest.approx(0.0, abs=1e-12)
    # identical tables: cross-covariance = covariance = diag(4/3, 4/3), squared Frobenius norm 32/9
    assert cross_covariance_loss([x, x]).item() == pytest.approx(32 / 9)
    assert cross_covariance_loss([x, y, x]).item() == pytest.approx(32 / 27)  # mean over the 3 pairs


def test_distillation_zero_when_students_agree():
    torch.manual_seed(0)
    z = torch.randn(4, 30)
    assert mutual_distillation([z, z.clone(), z + 3.0], tau=0.3).item() == pytest.approx(0.0, abs=1e-6)
    assert mutual_distillation([z, torch.randn(4, 30)], tau=0.3).item() > 0.01


@pytest.mark.parametrize("model", ["CL4SRec", "DuoRec", "Crocodile", "EMKD"])
def test_model_trains_one_epoch_through_the_runner(model, quick_overrides, monkeypatch):
    losses = []
    train_epoch = Trainer._train_epoch

    def recording(self, *args, **kwargs):
        losses.append(train_epoch(self, *args, **kwargs))
        return losses[-1]

    monkeypatch.setattr(Trainer, "_train_epoch", recording)
    small = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_experts": 2, "n_networks": 2, "n_views": 1}
    result = run(model, "mlslice", overrides={**quick_overrides, **small})
    assert result["model"] == model and result["epochs_run"] == 1
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    assert 0 <= result["test_result"]["ndcg@10"] <= result["test_result"]["hit@10"] <= 1


@pytest.mark.parametrize("model, bad", [("DuoRec", {"contrast": "both"}), ("CL4SRec", {"crop_eta": 0})])
def test_bad_setting_is_a_one_line_usage_error(model, bad, quick_overrides):
    with pytest.raises(UsageError, match=next(iter(bad))) as info:
        run(model, "mlslice", overrides={**quick_overrides, **bad})
    assert "\n" not in str(info.value)
