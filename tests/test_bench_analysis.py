"""The analyses' pure parts (recbole_famous.bench.analysis), the plots (PNG from tiny synthetic inputs) and the
ablation variants and report (recbole_famous.bench.ablations) from hand-made records."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch import nn

from recbole_famous.bench import ablations, analysis, plan, plots, runs
from recbole_famous.errors import UsageError

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG and os.path.getsize(path) > 2000


def test_plot_functions_write_pngs(tmp_path):
    assert _is_png(plots.frequency_users({"LPF": 10, "HPF": 3, "BPF": 4.5, "BSF": 2, "APF": 7},
                                         str(tmp_path / "f1.png"), "Toy", note="synthetic"))
    assert _is_png(plots.filter_amplitudes({"attention": [1.0, 0.5, 0.2], "gru": [0.4, 0.4, 0.4]},
                                           str(tmp_path / "sub" / "f2.png"), "toy filters"))
    assert _is_png(plots.expert_share({"0:attention": 0.6, "1:gru": 0.4}, str(tmp_path / "s.png"), "share"))
    assert _is_png(plots.bars({"a": 0.1, "b": float("nan"), "c": 0.3}, str(tmp_path / "b.png"), "t", "y",
                              errors={"a": 0.01, "b": None, "c": float("nan")}, highlight="c"))


def test_band_masks_partition_the_spectrum():
    masks = analysis.band_masks(50)  # 26 rFFT bins
    low, mid, high = masks["LPF"], masks["BPF"], masks["HPF"]
    assert len(low) == 26 and low[0] and high[-1] and not low[-1] and not high[0]
    assert torch.equal(low | mid | high, masks["APF"]) and not (low & mid).any() and not (mid & high).any()
    assert torch.equal(masks["BSF"], low | high) and 8 <= int(mid.sum()) <= 9


def test_filters_on_known_signals():
    n, d = 12, 3
    const = torch.full((2, n, d), 2.0)
    out = analysis.filtered_last(const, analysis.band_masks(n))
    assert torch.allclose(out["APF"], const[:, -1], atol=1e-5)
    assert torch.allclose(out["LPF"], const[:, -1], atol=1e-5)  # a constant is all DC
    assert torch.allclose(out["HPF"], torch.zeros(2, d), atol=1e-5)
    alt = torch.tensor([(-1.0) ** t for t in range(n)]).view(1, n, 1).expand(1, n, d)
    out = analysis.filtered_last(alt, analysis.band_masks(n))  # the highest frequency only
    assert torch.allclose(out["HPF"], alt[:, -1], atol=1e-5) and torch.allclose(out["LPF"], torch.zeros(1, d), atol=1e-5)


def test_left_align_and_gt_rank():
    states = torch.arange(1, 9, dtype=torch.float).view(2, 4, 1)  # rows [1,2,3,4], [5,6,7,8]
    out = analysis.left_align(states, torch.tensor([2, 4]))
    assert out.squeeze(-1).tolist() == [[0, 0, 1, 2], [5, 6, 7, 8]]
    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 4.0], [9.0, 8.0, 2.0, 1.0, 0.5]])
    history = (torch.tensor([0]), torch.tensor([2]))  # user 0 has seen item 2: masked like RecBole
    assert analysis.gt_rank(scores, history, torch.tensor([4, 3])).tolist() == [0, 2]
    assert analysis.hr_ndcg([0, 1, 20], k=10) == pytest.approx((2 / 3, (1 + 1 / 1.5849625) / 3), rel=1e-4)


def test_a4_table_on_synthetic_users():
    fig1 = {"winner": {1: {"LPF": 1.0}, 2: {"LPF": 1.0}, 3: {"HPF": 1.0}, 4: {"LPF": 0.5, "APF": 0.5}},
            "rank": {1: 0, 2: 30, 3: 5, 4: 1}, "users": 4}
    route = {"kinds": ["attention", "gru"], "expert": {1: 0, 2: 1, 3: 0, 4: 1}, "rank": {1: 0, 2: 0, 3: 40, 4: 2}}
    a4 = analysis.a4_table(fig1, route)
    assert a4["low_frequency_users"] == 2  # a tie at 0.5 is not "low-frequency"
    assert a4["low_share_to_attention"] == 0.5 and a4["all_users_share_to_attention"] == 0.5
    assert a4["SASRec_low"][0] == 0.5 and a4["FamouSRec_low"][0] == 1.0


def test_filter_amplitudes_reads_router_filters():
    model = nn.Module()
    layer = nn.Module()
    layer.kinds = ["attention", "gru"]
    layer.router = nn.Module()
    weight = torch.zeros(2, 3, 4, 2)
    weight[0, :, :, 0] = 3.0
    weight[0, :, :, 1] = 4.0  # |3 + 4i| = 5
    weight[1, 1, :, 0] = -2.0
    layer.router.filters = nn.Parameter(weight)
    model.layers = nn.ModuleList([layer])
    out = analysis.filter_amplitudes(model)
    assert out == [{"kinds": ["attention", "gru"], "amplitude": [[5.0, 5.0, 5.0], [0.0, 2.0, 0.0]]}]


def _profile(tmp_path):
    (tmp_path / "p.yaml").write_text(json.dumps({"models": ["FamouSRec"], "datasets": ["Toy"], "seeds": [1, 2],
                                                 "include": [ablations.STUDY],
                                                 "model_config": {"FamouSRec": {"experts": ["attention", "gru", "mlp"]}}}))
    return plan.load_profile(str(tmp_path / "p.yaml"))


def test_ablation_variants_are_config_changes_of_famousrec(tmp_path):
    profile = _profile(tmp_path)
    v = ablations.variants(profile)
    assert v[""][2] == {} and v["wo_router"][2] == {"use_router": False}
    assert v["wo_freq"][2] == {"frequency_learning": False} and v["wo_balance"][2] == {"gamma_balance": 0.0}
    assert v["wo_spe"][2] == {"lambda_spe": 0.0} and v["wo_align"][2] == {"mu_align": 0.0}
    assert v["all_gru"][2] == {"experts": ["gru"] * 4}  # four copies, as the study file says
    assert v["filter_mamba"][2]["experts"] == ["mamba"] and v["filter_mamba"][2]["use_router"] is False
    specs = ablations.specs(profile, "Toy", [1], ("table3",))
    assert [s.variant for s in specs] == ["", "wo_router", "wo_freq", "wo_balance", "wo_spe", "wo_align"]
    # the full model is the benchmark's own FamouSRec run: same record path
    assert specs[0].key == plan.plan(profile, seeds=[1])[0].key
    assert specs[1].overrides_dict()["experts"] == ["attention", "gru", "mlp"]


def test_ablations_are_profile_variants_of_famousrec_only(tmp_path):
    """The study file's variants are the profile's: ``bench run --variants wo_router`` plans FamouSRec's runs
    only; a profile without the study has no ablations (one-line error); the profile's own variants win."""
    (tmp_path / "q.yaml").write_text(json.dumps({
        "models": ["SASRec", "FamouSRec"], "datasets": ["Toy"], "seeds": [1, 2], "include": [ablations.STUDY],
        "variants": {"wo_spe": {"model": "FamouSRec", "group": "table3", "label": "no L_spe", "set": {"lambda_spe": 0.5}},
                     "grouped": {"length_batches": True}}}))
    profile = plan.load_profile(str(tmp_path / "q.yaml"))
    specs = plan.plan(profile, variants=["wo_router"])
    assert [(s.model, s.seed, s.variant) for s in specs] == [("FamouSRec", 1, "wo_router"), ("FamouSRec", 2, "wo_router")]
    assert specs[0].overrides_dict()["use_router"] is False
    assert ablations.variants(profile)["wo_spe"] == ("table3", "no L_spe", {"lambda_spe": 0.5})
    assert [s.model for s in plan.plan(profile, variants=["grouped"], seeds=[1])] == ["SASRec", "FamouSRec"]
    with pytest.raises(UsageError, match="variant of FamouSRec only"):
        plan.plan(profile, models=["SASRec"], variants=["wo_router"])
    (tmp_path / "bare.yaml").write_text(json.dumps({"models": ["FamouSRec"], "datasets": ["Toy"]}))
    with pytest.raises(UsageError, match="has no variants of"):
        ablations.variants(plan.load_profile(str(tmp_path / "bare.yaml")))
    (tmp_path / "lost.yaml").write_text(json.dumps({"models": ["FamouSRec"], "include": ["studies/nope.yaml"]}))
    with pytest.raises(UsageError, match="included file 'studies/nope.yaml' not found"):
        plan.load_profile(str(tmp_path / "lost.yaml"))


