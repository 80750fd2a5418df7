"""The ``gpu`` bench profile (props/bench/gpu.yaml): what it sets, and its runs' first steps on the CPU on a tiny
slice (one epoch, small layers), so that the profile cannot rot while no GPU is at hand."""
import pytest
from bench_helpers import run_in_process

from recbole_famous.bench import plan, runs
from recbole_famous.data.slices import write_ml100k_slice


@pytest.fixture(scope="module")
def slice20(tmp_path_factory):
    """MovieLens-100K's first 20 users as dataset 'gpuslice': about one batch of 4096 training sequences."""
    return write_ml100k_slice(tmp_path_factory.mktemp("data"), "gpuslice", 20)


def test_gpu_profile_is_converged_at_the_papers_batch():
    gpu, converged = plan.load_profile("gpu"), plan.load_profile("converged")
    assert gpu.config["train_batch_size"] == 4096 and gpu.config["learning_rate"] > 0
    assert gpu.models == converged.models and gpu.models[:4] == ("Pop", "RecentItems", "ItemTransition",
                                                                 "ItemCoOccurrence")
    for key in ("epochs", "stopping_step", "eval_batch_size"):
        assert gpu.config[key] == converged.config[key]
    assert gpu.model_config == converged.model_config and gpu.datasets == converged.datasets


def test_gpu_profile_runs_its_first_steps_on_the_cpu(slice20, tmp_path):
    """Mamba4Rec (a Mamba layer) and FamouSRec (its profile setting, a Mamba expert), as planned by the profile,
    one epoch on 20 users at the profile's batch of 4096."""
    tiny = {"data_path": slice20, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "embedding_size": 16,
            "hidden_size": 16, "state": "WARNING"}
    specs = plan.plan(plan.load_profile("gpu"), models=["Mamba4Rec", "FamouSRec"], datasets=["gpuslice"],
                      extra=tiny)[:2]
    assert [s.model for s in specs] == ["Mamba4Rec", "FamouSRec"]
    for spec in specs:
        overrides = spec.overrides_dict()
        assert overrides["train_batch_size"] == 4096 and overrides["stopping_step"] == 10
        record = runs.run_one(spec, out_dir=str(tmp_path / "out"), launcher=run_in_process, echo=lambda *a: None)
        assert record is not None and record["status"] == "finished", spec.label
        assert record["result"]["epochs_run"] == 1
