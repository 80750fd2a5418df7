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
