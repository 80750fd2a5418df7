"""The package installs whole: a wheel built from the checkout carries every module, every props layer and both C++
kernel sources, and, installed into a fresh environment without the source tree, runs a job with the same resolved
protocol as the checkout. Also: a missing props layer is an error, never a run under RecBole's defaults."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import write_ml100k_slice
from recbole_famous import config as config_module
from recbole_famous.errors import MissingResource, UsageError
from recbole_famous.pipeline import build_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what a wheel must hold: the package's modules, its shipped data
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "recbole_famous", "props")
# the resolved settings compared between the checkout and the installed wheel (besides the whole fingerprint)
PROTOCOL = {"MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "user_inter_num_interval": "[5,inf)",
            "item_inter_num_interval": "[5,inf)", "metrics": ["Hit", "NDCG"], "topk": [5, 10],
            "valid_metric": "NDCG@10"}

JOB = r"""
import json, sys
import torch
torch.set_num_threads(1)
import recbole_famous
from recbole_famous import checkpoint
from recbole_famous.pipeline import build_config
from recbole_famous.runner import run

data_path, out = sys.argv[1], sys.argv[2]
overrides = {"data_path": data_path, "epochs": 1, "show_progress": False, "state": "WARNING",
             "checkpoint_dir": out + "/saved", "results_dir": out + "/results"}
result = run("SASRec", "mlslice", overrides=overrides)
famous = build_config("FamouSRec", "mlslice", overrides={"data_path": data_path})
print(json.dumps({"package": recbole_famous.__file__, "status": result["status"], "test": result["test_result"],
                  "config": {k: result["config"][k] for k in %r},
                  "fingerprint": checkpoint.fingerprint(build_config("SASRec", "mlslice", overrides=overrides)),
                  "famous_fingerprint": checkpoint.fingerprint(famous)}, default=str))
""" % (sorted(PROTOCOL),)


def _small_slice(root, users: int = 30) -> str:
    """The interactions of ml-100k's first ``users`` users (file order), as dataset 'mlslice' under ``root``:
    a job under the full protocol (length 50) that takes seconds."""
    return write_ml100k_slice(root, "mlslice", users)


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_clean_env(), **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _build_wheel(tmp_path) -> str:
    import setuptools

    major_minor = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
    if major_minor < (70, 1):
        pytest.fail(f"setuptools {setuptools.__version__} cannot build a wheel by itself: "
                    "pip install -e '.[test]' installs setuptools>=70.1")
    src = tmp_path / "src"  # a copy, so the build writes nothing (build/, *.egg-info) into the checkout
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy(path, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
          str(tmp_path / "dist"), str(src)])
    wheels = glob.glob(str(tmp_path / "dist" / "recbole_famous-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_env(tmp_path, wheel) -> str:
    """A new venv with the wheel installed (--no-deps) and this environment's third-party packages visible.

    ``venv --system-site-packages`` would expose the *base* interpreter's site-packages, not this venv's (where
    recbole and torch are), so a .pth file adds this environment's library folders instead; it names only folders
    outside the checkout, and being plain paths, the editable install's own .pth finder in them never runs."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}
    # library folders only (CI's .venv lies inside the checkout: its site-packages is kept, the checkout is not)
    keep = sorted(p for p in here if p and os.path.isdir(p) and os.path.basename(p) in ("site-packages", "dist-packages"))
    with open(os.path.join(purelib, "_parent_env.pth"), "w") as f:
        f.write("\n".join(keep) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    return python


@pytest.mark.slow
def test_wheel_installs_whole_and_runs_the_protocol_outside_the_checkout(tmp_path):
    data_path = _small_slice(tmp_path / "data")
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for root, dirs, files in os.walk(os.path.join(REPO, "recbole_famous")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        expected |= {os.path.relpath(os.path.join(root, f), REPO) for f in files if f.endswith((".py", ".cpp"))}
    for root, _, files in os.walk(os.path.join(REPO, "props")):
        expected |= {os.path.join("recbole_famous", os.path.relpath(os.path.join(root, f), REPO))
                     for f in files if f.endswith(".yaml")}
    assert {"recbole_famous/props/overall.yaml", "recbole_famous/model/mamba/selective_scan_cpu.cpp",
            "recbole_famous/model/spe_cpu.cpp"} <= expected
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"

    python = _fresh_env(tmp_path, wheel)
    work = tmp_path / "work"  # the job runs from a folder outside the checkout, with no PYTHONPATH
    work.mkdir()
    proc = _run([python, "-c", JOB, data_path, str(tmp_path / "out")], cwd=work)
    installed = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"wheel {os.path.basename(wheel)}: {len(names)} files; installed job: {installed['status']}, "
          f"test {installed['test']}")

    assert not os.path.abspath(installed["package"]).startswith(REPO)
    assert installed["package"].startswith(str(tmp_path / "venv"))
    assert installed["status"] == "finished" and 0 <= installed["test"]["ndcg@10"] <= 1
    assert installed["config"] == PROTOCOL
    from recbole_famous import checkpoint

    editable = build_config("SASRec", "mlslice", overrides={"data_path": data_path, "epochs": 1})
    assert {k: editable[k] for k in PROTOCOL} == PROTOCOL
    assert installed["fingerprint"] == json.loads(json.dumps(checkpoint.fingerprint(editable)))
    famous = build_config("FamouSRec", "mlslice", overrides={"data_path": data_path})
    assert installed["famous_fingerprint"] == json.loads(json.dumps(checkpoint.fingerprint(famous)))


def test_missing_protocol_layer_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "PROPS_DIR", str(tmp_path))  # an install without its props/ files
    with pytest.raises(MissingResource, match="overall.yaml is missing"):
        build_config("SASRec", "ml-100k")
    assert issubclass(MissingResource, UsageError)  # the command line: one line, exit code 2


def test_missing_plugin_model_layer_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "overall.yaml").write_text(open(os.path.join(REPO, "props", "overall.yaml")).read())
    monkeypatch.setattr(config_module, "PROPS_DIR", str(tmp_path))
    with pytest.raises(MissingResource, match="FamouSRec"):
        build_config("FamouSRec", "ml-100k")
    build_config("SASRec", "ml-100k")  # RecBole's own models have no layer of their own to miss
