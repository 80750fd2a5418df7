"""recbole_famous.files: a file is replaced whole or not at all."""

import json
import os

import pytest

from recbole_famous import files


def test_write_json_replaces_whole_and_leaves_nothing_behind(tmp_path):
    path = str(tmp_path / "r.json")
    files.write_json(path, {"a": 1})
    files.write_json(path, {"a": 2, "when": object})  # non-JSON values as their text
    assert json.load(open(path))["a"] == 2 and os.listdir(tmp_path) == ["r.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "r.json")
    files.write_text(path, "old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError):
        files.write_text(path, "new", fsync=True)
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_one_handler_maps_exceptions_to_exit_codes(capsys):
    """errors.run_main: every command line's exceptions as one line and an exit code; a bug keeps its traceback."""
    from recbole_famous.errors import NonFiniteLoss, SourceError, TrainingInterrupted, UsageError, run_main

    def raising(exc):
        def body():
            raise exc
        return body

    assert run_main(lambda: 0) == 0
    assert run_main(raising(UsageError("bad key"))) == 2
    assert capsys.readouterr().err == "error: bad key\n"
    assert run_main(raising(SourceError("f.csv", "bad row", 3))) == 2
    assert run_main(raising(NonFiniteLoss("nan loss"))) == 1
    assert run_main(raising(TrainingInterrupted(15)), interrupted="rerun to resume") == 143
    assert capsys.readouterr().err.endswith("(rerun to resume)\n")
    assert run_main(raising(KeyboardInterrupt())) == 130
    assert run_main(raising(OSError("disk")), bad_input=(OSError,)) == 2
    with pytest.raises(ZeroDivisionError):
        run_main(raising(ZeroDivisionError()))