def test_a_profile_of_its_own_groups_is_tabled_against_the_full_model(tmp_path):
    """props/bench/decisions.yaml's group (once benchmarks/ablate_famousrec_decisions.py): ``bench ablations``
    knows the profile's groups, and tables each variant against the full model."""
    profile = plan.load_profile("decisions")
    assert ablations.profile_groups(profile) == ["decisions"]
    assert ablations.check_groups(None, profile) == ["decisions"]
    with pytest.raises(UsageError, match="unknown ablation group"):
        ablations.check_groups(["table3"], profile)
    assert ablations.profile_groups(plan.load_profile("cpu")) == ["table3", "figure4", "figure2", "table5"]
    specs = ablations.specs(profile, "ml-100k", [1], ["decisions"])
    assert [s.variant for s in specs] == ["", "gate_mean", "no_inter_layer", "align_grad", "filter_ones"]
    assert specs[1].overrides_dict()["gate_summary"] == "mean" and specs[1].overrides_dict()["experts"] == [
        "attention", "gru", "mlp"]
    out = str(tmp_path / "out")
    for spec, nd in zip(specs[:2], (0.030, 0.033)):
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"spec": runs.spec_dict(spec), "status": "finished",
                       "metrics": {"ndcg@10": nd, "hit@10": 2 * nd, "ndcg@5": nd / 2, "hit@5": nd}}, f)
    md, _ = ablations.report(profile, "ml-100k", [1], out, str(tmp_path / "docs"), ["decisions"])
    text = open(md).read()
    assert "### decisions: each variant against the full model" in text
    assert "| full (heterogeneous) | 1 | 0.0600 | 0.0300 |" in text and "| gate_summary: mean | 1 |" in text
    assert "+10.0%" in text and "| filter_init: ones | 0 |" in text


