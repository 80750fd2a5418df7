"""Hyper-parameter search (recbole_famous.tuning): the params-file parser, bad input, and real searches on the
ml-100k slice through the command line, including a search killed after its first trial and continued."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

import run_recbole_famous as cli
from recbole_famous.run_result import RunResult
from recbole_famous import tuning
from recbole_famous.errors import UsageError

from conftest import REPO

pytest.importorskip("hyperopt")


def _write(tmp_path, text, name="p.hyper"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- the params file ---------------------------------------------------------------------------------------------

def test_every_distribution_parses_with_its_line(tmp_path):
    path = _write(tmp_path, "# a comment\n\n"
                            "learning_rate loguniform -8,0\n"
                            "hidden_dropout_prob uniform 0.1, 0.5   # inline comment\n"
                            "n_layers quniform 1,3,1\n"
                            "temperature quniform 0.5,2,0.5\n"
                            "spe_mode choice ['exact', 'sampled']\n"
                            "lambda_spe choice [0.01,0.1, 1.0]\n")
    params = tuning.parse_params_file(path)
    assert [(p.name, p.kind, p.args, p.line) for p in params] == [
        ("learning_rate", "loguniform", (-8.0, 0.0), 3),
        ("hidden_dropout_prob", "uniform", (0.1, 0.5), 4),
        ("n_layers", "quniform", (1.0, 3.0, 1.0), 5),
        ("temperature", "quniform", (0.5, 2.0, 0.5), 6),
        ("spe_mode", "choice", ("exact", "sampled"), 7),
        ("lambda_spe", "choice", (0.01, 0.1, 1.0), 8),
    ]
    # the values as the config gets them: integer quniform -> int, the others float
    by = {p.name: p for p in params}
    assert by["n_layers"].value(2.0) == 2 and isinstance(by["n_layers"].value(2.0), int)
    assert by["temperature"].value(1.5) == 1.5 and isinstance(by["temperature"].value(1.5), float)
    assert tuning.space_dict(params)["choice"] == {"spe_mode": ["exact", "sampled"], "lambda_spe": [0.01, 0.1, 1.0]}


def test_recbole_hypertuning_builds_the_space_and_samples_in_range(tmp_path):
    from hyperopt.pyll import stochastic
    from recbole.trainer import HyperTuning

    params = tuning.parse_params_file(_write(tmp_path, "learning_rate loguniform -8,-4\nn_layers quniform 1,3,1\n"
                                                       "hidden_dropout_prob uniform 0.1,0.5\nspe_mode choice ['a','b']\n"))
    tuner = HyperTuning(lambda *a: None, params_dict=tuning.space_dict(params), algo="random")
    by = {p.name: p for p in params}
    seen_layers = set()
    for seed in range(40):
        draw = stochastic.sample(tuner.space, rng=__import__("numpy").random.default_rng(seed))
        values = {k: by[k].value(v) for k, v in draw.items()}
        assert 0.000335 < values["learning_rate"] < 0.0184  # e^-8 .. e^-4
        assert 0.1 <= values["hidden_dropout_prob"] <= 0.5
        assert values["spe_mode"] in ("a", "b")
        seen_layers.add(values["n_layers"])
    assert seen_layers == {1, 2, 3}


@pytest.mark.parametrize("text, line, words", [
    ("lr loguniform -8,0\nlambda_spe gaussian 0,1\n", 2, ["unknown distribution 'gaussian'"]),
    ("lambda_spe choice\n", 1, ["malformed line"]),
    ("\n\nlambda_spe\n", 3, ["malformed line"]),
    ("lambda_spe uniform 0.1\n", 1, ["takes 2 comma-separated numbers"]),
    ("lambda_spe uniform 0.1,abc\n", 1, ["takes numbers"]),
    ("lambda_spe uniform 0.5,0.1\n", 1, ["low < high"]),
    ("lambda_spe uniform 0.1,inf\n", 1, ["finite"]),
    ("n_layers quniform 1,3\n", 1, ["takes 3 comma-separated numbers"]),
    ("n_layers quniform 1,3,0\n", 1, ["step q > 0"]),
    ("lambda_spe choice [0.1, 0.2\n", 1, ["list literal"]),
    ("lambda_spe choice []\n", 1, ["non-empty list"]),
    ("lambda_spe choice 0.1\n", 1, ["non-empty list"]),
    ("lambda_spe choice [__import__('os')]\n", 1, ["list literal"]),
    ("lambda_spe choice [1]\nmu_align choice [1]\nlambda_spe choice [2]\n", 3, ["already given on line 1"]),
    ("# only comments\n\n", 2, ["empty search space"]),
    ("", 1, ["empty search space"]),
])
def test_bad_params_file_names_file_and_line(tmp_path, text, line, words):
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        tuning.parse_params_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and "\n" not in message
    for word in words:
        assert word in message


def test_unknown_parameter_name_is_refused_with_its_line(tmp_path):
    from recbole_famous.pipeline import build_config

    path = _write(tmp_path, "lambda_spe choice [0.1]\nlamda_spe choice [0.2]\n")
    config = build_config("FamouSRec", "ml-100k")
    with pytest.raises(UsageError, match=rf"^{path}:2: unknown parameter 'lamda_spe'"):
        tuning.check_names(tuning.parse_params_file(path), config, path)
    # the model's, RecBole's and the protocol's keys are all known
    ok = _write(tmp_path, "lambda_spe choice [0.1]\nlearning_rate uniform 0,1\ntrain_batch_size choice [64]\n", "ok.hyper")
    tuning.check_names(tuning.parse_params_file(ok), config, ok)


def _cli(args, timeout=240, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "run_recbole_famous.py", "tune", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("text, line, word", [
    ("learning_rate loguniform -8,0\nhiden_size choice [16]\n", 2, "unknown parameter 'hiden_size'"),
    ("learning_rate normal 0,1\n", 1, "unknown distribution 'normal'"),
    ("learning_rate\n", 1, "malformed line"),
    ("\n# nothing\n", 2, "empty search space"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, text, line, word):
    path = _write(tmp_path, text)
    out = tmp_path / "search"
    assert cli.main(["tune", "--model=SASRec", "--dataset=ml-100k", f"--params_file={path}", f"--output_dir={out}"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:{line}: ") and word in lines[0]
    assert captured.out == "" and not out.exists()


def test_cli_exhaustive_refuses_continuous_lines_and_bad_algo(tmp_path, capsys):
    path = _write(tmp_path, "n_layers choice [1,2]\nlearning_rate uniform 0.001,0.01\n")
    out = tmp_path / "o"
    assert cli.main(["tune", "--model=SASRec", f"--params_file={path}", "--algo=exhaustive", f"--output_dir={out}"]) == 2
    assert f"{path}:2: --algo=exhaustive" in capsys.readouterr().err
    assert cli.main(["tune", "--model=SASRec", f"--params_file={path}", "--algo=grid", f"--output_dir={out}"]) == 2
    assert "unknown --algo 'grid'" in capsys.readouterr().err
    assert cli.main(["tune", "--model=SASRec", f"--params_file={tmp_path / 'none.hyper'}"]) == 2
    assert "params file not found" in capsys.readouterr().err
    assert not out.exists()


def test_tune_without_hyperopt_names_the_install_command(tmp_path, capsys, monkeypatch):
    path = _write(tmp_path, "learning_rate uniform 0.001,0.01\n")
    monkeypatch.setitem(sys.modules, "hyperopt", None)  # import hyperopt -> ImportError
    assert cli.main(["tune", "--model=SASRec", f"--params_file={path}", f"--output_dir={tmp_path / 'o'}"]) == 2
    assert capsys.readouterr().err.strip() == 'error: tune needs hyperopt, an optional dependency: pip install -e ".[tune]"'
    assert not (tmp_path / "o").exists()


# --- real searches -----------------------------------------------------------------------------------------------

SEARCH = "learning_rate loguniform -6.9,-3.9\nhidden_dropout_prob choice [0.1,0.5]\nn_layers quniform 1,2,1\n"


def _search_args(ml100k_slice, params_file, out, store):
    return ["--model=SASRec", "--dataset=mlslice", f"--params_file={params_file}", "--max_evals=3",
            f"--output_dir={out}", f"--store={store}", f"--data_path={ml100k_slice}", "--epochs=1",
            "--MAX_ITEM_LIST_LENGTH=10", "--hidden_size=16", "--inner_size=32", "--train_batch_size=256",
            "--state=WARNING"]


def _trial_dir(store, search="search", dataset="mlslice", model="SASRec"):
    return os.path.join(store, "runs", "tuning", search, dataset)


def _records(store, **kw):
    """{trial variant: run-store record} of the search's finished trials."""
    folder = _trial_dir(store, **kw)
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "seed2020.json")
        if os.path.isfile(path):
            out[name.split("--", 1)[1]] = json.load(open(path))
    return out


