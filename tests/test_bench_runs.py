"""Benchmark plan and resumable runs (recbole_famous.bench.plan / runs): a finished run is never rerun."""

from __future__ import annotations

import json
import os

import pytest

from bench_helpers import bench_cli
from recbole_famous.bench import plan, runs

from bench_helpers import finished_records
from recbole_famous.errors import UsageError


def _profile(tmp_path, **extra):
    body = {"description": "test profile", "models": ["SASRec", "GRU4Rec"], "datasets": ["mlslice"],
            "seeds": [1], "seeds_by_model": {"SASRec": [1, 2, 3]}, "config": {"epochs": 1, "stopping_step": 1},
            "model_config": {"GRU4Rec": {"hidden_size": 16}}, **extra}
    path = tmp_path / "prof.yaml"
    path.write_text(json.dumps(body))  # JSON is yaml
    return plan.load_profile(str(path))


def _fake_record(spec):
    return {"spec": runs.spec_dict(spec), "status": "finished", "metrics": {"ndcg@10": 0.1, "hit@10": 0.2},
            "efficiency": {"train_seconds_per_epoch": 1.0}, "result": {"epochs_run": 1, "best_epoch": 0}}


def _writer(calls, code=0):
    """A launcher that records its call and writes a finished record (code 0) or nothing (a failure)."""
    def launch(job_path, out_path, log_path):
        with open(job_path) as f:
            job = json.load(f)
        calls.append(job["spec"]["model"] + str(job["spec"]["seed"]))
        with open(log_path, "w") as f:
            f.write("some log\nlast line of a crash\n")
        if code == 0:
            with open(out_path, "w") as f:
                json.dump({**_fake_record(plan.RunSpec(**{**job["spec"], "overrides": "{}"})),
                           "spec": job["spec"]}, f)
        return code
    return launch


def test_plan_order_layering_and_keys(tmp_path):
    profile = _profile(tmp_path)
    specs = plan.plan(profile)
    # the first seed of the whole model list first, then the extra seeds
    assert [(s.model, s.seed) for s in specs] == [("SASRec", 1), ("GRU4Rec", 1), ("SASRec", 2), ("SASRec", 3)]
    gru = specs[1].overrides_dict()
    assert gru == {"epochs": 1, "stopping_step": 1, "hidden_size": 16, "seed": 1}
    assert "hidden_size" not in specs[0].overrides_dict()
    extra = plan.plan(profile, models=["SASRec"], seeds=[7], extra={"epochs": 3})
    assert [(s.model, s.seed) for s in extra] == [("SASRec", 7)] and extra[0].overrides_dict()["epochs"] == 3
    assert len({s.key for s in specs}) == 4
    variant = plan.make_spec(profile, "FamouSRec", "mlslice", 1, "wo_router", {"use_router": False})
    assert variant.key.endswith(os.path.join("FamouSRec--wo_router", "seed1.json"))
    assert variant.overrides_dict()["use_router"] is False


def test_a_model_that_trains_nothing_is_planned_with_one_seed(tmp_path):
    """A rule does not depend on the seed: three seeds would be three identical runs, and a table listing two of
    them as pending forever."""
    specs = plan.plan(_profile(tmp_path), models=["ItemTransition", "Pop", "ItemKNN", "SASRec"], seeds=[1, 2, 3])
    assert [(s.model, s.seed) for s in specs] == [("ItemTransition", 1), ("Pop", 1), ("ItemKNN", 1), ("SASRec", 1),
                                                  ("SASRec", 2), ("SASRec", 3)]
    assert plan.trains_nothing("ItemCoOccurrence") and not plan.trains_nothing("FamouSRec")