def test_ablation_report_from_hand_made_records(tmp_path):
    profile = _profile(tmp_path)
    out = str(tmp_path / "out")
    values = {"": [0.08, 0.10], "wo_router": [0.06, 0.08], "all_gru": [0.045]}
    for spec in ablations.specs(profile, "Toy", [1, 2], ("table3", "figure4")):
        if spec.variant in values and spec.seed <= len(values[spec.variant]):
            path = runs.record_path(out, spec)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            nd = values[spec.variant][spec.seed - 1]
            with open(path, "w") as f:
                json.dump({"spec": runs.spec_dict(spec), "status": "finished",
                           "metrics": {"ndcg@10": nd, "hit@10": 2 * nd, "ndcg@5": nd / 2, "hit@5": nd}}, f)
    md, csv_path = ablations.report(profile, "Toy", [1, 2], out, str(tmp_path / "docs"), ("table3", "figure4"))
    text = open(md).read()
    assert "| w/o router | 2 | 0.1400 ± 0.0283 | 0.0700 ± 0.0141 |" in text and "-22.2%" in text
    assert "| all gru (x4) | 1 |" in text and "-50.0%" in text and "| w/o L_al | 0 |" in text
    assert _is_png(str(tmp_path / "docs" / "figure4_Toy.png"))
    assert "profile,group,variant" in open(csv_path).readline()


def test_sasrec_states_of_a_length_split_model_cover_the_whole_batch():
    """Figure 1 reads the encoder's states through a hook; a length-split run wraps the instance's forward
    (``length_split: auto``), which must not leave only the last part's states."""
    from torch import nn

    from recbole_famous.data import length_batches as lb

    class Encoder(nn.Module):
        def forward(self, x):
            return [x * 2.0]

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.trm_encoder, self.emb = Encoder(), nn.Embedding(20, 3)

        def forward(self, item_seq, item_seq_len):
            states = self.trm_encoder(self.emb(item_seq))[-1]
            return states.gather(1, (item_seq_len - 1).view(-1, 1, 1).expand(-1, 1, 3)).squeeze(1)

    model = Toy()
    seq = torch.randint(1, 20, (10, 6))
    lengths = torch.randint(1, 7, (10,))
    want = analysis.sasrec_states(model, seq, lengths)
    split = lb.split_class(Toy, 4)()
    split.load_state_dict(model.state_dict())
    assert split.split_parts == 4 and torch.equal(split(seq, lengths), model(seq, lengths))
    got = analysis.sasrec_states(split, seq, lengths)
    assert got.shape == (10, 6, 3) and torch.equal(got, want)


def test_target_rank_masks_as_recbole_and_keeps_a_probed_targets_score():
    from recbole_famous.model.ranking import ndcg_at, target_rank

    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 4.0], [9.0, 8.0, 7.0, 6.0, 5.0]])
    target = torch.tensor([3, 4])
    # padding (item 0) never competes: row 0 has items 2 and 4 above item 3
    assert target_rank(scores, target).tolist() == [2, 3]
    # RecBole's history mask: a masked competitor drops out, a masked target ranks last (RecBole misses it)
    history = (torch.tensor([0, 1]), torch.tensor([2, 4]))
    assert target_rank(scores, target, history).tolist() == [1, 3]  # below every item still competing
    # masked items around a probed target: the competitors drop out, the target keeps its score
    assert target_rank(scores, target, masked_items=torch.tensor([[2, 3], [1, 4]])).tolist() == [1, 2]
    assert scores[0, 0] == 9.0  # not modified
    assert torch.allclose(ndcg_at(torch.tensor([0, 9, 10])), torch.tensor([1.0, 1 / math.log2(11), 0.0]))


