"""``compare`` (recbole_famous.bench.compare / peruser): paired tests over test users, per-user metrics that are
RecBole's own, Table 2 with a pending model, and the learning curves, on real tiny runs of the ml-100k slice."""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from scipy import stats

from bench_helpers import bench_cli
from recbole_famous.bench import analysis, breakdown, compare, peruser, plan, runs, trained
from recbole_famous import pipeline
from recbole_famous.errors import UsageError

from bench_helpers import run_in_process


def test_paired_test_known_p_values():
    # ours beats the baseline on six users (by 1, 2, 3, 4, 5, 7: all signs positive, so the exact two-sided
    # Wilcoxon p is 2 / 2^6), ties on three (dropped by Wilcoxon, kept by the t test), one user only in ours;
    # the baseline's rows come in another order: users are paired by id, not by position
    users = np.arange(10, 19)
    ours = {"user_id": np.append(users, 99), "ndcg@10": np.array([1, 2, 3, 4, 5, .5, .5, 0, 7, 7], dtype=float)}
    base_values = np.array([0, 0, 0, 0, 0, .5, .5, 0, 0], dtype=float)
    shuffled = np.array([8, 3, 0, 5, 1, 7, 2, 6, 4])
    base = {"user_id": users[shuffled], "ndcg@10": base_values[shuffled]}
    out = compare.paired_test(ours, base)
    assert out["users"] == 9 and out["only_ours"] == 1 and out["only_base"] == 0
    diff = np.array([1, 2, 3, 4, 5, 0, 0, 0, 7], dtype=float)
    assert out["users_differ"] == 6 and out["ours_better"] == 6 and out["ours_worse"] == 0
    assert out["wilcoxon_p"] == pytest.approx(2 / 2 ** 6)
    t = diff.mean() / (diff.std(ddof=1) / math.sqrt(len(diff)))  # the paired t statistic by hand
    assert out["t_stat"] == pytest.approx(t) and out["t_p"] == pytest.approx(2 * stats.t.sf(t, len(diff) - 1))
    assert out["mean_diff"] == pytest.approx(diff.mean())


def test_paired_test_five_wins_and_identical_users():
    ours = {"user_id": np.arange(5), "ndcg@10": np.array([1.0, 2, 3, 4, 5])}
    base = {"user_id": np.arange(5), "ndcg@10": np.zeros(5)}
    out = compare.paired_test(ours, base)
    assert out["wilcoxon_p"] == pytest.approx(0.0625) and out["t_p"] == pytest.approx(0.013235599563682690)
    same = compare.paired_test(ours, ours)
    assert same["users_differ"] == 0 and same["wilcoxon_p"] == 1.0 and math.isnan(same["t_p"])
    with pytest.raises(ValueError):
        compare.paired_test({"user_id": np.array([1, 1]), "ndcg@10": np.zeros(2)}, base)