def test_seeds_by_model_may_name_the_datasets_a_models_extra_seeds_are_for(tmp_path):
    """The best other baseline on one dataset's validation split gets three seeds there, one elsewhere."""
    profile = _profile(tmp_path, datasets=["mlslice", "other"], seeds_by_model={"GRU4Rec": {"other": [1, 2]}})
    assert profile.seeds_for("GRU4Rec", "other") == (1, 2) and profile.seeds_for("GRU4Rec", "mlslice") == (1,)
    assert profile.seeds_for("GRU4Rec") == (1,) and profile.seeds_for("SASRec", "other") == (1,)
    runs_ = [(s.dataset, s.model, s.seed) for s in plan.plan(profile)]
    assert runs_ == [("mlslice", "SASRec", 1), ("mlslice", "GRU4Rec", 1),
                     ("other", "SASRec", 1), ("other", "GRU4Rec", 1), ("other", "GRU4Rec", 2)]
    with pytest.raises(UsageError, match="seeds_by_model.GRU4Rec.other"):
        _profile(tmp_path, seeds_by_model={"GRU4Rec": {"other": ["x"]}})


def test_the_profiles_table_covers_every_finished_run_in_the_store(tmp_path):
    """Runs made by other commands (other seeds, other models) are in the profile's table; ablation variants,
    jobs, failures and other profiles are not."""
    out = str(tmp_path / "out")
    profile = _profile(tmp_path)
    specs = plan.plan(profile) + [plan.make_spec(profile, "FamouSRec", "mlslice", 1, "wo_router", {"use_router": False})]
    for spec in specs:
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(_fake_record(spec), f)
    for extra in ("seed9.job.json", "seed9.failed.json"):
        open(os.path.join(os.path.dirname(runs.record_path(out, specs[0])), extra), "w").write("{}")
    found = runs.finished_paths(out, profile.name)
    assert sorted(found) == sorted(runs.record_path(out, s) for s in specs[:-1])
    assert runs.finished_paths(out, profile.name, ["other"]) == [] and runs.finished_paths(out, "nope") == []


def test_a_profiles_variants_plan_the_same_runs_under_their_keys_stored_apart(tmp_path):
    profile = _profile(tmp_path, variants={"grouped": {"length_batches": True}})
    plain = plan.plan(profile, models=["SASRec"])
    grouped = plan.plan(profile, models=["SASRec"], variants=["grouped"])
    assert [(s.model, s.seed, s.variant) for s in grouped] == [("SASRec", 1, "grouped"), ("SASRec", 2, "grouped"),
                                                               ("SASRec", 3, "grouped")]
    assert all(s.overrides_dict()["length_batches"] is True for s in grouped)
    assert "length_batches" not in plain[0].overrides_dict()
    assert grouped[0].key.endswith(os.path.join("SASRec--grouped", "seed1.json")) and plain[0].key != grouped[0].key
    with pytest.raises(UsageError, match="no variant"):
        plan.plan(profile, variants=["nope"])
    with pytest.raises(UsageError, match="variant"):
        _profile(tmp_path, variants={"bad name": {}})
    out = str(tmp_path / "out")
    for spec in plain + grouped:
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(_fake_record(spec), f)
    assert sorted(runs.finished_paths(out, profile.name)) == sorted(runs.record_path(out, s) for s in plain)
    assert sorted(runs.finished_paths(out, profile.name, variants=["grouped"])) == sorted(
        runs.record_path(out, s) for s in grouped)


