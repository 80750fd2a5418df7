"""The routing study (``props/bench/routing.yaml``, ``recbole_famous/bench/routing.py``): its tables, its probe on
real runs through ``bench run`` / ``bench routing``, and the earlier script's records, which stay readable."""
import json
import math
import os

import pytest

from bench_helpers import bench_cli, run_in_process
from recbole_famous.bench import plan, routing, runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(variant, seed, valid, test, diag=True):
    d = {"gate_spread": 0.5 + seed % 10 / 10, "entropy": 0.8, "expert_cosine": 0.9,
         "share": {"0:attention": 0.25, "1:gru": 0.75}, "forced_ndcg10": {"0:attention": 0.1, "1:gru": 0.2}}
    return {"variant": variant, "seed": seed, "valid": {"ndcg@10": valid}, "test": {"ndcg@10": test},
            "diagnostics": d if diag else {"expert_cosine": 0.95, "forced_ndcg10": {"0:attention": 0.3}}}


@pytest.fixture
def folder(tmp_path):
    recs = [_record("full", 1, 0.10, 0.09), _record("full", 2, 0.12, 0.10), _record("full", 3, 0.11, 0.08),
            _record("wo", 1, 0.09, 0.09, diag=False), _record("wo", 3, 0.08, 0.07, diag=False)]
    for r in recs:
        (tmp_path / f"{r['variant']}-{r['seed']}.json").write_text(json.dumps(r))
    (tmp_path / "notes.txt").write_text("not a record")
    return tmp_path


def test_read_records_filters_and_orders(folder):
    recs = routing.read_records(str(folder), variants=["wo", "full"], seeds=[1, 3])
    assert [(r["variant"], r["seed"]) for r in recs] == [("wo", 1), ("wo", 3), ("full", 1), ("full", 3)]
    assert routing.read_records(str(folder / "missing")) == []


