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


def test_recboles_exhaustive_search_runs_on_current_hyperopt():
    """Fix 10: RecBole's exhaustive_search draws with np.random.RandomState, hyperopt >= 0.2.7 wants a Generator."""
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