def test_search_killed_after_its_first_trial_continues_without_rerunning_it(ml100k_slice, tmp_path, capsys):
    """A real 3-trial search (plus the default trial) through the command line, killed (SIGKILL) as soon as its
    first trial is on disk, then run again: finished trials are read back, the rest run, table and yaml written.
    Each trial is a record of the benchmark's run store (the same schema as ``bench run``'s)."""
    from recbole_famous.pipeline import build_config

    params_file = _write(tmp_path, SEARCH, "SASRec.hyper")
    out, store = str(tmp_path / "search"), str(tmp_path / "store")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    args = _search_args(ml100k_slice, params_file, out, store)
    proc = subprocess.Popen([sys.executable, "run_recbole_famous.py", "tune", *args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(_trial_dir(store), "SASRec--trial0001", "seed2020.json")
    deadline = time.time() + 240
    while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {name: os.stat(os.path.join(_trial_dir(store), f"SASRec--{name}", "seed2020.json")).st_mtime_ns
              for name in _records(store)}
    assert "trial0001" in before and "default" in before and len(before) < 4

    done = _cli(args)
    assert done.returncode == 0, done.stderr[-3000:]
    stdout = done.stdout
    assert stdout.count("finished before, not rerun") == len(before)
    assert "default: finished before" in stdout and "trial 1/3: finished before" in stdout
    for name in ("trial 2/3", "trial 3/3", "best: trial"):
        assert name in stdout
    for name, mtime in before.items():
        assert os.stat(os.path.join(_trial_dir(store), f"SASRec--{name}", "seed2020.json")).st_mtime_ns == mtime

    records = _records(store)
    assert sorted(records) == ["default", "trial0001", "trial0002", "trial0003"]
    names = ("learning_rate", "hidden_dropout_prob", "n_layers")
    params = {k: {n: r["spec"]["overrides"][n] for n in names} for k, r in records.items()}
    for key, r in records.items():
        assert r["status"] == "finished" and r["result"]["epochs_run"] == 1
        assert r["spec"]["profile"] == "tuning/search" and r["spec"]["overrides"]["epochs"] == 1
        assert 0 <= r["valid_metrics"]["ndcg@10"] <= 1 and "ndcg@10" in r["metrics"]
        assert r["result"]["best_valid_score"] == r["valid_metrics"]["ndcg@10"]
        assert params[key]["n_layers"] in (1, 2) and isinstance(params[key]["n_layers"], int)
        assert 0.001 <= params[key]["learning_rate"] <= 0.0203
        assert r["efficiency"]["train_seconds_per_epoch"] > 0  # the executor's columns, as for bench runs
        log = os.path.join(store, "logs", "tuning", "search", "mlslice", f"SASRec--{key}", "seed2020.log")
        assert os.path.isfile(log)
        assert not os.path.exists(os.path.join(store, "saved", "tuning", "search", "mlslice", f"SASRec--{key}",
                                               "seed2020"))  # a finished trial keeps no checkpoint
    assert params["default"] == {"learning_rate": 0.001, "hidden_dropout_prob": 0.5, "n_layers": 2}
    assert os.path.isfile(os.path.join(store, "runs", "tuning", "search", "search.json"))

    # the continued search drew what an uninterrupted one draws: hyperopt with the same seed, fed the same scores
    space = tuning.parse_params_file(params_file)
    asked = []

    def replay(config_dict, _files):
        asked.append({p.name: p.value(config_dict[p.name]) for p in space})
        r = records[f"trial{len(asked):04d}"]
        return {"model": "SASRec", "best_valid_score": r["result"]["best_valid_score"], "valid_score_bigger": True,
                "best_valid_result": {}, "test_result": {}}

    tuner = tuning.Tuner(replay, params_dict=tuning.space_dict(space), algo="bayes", max_evals=3)
    tuner.search(seed=2020)
    assert asked == [params[f"trial{i:04d}"] for i in (1, 2, 3)]

    # the choice is the best validation score, whatever the test scores say
    best = max(records, key=lambda k: records[k]["result"]["best_valid_score"])
    table = open(os.path.join(out, "results.md")).read()
    assert "never used for the choice" in table and "test ndcg@10 (not used for the choice)" in table
    assert f"| {best.replace('trial', '')}* |" in table and table.count("* |") == 1
    csv_lines = open(os.path.join(out, "results.csv")).read().strip().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("trial,learning_rate,hidden_dropout_prob,n_layers,status")
    # the best setting goes back in through --config_files
    config = build_config("SASRec", "mlslice", [os.path.join(out, "best.yaml")], {"data_path": "."})
    for key, value in params[best].items():
        assert config[key] == value
    # another search in the same folder is refused in one line, nothing changed
    assert cli.main(["tune", *args, "--algo=random"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds another search" in err and "algo" in err
    assert _records(store) == records


def _fake_worker(calls):
    """Stands in for the benchmark's worker process in one Search: a trial diverges (the worker's one ``error:``
    line, exit 1) when its learning_rate is 1.0, else writes a finished record."""

    def launch(job_path, out_path, log_path):
        job = json.load(open(job_path))
        overrides = job["spec"]["overrides"]
        calls.append(dict(overrides))
        if overrides["learning_rate"] == 1.0:
            with open(log_path, "a") as log:
                log.write("error: NonFiniteLoss: loss part L_rec is nan at epoch 0\n")
            return 1
        score = {0.001: 0.02, 0.01: 0.03}[overrides["learning_rate"]]
        result = RunResult("t", "SASRec", "ml-100k", "finished", "", valid_metric="NDCG@10", best_valid_score=score,
                           best_valid_result={"ndcg@10": score}, test_result={"ndcg@10": score / 2}, best_epoch=0,
                           epochs_run=1)
        json.dump({**job, "status": "finished", "result": result.to_dict(), "metrics": result.test_result,
                   "valid_metrics": result.best_valid_result, "efficiency": {}, "wall_seconds": 2.0},
                  open(out_path, "w"))
        return 0

    return launch


def test_diverged_trials_are_recorded_and_never_chosen(tmp_path, capsys):
    path = _write(tmp_path, "learning_rate choice [1.0, 0.01]\n")
    calls = []
    search = tuning.Search("SASRec", "ml-100k", path, algo="exhaustive", output_dir=str(tmp_path / "o"),
                           store=str(tmp_path / "store"), launcher=_fake_worker(calls))
    best = search.run()
    records = {r["trial"]: r for r in search.records()}
    assert sorted(records) == ["0001", "0002", "default"] and len(calls) == 3
    assert sorted(r["status"] for r in records.values()) == ["diverged", "finished", "finished"]
    assert best["params"] == {"learning_rate": 0.01} and best["best_valid_score"] == 0.03
    assert "diverged" in open(tmp_path / "o" / "results.md").read()
    assert open(tmp_path / "o" / "best.yaml").read().splitlines()[-1] == "learning_rate: 0.01"
    diverged = next(t for t, r in records.items() if r["status"] == "diverged")
    failed = json.load(open(tmp_path / "store" / "runs" / "tuning" / "o" / "ml-100k" / f"SASRec--trial{diverged}"
                            / "seed2020.failed.json"))
    assert failed["error_type"] == "NonFiniteLoss" and failed["exit_code"] == 1

    # run again: every trial is read back, the diverged one included; nothing is run
    again = tuning.Search("SASRec", "ml-100k", path, algo="exhaustive", output_dir=str(tmp_path / "o"),
                          store=str(tmp_path / "store"), launcher=_fake_worker(calls))
    assert again.run() == best and len(calls) == 3

    only_bad = _write(tmp_path, "learning_rate choice [1.0]\n", "bad.hyper")
    search = tuning.Search("SASRec", "ml-100k", only_bad, algo="exhaustive", output_dir=str(tmp_path / "b"),
                           include_default=False, store=str(tmp_path / "store"), launcher=_fake_worker(calls))
    with pytest.raises(UsageError, match="no trial finished"):
        search.run()


def test_a_trial_that_crashes_stops_the_search_in_one_line_and_reruns_next_time(tmp_path):
    path = _write(tmp_path, "learning_rate choice [0.01]\n")
    calls, crash = [], [True]
    worker = _fake_worker(calls)

    def launch(job_path, out_path, log_path):
        if crash[0]:
            open(log_path, "a").write("Traceback (most recent call last):\nRuntimeError: boom\n")
            return 1
        return worker(job_path, out_path, log_path)

    kw = dict(algo="exhaustive", output_dir=str(tmp_path / "o"), store=str(tmp_path / "store"), launcher=launch,
              include_default=False)
    with pytest.raises(UsageError, match=r"trial 0001 failed \(exit 1\): RuntimeError: boom; log: "):
        tuning.Search("SASRec", "ml-100k", path, **kw).run()
    crash[0] = False
    assert tuning.Search("SASRec", "ml-100k", path, **kw).run()["params"] == {"learning_rate": 0.01}
    assert len(calls) == 1


def test_a_search_made_before_trials_were_run_store_records_is_read_back(tmp_path):
    """Migration: a search folder of the older format (``search.json``, ``trials/<n>.json``) continues without
    rerunning its trials, and its table is written from them."""
    path = _write(tmp_path, "learning_rate choice [1.0, 0.01]\n")
    out = tmp_path / "old"
    (out / "trials").mkdir(parents=True)
    manifest = {"model": "SASRec", "dataset": "ml-100k", "algo": "exhaustive", "seed": 2020,
                "params": [["learning_rate", "choice", [1.0, 0.01]]], "config_files": [], "overrides": {},
                "valid_metric": "NDCG@10", "include_default": True}
    (out / "search.json").write_text(json.dumps(manifest))
    old = {"default": ({"learning_rate": 0.001}, 0.02), "0001": ({"learning_rate": 0.01}, 0.04),
           "0002": ({"learning_rate": 1.0}, None)}
    for trial, (params, score) in old.items():
        record = {"trial": trial, "params": params, "seconds": 3.0}
        if score is None:
            record.update(status="diverged", error="loss part L_rec is nan at epoch 0")
        else:
            record.update(status="finished", valid_metric="NDCG@10", best_valid_score=score,
                          best_valid_result={"ndcg@10": score}, test_result={"ndcg@10": score / 2}, best_epoch=0,
                          epochs_run=1)
        (out / "trials" / f"{trial}.json").write_text(json.dumps(record))
    calls = []
    search = tuning.Search("SASRec", "ml-100k", path, algo="exhaustive", output_dir=str(out),
                           store=str(tmp_path / "store"), launcher=_fake_worker(calls))
    best = search.run()
    assert calls == [] and best["trial"] == "0001" and best["best_valid_score"] == 0.04
    table = (out / "results.md").read_text()
    assert "| 0001* |" in table and "diverged" in table
    # the old manifest still guards the folder
    with pytest.raises(UsageError, match="holds another search"):
        tuning.Search("SASRec", "ml-100k", path, algo="random", output_dir=str(out), store=str(tmp_path / "store"),
                      launcher=_fake_worker(calls)).run()


def test_shipped_params_files_parse_and_name_config_keys_of_their_model():
    """hyper/<Model>[-what].hyper: every line parses and is a config key of <Model> (and its default is in range of
    what a choice offers or a distribution can draw, so the default trial is a point of the space)."""
    import glob

    from recbole_famous.pipeline import build_config

    files = sorted(glob.glob(os.path.join(REPO, "hyper", "*.hyper")))
    models = {os.path.basename(f).split(".")[0].split("-")[0] for f in files}
    assert {"FamouSRec", "SASRec", "GRU4Rec", "Mamba4Rec", "FMLPRec"} <= models
    for path in files:
        model = os.path.basename(path).split(".")[0].split("-")[0]
        config = build_config(model, "ml-100k")
        params = tuning.parse_params_file(path)
        tuning.check_names(params, config, path)
        for p in params:
            default = config[p.name]
            if p.kind == "choice":
                assert default in p.args, (path, p.name, default)
            else:
                low, high = (math.exp(p.args[0]), math.exp(p.args[1])) if p.kind == "loguniform" else p.args[:2]
                assert low <= default <= high, (path, p.name, default)


def test_the_committed_search_of_the_older_format_gives_its_committed_table(tmp_path):
    """Migration on real records: ``docs/results/tuning/FamouSRec-Instruments-loss-weights`` (``trials/<n>.json``,
    made before trials were run-store records) is read back and tabled byte for byte as committed."""
    import shutil

    committed = os.path.join(REPO, "docs", "results", "tuning", "FamouSRec-Instruments-loss-weights")
    out = tmp_path / "FamouSRec-Instruments-loss-weights"
    shutil.copytree(committed, out)
    manifest = json.load(open(out / "search.json"))
    search = tuning.Search("FamouSRec", "Instruments", os.path.join(REPO, "hyper", "FamouSRec-loss-weights.hyper"),
                           overrides=manifest["overrides"], output_dir=str(out), store=str(tmp_path / "store"))
    for name in ("results.md", "results.csv"):
        (out / name).unlink()
    best = search.write_outputs()
    assert best["trial"] == "default" and len(search.records()) == 5
    for name in ("results.md", "results.csv"):
        assert (out / name).read_text() == open(os.path.join(committed, name)).read()
    assert (out / "best.yaml").read_text().splitlines()[1:] == open(os.path.join(committed, "best.yaml")).read().splitlines()[1:]
