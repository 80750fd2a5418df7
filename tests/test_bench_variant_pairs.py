"""``bench variants`` (recbole_famous.bench.variant_pairs): each model under a variant against its own profile run,
same seed, on validation, from the records alone."""

from __future__ import annotations

import csv
import json
import os

import pytest

from bench_helpers import bench_cli
from recbole_famous.bench import plan, runs, variant_pairs
from recbole_famous.errors import UsageError


def _profile(tmp_path):
    body = {"description": "test profile", "models": ["SASRec", "FamouSRec"], "datasets": ["Toy"],
            "seeds": [1, 2], "config": {"epochs": 5},
            "variants": {"lr": {"group": "settings", "label": "learning rate 0.0005", "set": {"learning_rate": 0.0005}},
                         "fam": {"model": "FamouSRec", "group": "settings", "label": "FamouSRec only",
                                 "set": {"use_router": False}}}}
    path = tmp_path / "prof.yaml"
    path.write_text(json.dumps(body))
    return str(path), plan.load_profile(str(path))


def _finish(out, spec, valid, best_epoch, status="finished"):
    path = runs.record_path(out, spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"spec": runs.spec_dict(spec), "status": status, "metrics": {"ndcg@10": 0.5},
                   "valid_metrics": {"ndcg@10": valid}, "result": {"best_epoch": best_epoch}}, f)


def test_each_variant_run_is_paired_with_its_own_models_run_of_the_same_seed(tmp_path):
    path, profile = _profile(tmp_path)
    out = str(tmp_path / "out")
    base = {(s.model, s.seed): s for s in plan.plan(profile)}
    lr = {(s.model, s.seed): s for s in plan.plan(profile, variants=["lr"])}
    _finish(out, base["SASRec", 1], 0.08, 4)
    _finish(out, lr["SASRec", 1], 0.06, 7)
    _finish(out, base["FamouSRec", 1], 0.10, 5)
    _finish(out, lr["FamouSRec", 1], 0.11, 9)
    _finish(out, base["FamouSRec", 2], 0.12, 5)
    _finish(out, lr["FamouSRec", 2], 0.15, 2)
    _finish(out, lr["SASRec", 2], 0.07, 3)  # its base run of seed 2 never finished
    rows, missing = variant_pairs.pairs(profile, "Toy", ["SASRec[lr]", "FamouSRec[lr]", "FamouSRec[fam]"], None, out)
    got = {(r["model"], r["variant"], r["seed"]): r for r in rows}
    assert sorted(got) == [("FamouSRec", "lr", 1), ("FamouSRec", "lr", 2), ("SASRec", "lr", 1)]
    assert got["SASRec", "lr", 1]["difference"] == pytest.approx(-0.02)
    assert got["SASRec", "lr", 1]["relative"] == pytest.approx(-0.25)
    assert (got["FamouSRec", "lr", 2]["base_best_epoch"], got["FamouSRec", "lr", 2]["variant_best_epoch"]) == (5, 2)
    assert "SASRec seed 2" in missing and "FamouSRec[fam] seed 1" in missing  # the unfinished runs are named

    assert bench_cli(["variants", "--profile", path, "--out", out, "--docs", str(tmp_path / "docs"),
                      "--dataset", "Toy", "--runs", "SASRec[lr],FamouSRec[lr]"]) == 0
    text = open(tmp_path / "docs" / "prof" / "variants_Toy.md").read()
    assert "| SASRec | lr | 1 | 0.0800 (4) | 0.0600 (7) | -0.0200 | -25.0% |" in text
    assert "| FamouSRec | lr | 2 | +0.0200 ± 0.0141 | +17.5% |" in text  # +10% and +25%
    assert "`lr`: learning rate 0.0005" in text and "0.5000" not in text  # no test value
    with open(tmp_path / "docs" / "prof" / "variants_Toy.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_unknown_or_missing_variants_and_a_variant_of_another_model_are_refused(tmp_path):
    path, profile = _profile(tmp_path)
    out = str(tmp_path / "out")
    for label, message in (("SASRec[nope]", "no variant"), ("SASRec", "names no variant"),
                           ("SASRec[fam]", "FamouSRec only"), ("SASRec[lr", "not a model")):
        with pytest.raises(UsageError, match=message):
            variant_pairs.pairs(profile, "Toy", [label], None, out)
    assert bench_cli(["variants", "--profile", path, "--out", out, "--dataset", "Toy", "--runs", "SASRec[nope]"]) == 2
