"""The command line (recbole_famous/cli/): one parser with the subcommands train, eval, recommend, tune, bench and
data; one exception-to-exit-code handler; the old module entry points hand over to it or say what replaced them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recbole_famous import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line_error(capsys, code):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_the_six_subcommands_each_have_a_module_and_a_help(capsys):
    assert list(cli.COMMANDS) == ["train", "eval", "recommend", "tune", "bench", "data"]
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as stop:
            cli.main([name, "--help"])
        assert stop.value.code == 0
        assert f"run_recbole_famous.py {name}" in capsys.readouterr().out


def test_options_first_means_train():
    module, args, overrides = cli.parse(["--model=SASRec", "--epochs=3"])
    assert module.NAME == "train" and args.model == "SASRec" and overrides == {"epochs": 3}
    module, args, overrides = cli.parse([])
    assert module.NAME == "train" and args.model is None and overrides == {}


def test_key_value_settings_only_where_a_subcommand_takes_them(capsys):
    module, args, overrides = cli.parse(["tune", "--params_file=p.hyper", "--learning_rate=1e-3"])
    assert overrides == {"learning_rate": 1e-3} and args.params_file == "p.hyper"
    for argv in (["bench", "status", "--learning_rate=1e-3"], ["data", "stats", "--epochs=2"],
                 ["recommend", "--checkpoint=x.pth", "--epochs=2"]):
        with pytest.raises(SystemExit) as stop:
            cli.parse(argv)
        assert stop.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli.parse(["--model=SASRec", "epochs=3"])  # a setting without its dashes: argparse's usage error
    assert stop.value.code == 2 and "--key=value" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2_in_every_subcommand(tmp_path, capsys):
    missing = str(tmp_path / "missing.pth")
    assert "NoSuchRec" in _one_line_error(capsys, cli.main(["--model=NoSuchRec"]))
    assert "checkpoint not found" in _one_line_error(capsys, cli.main(["eval", f"--checkpoint={missing}"]))
    assert "checkpoint not found" in _one_line_error(capsys, cli.main(["recommend", f"--checkpoint={missing}",
                                                                        "--history=1 2"]))
    assert "params" in _one_line_error(capsys, cli.main(["tune", f"--params_file={tmp_path}/none.hyper",
                                                         "--model=SASRec"])).lower()
    assert "no_such_profile" in _one_line_error(capsys, cli.main(["bench", "status", "--profile", "no_such_profile"]))
    assert "not prepared" in _one_line_error(capsys, cli.main(["data", "stats", "Nope", "--out", str(tmp_path)]))


def test_module_entry_points_hand_over_to_the_command_line(tmp_path):
    """``python -m recbole_famous.bench|data`` run the same command (a new process image, no import upward);
    ``python -m recbole_famous.serving`` says in one line what replaced it."""
    env = {**os.environ, "PYTHONPATH": REPO}
    for argv, text in ((["recbole_famous.bench", "status", "--profile", "no_such_profile"], "no_such_profile"),
                       (["recbole_famous.data", "stats", "Nope", "--out", str(tmp_path)], "not prepared")):
        done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and text in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "recbole_famous.serving"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "run_recbole_famous.py recommend" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