def test_a_run_finished_under_a_variant_with_the_same_settings_is_adopted_not_retrained(tmp_path):
    """converged adopted its `grouped` check: SASRec--grouped's finished runs are SASRec's (same settings)."""
    profile = _profile(tmp_path, model_config={"SASRec": {"length_batches": True}},
                       variants={"grouped": {"length_batches": True}, "other": {"hidden_size": 8}})
    out, calls, lines = str(tmp_path / "out"), [], []
    grouped = plan.plan(profile, models=["SASRec"], variants=["grouped"])
    runs.run_all(grouped[:2], out, launcher=_writer(calls), echo=lambda m: None)  # seeds 1, 2 finished as the check
    twin = runs.record_path(out, grouped[0])
    with open(twin[: -len(".json")] + ".peruser.npz", "wb") as f:
        f.write(b"per-user values")
    assert calls == ["SASRec1", "SASRec2"]
    plain = plan.plan(profile, models=["SASRec"])
    counts = runs.run_all(plain, out, launcher=_writer(calls), echo=lines.append)
    assert calls == ["SASRec1", "SASRec2", "SASRec3"]  # only seed 3, which the check never ran, trains
    assert counts["ran"] == 3 and [runs.state(out, s) for s in plain] == ["finished"] * 3
    adopted = runs.load_record(runs.record_path(out, plain[0]))
    assert adopted["spec"] == runs.spec_dict(plain[0]) and adopted["spec"]["variant"] == ""
    assert adopted["same_run_as"] == grouped[0].key and adopted["metrics"] == runs.load_record(twin)["metrics"]
    with open(runs.record_path(out, plain[0])[: -len(".json")] + ".peruser.npz", "rb") as f:
        assert f.read() == b"per-user values"
    assert sum("not trained: the store has this run" in line for line in lines) == 2
    # a variant with other settings is another run: trained, never adopted
    other = plan.plan(profile, models=["SASRec"], variants=["other"])
    assert runs.twin_path(out, other[0]) is None
    runs.run_all(other[:1], out, launcher=_writer(calls), echo=lambda m: None)
    assert calls[-1] == "SASRec1" and "same_run_as" not in runs.load_record(runs.record_path(out, other[0]))


def test_resume_never_reruns_a_finished_run(tmp_path):
    profile = _profile(tmp_path)
    specs = plan.plan(profile)
    out = str(tmp_path / "out")
    # two runs finished before (e.g. by a benchmark that was then killed)
    for spec in specs[:2]:
        path = runs.record_path(out, spec)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            json.dump(_fake_record(spec), f)
    calls = []
    counts = runs.run_all(specs, out, launcher=_writer(calls), echo=lambda m: None)
    assert calls == ["SASRec2", "SASRec3"]
    assert counts == {"finished_before": 2, "ran": 2, "failed": 0, "skipped": 0, "after_failed": 0}
    # a second resume runs nothing at all
    assert runs.run_all(specs, out, launcher=_writer(calls), echo=lambda m: None)["ran"] == 0
    assert calls == ["SASRec2", "SASRec3"]
    assert [runs.state(out, s) for s in specs] == ["finished"] * 4
    assert len(finished_records(out, profile.name)) == 4


def test_failed_run_is_recorded_skipped_then_retried(tmp_path):
    profile = _profile(tmp_path)
    spec = plan.plan(profile)[1]
    out = str(tmp_path / "out")
    calls, lines = [], []
    assert runs.run_one(spec, out, launcher=_writer(calls, code=1), echo=lines.append) is None
    failed = runs.record_path(out, spec)[:-5] + ".failed.json"
    with open(failed) as f:
        info = json.load(f)
    assert info["exit_code"] == 1 and info["log_tail"][-1] == "last line of a crash"
    assert runs.state(out, spec) == "failed" and "FAILED" in lines[-1]
    assert runs.run_one(spec, out, launcher=_writer(calls), echo=lines.append) is None  # skipped
    assert calls == ["GRU4Rec1"]
    record = runs.run_one(spec, out, retry_failed=True, launcher=_writer(calls), echo=lines.append)
    assert record["status"] == "finished" and calls == ["GRU4Rec1", "GRU4Rec1"]
    assert runs.state(out, spec) == "finished" and not os.path.exists(failed)


def test_live_lock_means_running_elsewhere(tmp_path):
    spec = plan.plan(_profile(tmp_path))[0]
    out = str(tmp_path / "out")
    lock = runs.record_path(out, spec)[:-5] + ".lock"
    os.makedirs(os.path.dirname(lock))
    with open(lock, "w") as f:
        f.write(str(os.getpid()))
    assert runs.state(out, spec) == "running"
    calls = []
    assert runs.run_one(spec, out, launcher=_writer(calls), echo=lambda m: None) is None and calls == []


