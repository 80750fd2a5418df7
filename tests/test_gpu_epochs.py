"""benchmarks/gpu_epochs.py, the timing script of issue 13's GPU check, run as a user runs it: on the CPU, on a
small real slice, so that the script the GPU session depends on cannot rot unnoticed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from recbole_famous.data.slices import write_ml100k_slice

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "gpu_epochs.py")


def _run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300, **kw)


def test_epoch_seconds_memory_and_scores_per_model(tmp_path):
    data = write_ml100k_slice(tmp_path / "data", "gpuslice", 20)
    out = tmp_path / "gpu_epochs.json"
    proc = _run(["--device", "cpu", "--dataset", "gpuslice", "--epochs", "2", "--json", str(out),
                 "--set", f"data_path={data}", "--set", "MAX_ITEM_LIST_LENGTH=10",
                 "--models", "SASRec", "FamouSRec:spe_mode=sampled,expert_input=history,hidden_size=16"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["device"] == "cpu" and result["dataset"] == "gpuslice"
    sas, fam = result["runs"]
    assert (sas["name"], fam["name"]) == ("SASRec", "FamouSRec")
    assert fam["overrides"] == {"spe_mode": "sampled", "expert_input": "history", "hidden_size": 16}
    for run in (sas, fam):
        assert len(run["epoch_seconds"]) == 2 and all(s > 0 for s in run["epoch_seconds"])
        assert sorted(run["valid_ndcg10"]) == ["0", "1"]  # one validation per epoch
        assert all(0 <= v <= 1 for v in run["valid_ndcg10"].values())
        assert run["peak_memory_mb"] > 0 and run["valid_seconds"] > 0 and run["train_batches"] > 0
    assert sas["epoch_ratio_to_first"] == 1.0
    assert fam["epoch_ratio_to_first"] == pytest.approx(fam["mean_epoch_seconds"] / sas["mean_epoch_seconds"],
                                                        rel=1e-2)
    assert sas["mamba_scan"] is None and fam["mamba_scan"] in ("our C++ CPU kernel", "plain PyTorch scan")
    assert fam["parameters"] != sas["parameters"]
    assert "s/epoch" in proc.stdout and "x SASRec" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_without_cuda_is_a_clear_error():
    proc = _run(["--device", "cuda", "--epochs", "1"])
    assert proc.returncode == 2
    assert "CUDA is not available" in proc.stderr and "Traceback" not in proc.stderr


def test_a_model_override_that_is_not_key_value_is_refused():
    proc = _run(["--device", "cpu", "--models", "FamouSRec:spe_mode"])
    assert proc.returncode != 0 and "is not key=value" in proc.stderr and "Traceback" not in proc.stderr


def test_a_list_value_inside_a_model_spec_keeps_its_commas():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import gpu_epochs
    finally:
        sys.path.pop(0)
    assert gpu_epochs.parse_model("FamouSRec:spe_mode=sampled,experts=[attention,gru,mlp],mu_spe=0") == (
        "FamouSRec", {"spe_mode": "sampled", "experts": ["attention", "gru", "mlp"], "mu_spe": 0})
    assert gpu_epochs.parse_model("SASRec") == ("SASRec", {})


def test_a_value_that_is_not_yaml_is_a_clear_error():
    proc = _run(["--device", "cpu", "--models", "FamouSRec:experts=[gru"])
    assert proc.returncode != 0 and "is not YAML" in proc.stderr and "Traceback" not in proc.stderr
