"""RecBole's distributed mode on this machine: 2 CPU processes (gloo) against 1 process, same data and settings.

Stated tolerances, dropout off (with dropout on, each process draws its own masks: observed metric differences up
to 0.12 on this 42-user slice, where one user is 0.024):
* SASRec, and FamouSRec with its auxiliary losses off: parameters after 2 epochs within 1e-4, metrics within 1e-3
  (observed: 9e-6 / 5e-7 and 1e-4 / 0; the 1e-4 comes from RecBole rounding each process's metrics to 4 decimals
  before averaging them);
* FamouSRec with its in-batch losses on (the defaults): metrics within 0.1 (observed 0.048: two users on one
  validation metric, 0.001 on test). The alignment loss takes its negatives, and the load-balance loss its
  average gate, from each process's half of the batch, so two processes optimise a slightly different objective.
"""

from __future__ import annotations

import gc
import os

import pytest
import torch

from recbole_famous import checkpoint, launch
from recbole_famous.config import plugin_model_names
from recbole_famous.runner import run
from reliability_common import quick, one_thread  # noqa: F401 (autouse fixture)

NO_DROPOUT = {"epochs": 2, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "use_gpu": False}


def _max_param_diff(a, b):
    x, y = (checkpoint.load(r["resume_checkpoint"])["state_dict"] for r in (a, b))
    assert x.keys() == y.keys()
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


def _max_metric_diff(a, b):
    diffs = [abs(a[part][m] - b[part][m]) for part in ("best_valid_result", "test_result") for m in a[part]]
    return max(diffs)


@pytest.mark.slow
def test_two_cpu_processes_match_one(ml100k_slice, tmp_path):
    base = {**quick(ml100k_slice, tmp_path), **NO_DROPOUT}
    jobs = [("SASRec", "mlslice", [], {**base, "n_layers": 1}, None)]
    has_famousrec = "FamouSRec" in plugin_model_names()
    if has_famousrec:
        jobs.append(("FamouSRec", "mlslice", [], {**base, "lambda_spe": 0, "mu_align": 0, "gamma_balance": 0}, None))
        jobs.append(("FamouSRec", "mlslice", [], base, None))
    two = launch.run_many(jobs, nproc=2, threads=1)  # one start-up of both processes for both runs
    one = [run(model, dataset, files, overrides) for model, dataset, files, overrides, _ in jobs]

    sasrec1, sasrec2 = one[0], two[0]
    assert sasrec2["world_size"] == 2 and sasrec2["config"]["single_spec"] is False
    assert str(sasrec2["config"]["device"]) == "cpu" and sasrec2["epochs_run"] == 2
    observed = {"SASRec": (_max_param_diff(sasrec1, sasrec2), _max_metric_diff(sasrec1, sasrec2))}
    print(f"\nobserved 1 vs 2 processes (max |param diff|, max |metric diff|): SASRec {observed['SASRec']}")
    assert observed["SASRec"][0] <= 1e-4
    assert observed["SASRec"][1] <= 1e-3
    # rank 0 alone writes the result and the checkpoints; rank 1 logs errors only, to its own file
    assert os.path.isfile(os.path.join(sasrec2["output_dir"], "result.json"))
    assert os.path.isfile(os.path.join(sasrec2["output_dir"], "run.rank1.log"))
    assert os.path.isfile(sasrec2["checkpoint"]) and os.path.isfile(sasrec2["resume_checkpoint"])

    if has_famousrec:
        plain1, plain2 = one[1], two[1]  # no batch-level losses: the same optimisation as one process
        plain = (_max_param_diff(plain1, plain2), _max_metric_diff(plain1, plain2))
        famous1, famous2 = one[2], two[2]  # in-batch negatives and load balance per process
        full = (_max_param_diff(famous1, famous2), _max_metric_diff(famous1, famous2))
        print(f"FamouSRec without in-batch losses {plain}; FamouSRec with its defaults {full}")
        assert plain[0] <= 1e-4 and plain[1] <= 1e-3
        for parts in famous2["train_loss"].values():
            assert len(parts) == 4 and all(torch.isfinite(torch.tensor(p)) for p in parts)
        assert full[1] <= 0.1


def _run_then_leave(local_rank, overrides, queue):
    """Worker of the next test: one run of a 2-process group, then ``launch.leave_group``; reports what is left."""
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    run("SASRec", "mlslice", [], {**overrides, "local_rank": local_rank}, saved=False)
    launch.leave_group(finished=True)
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    queue.put((local_rank, alive, torch.distributed.is_initialized()))


@pytest.mark.slow
def test_leaving_the_group_frees_the_runs_ddp_wrapper(ml100k_slice, tmp_path):
    """A run leaves its DDP wrapper (which holds the gloo group and its last work) in a reference cycle; if it is
    freed only at interpreter exit, the process can die of SIGABRT after a successful run (seen once in CI:
    "terminate called without an active exception"). leave_group frees it while Python is whole."""
    import torch.multiprocessing as mp

    overrides = {**quick(ml100k_slice, tmp_path), **NO_DROPOUT, "epochs": 1, "nproc": 2, "world_size": 2,
                 "ip": "localhost", "port": launch.free_port(), "offset": 0}
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_run_then_leave, args=(overrides, queue), nprocs=2, start_method="spawn")
    reports = sorted(queue.get() for _ in range(2))
    assert reports == [(0, 0, False), (1, 0, False)]


def test_cpu_process_group_set_up_by_the_config_hook(ml100k_slice, tmp_path, monkeypatch):
    """The hook in Config._init_device: gloo on CPU, RecBole's settings, rank > 0 quiet (one process group of 1)."""
    from recbole_famous.pipeline import build_config

    port = launch.free_port()
    config = build_config("SASRec", "mlslice", overrides={
        **quick(ml100k_slice, tmp_path), "local_rank": 0, "world_size": 1, "nproc": 1, "ip": "localhost",
        "port": port, "offset": 0, "use_gpu": False})
    try:
        assert torch.distributed.is_initialized() and torch.distributed.get_backend() == "gloo"
        assert config["single_spec"] is False and str(config["device"]) == "cpu"
    finally:
        torch.distributed.destroy_process_group()