def test_bad_profiles_are_one_line_usage_errors(tmp_path, capsys):
    good = _profile(tmp_path)
    with pytest.raises(UsageError, match="unknown benchmark profile"):
        plan.load_profile("no_such_profile")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [SASRec]\nbudget: 3\n")
    with pytest.raises(UsageError, match="unknown key"):
        plan.load_profile(str(bad))
    assert bench_cli(["status", "--profile", "no_such_profile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown benchmark profile") and len(err.strip().splitlines()) == 1
    assert good.name == "prof" and bench_cli(["ablations", "--profile", str(tmp_path / "prof.yaml"), "--only", "table9"]) == 2
    assert "unknown ablation group" in capsys.readouterr().err


def test_shipped_profiles_load():
    for name in ("paper", "cpu"):
        profile = plan.load_profile(name)
        assert {"FamouSRec", "SASRec", "GRU4Rec", "BERT4Rec", "FEARec", "FMLPRec", "Mamba4Rec"} <= set(profile.models)
        assert "Instruments" in profile.datasets and len(profile.seeds_for("FamouSRec")) == 3
    assert plan.load_profile("paper").config.get("epochs") is None  # the paper's budget: early stopping


def test_record_made_with_other_settings_is_flagged_not_rerun(tmp_path):
    spec = plan.plan(_profile(tmp_path))[0]
    out = str(tmp_path / "out")
    record = _fake_record(spec)
    record["spec"]["overrides"]["epochs"] = 5  # the profile said 5 epochs when this run was made
    path = runs.record_path(out, spec)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump(record, f)
    assert runs.state(out, spec) == "changed" and runs.changed_keys(record, spec) == ["epochs"]
    calls, lines = [], []
    assert runs.run_one(spec, out, launcher=_writer(calls), echo=lines.append) is None
    assert calls == [] and "other settings (epochs)" in lines[-1]


def test_worker_resumes_from_a_killed_attempts_checkpoint(tmp_path):
    from recbole_famous.bench import worker

    assert worker.resume_point(str(tmp_path / "none")) is None
    (tmp_path / "SASRec-x.pth").write_bytes(b"best")
    assert worker.resume_point(str(tmp_path)) is None
    (tmp_path / "SASRec-x.resume.pth").write_bytes(b"state")
    calls = []

    def run(model, dataset, overrides=None, saved=True, resume=None, epoch_callback=None):
        calls.append(resume)
        return {"ok": True}

    assert worker._run_or_resume(run, {"model": "SASRec", "dataset": "d"}, {}, str(tmp_path)) == {"ok": True}
    assert calls == [str(tmp_path / "SASRec-x.resume.pth")]


def test_run_finished_by_another_process_meanwhile_is_not_counted_as_ran(tmp_path):
    """Two benchmarks sharing a plan: a run the other one finished after this one planned is neither relaunched
    nor reported as run here (it used to print "done in 0.0 min")."""
    profile = _profile(tmp_path)
    specs = plan.plan(profile)[:2]
    out = str(tmp_path / "out")
    calls, lines = [], []
    first = _writer(calls)

    def launch_and_other_finishes_second(job_path, out_path, log_path):
        code = first(job_path, out_path, log_path)
        other = runs.record_path(out, specs[1])
        os.makedirs(os.path.dirname(other), exist_ok=True)
        with open(other, "w") as f:
            json.dump(_fake_record(specs[1]), f)
        return code

    counts = runs.run_all(specs, out, launcher=launch_and_other_finishes_second, echo=lines.append)
    assert calls == ["SASRec1"]
    assert counts == {"finished_before": 1, "ran": 1, "failed": 0, "skipped": 0, "after_failed": 0}
    assert sum("done in" in line for line in lines) == 1 and "another process" in lines[-1]


def test_half_done_runs_go_first(tmp_path):
    specs = plan.plan(_profile(tmp_path))
    out = str(tmp_path / "out")
    folder = runs.checkpoint_dir(out, specs[2])  # SASRec seed 2: a stopped attempt left a resume checkpoint
    os.makedirs(folder)
    open(os.path.join(folder, "SASRec-mlslice-x.resume.pth"), "w").close()
    calls, said = [], []
    assert runs.run_all(specs, out, echo=said.append, launcher=_writer(calls))["ran"] == 4
    assert calls == ["SASRec2", "SASRec1", "GRU4Rec1", "SASRec3"]
    assert "4 to go (1 of them half done, first;" in said[0]


def test_a_missing_dataset_stops_the_benchmark_before_any_run(tmp_path, capsys):
    _profile(tmp_path)
    out = str(tmp_path / "out")
    assert bench_cli(["run", "--profile", str(tmp_path / "prof.yaml"), "--out", out, "--datasets", "Nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset 'Nope' not found") and "\n" not in err
    assert not os.path.exists(os.path.join(out, "logs"))  # no run was started


def test_a_failing_after_run_step_is_reported_and_keeps_the_record(tmp_path):
    specs = plan.plan(_profile(tmp_path))
    out, calls, lines, after = str(tmp_path / "out"), [], [], []

    def on_finished(spec):
        after.append(spec.key)
        raise OSError("disk full")

    counts = runs.run_all(specs, out, launcher=_writer(calls), echo=lines.append, on_finished=on_finished)
    assert counts["ran"] == len(specs) and counts["after_failed"] == len(specs)
    assert after == [s.key for s in specs]
    assert all(runs.state(out, s) == "finished" for s in specs)
    assert sum("after the run: OSError: disk full" in line for line in lines) == len(specs)


def test_the_store_comes_from_the_environment_and_runs_resume_from_it(tmp_path, monkeypatch):
    """``$RECBOLE_FAMOUS_BENCH_DIR`` puts the run store outside the working tree: records, logs and checkpoints go
    there, and a later process (a checkout laid anew) finds the finished runs there and reruns none of them."""
    store = tmp_path / "home" / "famous-bench"
    monkeypatch.setenv(runs.STORE_ENV, str(store))
    monkeypatch.chdir(tmp_path)  # a relative results/bench would land here
    assert runs.default_out() == str(store)
    from recbole_famous.cli import parse

    assert parse(["bench", "run"])[1].out == str(store)
    specs = plan.plan(_profile(tmp_path))
    calls = []
    runs.run_all(specs[:2], launcher=_writer(calls), echo=lambda m: None)  # killed after two runs
    assert calls == ["SASRec1", "GRU4Rec1"]
    assert all(os.path.isfile(runs.record_path(str(store), s)) for s in specs[:2])
    assert runs.checkpoint_dir(str(store), specs[0]).startswith(str(store))
    assert not (tmp_path / "results").exists()
    counts = runs.run_all(specs, launcher=_writer(calls), echo=lambda m: None)
    assert calls == ["SASRec1", "GRU4Rec1", "SASRec2", "SASRec3"] and counts["finished_before"] == 2
    monkeypatch.setenv(runs.STORE_ENV, "  ")
    assert runs.default_out() == os.path.join("results", "bench")


def test_cpu_and_wall_seconds_sum_over_the_processes_of_a_run_resumed_twice(tmp_path):
    """Each process of a run records its totals after every validated epoch; a process killed after its last
    checkpoint still counts up to it, and the finishing process adds what the earlier ones spent."""
    from recbole_famous.bench.worker import Attempts

    folder = str(tmp_path / "ckpt")
    ticks = {"t": 0.0}

    def clock():
        return ticks["t"]

    first = Attempts(folder, clock=clock, cpu=clock)
    first.fresh()
    for epoch in range(3):  # 3 epochs of 10 s, then killed 4 s into the fourth
        ticks["t"] += 10.0
        first.epoch(epoch + 1)
    ticks["t"] += 4.0
    second = Attempts(folder, clock=clock, cpu=clock)  # resumes from epoch 3
    assert second.earlier() == {"processes": 1, "cpu_seconds": 30.0, "wall_seconds": 30.0}
    for epoch in range(3, 5):
        ticks["t"] += 20.0
        second.epoch(epoch + 1)
    third = Attempts(folder, clock=clock, cpu=clock)  # killed before its first epoch ended: resumes from epoch 5
    assert third.earlier() == {"processes": 2, "cpu_seconds": 70.0, "wall_seconds": 70.0}
    again = Attempts(folder, clock=clock, cpu=clock)
    again.fresh()  # a run that starts over forgets them
    assert again.earlier()["processes"] == 0 and Attempts(folder).earlier()["processes"] == 0


def test_worker_ends_a_known_error_with_one_line_that_the_failed_record_keeps(tmp_path, monkeypatch, capsys):
    """A run that stops on a known error (e.g. a non-finite loss) exits with that error's code and one
    ``error: <type>: <message>`` line, which ``run_one``'s ``.failed.json`` keeps as ``error_type`` / ``error``
    (tuning reads a diverged trial from it); a bug keeps its traceback."""
    from recbole_famous.bench import worker
    from recbole_famous.errors import NonFiniteLoss

    job = tmp_path / "job.json"
    job.write_text("{}")

    def diverge(_job):
        raise NonFiniteLoss("loss part L_rec is nan at epoch 3")

    monkeypatch.setattr(worker, "execute", diverge)
    assert worker.main([str(job), str(tmp_path / "out.json")]) == 1
    line = capsys.readouterr().err.strip()
    assert line == "error: NonFiniteLoss: loss part L_rec is nan at epoch 3"
    assert runs.failure(["epoch 2 ...", line]) == {"error_type": "NonFiniteLoss",
                                                   "error": "loss part L_rec is nan at epoch 3"}
    assert runs.failure(["Traceback (most recent call last):", "RuntimeError: boom"]) == {}
    assert not (tmp_path / "out.json").exists()

    monkeypatch.setattr(worker, "execute", lambda _job: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.main([str(job), str(tmp_path / "out.json")])


def test_the_threads_a_resumed_runs_processes_trained_with(tmp_path):
    """An earlier process that recorded no threads ran before ``--threads`` existed: with the profile's."""
    from recbole_famous.bench.worker import Attempts

    folder = str(tmp_path / "ckpt")
    Attempts(folder).epoch(1)  # an attempts.json entry without threads (written as null)
    assert Attempts(folder, threads=1).train_threads(unrecorded=1) == [1]
    second = Attempts(folder, threads=2)
    second.epoch(2)
    assert second.train_threads(unrecorded=1) == [1, 2]
    assert Attempts(folder, threads=1).train_threads(unrecorded=1) == [1, 2]
    assert Attempts(str(tmp_path / "new")).train_threads(unrecorded=3) == [3]


def test_bench_run_threads_reach_the_job_and_bad_values_are_usage_errors(tmp_path, monkeypatch, capsys):
    _profile(tmp_path)
    out = str(tmp_path / "out")
    jobs = []

    def launch(job_path, out_path, log_path, echo=None):
        with open(job_path) as f:
            jobs.append(json.load(f))
        open(log_path, "w").close()
        return 1

    monkeypatch.setattr(runs, "launch_subprocess", launch)
    monkeypatch.setattr("recbole_famous.cli.bench._check_datasets", lambda specs, out: None)
    argv = ["run", "--profile", str(tmp_path / "prof.yaml"), "--out", out, "--models", "GRU4Rec", "--no-archive"]
    bench_cli(argv + ["--threads", "2"])
    assert (jobs[-1]["threads"], jobs[-1]["timing_threads"]) == (2, 1)
    bench_cli(argv + ["--retry-failed"])
    assert (jobs[-1]["threads"], jobs[-1]["timing_threads"]) == (1, 1)
    capsys.readouterr()
    assert bench_cli(argv + ["--threads", "0"]) == 2
    assert "--threads must be a positive number" in capsys.readouterr().err
