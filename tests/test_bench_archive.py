"""Archived run records (recbole_famous.bench.archive): a new machine restores them and reruns none of them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench_helpers import bench_cli
from recbole_famous.bench import archive, peruser, plan, runs


def _profile(tmp_path, epochs=1):
    body = {"description": "test profile", "models": ["SASRec", "GRU4Rec"], "datasets": ["mlslice"], "seeds": [1],
            "config": {"epochs": epochs}}
    path = tmp_path / f"prof{epochs}.yaml"
    path.write_text(json.dumps(body))
    return plan.load_profile(str(path))


def _finish(out, spec, ndcg=0.25, run_id="r1"):
    """A finished record of ``spec`` under ``out`` (as ``worker.py`` writes it), no checkpoint kept."""
    path = runs.record_path(out, spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {"spec": runs.spec_dict(spec), "status": "finished", "metrics": {"ndcg@10": ndcg},
              "efficiency": {"train_seconds_per_epoch": 1.0},
              "result": {"epochs_run": 1, "best_epoch": 0, "run_id": run_id, "checkpoint": None}}
    with open(path, "w") as f:
        json.dump(record, f)
    return path, record


def _never(job_path, out_path, log_path):
    raise AssertionError(f"ran {job_path}: a restored run must not run again")


def test_archive_then_restore_on_a_new_machine_reruns_nothing(tmp_path):
    profile = _profile(tmp_path)
    sas, gru = plan.plan(profile)
    old, new, dest = str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "records")
    _finish(old, sas)
    lock = runs.record_path(old, gru)[:-5] + ".lock"  # GRU4Rec is still running on the old machine
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w") as f:
        f.write(str(os.getpid()))
    counts = archive.archive([sas, gru], old, dest, echo=lambda m: None)
    assert counts["archived"] == 1 and counts["not_finished"] == 1
    assert os.path.isfile(os.path.join(dest, "mlslice", "SASRec", "seed1.json"))
    assert not os.path.exists(os.path.join(dest, "mlslice", "GRU4Rec"))
    assert archive.archive([sas, gru], old, dest, echo=lambda m: None)["unchanged"] == 1

    assert [runs.state(new, s) for s in (sas, gru)] == ["pending", "pending"]
    assert archive.restore([sas, gru], dest, new, echo=lambda m: None) == {
        "restored": 1, "present": 0, "running": 0, "other_settings": 0, "not_archived": 1, "derived": 0}
    assert runs.state(new, sas) == "finished"
    assert runs.load_record(runs.record_path(new, sas)) == runs.load_record(runs.record_path(old, sas))
    ran = runs.run_all([sas], new, launcher=_never, echo=lambda m: None)
    assert ran["finished_before"] == 1 and ran["ran"] == 0


def test_restore_never_overwrites_and_skips_records_of_other_settings(tmp_path):
    profile = _profile(tmp_path)
    (sas, _) = plan.plan(profile)
    old, new, dest = str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "records")
    _finish(old, sas, ndcg=0.25)
    archive.archive([sas], old, dest, echo=lambda m: None)
    _finish(new, sas, ndcg=0.5)  # the new machine has its own record of that run
    assert archive.restore([sas], dest, new, echo=lambda m: None)["present"] == 1
    assert runs.load_record(runs.record_path(new, sas))["metrics"]["ndcg@10"] == 0.5

    edited = plan.plan(_profile(tmp_path, epochs=3))[0]  # the profile was edited since the run
    lines = []
    other = str(tmp_path / "other")
    assert archive.restore([edited], dest, other, echo=lines.append)["other_settings"] == 1
    assert runs.state(other, edited) == "pending" and "epochs" in lines[0]

    # a rerun somewhere replaces the archived record, and says so
    lines = []
    assert archive.archive([sas], new, dest, echo=lines.append)["replaced"] == 1 and "replaced" in lines[0]
    assert runs.load_record(archive.archive_path(dest, sas))["metrics"]["ndcg@10"] == 0.5


def test_per_user_values_travel_and_are_read_without_a_checkpoint(tmp_path):
    profile = _profile(tmp_path)
    sas = plan.plan(profile)[0]
    old, new, dest = str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "records")
    path, record = _finish(old, sas, ndcg=0.25)
    values = {"user_id": np.arange(1, 9, dtype=np.int64), "ndcg@10": np.array([1, 0, 0, 0, 1, 0, 0, 0], float)}
    peruser.save(peruser.cache_path(path), record, values)
    assert archive.archive([sas], old, dest, echo=lambda m: None)["peruser"] == 1
    archived = peruser.cache_path(os.path.join(dest, "mlslice", "SASRec", "seed1.json"))
    with np.load(archived) as data:
        assert np.array_equal(data["ndcg@10"], values["ndcg@10"])
    archive.restore([sas], dest, new, echo=lambda m: None)
    restored = runs.record_path(new, sas)
    # no checkpoint to load (the record has none): the values must come from the restored cache
    got = peruser.for_record(runs.load_record(restored), peruser.cache_path(restored), echo=lambda m: None)
    assert np.array_equal(got["user_id"], values["user_id"]) and np.array_equal(got["ndcg@10"], values["ndcg@10"])


def test_cached_inference_results_travel_with_the_record(tmp_path):
    """The routing probe's and Table 5's caches (computed from a checkpoint) are archived beside the record and
    restored beside it; a recomputed cache replaces the archived one; a restore never overwrites the store's."""
    sas = plan.plan(_profile(tmp_path))[0]
    old, new, dest = str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "records")
    path, _ = _finish(old, sas)
    archive.archive([sas], old, dest, echo=lambda m: None)  # archived when it finished, before any probe
    for name, value in (("routing", {"entropy": 0.5}), ("table5", {"learned": {"ndcg@10": 0.1}})):
        with open(runs.derived_path(path, name), "w") as f:
            json.dump(value, f)
    counts = archive.archive([sas], old, dest, echo=lambda m: None)
    assert counts["unchanged"] == 1 and counts["derived"] == 2
    archived = archive.archive_path(dest, sas)
    assert json.load(open(runs.derived_path(archived, "table5"))) == {"learned": {"ndcg@10": 0.1}}
    assert archive.restore([sas], dest, new, echo=lambda m: None)["derived"] == 2
    assert json.load(open(runs.derived_path(runs.record_path(new, sas), "routing"))) == {"entropy": 0.5}

    with open(runs.derived_path(path, "routing"), "w") as f:  # recomputed on the old machine
        json.dump({"entropy": 0.25}, f)
    assert archive.archive([sas], old, dest, echo=lambda m: None)["derived"] == 1
    assert json.load(open(runs.derived_path(archived, "routing"))) == {"entropy": 0.25}
    assert archive.restore([sas], dest, new, echo=lambda m: None)["derived"] == 0  # the store keeps its own
    assert json.load(open(runs.derived_path(runs.record_path(new, sas), "routing"))) == {"entropy": 0.5}
    with pytest.raises(ValueError):
        runs.derived_path(path, "nothing")