def test_paired_differences_use_common_seeds_only(folder):
    recs = routing.read_records(str(folder))
    p = routing.paired(recs, "full", "wo")
    assert p["seeds"] == [1, 3]
    assert p["diffs"] == pytest.approx([-0.01, -0.03])
    assert p["mean"] == pytest.approx(-0.02) and p["std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert p["relative"] == pytest.approx(-0.02 / 0.105)
    assert p["reference_spread"] == pytest.approx(0.01 / math.sqrt(2))  # std of 0.10, 0.11


def test_markdown_rows_means_and_missing_diagnostics(folder):
    text = routing.markdown(routing.read_records(str(folder), variants=["full", "wo"]), "T", reference="full")
    lines = text.splitlines()
    full = next(line for line in lines if line.startswith("| full |"))
    assert "1,2,3" in full and "0.1100 ± 0.0100" in full and "0.25 / 0.75 (attention / gru)" in full
    assert "0.70 ± 0.10" in full  # the gate spreads 0.6, 0.7, 0.8
    wo = next(line for line in lines if line.startswith("| wo |"))
    assert "| - | - | 0.95 ± 0.00 | - | 0.3000 (attention) |" in wo  # no gate without a router; the cosine and forced rows still shown
    paired_row = [line for line in lines if line.startswith("| wo | 1,3 |")][-1]  # the paired table's row
    assert "-0.0100, -0.0300" in paired_row and "-19.0%" in paired_row


def test_headroom_arithmetic_on_known_ranks():
    """Two experts, four users: the oracle takes each user's better rank; probe routing follows each user's probe
    winner (a probe tie falls back to the best forced expert); agreement and chance over strict pairs only."""
    from recbole_famous.bench.headroom import headroom

    valid = {"a": {"u1": 0, "u2": 50, "u3": 0, "u4": 30}, "b": {"u1": 9, "u2": 1, "u3": 0, "u4": 2}}
    probe = {"a": {"u1": 1, "u2": 7, "u3": 4, "u4": 6}, "b": {"u1": 2, "u2": 3, "u3": 4, "u4": 5, "u5": 0}}
    res = headroom(valid, probe, routed={"u1": 0, "u2": 1, "u3": 0, "u4": 3})
    ndcg = lambda r: 1 / math.log2(r + 2) if r < 10 else 0.0  # noqa: E731
    assert res["users"] == 4  # u5 has no validation rank
    assert res["forced"]["a"] == pytest.approx((ndcg(0) + 0 + ndcg(0) + 0) / 4)
    assert res["forced"]["b"] == pytest.approx((ndcg(9) + ndcg(1) + ndcg(0) + ndcg(2)) / 4)
    assert res["best_forced"] == "b"
    assert res["oracle"] == pytest.approx((ndcg(0) + ndcg(1) + ndcg(0) + ndcg(2)) / 4)
    # picks: u1 a (1 < 2), u2 b, u3 tie -> best forced b, u4 b
    assert res["probe_routed"] == pytest.approx((ndcg(0) + ndcg(1) + ndcg(0) + ndcg(2)) / 4)
    assert res["probe_picks"] == {"a": 0.25, "b": 0.75}
    # strict on both: u1 (a, a), u2 (b, b), u4 (b, b); u3 ties on both
    assert res["strict_pairs"] == 3 and res["agreement"] == 1.0
    assert res["chance"] == pytest.approx((1 / 3) ** 2 + (2 / 3) ** 2)
    assert res["routed"] == pytest.approx((ndcg(0) + ndcg(1) + ndcg(0) + ndcg(3)) / 4)


def test_headroom_with_several_probes_uses_mean_log_rank():
    from recbole_famous.bench.headroom import headroom

    valid = {"a": {"u": 5}, "b": {"u": 0}}
    # a: ranks 0 and 100 (mean log1p 2.31), b: 3 and 3 (1.39): b is the user's best although a has the best single
    res = headroom(valid, {"a": {"u": [0, 100]}, "b": {"u": [3, 3]}})
    assert res["probe_picks"] == {"a": 0.0, "b": 1.0} and res["agreement"] == 1.0


def test_the_earlier_scripts_committed_records_stay_readable():
    """docs/results/routing/{paper,routing}-2020.json were written by benchmarks/routing_real.py (now the profile
    props/bench/routing.yaml): they read and table as the probe's rows do."""
    recs = routing.read_records(os.path.join(REPO, "docs", "results", "routing"), variants=["paper", "routing"])
    assert [(r["variant"], r["seed"]) for r in recs] == [("paper", 2020), ("routing", 2020)]
    text = routing.markdown(recs, "1 epoch", reference="paper")
    assert "| paper | 2020 | 0.0629 | 0.0492 | 0.17 | 0.99 | 0.86 |" in text  # docs/results/routing/README.md's figures
    assert "| routing | 2020 | -0.0116 | -0.0116 | -18.4% | - |" in text


def test_the_routing_profile_holds_the_earlier_scripts_variants():
    profile = plan.load_profile("routing")
    assert profile.variants["routing_wo_router"] == {"gate_input": "band_energy", "train_routing": "switch",
                                                     "balance_loss": "switch", "filter_init": "bands",
                                                     "use_router": False}
    assert profile.variants["paper_fast_all_gru"] == {"expert_input": "history", "spe_users": 64,
                                                      "experts": ["gru"] * 4}
    assert len(profile.variants_in("routing")) == 24 and profile.models == ("FamouSRec",)


def test_routing_study_runs_through_bench_and_probes_each_model(ml100k_slice, tmp_path):
    """A tiny study: the base run and one variant trained by ``bench run``, then ``bench routing`` reads each
    checkpoint (the probe), writes the table and its rows, and caches the diagnostics beside the records."""
    body = {"description": "tiny routing", "models": ["FamouSRec"], "datasets": ["mlslice"], "seeds": [5],
            "config": {"data_path": ml100k_slice, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 256,
                       "hidden_size": 16, "embedding_size": 16, "inner_size": 32, "state": "WARNING",
                       "spe_mode": "sampled"},
            "variants": {"wo": {"model": "FamouSRec", "group": "routing", "label": "w/o router",
                                "set": {"use_router": False}}}}
    (tmp_path / "tiny.yaml").write_text(json.dumps(body))
    profile = plan.load_profile(str(tmp_path / "tiny.yaml"))
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    specs = plan.plan(profile) + plan.plan(profile, variants=["wo"])
    assert runs.run_all(specs, out, launcher=run_in_process, echo=lambda m: None)["ran"] == 2
    assert bench_cli(["routing", "--profile", str(tmp_path / "tiny.yaml"), "--out", out, "--docs", docs,
                      "--reference", "paper"]) == 0
    rows = json.load(open(os.path.join(docs, "tiny", "routing_mlslice.json")))
    assert [(r["variant"], r["seed"]) for r in rows] == [("paper", 5), ("wo", 5)]
    full, wo = rows
    assert set(full["diagnostics"]["forced_ndcg10"]) == {"0:attention", "1:gru", "2:mamba", "3:mlp"}
    assert 0 <= full["diagnostics"]["entropy"] <= 1 and full["diagnostics"]["gate_spread"] > 0
    assert wo["diagnostics"].get("gate_spread") is None  # no router, no gate
    assert full["valid"]["ndcg@10"] == runs.load_record(runs.record_path(out, specs[0]))["valid_metrics"]["ndcg@10"]
    text = open(os.path.join(docs, "tiny", "routing_mlslice.md")).read()
    assert "| paper | 5 |" in text and "Paired against `paper`" in text and "| wo | 5 |" in text
    assert os.path.isfile(routing.cache_path(runs.record_path(out, specs[1])))
    # the diagnostics are archived beside the records: on a machine without the store or its checkpoints, the
    # restored runs give the same rows (the probe is not run again: nothing to load)
    archived = os.path.join(docs, "tiny", "records", "mlslice", "FamouSRec", "seed5.routing.json")
    assert json.load(open(archived))["forced_ndcg10"] == full["diagnostics"]["forced_ndcg10"]
    new, docs2 = str(tmp_path / "new"), str(tmp_path / "docs2")
    common = ["--profile", str(tmp_path / "tiny.yaml"), "--out", new]
    assert bench_cli(["restore", *common, "--docs", docs, "--variants", "wo"]) == 0
    assert bench_cli(["restore", *common, "--docs", docs]) == 0
    os.rename(out, str(tmp_path / "gone"))  # the old machine's store, checkpoints included
    assert bench_cli(["routing", *common, "--docs", docs2, "--reference", "paper"]) == 0
    assert json.load(open(os.path.join(docs2, "tiny", "routing_mlslice.json"))) == rows
    os.rename(str(tmp_path / "gone"), out)
    # the probes of given checkpoints (bench headroom, bench a4) on the base run's checkpoint
    famous = runs.load_record(runs.record_path(out, specs[0]))["result"]["checkpoint"]
    assert bench_cli(["headroom", famous, "--out", str(tmp_path / "h" / "headroom.md")]) == 0
    numbers = json.load(open(tmp_path / "h" / "headroom.json"))
    assert numbers["users"] > 0 and set(numbers["forced"]) == {"0:attention", "1:gru", "2:mamba", "3:mlp"}
    assert numbers["oracle"] >= max(numbers["forced"].values())
    from recbole_famous.runner import run

    sas = run("SASRec", "mlslice", overrides={**body["config"], "n_layers": 1, "n_heads": 1,
                                               "checkpoint_dir": str(tmp_path / "sas"), "results_dir": str(tmp_path / "r")})
    assert bench_cli(["a4", "--sasrec", sas.checkpoint, "--famousrec", famous, "--out", str(tmp_path / "a4")]) == 0
    a4 = json.load(open(tmp_path / "a4" / "a4_mlslice.json"))
    assert a4["famousrec_kinds"] == ["attention", "gru", "mamba", "mlp"] and a4["rows"]
    assert "Appendix A.4 like for like, mlslice" in open(tmp_path / "a4" / "a4_mlslice.md").read()
    assert bench_cli(["headroom", sas.checkpoint, "--out", str(tmp_path / "x.md")]) == 2  # not a FamouSRec
    assert bench_cli(["by-period", famous]) == 2  # mlslice has no behaviour types: one line, no traceback
