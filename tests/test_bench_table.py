"""Table-2-style table (recbole_famous.bench.table) from hand-made run records: marks, spread, improvement."""

from __future__ import annotations

import csv
import io
import math
import os

import pytest

from recbole_famous.bench import table


def _rec(model, seed, ndcg10, hr10=0.1, dataset="Instruments", variant="", valid=None):
    return {"spec": {"model": model, "dataset": dataset, "seed": seed, "variant": variant},
            "metrics": {"hit@5": hr10 / 2, "hit@10": hr10, "ndcg@5": ndcg10 / 2, "ndcg@10": ndcg10},
            "valid_metrics": {"ndcg@10": ndcg10 if valid is None else valid},
            "efficiency": {"params_total": 1000, "params_active": 400.0 if model == "FamouSRec" else 1000,
                           "train_seconds_per_epoch": 10.0, "infer_ms_per_1k_users": 5.0, "peak_rss_mb": 500.0},
            "result": {"epochs_run": 2, "best_epoch": 1},
            "machine": {"cpus": 2, "torch_threads": 1, "device": "cpu"}}


RECORDS = [
    _rec("SASRec", 1, 0.060), _rec("SASRec", 2, 0.070),          # mean 0.065, std 0.00707
    _rec("GRU4Rec", 1, 0.050),                                    # single seed: no spread
    _rec("FamouSRec", 1, 0.080), _rec("FamouSRec", 2, 0.076), _rec("FamouSRec", 3, 0.078),  # mean 0.078
    _rec("SASRec", 1, 0.030, dataset="Arts"), _rec("FamouSRec", 1, 0.027, dataset="Arts"),
]


def test_mean_std_and_ranks():
    mean, std = table.mean_std([0.06, 0.07])
    assert mean == pytest.approx(0.065) and std == pytest.approx(math.sqrt(2) * 0.005)
    assert math.isnan(table.mean_std([0.5])[1]) and math.isnan(table.mean_std([])[0])
    assert table.ranks({"a": 0.3, "b": 0.5, "c": 0.4, "d": float("nan")}) == {"b": 1, "c": 2}
    assert table.ranks({"a": 0.5, "b": 0.5, "c": 0.1}) == {"a": 1, "b": 1, "c": 2}  # ties share the mark


def test_improvement_over_best_baseline_and_deficit():
    rows = table.quality_rows(RECORDS, ours="FamouSRec", order=["SASRec", "GRU4Rec", "FamouSRec"])
    ins = {r["model"]: r for r in rows if r["dataset"] == "Instruments" and r["metric"] == "NDCG@10"}
    assert ins["FamouSRec"]["mark"] == "best" and ins["SASRec"]["mark"] == "second" and ins["GRU4Rec"]["mark"] == ""
    assert ins["FamouSRec"]["improvement_pct"] == pytest.approx(100 * (0.078 - 0.065) / 0.065)  # +20.0%
    assert ins["FamouSRec"]["best_baseline"] == "SASRec" and ins["SASRec"]["improvement_pct"] == ""
    assert ins["SASRec"]["n_seeds"] == 2 and ins["FamouSRec"]["std"] == pytest.approx(0.002)
    arts = {r["model"]: r for r in rows if r["dataset"] == "Arts" and r["metric"] == "NDCG@10"}
    assert arts["FamouSRec"]["improvement_pct"] == pytest.approx(-10.0)  # a deficit is negative
    assert arts["SASRec"]["mark"] == "best" and arts["FamouSRec"]["mark"] == "second"


