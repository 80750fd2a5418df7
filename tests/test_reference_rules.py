"""The no-training reference models (recbole_famous.model.rules): each equals a brute-force computation of its
rule from the training split, is fitted in one pass through the runner (RecBole's traditional models too), and
serves from its checkpoint."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from recbole_famous.cli import main as cli_main
from recbole_famous import pipeline, runner
from recbole_famous.serving import Recommender


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """40 users, 15 items, sequences of 6-14 items with repeats and a few strong successors; no filtering."""
    rng = random.Random(3)
    root = tmp_path_factory.mktemp("tinydata")
    (root / "tiny").mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(40):
        seq = [rng.randrange(1, 16)]
        for _ in range(rng.randrange(5, 14)):
            seq.append(seq[-1] % 15 + 1 if rng.random() < 0.5 else rng.randrange(1, 16))
        lines += [f"u{u}\ti{item}\t{t}" for t, item in enumerate(seq)]
    (root / "tiny" / "tiny.inter").write_text("\n".join(lines) + "\n")
    return str(root)


def _overrides(tiny, tmp_path, **extra):
    return {"data_path": tiny, "user_inter_num_interval": "[3,inf)", "item_inter_num_interval": "[1,inf)",
            "MAX_ITEM_LIST_LENGTH": 20, "epochs": 5, "show_progress": False, "state": "WARNING",
            "checkpoint_dir": str(tmp_path / "saved"), "results_dir": str(tmp_path / "results"), **extra}


def _trained(model, tiny, tmp_path, **extra):
    result = runner.run(model, "tiny", overrides=_overrides(tiny, tmp_path, **extra))
    assert result["epochs_run"] == 1  # one pass, whatever `epochs` says
    return result, pipeline.load_trained(result["checkpoint"])


def _test_batch(trained):
    """(the test split as one interaction, each user's training part of the sequence)."""
    batch = next(iter(trained.test_data))[0]
    seqs, lens = batch["item_id_list"], batch["item_length"]
    train_parts = [seqs[r, : int(lens[r]) - 1].tolist() for r in range(len(lens))]  # history minus the valid item
    return batch, train_parts


def _popularity(train_parts, n_items):
    pop = Counter(i for part in train_parts for i in part[1:])  # training targets: every item after the first
    tie = torch.tensor([pop[j] for j in range(n_items)], dtype=torch.float)
    return tie / (tie.max() + 1)


def test_item_transition_equals_counted_successors(tiny, tmp_path):
    result, trained = _trained("ItemTransition", tiny, tmp_path)
    batch, parts = _test_batch(trained)
    n = trained.model.n_items
    counts = torch.zeros(n, n)
    for part in parts:
        for a, b in zip(part, part[1:]):
            counts[a, b] += 1
    seqs, lens = batch["item_id_list"], batch["item_length"]
    last = seqs[torch.arange(len(lens)), lens - 1]
    expected = counts[last] + _popularity(parts, n)
    with torch.no_grad():
        got = trained.model.full_sort_predict(batch).view(len(lens), -1)
    assert torch.allclose(got[:, 1:], expected[:, 1:], atol=1e-6)
    assert result["test_result"]["ndcg@10"] > 0


def test_item_cooccurrence_equals_cosine_over_training_sets(tiny, tmp_path):
    _, trained = _trained("ItemCoOccurrence", tiny, tmp_path)
    batch, parts = _test_batch(trained)
    n = trained.model.n_items
    sets = torch.zeros(len(parts), n)
    for row, part in enumerate(parts):
        sets[row, part] = 1.0
    co = sets.T @ sets
    norm = co.diagonal().clamp(min=1).sqrt()
    cos = co / norm[:, None] / norm[None, :]
    cos.fill_diagonal_(0.0)
    seqs, lens = batch["item_id_list"], batch["item_length"]
    expected = torch.zeros(len(lens), n)
    for row in range(len(lens)):
        for h in set(seqs[row, : int(lens[row])].tolist()):
            expected[row] += cos[h]
    pop = _popularity(parts, n)
    with torch.no_grad():
        got = trained.model.full_sort_predict(batch).view(len(lens), -1)
    assert got.dtype == torch.float64
    assert torch.allclose(got[:, 1:].float(), expected[:, 1:], atol=1e-5)
    # popularity orders equal cosine sums only: it never lifts an item above one with a larger sum
    for row in range(len(lens)):
        a, b = expected[row, 1:], got[row, 1:]
        larger = (a[:, None] - a[None, :]) > 1e-5
        assert bool((b[:, None] > b[None, :])[larger].all())
        equal = (a[:, None] - a[None, :]).abs() < 1e-7
        more_popular = (pop[1:][:, None] > pop[1:][None, :]) & equal
        assert bool((b[:, None] > b[None, :])[more_popular].all())


def test_recent_items_ranks_the_history_most_recent_first_then_popularity(tiny, tmp_path):
    _, trained = _trained("RecentItems", tiny, tmp_path)
    batch, parts = _test_batch(trained)
    tie = _popularity(parts, trained.model.n_items)
    with torch.no_grad():
        got = trained.model.full_sort_predict(batch).view(len(parts), -1)
    for row in range(len(parts)):
        history = batch["item_id_list"][row, : int(batch["item_length"][row])].tolist()
        recent_first = list(dict.fromkeys(reversed(history)))
        ranking = got[row, 1:].argsort(descending=True, stable=True).add(1).tolist()
        assert ranking[: len(recent_first)] == recent_first
        rest = ranking[len(recent_first):]
        assert all(tie[a] >= tie[b] for a, b in zip(rest, rest[1:]))


def test_recboles_traditional_models_take_one_pass(ml100k_slice, tmp_path):
    """RecBole's TraditionalTrainer runs Pop and ItemKNN once; through the plugin's runner they did epoch after
    epoch on a fake loss. Pop here is RecBole's, on the sequential protocol."""
    base = {"data_path": ml100k_slice, "epochs": 4, "show_progress": False, "state": "WARNING",
            "checkpoint_dir": str(tmp_path / "saved"), "results_dir": str(tmp_path / "results")}
    for model in ("ItemKNN", "Pop"):
        result = runner.run(model, "mlslice", overrides=base)
        assert result["epochs_run"] == 1, model
        assert 0 < result["test_result"]["ndcg@10"] < 1
    # Pop counts each training target once (one pass), not once per epoch
    trained = pipeline.load_trained(result["checkpoint"])
    counts = Counter(trained.train_data._dataset.inter_feat["item_id"].tolist())
    assert int(trained.model.item_cnt.max()) <= max(counts.values())


def test_a_rule_checkpoint_serves_without_the_data(tiny, tmp_path):
    result, trained = _trained("ItemTransition", tiny, tmp_path)
    rec = Recommender(result["checkpoint"])
    tokens = rec.tokens
    model = trained.model
    a = int(model.neighbours[:, 0].nonzero()[0, 0])  # an item with at least one successor
    top = tokens[int(model.neighbours[a, 0])]
    (answer,) = rec.recommend([[tokens[a]]], top_n=3, exclude_seen=False)
    assert answer["items"][0] == top and answer["error"] is None
    assert not math.isnan(answer["scores"][0])


def test_a_cooccurrence_checkpoint_serves_its_sparse_matrix(tiny, tmp_path):
    """The matrix's size is the fitted model's: the checkpoint brings it into a model built without the data."""
    result, trained = _trained("ItemCoOccurrence", tiny, tmp_path)
    model = trained.model
    assert model.values.numel() > 0
    rec = Recommender(result["checkpoint"])
    a = int(model.indptr.diff().argmax())  # the item with the most neighbours
    lo, hi = int(model.indptr[a]), int(model.indptr[a + 1])
    best = int(model.indices[lo:hi][model.values[lo:hi].argmax()])
    (answer,) = rec.recommend([[rec.tokens[a]]], top_n=3, exclude_seen=False)
    assert answer["items"][0] == rec.tokens[best] and answer["error"] is None


def test_cooccurrence_with_k_neighbours_keeps_each_items_k_heaviest(tiny, tmp_path):
    _, full = _trained("ItemCoOccurrence", tiny, tmp_path / "all")
    _, top = _trained("ItemCoOccurrence", tiny, tmp_path / "k3", rule_neighbours=3)
    n = full.model.n_items

    def dense(m):
        return torch.sparse_csr_tensor(m.indptr, m.indices, m.values, (n, n)).to_dense()

    a, b = dense(full.model), dense(top.model)
    assert int((b > 0).sum(1).max()) == 3 and int((a > 0).sum(1).max()) > 3
    for i in range(n):
        kept = b[i] > 0
        assert torch.equal(b[i][kept], a[i][kept])  # the same weights, only fewer
        if kept.any():
            assert float(a[i][~kept].max()) <= float(b[i][kept].min())  # and the heaviest ones


def test_recommend_all_users_exports_every_users_top_k(tiny, tmp_path):
    """`recommend --all-users --top_n=K --out FILE.csv`: every user's top-K in original ids, from the whole
    history, the same items the one-user path gives for that history."""
    import csv

    from recbole_famous import serving

    result, trained = _trained("ItemTransition", tiny, tmp_path)
    out = tmp_path / "top3.csv"
    assert cli_main(["recommend", "--checkpoint", result["checkpoint"], "--all-users", "--top_n", "3", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    users = {r["user_id"] for r in rows}
    assert len(users) == 40 and len(rows) == 120 and {r["rank"] for r in rows} == {"1", "2", "3"}
    histories = {}
    for line in (Path(tiny) / "tiny" / "tiny.inter").read_text().splitlines()[1:]:
        u, i, _ = line.split("\t")
        histories.setdefault(u, []).append(i)
    rec = Recommender(result["checkpoint"])
    some = sorted(users)[:5]
    answers = rec.recommend({u: histories[u] for u in some}, top_n=3)
    for answer in answers:
        got = [r["item_id"] for r in rows if r["user_id"] == answer["user"]]
        assert got == answer["items"]
        assert not set(got) & set(histories[answer["user"]])  # seen items excluded by default
    assert {r["original_id"] for r in rows} == {r["item_id"] for r in rows}  # no item_map: the token itself
    assert cli_main(["recommend", "--checkpoint", result["checkpoint"], "--all-users"]) == 2  # no --out: one-line error


def test_note_and_yardstick_keys_never_make_a_checkpoint_incompatible(ml100k_slice):
    """``table_note`` (props/dataset/*.yaml) and ``reference_rules`` (props/default_job.yaml) came after runs whose
    checkpoints must still resume and evaluate; a changed real setting is still refused."""
    from recbole_famous import checkpoint
    from recbole_famous.errors import UsageError

    base = {"data_path": ml100k_slice, "state": "WARNING", "show_progress": False}
    old = pipeline.build_config("SASRec", "mlslice", overrides=base)
    ckpt = {checkpoint.META_KEY: {"model": "SASRec", "dataset": "mlslice", "fingerprint": checkpoint.fingerprint(old),
                                  "path": "old.pth"}}
    now = pipeline.build_config("SASRec", "mlslice", overrides={**base, "table_note": "provenance",
                                                                "reference_rules": ["Pop"]})
    checkpoint.check_compatible(ckpt, now, "resume")
    checkpoint.check_compatible(ckpt, now, "eval")
    changed = pipeline.build_config("SASRec", "mlslice", overrides={**base, "hidden_size": 8})
    with pytest.raises(UsageError, match="hidden_size"):
        checkpoint.check_compatible(ckpt, changed, "eval")
