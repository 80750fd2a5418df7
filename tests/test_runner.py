"""The runner and CLI on real RecBole pipelines (a small real slice of ml-100k), the config layering, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import run_recbole_famous as cli
from recbole_famous import config as config_module
from recbole_famous.pipeline import build_config
from recbole_famous.run_result import RunResult
from recbole_famous.runner import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli_args(overrides):
    return [f"--{k}={v}" for k, v in overrides.items()]


def test_cli_trains_builtin_model_and_writes_result(quick_overrides, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--model=SASRec", "--dataset=mlslice", *_cli_args(quick_overrides)])
    out = capsys.readouterr().out
    assert code == 0
    assert "ndcg@10" in out and "test" in out
    run_dirs = os.listdir(quick_overrides["results_dir"])
    assert len(run_dirs) == 1
    with open(os.path.join(quick_overrides["results_dir"], run_dirs[0], "result.json")) as f:
        result = json.load(f)
    assert result["model"] == "SASRec" and result["dataset"] == "mlslice"
    assert set(result["test_result"]) == {"hit@5", "hit@10", "ndcg@5", "ndcg@10"}
    assert 0 <= result["test_result"]["ndcg@10"] <= result["test_result"]["hit@10"] <= 1
    assert result["best_epoch"] == 0 and len(result["epoch_seconds"]) == 1 and result["epoch_seconds"][0] > 0
    assert result["config"]["MAX_ITEM_LIST_LENGTH"] == 10 and result["config"]["loss_type"] == "CE"
    assert os.path.isfile(result["checkpoint"])
    # RecBole's ./log and ./log_tensorboard are not written into the working directory
    assert not os.path.exists(tmp_path / "log") and not os.path.exists(tmp_path / "log_tensorboard")


def test_run_gru4rec_learns_over_epochs(quick_overrides):
    # two epochs of a second built-in model through the same runner: the training loss falls
    result = run("GRU4Rec", "mlslice", overrides={**quick_overrides, "epochs": 2, "stopping_step": 5, "state": "INFO"})
    assert isinstance(result, RunResult) and result.status == "finished" and result.epochs_run == 2
    assert result.test_result["hit@10"] > 0 and result["test_result"] is result.test_result
    # the result file is the dataclass, whole, and reads back into it
    with open(result.path, encoding="utf-8") as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(result.to_dict(), default=str)) and "error" not in written
    assert RunResult.from_dict(written).to_dict() == written
    # the run's log has the paper's Table-1 statistics, as converted and after RecBole's filter (120 users)
    log = open(os.path.join(result["output_dir"], "run.log"), encoding="utf-8").read()
    table = [line for line in log.splitlines() if "mlslice after RecBole filter" in line]
    assert table and "120" in table[0], log[-3000:]


def test_protocol_from_props(quick_overrides):
    config = build_config("SASRec", "mlslice", overrides={"data_path": quick_overrides["data_path"]})
    assert config["loss_type"] == "CE" and config["train_neg_sample_args"] is None or config["train_neg_sample_args"]["sample_num"] == "none"
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] in ("full", {"valid": "full", "test": "full"})
    assert config["topk"] == [5, 10] and config["valid_metric"] == "NDCG@10"
    assert config["user_inter_num_interval"] == "[5,inf)" and config["MAX_ITEM_LIST_LENGTH"] == 50


def test_config_layering(tmp_path, monkeypatch):
    props = tmp_path / "props"
    (props / "model").mkdir(parents=True)
    (props / "dataset").mkdir()
    (props / "overall.yaml").write_text("la: 1\nlb: 1\nlc: 1\nld: 1\nle: 1\ntrain_batch_size: 77\nloss_type: CE\ntrain_neg_sample_args: ~\n")
    (props / "model" / "SASRec.yaml").write_text("lb: 2\nlc: 2\nld: 2\nle: 2\n")
    (props / "dataset" / "toy.yaml").write_text("lc: 3\nld: 3\nle: 3\n")
    f1, f2 = tmp_path / "a.yaml", tmp_path / "b.yaml"
    f1.write_text("ld: 4\nle: 4\nlf: 4\n")
    f2.write_text("lf: 5\n")
    monkeypatch.setattr(config_module, "PROPS_DIR", str(props))
    config = config_module.Config("SASRec", "toy", [str(f1), str(f2)], {"le": "6"})
    assert [config[k] for k in ("la", "lb", "lc", "ld", "le", "lf")] == [1, 2, 3, 4, 6, 5]
    assert config["train_batch_size"] == 77  # props/overall.yaml beats RecBole's own default (2048)


def test_plugin_models_found_before_recbole(monkeypatch):
    import recbole_famous.model as plugin
    from recbole.model.sequential_recommender import SASRec

    class GRU4Rec(SASRec):  # a plugin model that shadows a RecBole name
        pass

    GRU4Rec.__module__ = "recbole_famous.model.fake"
    monkeypatch.setattr(plugin, "GRU4Rec", GRU4Rec, raising=False)
    assert config_module.find_model("GRU4Rec") is GRU4Rec
    monkeypatch.delattr(plugin, "GRU4Rec")
    assert config_module.find_model("GRU4Rec").__module__.startswith("recbole.model")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=NoSuchRec"], "unknown model 'NoSuchRec'"),
        (["--dataset=NoSuchData"], "dataset 'NoSuchData' not found"),
        (["--config_files=/nonexistent/x.yaml"], "config file not found: /nonexistent/x.yaml"),
        (["--metrics=[Hit,Foo]"], "no metric named 'Foo'"),
        (["--valid_metric=Bar@10"], "unknown valid_metric"),
        (["--nproc=0"], "--nproc must be at least 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--model=SASRec", "--dataset=ml-100k", f"--results_dir={tmp_path}", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_broken_yaml_and_missing_inter(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\nlr: 3\n")
    assert cli.main(["--model=SASRec", f"--config_files={bad}"]) == 2
    err = capsys.readouterr().err
    assert "not valid yaml" in err and "line" in err
    (tmp_path / "data" / "empty").mkdir(parents=True)  # a dataset folder without its .inter file
    assert cli.main(["--model=SASRec", "--dataset=empty", f"--data_path={tmp_path / 'data'}"]) == 2
    assert "empty.inter" in capsys.readouterr().err


def test_cli_process_has_no_traceback_and_help_documents_options():
    bad = subprocess.run(
        [sys.executable, "run_recbole_famous.py", "--model=NoSuchRec"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "SASRec" in bad.stderr
    helped = subprocess.run([sys.executable, "run_recbole_famous.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert helped.returncode == 0
    for word in ("--model", "--dataset", "--config_files", "--key=value", "result.json", "props/overall.yaml"):
        assert word in helped.stdout


def test_run_ids_of_one_process_never_collide():
    """Two runs started by one process in the same second must not share an output folder or checkpoint."""
    from recbole_famous.runner import make_run_id

    ids = [make_run_id("FamouSRec", "mlslice") for _ in range(3)]
    assert len(set(ids)) == 3