def test_markdown_marks_cells_and_names_profile():
    md = table.markdown(RECORDS, "cpu", "2 epochs", order=["SASRec", "GRU4Rec", "FamouSRec"])
    assert "Budget profile **`cpu`**: 2 epochs" in md
    line = next(l for l in md.splitlines() if l.startswith("| NDCG@10 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["NDCG@10", "<u>0.0650 ± 0.0071</u>", "0.0500", "**0.0780 ± 0.0020**", "+20.0% vs SASRec", "–"]
    arts = md.split("### Arts")[1]
    assert "-10.0% vs SASRec" in arts and "**0.0300**" in arts
    assert "| params (active / user) | 1,000 | 1,000 | 400 |" in md


def test_csv_long_form(tmp_path):
    paths = table.write(RECORDS, str(tmp_path), "cpu", "2 epochs", order=["SASRec", "GRU4Rec", "FamouSRec"])
    with open(paths[1]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (3 + 2) * 4 and all(r["profile"] == "cpu" for r in rows)
    best = [r for r in rows if r["mark"] == "best" and r["dataset"] == "Instruments"]
    assert {r["model"] for r in best} == {"FamouSRec"}
    with open(paths[2]) as f:
        eff = list(csv.DictReader(f))
    assert {r["model"] for r in eff} == {"SASRec", "GRU4Rec", "FamouSRec"} and float(eff[0]["params_total"]) == 1000
    assert table.to_csv([], "cpu") == ""
    assert io.StringIO(table.to_csv(table.efficiency_rows(RECORDS), "x")).readline().startswith("profile,dataset")


def test_table_command_writes_docs_from_run_records(tmp_path, capsys):
    import json

    from bench_helpers import bench_cli
    from recbole_famous.bench import plan, runs

    (tmp_path / "p.yaml").write_text(json.dumps({"description": "toy budget", "models": ["SASRec", "FamouSRec"],
                                                 "datasets": ["Instruments"], "seeds": [1]}))
    profile = plan.load_profile(str(tmp_path / "p.yaml"))
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    for spec, rec in zip(plan.plan(profile), (_rec("SASRec", 1, 0.05), _rec("FamouSRec", 1, 0.06))):
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            json.dump({**rec, "spec": runs.spec_dict(spec)}, f)
    argv = ["table", "--profile", str(tmp_path / "p.yaml"), "--out", out, "--docs", docs]
    assert bench_cli(argv) == 0
    md = open(os.path.join(docs, "p", "table2.md")).read()
    assert "**`p`**: toy budget" in md and "+20.0% vs SASRec" in md
    assert "Made by: `python -m recbole_famous.bench table --profile" in md
    # a command that selects one model (or one dataset outside the profile) still writes the whole profile's table
    argv = ["table", "--profile", str(tmp_path / "p.yaml"), "--out", out, "--docs", docs, "--models", "SASRec"]
    assert bench_cli(argv) == 0
    md = open(os.path.join(docs, "p", "table2.md")).read()
    assert "| metric | SASRec | FamouSRec | FamouSRec vs best learned | FamouSRec vs best rule |" in md
    assert "+20.0% vs SASRec" in md
    (other,) = plan.plan(profile, ["SASRec"], ["Arts"])
    path = runs.record_path(out, other)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({**_rec("SASRec", 1, 0.04), "spec": runs.spec_dict(other)}, f)
    assert bench_cli(["table", "--profile", str(tmp_path / "p.yaml"), "--out", out, "--docs", docs,
                     "--datasets", "Arts"]) == 0
    md = open(os.path.join(docs, "p", "table2_Arts.md")).read()  # --datasets names the table's datasets
    assert "### Arts" in md and "### Instruments" not in md
    md = open(os.path.join(docs, "p", "table2.md")).read()  # the profile's table is left as it was
    assert "### Instruments" in md and "### Arts" not in md and "+20.0% vs SASRec" in md


def test_a_table_whose_records_are_gone_is_kept(tmp_path):
    """A dataset in the written table whose run records are not here (another machine's runs): the new runs'
    table gets a name of its own instead of replacing it."""
    out = str(tmp_path)
    table.write(RECORDS, out, "cpu", "2 epochs")
    before = open(os.path.join(out, "table2.md")).read()
    assert table.datasets_in(os.path.join(out, "table2.csv"))[0] == "Instruments"
    assert table.stem_keeping(out, RECORDS) == ("table2", [])
    arts_only = [r for r in RECORDS if r["spec"]["dataset"] == "Arts"] or [_rec("SASRec", 1, 0.05, dataset="Arts")]
    stem, lost = table.stem_keeping(out, arts_only)
    assert stem == "table2_Arts" and "Instruments SASRec (2 there, 0 here)" in lost
    table.write(arts_only, out, "cpu", "2 epochs", stem=stem)
    assert open(os.path.join(out, "table2.md")).read() == before
    assert "### Arts" in open(os.path.join(out, "table2_Arts.md")).read()
    assert table.stem_keeping(str(tmp_path / "empty"), RECORDS) == ("table2", [])


def test_a_table_with_some_models_or_seeds_gone_is_kept(tmp_path):
    """The committed table counts runs of a dataset that are gone here (one model's records, or some seeds): the
    runs that are here get a table of their own; when that one would lose runs too, nothing is written."""
    out = str(tmp_path)
    table.write(RECORDS, out, "converged", "early stopping")
    before = open(os.path.join(out, "table2.md")).read()
    assert table.finished_in(os.path.join(out, "table2.csv"))[("Instruments", "SASRec")] == 2
    emkd = [_rec("EMKD", 1, 0.07)]
    stem, lost = table.stem_keeping(out, emkd)
    assert stem == "table2_Instruments"
    assert "Instruments SASRec (2 there, 0 here)" in lost and "Arts FamouSRec (1 there, 0 here)" in lost
    one_seed = [r for r in RECORDS if not (r["spec"]["model"] == "FamouSRec" and r["spec"]["seed"] == 3)]
    assert table.stem_keeping(out, one_seed) == ("table2_Arts_Instruments", ["Instruments FamouSRec (3 there, 2 here)"])
    assert table.stem_keeping(out, RECORDS + emkd) == ("table2", [])  # more runs than the table: it grows
    table.write(RECORDS[:2] + emkd, out, "converged", "early stopping", stem=stem)
    assert open(os.path.join(out, "table2.md")).read() == before
    stem, lost = table.stem_keeping(out, emkd)  # table2_Instruments holds SASRec x2 now: it would lose them
    assert stem is None and "Instruments SASRec (2 there, 0 here)" in lost


def test_best_learned_and_best_rule_are_chosen_on_validation():
    """Two columns, each against the model best on validation, not on test: a baseline that is best on test but
    not on validation is not the one compared with; the rules are compared with separately."""
    records = [
        _rec("SASRec", 1, 0.070, valid=0.050),        # best on test, not on validation
        _rec("GRU4Rec", 1, 0.060, valid=0.055),       # best learned on validation
        _rec("ItemTransition", 1, 0.075, valid=0.070),  # best rule on validation, and above ours on test
        _rec("Pop", 1, 0.090, valid=0.010),           # best on test, worst rule on validation
        _rec("FamouSRec", 1, 0.072, valid=0.060),
    ]
    rows = table.quality_rows(records, order=["Pop", "ItemTransition", "SASRec", "GRU4Rec", "FamouSRec"])
    ours = next(r for r in rows if r["model"] == "FamouSRec" and r["metric"] == "NDCG@10")
    assert ours["best_baseline"] == "GRU4Rec" and ours["improvement_pct"] == pytest.approx(20.0)
    assert ours["best_rule"] == "ItemTransition" and ours["improvement_over_rule_pct"] == pytest.approx(-4.0)
    md = table.markdown(records, "cpu", order=["Pop", "ItemTransition", "SASRec", "GRU4Rec", "FamouSRec"])
    line = next(l for l in md.splitlines() if l.startswith("| NDCG@10 |"))
    assert line.rstrip().endswith("| +20.0% vs GRU4Rec | -4.0% vs ItemTransition |")
    assert table.is_reference("ItemCoOccurrence") and table.is_reference("Pop[x]") and not table.is_reference("SASRec")


def test_a_variant_of_ours_is_never_the_best_baseline():
    """A table of ablations (FamouSRec[wo_router], ...) names no baseline; a variant of a baseline stays one."""
    records = [_rec("FamouSRec", 1, 0.07, variant="wo_router", valid=0.09), _rec("SASRec", 1, 0.06, variant="grouped")]
    assert table.chosen_on_validation(table.group(records)["Instruments"], "FamouSRec", False) == "SASRec[grouped]"
    rows = table.quality_rows(records[:1])
    assert {r["best_baseline"] for r in rows} == {""}


def test_a_resumed_run_without_process_sums_is_marked():
    old = _rec("SASRec", 1, 0.06)
    old["efficiency"]["cpu_seconds_run"] = 449.0
    old["result"]["resumed_from"] = "saved/x.resume.pth"
    new = _rec("FamouSRec", 1, 0.07)
    new["efficiency"].update(cpu_seconds_run=5000.0, processes=3)
    new["result"]["resumed_from"] = "saved/y.resume.pth"
    assert table.last_process_only(old) and not table.last_process_only(new)
    uncounted = _rec("FamouSRec", 2, 0.07)  # resumed, but its earlier process kept no attempts.json
    uncounted["efficiency"].update(cpu_seconds_run=70.0, processes=1)
    uncounted["result"]["resumed_from"] = "saved/z.resume.pth"
    assert table.last_process_only(uncounted)
    md = table.markdown([old, new], "converged")
    assert "| CPU s, whole run | 449 ‡ | 5,000 |" in md and "its last process's only" in md


def test_a_datasets_provenance_note_is_printed_under_its_heading():
    from recbole_famous.bench.plan import dataset_note

    assert "GCE-GNN" in dataset_note("Tmall") and "shuffled" in dataset_note("OR") and dataset_note("Nope") == ""
    md = table.markdown(RECORDS, "cpu", notes={"Arts": "a provenance note"})
    assert md.split("### Arts", 1)[1].lstrip().startswith("Data: a provenance note")
    assert "Data:" not in md.split("### Arts")[0]


def test_datasets_name_the_table_and_comparison_files(tmp_path, monkeypatch):
    """`--datasets OR` writes table2_OR.* and comparison_OR.* with OR's runs only, beside the other datasets'."""
    import json

    from bench_helpers import bench_cli
    from recbole_famous.bench import plan, runs

    body = {"description": "toy", "models": ["SASRec", "FamouSRec"], "datasets": ["Instruments", "OR"],
            "seeds": [1]}
    (tmp_path / "p.yaml").write_text(json.dumps(body))
    profile = plan.load_profile(str(tmp_path / "p.yaml"))
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    for spec in plan.plan(profile):
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        score = 0.05 if spec.model == "SASRec" else 0.06
        with open(path, "w") as f:
            json.dump({**_rec(spec.model, 1, score, dataset=spec.dataset), "spec": runs.spec_dict(spec)}, f)
    common = ["--profile", str(tmp_path / "p.yaml"), "--out", out, "--docs", docs, "--datasets", "OR"]
    assert bench_cli(["table", *common]) == 0
    md = open(os.path.join(docs, "p", "table2_OR.md")).read()
    assert "### OR" in md and "### Instruments" not in md
    assert not os.path.exists(os.path.join(docs, "p", "table2.md"))
    assert bench_cli(["compare", *common]) == 0
    assert os.path.exists(os.path.join(docs, "p", "comparison_OR.md"))
    assert os.path.exists(os.path.join(docs, "p", "significance_OR.csv"))
