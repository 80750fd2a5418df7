"""Checkpoints: what every run saves, --eval_only, refusals, and SIGTERM / Ctrl-C + --resume giving the result of
an uninterrupted run. Real RecBole runs of SASRec on the ml-100k slice (see reliability_common.SMALL)."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import run_recbole_famous as cli
from recbole_famous import checkpoint
from recbole_famous.errors import UsageError
from recbole_famous.runner import run
from recbole_famous.trainer import TrainingInterrupted, _SignalGuard
from reliability_common import quick, one_thread  # noqa: F401 (autouse fixture)

TWO_EPOCHS = {"epochs": 2, "n_layers": 1}


@pytest.fixture(scope="module")
def trained(ml100k_slice, tmp_path_factory):
    """One uninterrupted two-epoch SASRec run (dropout on: resuming must restore the random states)."""
    overrides = {**quick(ml100k_slice, tmp_path_factory.mktemp("trained")), **TWO_EPOCHS}
    return overrides, run("SASRec", "mlslice", overrides=overrides)


def _one_line_error(capsys, code, expected_code=2):
    err = capsys.readouterr().err.strip()
    assert code == expected_code, err
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_every_run_saves_best_and_resume_checkpoints(trained):
    _, result = trained
    best, resume = result["checkpoint"], result["resume_checkpoint"]
    assert checkpoint.companion_paths(best) == (best, resume)
    assert os.path.basename(best) == result["run_id"] + ".pth" and os.path.isfile(resume)
    ckpt = checkpoint.load(best)
    meta = checkpoint.meta(ckpt)
    assert (meta["model"], meta["dataset"], meta["format"]) == ("SASRec", "mlslice", checkpoint.FORMAT)
    assert ckpt["epoch"] == result["best_epoch"] == meta["best_epoch"]
    assert meta["best_valid_result"] == result["best_valid_result"]
    assert meta["data"]["n_items"] == result["num_items"] and meta["data"]["item_tokens"][0] == "[PAD]"
    assert checkpoint.load(resume)["epoch"] == 1 and checkpoint.meta(checkpoint.load(resume))["finished"]
    assert not [f for f in os.listdir(os.path.dirname(best)) if ".tmp" in f]  # atomic writes leave no temporaries


def test_eval_only_reproduces_the_runs_test_metrics(trained, tmp_path, capsys, monkeypatch):
    overrides, result = trained
    monkeypatch.chdir(tmp_path)
    # the checkpoint alone is enough; training-only keys (learning_rate) may differ, inference keys (topk) too
    code = cli.main([f"--checkpoint={result['checkpoint']}", "--eval_only", f"--results_dir={tmp_path}",
                     "--learning_rate=0.5"])
    out = capsys.readouterr().out
    assert code == 0 and "checkpoint" in out and "ndcg@10" in out
    (run_dir,) = [d for d in os.listdir(tmp_path) if d.endswith("-eval")]
    with open(tmp_path / run_dir / "result.json") as f:
        evaluated = json.load(f)
    assert evaluated["eval_only"] and evaluated["test_result"] == result["test_result"]
    assert evaluated["best_valid_result"] == result["best_valid_result"]
    # the best checkpoint holds the epochs run when it was saved (the best epoch need not be the last)
    assert evaluated["epochs_run"] == result["best_epoch"] + 1 and evaluated["checkpoint_epoch"] == result["best_epoch"]
    code = cli.main([f"--checkpoint={result['checkpoint']}", "--eval_only", f"--results_dir={tmp_path}", "--topk=[3]"])
    assert code == 0 and "hit@3" in capsys.readouterr().out
    # the `eval` subcommand is the same evaluation
    assert cli.main(["eval", f"--checkpoint={result['checkpoint']}", f"--results_dir={tmp_path / 'sub'}"]) == 0
    (sub_dir,) = os.listdir(tmp_path / "sub")
    with open(tmp_path / "sub" / sub_dir / "result.json") as f:
        assert json.load(f)["test_result"] == result["test_result"]
    assert "checkpoint not found" in _one_line_error(capsys, cli.main(["eval", f"--checkpoint={tmp_path}/no.pth"]))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=GRU4Rec"], "holds a SASRec model, not GRU4Rec"),
        (["--dataset=otherdata"], "trained on dataset 'mlslice', not 'otherdata'"),
        (["--hidden_size=32"], "hidden_size: 16 in the checkpoint, 32 now"),
        (["--MAX_ITEM_LIST_LENGTH=20"], "MAX_ITEM_LIST_LENGTH: 10 in the checkpoint, 20 now"),
        (["--user_inter_num_interval=[5,inf)"], "user_inter_num_interval"),
    ],
)
def test_eval_only_refuses_another_model_dataset_or_config(trained, args, message, tmp_path, capsys):
    _, result = trained
    code = cli.main([f"--checkpoint={result['checkpoint']}", "--eval_only", f"--results_dir={tmp_path}", *args])
    assert message in _one_line_error(capsys, code)


def test_refuses_a_changed_dataset(trained, tmp_path, capsys):
    overrides, result = trained
    src = os.path.join(overrides["data_path"], "mlslice", "mlslice.inter")
    (tmp_path / "mlslice").mkdir()
    with open(src) as f:
        lines = f.readlines()
    (tmp_path / "mlslice" / "mlslice.inter").write_text("".join(lines[:-400]))  # the same name, fewer interactions
    code = cli.main([f"--checkpoint={result['checkpoint']}", "--eval_only", f"--data_path={tmp_path}",
                     f"--results_dir={tmp_path}"])
    err = _one_line_error(capsys, code)
    assert "dataset 'mlslice' has changed since checkpoint" in err and "interactions" in err


def test_refuses_files_that_are_not_checkpoints(trained, tmp_path, capsys):
    _, result = trained
    truncated = tmp_path / "truncated.pth"
    with open(result["checkpoint"], "rb") as f:
        truncated.write_bytes(f.read()[:5000])
    (tmp_path / "text.pth").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "dict.pth")
    for path, message in [
        (tmp_path / "missing.pth", "checkpoint not found"),
        (truncated, "is not a readable checkpoint"),
        (tmp_path / "text.pth", "is not a readable checkpoint"),
        (tmp_path / "dict.pth", "is not a model checkpoint"),
    ]:
        code = cli.main([f"--checkpoint={path}", "--eval_only"])
        assert message in _one_line_error(capsys, code)
    assert _one_line_error(capsys, cli.main(["--eval_only"])).startswith("error: --eval_only needs --checkpoint")


def test_resume_refuses_a_changed_training_config(trained):
    _, result = trained
    with pytest.raises(UsageError, match="learning_rate: 0.01 in the checkpoint, 0.5 now"):
        run(resume=result["checkpoint"], overrides={"learning_rate": 0.5})


def _interrupted_run(overrides, signum, after_epoch):
    """A SASRec run that sends ``signum`` to this process after epoch ``after_epoch``: the run must stop with
    ``TrainingInterrupted`` for that signal and leave the process's signal handler as it found it."""
    handler_before = signal.getsignal(signum)

    def send(epoch_idx, valid_score):
        if epoch_idx == after_epoch:
            os.kill(os.getpid(), signum)

    with pytest.raises(TrainingInterrupted) as info:
        run("SASRec", "mlslice", overrides=overrides, epoch_callback=send)
    assert info.value.signum == signum
    assert signal.getsignal(signum) is handler_before  # handlers restored
    return info.value