def test_per_user_values_that_are_not_the_runs_are_not_archived(tmp_path):
    sas = plan.plan(_profile(tmp_path))[0]
    old, dest = str(tmp_path / "old"), str(tmp_path / "records")
    path, record = _finish(old, sas, ndcg=0.25)
    peruser.save(peruser.cache_path(path), record, {"user_id": np.arange(4), "ndcg@10": np.ones(4)})  # mean 1.0
    with pytest.raises(peruser.PerUserMismatch):
        archive.archive([sas], old, dest, echo=lambda m: None)
    assert not os.path.exists(peruser.cache_path(os.path.join(dest, "mlslice", "SASRec", "seed1.json")))


def test_cli_archive_restore_and_a_missing_archive(tmp_path, capsys):
    profile = _profile(tmp_path)
    sas = plan.plan(profile)[0]
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    _finish(old, sas)
    common = ["--profile", str(tmp_path / "prof1.yaml"), "--docs", str(tmp_path / "docs")]
    assert bench_cli(["archive", *common, "--out", old]) == 0
    assert os.path.isfile(os.path.join(tmp_path, "docs", "prof1", "records", "mlslice", "SASRec", "seed1.json"))
    assert bench_cli(["restore", *common, "--out", new]) == 0
    assert "'restored': 1" in capsys.readouterr().out
    assert bench_cli(["status", *common, "--out", new]) == 0
    assert "finished  mlslice      SASRec" in capsys.readouterr().out
    assert bench_cli(["restore", *common, "--out", new, "--records", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no archived run records" in err[0]


def test_peruser_archives_a_record_without_checkpoint_and_says_so(tmp_path):
    sas, gru = plan.plan(_profile(tmp_path))
    old, dest = str(tmp_path / "old"), str(tmp_path / "records")
    _finish(old, sas)  # restored here earlier: no cache, no checkpoint
    path, record = _finish(old, gru, ndcg=0.25)
    record["result"]["checkpoint"] = str(tmp_path / "gone.pth")  # its checkpoint stayed on another machine
    with open(path, "w") as f:
        json.dump(record, f)
    lines = []
    counts = archive.archive([sas, gru], old, dest, with_peruser=True, echo=lines.append)
    assert counts["archived"] == 2 and counts["no_peruser"] == 2 and counts["peruser"] == 0
    assert len(lines) == 2 and all("no per-user values" in line for line in lines)
    assert os.path.isfile(archive.archive_path(dest, gru))


def test_bench_run_archives_each_finished_run_with_its_per_user_values(ml100k_slice, tmp_path, monkeypatch):
    """The output folder goes with the machine: ``bench run`` copies each run it finishes, with per-user test
    metrics computed from the checkpoint while it is here, into the records folder (part of the working tree)."""
    from bench_helpers import run_in_process

    body = {"description": "archive on finish", "models": ["GRU4Rec"], "datasets": ["mlslice"], "seeds": [5],
            "config": {"data_path": ml100k_slice, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 128,
                       "embedding_size": 16, "hidden_size": 16, "state": "WARNING"}}
    (tmp_path / "fin.yaml").write_text(json.dumps(body))
    monkeypatch.setattr(runs, "launch_subprocess", lambda job, out, log, echo=None: run_in_process(job, out, log))
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    common = ["--profile", str(tmp_path / "fin.yaml"), "--docs", docs, "--out", out]
    assert bench_cli(["run", *common]) == 0
    spec = plan.plan(plan.load_profile(str(tmp_path / "fin.yaml")))[0]
    archived = os.path.join(docs, "fin", "records", "mlslice", "GRU4Rec", "seed5.json")
    assert runs.load_record(archived) == runs.load_record(runs.record_path(out, spec))
    record = runs.load_record(archived)
    with np.load(peruser.cache_path(archived)) as data:
        assert len(data["user_id"]) == 120
        assert float(np.mean(data["ndcg@10"])) == pytest.approx(record["metrics"]["ndcg@10"], abs=1e-4)

    # --no-archive leaves the records folder alone
    other_docs = str(tmp_path / "docs2")
    assert bench_cli(["run", "--profile", str(tmp_path / "fin.yaml"), "--docs", other_docs,
                     "--out", str(tmp_path / "out2"), "--no-archive"]) == 0
    assert not os.path.exists(os.path.join(other_docs, "fin", "records"))


def test_a_validation_breakdown_archives_its_per_user_values_and_reruns_without_checkpoints(
        ml100k_slice, tmp_path, monkeypatch):
    """``bench breakdown --split valid`` computes per-user validation values from the checkpoints; it archives them
    beside the records, so that on a machine without the checkpoints (``restore`` into an empty store) the same
    breakdown comes out again instead of "checkpoint not found"."""
    from bench_helpers import run_in_process

    body = {"description": "valid breakdown", "models": ["GRU4Rec", "Pop"], "datasets": ["mlslice"], "seeds": [5],
            "config": {"data_path": ml100k_slice, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 128,
                       "embedding_size": 16, "hidden_size": 16, "state": "WARNING"}}
    (tmp_path / "vb.yaml").write_text(json.dumps(body))
    monkeypatch.setattr(runs, "launch_subprocess", lambda job, out, log, echo=None: run_in_process(job, out, log))
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    common = ["--profile", str(tmp_path / "vb.yaml"), "--docs", docs]
    assert bench_cli(["run", *common, "--out", out]) == 0
    breakdown = ["breakdown", *common, "--dataset", "mlslice", "--ours", "GRU4Rec", "--models", "Pop",
                 "--split", "valid"]
    assert bench_cli([*breakdown, "--out", out]) == 0
    text_here = open(os.path.join(docs, "vb", "breakdown_mlslice_valid.md")).read()
    records = os.path.join(docs, "vb", "records", "mlslice")
    for model in ("GRU4Rec", "Pop"):
        archived = os.path.join(records, model, "seed5.json")
        with np.load(peruser.cache_path(archived, split="valid")) as data:
            assert len(data["user_id"]) == 120
            assert float(np.mean(data["ndcg@10"])) == pytest.approx(
                runs.load_record(archived)["valid_metrics"]["ndcg@10"], abs=1e-4)
    new_machine = str(tmp_path / "new")
    assert bench_cli(["restore", *common, "--out", new_machine]) == 0
    monkeypatch.setattr("recbole_famous.bench.trained.load_run", lambda record: 1 / 0)  # no checkpoint to load
    os.remove(os.path.join(docs, "vb", "breakdown_mlslice_valid.md"))
    assert bench_cli([*breakdown, "--out", new_machine]) == 0
    text_there = open(os.path.join(docs, "vb", "breakdown_mlslice_valid.md")).read()
    assert text_there.split("Made by")[0] == text_here.split("Made by")[0]
