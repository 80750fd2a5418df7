"""Efficiency columns (recbole_famous.bench.efficiency / worker) on a real tiny run, and the MoE arithmetic."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from recbole_famous.bench import efficiency, plan, runs

from bench_helpers import run_in_process


@pytest.fixture(scope="module")
def tiny_run(ml100k_slice, tmp_path_factory):
    """One real GRU4Rec epoch on the 120-user ml-100k slice, through the benchmark's run path (in process)."""
    tmp = tmp_path_factory.mktemp("bench")
    body = {"models": ["GRU4Rec"], "datasets": ["mlslice"], "seeds": [3],
            "config": {"data_path": ml100k_slice, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 512,
                       "embedding_size": 16, "hidden_size": 16, "state": "WARNING"}}
    (tmp / "tiny.yaml").write_text(json.dumps(body))
    profile = plan.load_profile(str(tmp / "tiny.yaml"))
    specs = plan.plan(profile)
    out = str(tmp / "out")
    counts = runs.run_all(specs, out, launcher=run_in_process, echo=lambda m: None)
    assert counts["ran"] == 1
    return specs, out, runs.load_record(runs.record_path(out, specs[0]))


def test_efficiency_numbers_are_sane(tiny_run):
    _, _, record = tiny_run
    eff, result = record["efficiency"], record["result"]
    # RecBole's GRU4Rec: item embedding (n_items x 16), bias-free GRU 3h(e+h), dense h x e + e
    assert eff["params_total"] == result["num_items"] * 16 + 3 * 16 * 32 + 16 * 16 + 16
    assert eff["params_active"] == eff["params_total"]  # a dense model: everything serves every user
    assert eff["train_seconds_per_epoch"] == pytest.approx(sum(result["epoch_seconds"]) / len(result["epoch_seconds"]))
    assert eff["train_seconds_per_epoch"] > 0 and result["epochs_run"] == 1
    assert eff["infer_users"] == 120  # every user of the slice is ranked once
    assert 0 < eff["infer_ms_per_1k_users"] < 1e6
    assert 50 < eff["rss_after_imports_mb"] <= eff["peak_rss_mb"] < 64 * 1024
    assert 0 < eff["cpu_seconds_run"] and eff["wall_seconds_run"] >= result["fit_seconds"] > 0
    assert record["expert_share"] is None and record["machine"]["torch_threads"] == 1
    assert set(record["metrics"]) == {"hit@5", "hit@10", "ndcg@5", "ndcg@10"}


def test_finished_real_run_is_not_rerun(tiny_run):
    specs, out, record = tiny_run

    def must_not_run(*args):
        raise AssertionError("a finished run was launched again")

    assert runs.run_all(specs, out, launcher=must_not_run, echo=lambda m: None)["finished_before"] == 1
    assert runs.run_one(specs[0], out, launcher=must_not_run)["result"]["run_id"] == record["result"]["run_id"]


class _FakeMoE(nn.Module):
    """The shape efficiency.active_params reads: ``layers[i].experts`` and the inference switches."""

    def __init__(self, eval_top_k=1, force_expert=None, use_router=True):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)  # 40
        self.layers = nn.ModuleList([nn.Module()])
        self.layers[0].experts = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 9)])  # 20, 45
        self.eval_top_k, self.force_expert, self.use_router = eval_top_k, force_expert, use_router


def test_active_params_of_a_mixture():
    model = _FakeMoE()
    assert efficiency.count_params(model) == 105
    assert efficiency.active_params(model, [[0.25, 0.75]]) == pytest.approx(40 + 0.25 * 20 + 0.75 * 45)
    assert efficiency.active_params(_FakeMoE(force_expert=0), [[0.25, 0.75]]) == 60
    assert efficiency.active_params(_FakeMoE(eval_top_k=2)) == 105
    assert efficiency.active_params(_FakeMoE(use_router=False)) == 105
    assert efficiency.active_params(nn.Linear(3, 3)) == 12


def test_time_full_ranking_counts_users():
    class Ranker(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(7))

        def full_sort_predict(self, inter):
            return self.w.expand(len(inter), 7).clone()

    data = [(torch.zeros(5, 1), (torch.tensor([0, 1]), torch.tensor([2, 3]))), (torch.zeros(3, 1), None)]
    out = efficiency.time_full_ranking(Ranker(), data)
    assert out["users"] == 8 and out["seconds"] > 0 and out["infer_ms_per_1k_users"] > 0


def test_a_run_given_more_threads_trains_with_them_and_times_inference_with_the_profiles(
        tiny_run, tmp_path, monkeypatch):
    """``bench run --threads 2`` on a one-thread profile: the run trains with two threads, inference is timed with
    one like the table's other runs, and the record says so, which the tables mark (``§``)."""
    from recbole_famous.bench import table

    specs, _, one_thread = tiny_run
    seen = {}
    timer = efficiency.time_full_ranking

    def timed(model, data):
        seen["timing"] = torch.get_num_threads()
        return timer(model, data)

    monkeypatch.setattr(efficiency, "time_full_ranking", timed)
    out = str(tmp_path / "out")
    assert runs.run_all(specs, out, launcher=run_in_process, echo=lambda m: None, threads=2,
                        timing_threads=1)["ran"] == 1
    record = runs.load_record(runs.record_path(out, specs[0]))
    assert record["machine"]["torch_threads"] == 2 and seen["timing"] == 1
    assert record["efficiency"]["train_threads"] == [2] and record["efficiency"]["timing_threads"] == 1
    assert one_thread["efficiency"]["train_threads"] == [1] and not table.more_threads(one_thread)
    assert table.more_threads(record)
    text = table.markdown([record], "tiny")
    assert text.count(" §") == 2 and table.THREADS_NOTE in text  # train s / epoch and CPU s, then the note
    assert " §" not in table.markdown([one_thread], "tiny")