def test_sigterm_keeps_checkpoints_and_resume_gives_the_uninterrupted_result(trained, capsys, monkeypatch, tmp_path):
    overrides, uninterrupted = trained
    overrides = {**overrides, "checkpoint_dir": str(tmp_path / "saved"), "results_dir": str(tmp_path / "results")}
    stopped = _interrupted_run(overrides, signal.SIGTERM, after_epoch=0)
    assert "--resume=" in str(stopped)
    best = str(stopped).split("--resume=")[1]
    assert checkpoint.load(best)["epoch"] == 0 and checkpoint.load(checkpoint.companion_paths(best)[1])["epoch"] == 0
    (partial,) = os.listdir(overrides["results_dir"])
    with open(os.path.join(overrides["results_dir"], partial, "result.json")) as f:
        assert json.load(f)["status"] == "interrupted"

    monkeypatch.chdir(tmp_path)
    assert cli.main([f"--resume={best}"]) == 0  # the checkpoint's own settings: nothing else to give
    assert "best epoch" in capsys.readouterr().out
    resumed = max(os.listdir(overrides["results_dir"]), key=lambda d: os.path.getmtime(os.path.join(overrides["results_dir"], d)))
    with open(os.path.join(overrides["results_dir"], resumed, "result.json")) as f:
        result = json.load(f)
    assert result["resumed_from"].endswith(".resume.pth") and result["epochs_run"] == 2
    # exactly the uninterrupted run: epoch 1's training loss and validation score, the best epoch, the test metrics
    assert result["train_loss"] == {str(k): v for k, v in uninterrupted["train_loss"].items()}
    assert result["valid_scores"] == {str(k): v for k, v in uninterrupted["valid_scores"].items()}
    assert result["best_epoch"] == uninterrupted["best_epoch"]
    assert result["test_result"] == uninterrupted["test_result"]
    assert result["best_valid_result"] == uninterrupted["best_valid_result"]


def test_resume_extends_a_finished_run_to_the_longer_runs_result(trained, tmp_path):
    overrides, two_epochs = trained
    one_epoch = run("SASRec", "mlslice", overrides={**overrides, "epochs": 1, "checkpoint_dir": str(tmp_path)})
    extended = run(resume=one_epoch["checkpoint"], overrides={"epochs": 2})  # epochs may change on resume
    for key in ("train_loss", "valid_scores", "best_epoch", "best_valid_result", "test_result", "epochs_run"):
        assert extended[key] == two_epochs[key], key


def test_ctrl_c_keeps_the_best_checkpoint(trained, tmp_path):
    overrides, _ = trained
    overrides = {**overrides, "epochs": 3, "checkpoint_dir": str(tmp_path / "saved"), "results_dir": str(tmp_path / "r")}
    _interrupted_run(overrides, signal.SIGINT, after_epoch=1)
    (best,) = [f for f in os.listdir(tmp_path / "saved") if not f.endswith(".resume.pth")]
    ckpt = checkpoint.load(tmp_path / "saved" / best)
    assert ckpt["epoch"] in (0, 1) and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert checkpoint.load(tmp_path / "saved" / best.replace(".pth", ".resume.pth"))["epoch"] == 1


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_exit_codes_when_interrupted(signum, code, monkeypatch, capsys):
    from recbole_famous import runner

    def interrupted(*args, **kwargs):
        exc = TrainingInterrupted(signum)
        exc.detail = "training interrupted; continue with --resume=x.pth"
        raise exc

    monkeypatch.setattr(runner, "run", interrupted)
    assert cli.main(["--model=SASRec", "--dataset=mlslice"]) == code
    assert capsys.readouterr().err.strip() == "interrupted: training interrupted; continue with --resume=x.pth"


def test_a_signal_while_a_checkpoint_is_written_waits_for_the_write():
    guard = _SignalGuard()
    written = []
    with pytest.raises(TrainingInterrupted):
        with guard.installed():
            with guard.critical():
                os.kill(os.getpid(), signal.SIGTERM)
                written.append("file")  # still runs: the signal is deferred
    assert written == ["file"]