def test_table5_is_reported_seed_by_seed_with_the_routers_shares(tmp_path):
    """Table 5 from two full-model records and their cached forced-expert results: the means, then each seed's
    values, the share of users the router sends to each expert, and learned routing against each fixed expert."""
    profile = _profile(tmp_path)
    out = str(tmp_path / "out")
    cached = {1: {"learned": 0.08, "0:attention": 0.07, "1:gru": 0.081},
              2: {"learned": 0.09, "0:attention": 0.085, "1:gru": 0.06}}
    for spec in ablations.specs(profile, "Toy", [1, 2], ("table3",)):
        if spec.variant:
            continue
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"spec": runs.spec_dict(spec), "status": "finished", "metrics": {"ndcg@10": 0.1},
                       "expert_share": [{"0:attention": 0.5, "1:gru": 0.5}, {"0:attention": 0.25, "1:gru": 0.75}]}, f)
        cache = runs.derived_path(path, "table5")
        with open(cache, "w") as f:
            json.dump({c: {"ndcg@10": v, "hit@10": 2 * v, "ndcg@5": v, "hit@5": v}
                       for c, v in cached[spec.seed].items()}, f)
    md, _ = ablations.report(profile, "Toy", [1, 2], out, str(tmp_path / "docs"), ("table3", "table5"),
                             echo=lambda *_: None)
    text = open(md).read()
    assert "| learned routing | 2 | 0.1700 ± 0.0141 | 0.0850 ± 0.0071 |" in text
    assert "| learned routing | 0.0800 | 0.0900 |  |" in text
    assert "| all users -> expert 1:gru | 0.0810 | 0.0600 | 75% / 75% |" in text  # the last layer's share
    assert "above the fixed expert in 3 of 4 (seed, expert) pairs" in text
    assert "-1.2% (seed 1, 1:gru), +5.9% (seed 2, 0:attention)" in text


def test_ablation_variants_are_paired_with_the_full_model_over_test_users(tmp_path):
    """Each variant against the full model of the same seed, over the test users (per-user values cached beside the
    records, as ``bench compare`` keeps them): means, wins and losses, Wilcoxon and t p-values; a seed without
    per-user values is left out, not guessed."""
    import numpy as np

    from recbole_famous.bench import peruser

    profile = _profile(tmp_path)
    out = str(tmp_path / "out")
    users = np.arange(1, 201)
    rng = np.random.default_rng(0)
    full_vals = rng.random(200) * 0.2
    per_run = {("", 1): full_vals, ("wo_router", 1): np.where(users <= 150, full_vals * 0.5, full_vals),
               ("", 2): full_vals}  # wo_router seed 2 has no per-user values here
    for spec in ablations.specs(profile, "Toy", [1, 2], ("table3",)):
        if spec.variant not in ("", "wo_router"):
            continue
        vals = per_run.get((spec.variant, spec.seed), full_vals)
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        record = {"spec": runs.spec_dict(spec), "status": "finished",
                  "result": {"run_id": f"{spec.variant}-{spec.seed}", "checkpoint": "gone.pth"},
                  "metrics": {"ndcg@10": float(vals.mean()), "hit@10": 0.2, "ndcg@5": 0.05, "hit@5": 0.1}}
        with open(path, "w") as f:
            json.dump(record, f)
        if (spec.variant, spec.seed) in per_run:
            peruser.save(peruser.cache_path(path), record, {"user_id": users, "ndcg@10": vals})
    md, _ = ablations.report(profile, "Toy", [1, 2], out, str(tmp_path / "docs"), ("table3",), echo=lambda *_: None)
    text = open(md).read()
    assert "Paired over the test users, each variant against the full model of the same seed" in text
    row = next(line for line in text.splitlines() if line.startswith("| w/o router | 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "200" and cells[3] == f"{full_vals.mean():.4f}" and cells[6] == "0 / 150"
    assert float(cells[7]) < 1e-10 and float(cells[8]) < 1e-10
    paired = text.split("Paired over the test users")[1]
    assert "| w/o router | 2 |" not in paired  # no per-user values of that run: not paired
