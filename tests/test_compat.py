"""Each RecBole-1.2.1-on-today's-stack fix in recbole_famous/compat.py, by a test that fails without it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import recbole_famous  # noqa: F401  (applies the cheap fixes)
from recbole_famous import compat


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_numpy_aliases_let_recbole_metrics_compute():
    # recbole/evaluator/metrics.py builds its result arrays with np.float (removed in numpy 2).
    from recbole.evaluator.metrics import NDCG

    pos_index = np.array([[False, True, False]])  # one user, the target at rank 2
    pos_len = np.array([1])
    ndcg = NDCG.__new__(NDCG).metric_info(pos_index, pos_len)
    assert ndcg[0, 1] == pytest.approx(1 / np.log2(3))
    assert np.float is float and "float_" not in np.__dict__  # old builtin aliases only, not np.float_


def test_config_builds_on_numpy2():
    # RecBole's own Config() dies in compatibility_settings (np.float_); ours does not.
    from recbole_famous.config import Config

    config = Config("SASRec", "ml-100k")
    assert config["MAX_ITEM_LIST_LENGTH"] == 50


def test_importing_recbole_models_does_not_leave_anomaly_detection_on():
    bug = _python("import torch, recbole_famous; import recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())")
    fixed = _python(
        "import torch, recbole_famous.config; import recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())"
    )
    assert bug == "True"  # RecBole's sine.py switches it on at import
    assert fixed == "False"


def test_anomaly_setting_chosen_by_user_is_kept():
    out = _python(
        "import torch; torch.autograd.set_detect_anomaly(True); import recbole_famous.model; print(torch.is_anomaly_enabled())"
    )
    assert out == "True"


def test_runner_never_imports_ray():
    out = _python("import sys, recbole_famous.runner, recbole_famous.trainer, recbole_famous.model; print('ray' in sys.modules)")
    assert out == "False"


def test_checkpoint_with_pickled_config_loads(tmp_path):
    from recbole_famous.config import Config

    path = tmp_path / "ckpt.pth"
    torch.save({"config": Config("SASRec", "ml-100k"), "state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        torch.load(path)  # torch >= 2.6 default: refuses RecBole's checkpoints
    assert compat.load_checkpoint(path)["state_dict"]["w"].sum() == 2


def test_config_ignores_sys_argv(monkeypatch):
    from recbole.config import Config as RecBoleConfig

    from recbole_famous.config import Config

    monkeypatch.setattr(sys, "argv", ["pytest", "--epochs=7", "-q"])
    assert Config("SASRec", "ml-100k")["epochs"] != 7
    monkeypatch.setattr(RecBoleConfig, "compatibility_settings", lambda self: None)
    assert RecBoleConfig("SASRec", "ml-100k", config_dict={"train_neg_sample_args": None})["epochs"] == 7  # the leak that our Config closes


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_pandas3_missing_values_are_filled(tmp_path):
    """RecBole's fillna(inplace=True) is a no-op on pandas 3: a missing float feature stayed NaN."""
    from recbole_famous.config import Config

    inter = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{t}\n" for t, (u, i) in enumerate((u, i) for u in range(1, 4) for i in range(1, 5))
    )
    item = "item_id:token\tprice:float\n1\t1.0\n2\t\n3\t5.0\n4\t3.0\n"
    _write(tmp_path / "tiny" / "tiny.inter", inter)
    _write(tmp_path / "tiny" / "tiny.item", item)
    config = Config(
        "SASRec",
        "tiny",
        config_dict={
            "data_path": str(tmp_path),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "price"]},
            "user_inter_num_interval": None,
            "item_inter_num_interval": None,
            "normalize_all": False,
        },
    )
    dataset = compat.sequential_dataset_class()(config)
    price = dataset.item_feat["price"]
    assert not np.isnan(price).any()
    assert price[dataset.token2id("item_id", "2")] == pytest.approx(3.0)  # mean of 1, 5, 3