@pytest.fixture(scope="module")
def tiny(ml100k_slice, tmp_path_factory):
    """Two real 2-epoch runs (SASRec, GRU4Rec) on the 120-user ml-100k slice through the benchmark's run path;
    FamouSRec is in the profile but never run (pending)."""
    tmp = tmp_path_factory.mktemp("compare")
    body = {"description": "tiny compare", "models": ["SASRec", "GRU4Rec", "FamouSRec"], "datasets": ["mlslice"],
            "seeds": [3],
            "config": {"data_path": ml100k_slice, "epochs": 2, "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 128, "topk": [5, 10, 50],
                       "learning_rate": 0.005, "stopping_step": 1,
                       "embedding_size": 16, "hidden_size": 16, "n_layers": 1, "n_heads": 1, "inner_size": 32,
                       "state": "WARNING"},
            "variants": {"drop": {"model": "SASRec", "group": "g", "label": "SASRec, dropout 0.1",
                                  "set": {"hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1}}}}
    (tmp / "tiny.yaml").write_text(json.dumps(body))
    profile_path = str(tmp / "tiny.yaml")
    specs = plan.plan(plan.load_profile(profile_path))
    out = str(tmp / "out")
    assert runs.run_all(specs[:2], out, launcher=run_in_process, echo=lambda m: None)["ran"] == 2
    records = [runs.load_record(runs.record_path(out, s)) for s in specs[:2]]
    return {"profile": profile_path, "specs": specs, "out": out, "records": records, "tmp": tmp}


def test_per_user_metrics_average_to_recboles_own(tiny):
    for record in tiny["records"]:
        loaded = trained.load_run(record)
        values = peruser.per_user(loaded)
        assert len(values["user_id"]) == len(set(values["user_id"].tolist())) == 120  # every user once
        keys = {f"{m}@{k}" for m in ("ndcg", "hit") for k in (5, 10, 50)}
        assert set(values) == {"user_id", *keys} and set(record["metrics"]) == keys
        for key in keys:  # what RecBole's evaluator reported for the run
            assert float(values[key].mean()) == pytest.approx(record["metrics"][key], abs=1e-4)
        assert set(peruser.check(values, record["metrics"])) == keys
        assert values["hit@10"].min() >= 0 and set(np.unique(values["hit@10"])) <= {0.0, 1.0}
        assert (values["ndcg@10"] <= values["hit@10"]).all() and (values["ndcg@5"] <= values["ndcg@10"] + 1e-12).all()
        # each user's value against that user's own rank of the test item, computed here from the scores: the
        # values belong to the right users (a mean cannot show that)
        by_user = {k: dict(zip(values["user_id"].tolist(), values[f"ndcg@{k}"].tolist())) for k in (10, 50)}
        hits = 0
        with torch.no_grad():
            for inter, history_index, _, _ in loaded.test_data:
                scores = loaded.model.full_sort_predict(inter).view(len(inter), -1)
                ranks = analysis.gt_rank(scores, history_index, inter[loaded.model.POS_ITEM_ID])
                for u, r in zip(inter[loaded.model.USER_ID].tolist(), ranks.tolist()):
                    for k in (10, 50):
                        assert by_user[k][u] == pytest.approx(1 / math.log2(r + 2) if r < k else 0.0)
                    hits += r < 50
        assert hits >= 10  # enough users in a top-50 for the comparison to mean something
        wrong = {**record["metrics"], "ndcg@10": record["metrics"]["ndcg@10"] + 0.01}
        with pytest.raises(peruser.PerUserMismatch, match="ndcg@10"):
            peruser.check(values, wrong)


def test_per_user_cache_is_read_back_and_refused_for_another_run(tiny, tmp_path, monkeypatch):
    record = tiny["records"][0]
    path = str(tmp_path / "sasrec.peruser.npz")
    first = peruser.for_record(record, path, echo=lambda m: None)
    assert os.path.isfile(path)

    def must_not_load(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(trained, "load_run", must_not_load)
    again = peruser.for_record(record, path, echo=lambda m: None)
    assert np.array_equal(first["ndcg@10"], again["ndcg@10"]) and np.array_equal(first["user_id"], again["user_id"])
    other = {**record, "result": {**record["result"], "run_id": "another-run"}}
    with pytest.raises(AssertionError, match="cache should have been used"):  # not this run's cache: recomputed
        peruser.for_record(other, path, echo=lambda m: None)
    tampered = {**record, "metrics": {**record["metrics"], "ndcg@10": 0.9}}
    with pytest.raises(peruser.PerUserMismatch):  # the cached values are checked on every read
        peruser.for_record(tampered, path, echo=lambda m: None)


def _md(docs):
    with open(os.path.join(docs, "tiny", "comparison.md"), encoding="utf-8") as f:
        return f.read()


def test_compare_with_a_pending_model(tiny, tmp_path):
    docs = str(tmp_path / "docs")
    argv = ["compare", "--profile", tiny["profile"], "--out", tiny["out"], "--docs", docs]
    assert bench_cli(argv) == 0
    md = _md(docs)
    sas, gru = tiny["records"]
    best = "SASRec" if sas["valid_metrics"]["ndcg@10"] >= gru["valid_metrics"]["ndcg@10"] else "GRU4Rec"
    assert f"chosen by **validation** NDCG@10 (mean over its finished seeds): **{best}**" in md
    assert "FamouSRec 0/1 finished (pending: seed 3)" in md
    row = next(line for line in md.splitlines() if line.startswith("| NDCG@10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "(pending)" and cells[4] == "–"
    assert f"{sas['metrics']['ndcg@10']:.4f}" in cells[1] and f"{gru['metrics']['ndcg@10']:.4f}" in cells[2]
    p_row = next(line for line in md.splitlines() if line.startswith("| p, paired over test users"))
    assert "FamouSRec not finished yet" in p_row
    assert "Made by: `python -m recbole_famous.bench compare --profile" in md
    png = os.path.join(docs, "tiny", "curves_mlslice.png")
    assert os.path.isfile(png) and os.path.getsize(png) > 10_000
    with open(os.path.join(docs, "tiny", "curves.csv")) as f:
        curve = list(csv.DictReader(f))
    assert sorted((r["model"], r["epoch"]) for r in curve) == [("GRU4Rec", "0"), ("GRU4Rec", "1"),
                                                                ("SASRec", "0"), ("SASRec", "1")]
    got = {(r["model"], int(r["epoch"])): float(r["valid_ndcg@10"]) for r in curve}
    assert got[("SASRec", 1)] == pytest.approx(float(sas["result"]["valid_scores"]["1"]))
    with open(os.path.join(docs, "tiny", "significance.csv")) as f:
        sig = list(csv.DictReader(f))
    assert sig[0]["note"] == "FamouSRec not finished yet"
    assert not glob.glob(os.path.join(tiny["out"], "runs", "**", "*.peruser.npz"), recursive=True)  # nothing computed
    assert "### mlslice: would a shorter patience do?" in md and "trained with patience 1;" in md
    best = sas["result"]["best_epoch"]
    assert f"| SASRec | 3 | 1 | 2 | {best} | {float(sas['result']['valid_scores'][str(best)]):.4f} | +0.0% |" in md


def test_a_comparison_whose_records_are_gone_is_kept(tiny, tmp_path):
    """compare into a folder whose comparison counts finished runs that are not here (another machine's records):
    the committed files are kept and this comparison gets the suffix ``_<dataset>``; when that suffixed one would
    lose runs too, the command says so and writes nothing."""
    docs = str(tmp_path / "docs")
    folder = os.path.join(docs, "tiny")
    assert bench_cli(["compare", "--profile", tiny["profile"], "--out", tiny["out"], "--docs", docs]) == 0
    kept = {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}
    fewer = str(tmp_path / "fewer")
    shutil.copytree(tiny["out"], fewer)
    os.remove(runs.record_path(fewer, tiny["specs"][0]))  # SASRec's record gone
    assert bench_cli(["compare", "--profile", tiny["profile"], "--out", fewer, "--docs", docs]) == 0
    assert {name: open(os.path.join(folder, name), "rb").read() for name in kept} == kept
    md = open(os.path.join(folder, "comparison_mlslice.md"), encoding="utf-8").read()
    assert "SASRec 0/1 finished (pending: seed 3)" in md and "GRU4Rec 1/1 finished" in md
    assert "(curves_mlslice_mlslice.png)" in md and os.path.isfile(os.path.join(folder, "curves_mlslice_mlslice.png"))
    assert "`curves_mlslice.csv`" in md and os.path.isfile(os.path.join(folder, "significance_mlslice.csv"))
    os.remove(runs.record_path(fewer, tiny["specs"][1]))  # GRU4Rec's too: comparison_mlslice would lose it
    written = sorted(os.listdir(folder))
    assert bench_cli(["compare", "--profile", tiny["profile"], "--out", fewer, "--docs", docs]) == 2
    assert sorted(os.listdir(folder)) == written
    assert "GRU4Rec" in open(os.path.join(folder, "comparison_mlslice.md"), encoding="utf-8").read().split("Runs:")[1]


def test_compare_paired_test_from_checkpoints(tiny, tmp_path):
    docs, cache = str(tmp_path / "docs"), str(tmp_path / "cache")
    argv = ["compare", "--profile", tiny["profile"], "--out", tiny["out"], "--docs", docs, "--ours", "GRU4Rec",
            "--cache", cache, "--models", "SASRec,GRU4Rec"]
    assert bench_cli(argv) == 0
    md = _md(docs)
    assert "### mlslice: paired test over test users, GRU4Rec vs SASRec" in md
    with open(os.path.join(docs, "tiny", "significance.csv")) as f:
        (row,) = list(csv.DictReader(f))
    assert row["baseline"] == "SASRec" and row["seed"] == "3" and int(row["users"]) == 120
    sas, gru = tiny["records"]
    assert float(row["mean_ours"]) == pytest.approx(gru["metrics"]["ndcg@10"], abs=1e-4)
    assert float(row["mean_base"]) == pytest.approx(sas["metrics"]["ndcg@10"], abs=1e-4)
    assert 0 <= float(row["wilcoxon_p"]) <= 1 and 0 <= float(row["t_p"]) <= 1
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(cache, "**", "*.npz"), recursive=True)) == [
        "seed3.peruser.npz", "seed3.peruser.npz"]
    imp = 100 * (gru["metrics"]["ndcg@10"] - sas["metrics"]["ndcg@10"]) / sas["metrics"]["ndcg@10"]
    assert f"{imp:+.1f}% vs SASRec" in md


def test_learning_curve_of_a_run_still_going(tiny, tmp_path):
    # a FamouSRec run "in progress": its checkpoint folder holds a resume checkpoint (here the SASRec run's,
    # copied), and no record; the curve comes from the checkpoint's metadata
    sas_spec, fam_spec = tiny["specs"][0], tiny["specs"][2]
    out = str(tmp_path / "out")
    shutil.copytree(tiny["out"], out)
    (resume,) = glob.glob(os.path.join(runs.checkpoint_dir(out, sas_spec), "*.resume.pth"))
    os.makedirs(runs.checkpoint_dir(out, fam_spec))
    shutil.copy(resume, runs.checkpoint_dir(out, fam_spec))
    entry = compare.entries([fam_spec], out)[0]
    assert entry["state"] == "pending" and entry["record"] is None
    curve = compare.valid_curve(entry, out)
    sas_scores = tiny["records"][0]["result"]["valid_scores"]
    assert curve["source"] == "pending (resume checkpoint)" and curve["epochs_run"] == 2
    assert curve["scores"] == {int(k): pytest.approx(v) for k, v in sas_scores.items()}
    docs = str(tmp_path / "docs")
    assert bench_cli(["compare", "--profile", tiny["profile"], "--out", out, "--docs", docs]) == 0
    md = _md(docs)
    assert "| FamouSRec | 3 | pending | 2 so far |" in md
    said = []
    from recbole_famous.cli import bench as bench_command, parse

    args = parse(["bench", "status", "--profile", tiny["profile"], "--out", out])[1]
    assert bench_command._dispatch(args, [], said.append) == 0
    best = curve["best_epoch"]
    assert said[2].startswith("pending") and (
        f"seed 3  2 epochs so far, best valid {curve['scores'][best]:.4f} at epoch {best}; 0-0 epochs to go at "
        in said[2])  # the checkpoint's run reached its cap of 2 epochs
    assert "last epoch saved" in said[2] and "to go" not in said[0]
    assert said[0].startswith("finished") and said[0].endswith("2 epochs, best valid "
                                                              f"{float(sas_scores[str(best)]):.4f} at epoch {best}")


def test_status_says_how_far_a_run_still_going_has_to_go():
    from recbole_famous.cli import bench as bench_command

    curve = {"scores": {0: 0.05, 1: 0.06, 2: 0.058}, "best_epoch": 1, "source": "running (resume checkpoint)",
             "epochs_run": 3, "epoch_seconds": [500.0, 600.0, 700.0], "saved_at": 1000.0, "max_epochs": 200,
             "patience": 3}
    # best at epoch 1, one epoch without a gain: RecBole stops after 3 more flat ones; 197 left to the cap
    assert bench_command._progress(curve, now=1300.0) == (
        "  3 epochs so far, best valid 0.0600 at epoch 1; 3-197 epochs to go at 10 min of training each "
        "(30 min to 32.8 h); last epoch saved 5 min ago")
    assert bench_command._progress(dict(curve, source="finished"), now=1300.0) == (
        "  3 epochs, best valid 0.0600 at epoch 1")


def test_p_cell_says_what_is_missing():
    def entry(model, seed, finished, valid=0.1):
        spec = plan.RunSpec(model, "Instruments", seed, "p")
        record = {"spec": {"model": model, "seed": seed}, "valid_metrics": {"ndcg@10": valid}} if finished else None
        return {"spec": spec, "state": "finished" if finished else "running", "record": record, "path": "x.json"}

    models = {"SASRec": [entry("SASRec", 1, False)], "FamouSRec": [entry("FamouSRec", 1, True)]}
    base, _ = compare.best_baseline(models, "FamouSRec")
    assert base is None
    assert compare.significance(models, "FamouSRec", base, "out")["note"] == "no baseline finished yet"
    models = {"SASRec": [entry("SASRec", 2, True, 0.2)], "EMKD": [entry("EMKD", 1, True, 0.3)],
              "FamouSRec": [entry("FamouSRec", 1, True), entry("FamouSRec", 2, False)]}
    assert compare.best_baseline(models, "FamouSRec") == ("EMKD", 0.3)  # by validation NDCG@10
    ablation = dict(models, **{"FamouSRec[wo_router]": [entry("FamouSRec", 1, True, 0.4)]})
    assert compare.best_baseline(ablation, "FamouSRec") == ("EMKD", 0.3)  # an ablation of ours is no baseline
    note = compare.significance(models, "FamouSRec", "SASRec", "out")["note"]
    assert note == "no seed finished by both FamouSRec (seeds [1]) and SASRec (seeds [2])"
    models["FamouSRec"] = [entry("FamouSRec", 1, False)]
    assert compare.significance(models, "FamouSRec", "EMKD", "out")["note"] == "FamouSRec not finished yet"


def test_a_failed_per_user_check_leaves_the_p_value_out(tiny, tmp_path):
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    shutil.copytree(tiny["out"], out)
    path = runs.record_path(out, tiny["specs"][1])  # GRU4Rec's record, its test NDCG@10 made wrong
    record = runs.load_record(path)
    record["metrics"]["ndcg@10"] += 0.05
    with open(path, "w") as f:
        json.dump(record, f)
    argv = ["compare", "--profile", tiny["profile"], "--out", out, "--docs", docs, "--ours", "GRU4Rec"]
    assert bench_cli(argv) == 1
    md = _md(docs)
    assert "Per-user check FAILED: seed 3: GRU4Rec on mlslice, seed 3: the mean of the per-user ndcg@10" in md
    assert "Wilcoxon p =" not in md and not os.path.isfile(peruser.cache_path(path))


def test_a_run_without_checkpoint_or_cache_is_said_not_failed(tiny, tmp_path):
    # a record restored from the archive on a new machine: no per-user cache, its checkpoint gone
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    shutil.copytree(tiny["out"], out)
    path = runs.record_path(out, tiny["specs"][0])  # SASRec's record
    record = runs.load_record(path)
    record["result"]["checkpoint"] = str(tmp_path / "gone.pth")
    with open(path, "w") as f:
        json.dump(record, f)
    assert not peruser.obtainable(record, peruser.cache_path(path))
    argv = ["compare", "--profile", tiny["profile"], "--out", out, "--docs", docs, "--ours", "GRU4Rec",
            "--models", "SASRec,GRU4Rec"]
    assert bench_cli(argv) == 0
    md = _md(docs)
    p_row = next(line for line in md.splitlines() if line.startswith("| p, paired over test users"))
    assert ("seed 3: no per-user values of SASRec here (neither cached nor its checkpoint on this machine)"
            in p_row)
    assert "FAILED" not in md and "Wilcoxon p =" not in md


def test_p_values_are_written_so_that_an_underflow_is_not_a_zero():
    from recbole_famous.bench.compare import format_p, p_clause
    assert format_p(0.0) == "< 1e-300"  # scipy returns 0.0 below the smallest double (Tmall, t = 38.6)
    assert format_p(4.7e-20) == "4.7e-20" and format_p(0.013) == "0.013" and format_p(float("nan")) == "n/a"
    assert format_p(None) == "n/a"
    assert p_clause(0.0) == "< 1e-300" and p_clause(0.013) == "= 0.013"


def test_a_variants_comparison_names_its_plot_apart(tiny, tmp_path):
    """``--variants`` comparisons write ``curves_<dataset>_<variant>.png``: never the plot of the plain runs."""
    docs = str(tmp_path / "docs")
    profile = plan.load_profile(tiny["profile"])
    paths, _ = compare.write(profile, tiny["specs"], tiny["out"], docs, "cmd", variant_tag="_grouped")
    assert os.path.join(docs, "curves_mlslice_grouped.png") in paths
    assert os.path.isfile(os.path.join(docs, "curves_mlslice_grouped.png"))
    assert not os.path.exists(os.path.join(docs, "curves_mlslice.png"))


@pytest.mark.parametrize("split", ["test", "valid"])
def test_breakdown_groups_the_paired_values_by_user_and_target(tiny, tmp_path, split):
    # bench breakdown on the two real runs: SASRec against GRU4Rec, split by history length and item count
    docs = str(tmp_path / "docs")
    argv = ["breakdown", "--profile", tiny["profile"], "--out", tiny["out"], "--docs", docs, "--dataset", "mlslice",
            "--ours", "SASRec", "--models", "GRU4Rec,FamouSRec", "--split", split]
    assert bench_cli(argv) == 0
    name = {"test": "test", "valid": "validation"}[split]
    text = open(os.path.join(docs, "tiny", f"breakdown_mlslice{'' if split == 'test' else '_valid'}.md")).read()
    assert "## SASRec against GRU4Rec" in text and "No seed finished by both (SASRec: [3], FamouSRec: [])" in text
    # each seed's line carries the paired test over all its users, the one compare.paired_test gives
    vals = [breakdown.values_for(e, split) for e in compare.entries(tiny["specs"][:2], tiny["out"])]
    test = compare.paired_test(*vals, metric="ndcg@10")
    assert test["ours_better"] + test["ours_worse"] > 0
    assert (f"{test['ours_better']:,} / {test['ours_worse']:,} users, Wilcoxon p "
            f"{compare.format_p(test['wilcoxon_p'])}.") in text
    assert f"paired difference {test['mean_diff']:+.4f}" in text
    # the groups of each table hold every user once, and their weighted means are the runs' recorded NDCG@10
    recorded = "metrics" if split == "test" else "valid_metrics"
    sas, gru = tiny["records"]
    assert sas[recorded]["ndcg@10"] != gru[recorded]["ndcg@10"]
    for title in (f"{name}-history length", f"{name} item's training count"):
        block = text.split(f"| {title} |")[1].split("\n\n")[0]
        rows = [[c.strip() for c in line.split("|")[1:-1]] for line in block.splitlines()[2:]]
        users = [int(r[1].replace(",", "")) for r in rows]
        assert sum(users) == 120 and len(rows) >= 2
        for col, record in ((2, sas), (3, gru)):
            mean = sum(u * float(r[col]) for u, r in zip(users, rows)) / 120
            assert mean == pytest.approx(record[recorded]["ndcg@10"], abs=1e-3)
    with pytest.raises(UsageError, match="no finished run of FamouSRec"):
        breakdown.write(tiny["specs"], tiny["out"], docs, "mlslice", "FamouSRec", ["SASRec"], "cmd")


def test_breakdown_of_a_variant_against_its_model(tiny, tmp_path):
    # --ours M[variant]: the variant's own runs against the plain model's, seed by seed, in a file of its own
    profile = plan.load_profile(tiny["profile"])
    specs = plan.plan_labels(profile, ["SASRec[drop]", "GRU4Rec"], ["mlslice"])
    assert [s.label for s in specs] == ["SASRec[drop]", "GRU4Rec"] and specs[0].overrides_dict()["hidden_dropout_prob"] == 0.1
    with pytest.raises(UsageError, match="no variant"):
        plan.plan_labels(profile, ["SASRec[nope]"])
    with pytest.raises(UsageError, match="not a model or model"):
        plan.plan_labels(profile, ["SASRec[drop"])
    assert runs.run_all(specs[:1], tiny["out"], launcher=run_in_process, echo=lambda m: None)["ran"] == 1
    variant = runs.load_record(runs.record_path(tiny["out"], specs[0]))
    docs = str(tmp_path / "docs")
    argv = ["breakdown", "--profile", tiny["profile"], "--out", tiny["out"], "--docs", docs, "--dataset", "mlslice",
            "--ours", "SASRec[drop]", "--models", "SASRec", "--split", "valid"]
    assert bench_cli(argv) == 0
    # the file of its own, and the records folder with the per-user validation values it computed (archive.py)
    assert sorted(os.listdir(os.path.join(docs, "tiny"))) == ["breakdown_mlslice_drop_valid.md", "records"]
    text = open(os.path.join(docs, "tiny", "breakdown_mlslice_drop_valid.md")).read()
    assert "## SASRec[drop] against SASRec" in text
    sas = tiny["records"][0]
    assert variant["valid_metrics"]["ndcg@10"] != sas["valid_metrics"]["ndcg@10"]
    block = text.split("| validation-history length |")[1].split("\n\n")[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in block.splitlines()[2:]]
    users = [int(r[1].replace(",", "")) for r in rows]
    for col, record in ((2, variant), (3, sas)):
        mean = sum(u * float(r[col]) for u, r in zip(users, rows)) / sum(users)
        assert mean == pytest.approx(record["valid_metrics"]["ndcg@10"], abs=1e-3)


@pytest.mark.parametrize("split", ["test", "valid"])
def test_breakdown_facts_are_the_eval_loaders_own(tiny, split):
    # each user's target and history length as RecBole's test / validation loader has them (its history capped at
    # MAX_ITEM_LIST_LENGTH); the uncapped length and the training counts against the whole filtered dataset
    spec = tiny["specs"][0]
    facts = breakdown.user_facts(spec.model, spec.dataset, spec.overrides_dict(), split)
    config, _, valid_data, test_data = trained.build_data(spec.model, spec.dataset, spec.overrides_dict())
    by_user = dict(zip(facts["user_id"].tolist(), zip(facts["target"].tolist(), facts["history_length"].tolist())))
    seen = 0
    for inter, _, _, _ in (test_data if split == "test" else valid_data):
        for u, item, length in zip(inter["user_id"].tolist(), inter["item_id"].tolist(),
                                   inter["item_length"].tolist()):
            assert by_user[u][0] == item and min(by_user[u][1], config["MAX_ITEM_LIST_LENGTH"]) == length
            seen += 1
    assert seen == len(facts["user_id"]) == 120 and (facts["history_length"] > config["MAX_ITEM_LIST_LENGTH"]).any()
    dataset = pipeline.create_dataset(config)
    users = np.asarray(dataset.inter_feat["user_id"])
    items = np.asarray(dataset.inter_feat["item_id"])
    after = 1 if split == "test" else 2  # the target, and the test item after a validation target
    assert facts["history_length"].tolist() == (np.bincount(users)[facts["user_id"]] - after).tolist()
    # an item's training count: its interactions less those that are some user's validation or test target
    targets = {name: np.concatenate([inter["item_id"].numpy() for inter, _, _, _ in data])
               for name, data in (("valid", valid_data), ("test", test_data))}
    expected = np.bincount(items, minlength=dataset.item_num)
    for values in targets.values():
        expected = expected - np.bincount(values, minlength=dataset.item_num)
    assert facts["item_count"].tolist() == expected[facts["target"]].tolist() and expected.min() >= 0


def test_breakdown_rows_on_known_values():
    ours = {"ndcg@10": np.array([1.0, 0.5, 0.0, 0.2]), "hit@10": np.array([1.0, 1, 0, 1])}
    other = {"ndcg@10": np.array([0.0, 0.5, 0.3, 0.1]), "hit@10": np.array([0.0, 1, 1, 1])}
    rows = breakdown.group_rows(ours, other, np.array([4, 7, 7, 60]), (0, 6, 8, 11, 21, 51))
    assert [r["group"] for r in rows] == ["0-5", "6-7", "51+"]
    assert [r["users"] for r in rows] == [1, 2, 1] and [(r["better"], r["worse"]) for r in rows] == [(1, 0), (0, 1), (1, 0)]
    assert rows[1]["ours"] == pytest.approx(0.25) and rows[1]["diff"] == pytest.approx(-0.15)
    with pytest.raises(UsageError, match="do not hold the split's users"):
        breakdown.aligned({"user_id": np.array([1, 2, 2]), "ndcg@10": np.zeros(3)}, np.array([1, 2, 3]), "x")
    shuffled = breakdown.aligned({"user_id": np.array([3, 1, 2]), "ndcg@10": np.array([.3, .1, .2])},
                                 np.array([1, 2, 3]), "x")
    assert shuffled["ndcg@10"].tolist() == [.1, .2, .3]
