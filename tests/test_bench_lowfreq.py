"""A.4 like for like (bench/lowfreq.py): the history spectrum and the three definitions of low-frequency users."""
import math

import torch

from recbole_famous.bench import lowfreq


def test_low_share_of_a_constant_history_is_one_and_of_an_alternating_one_zero():
    v = torch.randn(8)
    const = v.repeat(6, 1)  # one item repeated: all energy at frequency 0
    alt = torch.stack([v if t % 2 == 0 else -v for t in range(6)])  # all energy at the highest bin
    emb = torch.zeros(3, 10, 8)
    emb[0, :6], emb[1, :6] = const, alt
    emb[2, :4] = torch.randn(4, 8)
    share = lowfreq.history_low_share(emb, torch.tensor([6, 6, 4]))
    assert math.isclose(share[0].item(), 1.0, rel_tol=1e-5)
    assert share[1].item() < 1e-6
    assert 0.0 < share[2].item() < 1.0


def test_padding_does_not_enter_the_spectrum():
    emb = torch.randn(1, 10, 4)
    dirty = emb.clone()
    dirty[0, 5:] = 100.0  # garbage after the history
    assert torch.equal(lowfreq.history_low_share(emb, torch.tensor([5])),
                       lowfreq.history_low_share(dirty, torch.tensor([5])))


def _table():
    # ranks per user: [LPF, HPF, BPF, BSF, APF]
    ranks = {1: [0, 5, 5, 5, 3],        # LPF wins, within the top 10
             2: [900, 1200, 950, 990, 1000],  # LPF "wins" among ranks in the hundreds: no band serves the user
             3: [2, 2, 9, 9, 9],        # a tie between LPF and HPF: not LPF's alone
             4: [7, 1, 3, 3, 3]}        # HPF wins
    return {"ranks": ranks, "length": {1: 3, 2: 9, 3: 6, 4: 8}, "low_share": {1: 0.9, 2: 0.8, 3: 0.2, 4: 0.5}}


def test_figure1_hit_drops_the_users_no_band_serves():
    t = _table()
    assert lowfreq.low_users(t, "figure1") == {1, 2}
    assert lowfreq.low_users(t, "figure1_hit", k=10) == {1}


def test_spectrum_definition_is_the_top_third_of_the_long_enough_histories():
    t = _table()
    t["length"][1] = 3  # too short for min_len 5: not in the pool
    assert lowfreq.low_users(t, "spectrum", min_len=5) == {2}  # pool 2, 3, 4 -> top third = 1 user


def test_compare_rows_count_routing_to_attention():
    t = _table()
    route = {"kinds": ["attention", "gru"], "expert": {1: 0, 2: 1, 3: 0, 4: 1}, "rank": {1: 0, 2: 50, 3: 1, 4: 4}}
    rows = {r["definition"]: r for r in lowfreq.compare(t, route, k=10, min_len=5)}
    assert rows["figure1"]["users"] == 2 and rows["figure1"]["to_attention_low"] == 0.5
    assert rows["figure1_hit"]["to_attention_low"] == 1.0 and rows["figure1"]["to_attention_all"] == 0.5
    hr, ndcg = rows["figure1_hit"]["SASRec_low"]  # user 1: APF rank 3
    assert hr == 1.0 and math.isclose(ndcg, 1 / math.log2(5))


def test_each_definition_is_compared_with_the_rest_of_its_pool():
    t = _table()
    assert lowfreq.pool_users(t, "figure1_hit", k=10) == {1, 3, 4}  # user 2: no band within the top 10
    assert lowfreq.pool_users(t, "spectrum", min_len=5) == {2, 3, 4}
    route = {"kinds": ["attention"], "expert": {u: 0 for u in t["ranks"]}, "rank": {1: 0, 2: 50, 3: 1, 4: 4}}
    row = {r["definition"]: r for r in lowfreq.compare(t, route)}["figure1_hit"]
    assert row["pool"] == 3 and row["SASRec_rest"][0] == 1.0  # users 3 and 4: APF ranks 9 and 3
    assert any("rest" in line for line in lowfreq.markdown([row]))