def test_only_recboles_two_known_warnings_are_filtered():
    import warnings

    from recbole_famous import compat

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        compat.quiet_recbole_warnings()
        warnings.warn("`torch.cuda.amp.GradScaler(args...)` is deprecated. Please use ...", FutureWarning)
        warnings.warn("The given NumPy array is not writable, and PyTorch does not support ...", UserWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_checkpoint_dir_exists_before_recboles_racy_ensure_dir(tmp_path, monkeypatch):
    """Fix 9: RecBole's ``ensure_dir`` is check-then-create; two DDP ranks racing on it made CI fail with
    FileExistsError. Our Trainer creates the folder first, so RecBole's call always finds it there."""
    import recbole.trainer.trainer as rb_trainer

    from recbole_famous.config import Config
    from recbole_famous.trainer import Trainer

    seen = []
    real = rb_trainer.ensure_dir
    monkeypatch.setattr(rb_trainer, "ensure_dir", lambda d: (seen.append(os.path.isdir(d)), real(d)))
    target = tmp_path / "fresh" / "saved"
    config = Config("SASRec", "ml-100k", config_dict={"checkpoint_dir": str(target), "device": "cpu"})
    Trainer(config, torch.nn.Linear(2, 2), output_dir=str(tmp_path / "out"))
    assert seen == [True] and target.is_dir()


def test_ddp_on_cpu_gets_no_device_ids(tmp_path):
    """Fix 10: RecBole builds ``DistributedDataParallel(model, device_ids=[local_rank])``, which torch refuses for a
    CPU module; inside ``cpu_ddp`` the same call wraps the model."""
    import recbole.trainer.trainer as rb_trainer

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = torch.nn.Linear(2, 2)
        with pytest.raises(ValueError, match="device_ids"):
            rb_trainer.DistributedDataParallel(model, device_ids=[0])
        with compat.cpu_ddp({"single_spec": False, "device": "cpu"}):
            wrapped = rb_trainer.DistributedDataParallel(model, device_ids=[0])
        assert wrapped.module is model
        assert rb_trainer.DistributedDataParallel is torch.nn.parallel.DistributedDataParallel  # restored
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_metrics_are_weighted_by_users_not_batches(monkeypatch):
    """Fix 11: two processes evaluated 10 and 30 users (one batch each) with hit@10 0.5 and 0.1: the metric over
    all 40 users is 0.2. RecBole's ``_map_reduce`` weights by its ``num_sample``, 4 per batch (the length of the
    batch tuple): 0.3. Each process's ``all_gather`` is simulated: this process's tensor, then the other's."""
    from recbole.trainer import Trainer as RecBoleTrainer

    class RecBoleOnly:
        _map_reduce = RecBoleTrainer._map_reduce

        def __init__(self, users):
            self.config = {"world_size": 2, "metric_decimal_place": 6}
            self.device = torch.device("cpu")
            self._eval_count = users

    class Fixed(compat.UserWeightedEvaluation, RecBoleOnly):
        pass

    def reduced(cls, batches_of_4=4):
        sent = {}
        for users, value in ((30, 0.1), (10, 0.5)):  # the other process first: record what it sends
            calls = []

            def all_gather(outputs, tensor, calls=calls):
                calls.append(tensor.clone())
                other = sent.get("other", [])
                outputs[0].copy_(tensor)
                outputs[1].copy_(other[len(calls) - 1] if other else tensor)

            monkeypatch.setattr(torch.distributed, "all_gather", all_gather)
            result = cls(users)._map_reduce({"hit@10": value}, batches_of_4)
            sent["other"] = calls
        return result["hit@10"]

    assert reduced(Fixed) == pytest.approx(0.2)
    assert reduced(RecBoleOnly) == pytest.approx(0.3)  # without the fix


def test_recboles_dataloaders_get_the_shard_sampler():
    """Fix 12: RecBole's dataloaders read ``torch.utils.data.distributed.DistributedSampler`` when built; torch's
    pads 5 evaluation users to 6 over 2 processes (one user counted twice), ``ShardSampler`` splits them 3 + 2."""
    import inspect

    import recbole.data.dataloader.abstract_dataloader as rb_loader
    from torch.utils.data.distributed import DistributedSampler

    from recbole_famous.distributed import ShardSampler

    assert "torch.utils.data.distributed.DistributedSampler(" in inspect.getsource(rb_loader)
    users = list(range(5))
    padded = [list(DistributedSampler(users, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    assert sorted(padded[0] + padded[1]) == [0, 0, 1, 2, 3, 4]
    with compat.distributed_sampler(ShardSampler):
        built = [list(torch.utils.data.distributed.DistributedSampler(users, num_replicas=2, rank=r, shuffle=False))
                 for r in (0, 1)]
    assert sorted(built[0] + built[1]) == users
    assert torch.utils.data.distributed.DistributedSampler is DistributedSampler  # restored


def test_recboles_exhaustive_search_runs_on_current_hyperopt():
    """Fix 13: RecBole's exhaustive_search draws with np.random.RandomState, hyperopt >= 0.2.7 wants a Generator."""
    pytest.importorskip("hyperopt")
    from hyperopt import STATUS_OK, Trials, fmin, hp
    from recbole.trainer.hyper_tuning import exhaustive_search as recboles

    space = {"a": hp.choice("a", [1, 2, 3]), "b": hp.choice("b", ["x", "y"])}
    seen = []

    def objective(params):
        seen.append((params["a"], params["b"]))
        return {"loss": float(params["a"]), "status": STATUS_OK}

    with pytest.raises(AttributeError, match="integers"):
        fmin(objective, space, algo=recboles, max_evals=6, trials=Trials(), rstate=np.random.default_rng(0),
             show_progressbar=False)
    seen.clear()
    fmin(objective, space, algo=compat.exhaustive_search, max_evals=6, trials=Trials(),
         rstate=np.random.default_rng(0), show_progressbar=False)
    assert sorted(seen) == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]  # every combination, once
