"""RecBole 1.2.1 on today's stack (Python 3.11, numpy 2, pandas 3, torch >= 2.6): every fix in one place.

RecBole 1.2.1 (its latest release, 2025) predates numpy 2, pandas 3 and torch's ``weights_only`` default.
Each fix below says what breaks and why the fix is the narrowest one that works; each has a test in
``tests/test_compat.py`` that fails without it.

Fixes that are applied process-wide (``apply()``, run on ``import recbole_famous``):

1. numpy aliases. RecBole's own code uses ``np.float`` / ``np.bool`` / ``np.str`` (``evaluator/metrics.py``
   computes NDCG and Hit with them; ``data/interaction.py`` too), names numpy removed in 1.24/2.0. We restore the
   old *aliases of Python builtins* (what numpy 1.19 had). We do NOT restore ``np.float_`` and friends: other
   libraries test for those to detect numpy 1, so RecBole's ``Config.compatibility_settings``, which reads them,
   is overridden in our Config subclass instead (``recbole_famous.config``).
2. Autograd anomaly detection. ``recbole/model/sequential_recommender/sine.py`` calls
   ``torch.autograd.set_detect_anomaly(True)`` when the package is imported, which makes every model train
   several times slower. ``disable_import_time_anomaly_detection()`` imports that package once, under our control,
   and restores whatever anomaly setting the process had before.

Fixes that are scoped to the objects that need them (no global switch):

3. pandas 3 (copy-on-write): ``df[field].fillna(..., inplace=True)`` on a column is a silent no-op, so RecBole's
   ``Dataset._fill_nan`` leaves missing values missing: ``SequentialDataset`` below overrides it. Not fixed:
   token_seq / float_seq side features (RecBole's ``_remap`` and ``_load_feat`` rely on pandas-2 behaviour there
   and fail loudly); the paper's protocol loads interactions only (user, item, timestamp).
4. torch >= 2.6 loads checkpoints with ``weights_only=True``; RecBole pickles its Config into them, so
   ``Trainer.evaluate(load_best_model=True)`` raises UnpicklingError. ``recbole_famous.checkpoint.load``, through
   which every checkpoint is read (the Trainer's best model too), uses ``load_checkpoint`` (``weights_only=False``:
   a file this project wrote itself).
5. ``Config`` reads ``sys.argv`` (pytest's flags leak into configs), looks models up with ``get_model`` (which
   imports ``exlib_recommender`` and needs lightgbm) and ``compatibility_settings`` (see 1): overridden in
   ``recbole_famous.config.Config``.
6. RecBole writes ``log/`` and ``log_tensorboard/`` into the working directory: the runner sets up its own log
   file, and ``tensorboard_in(dir)`` points the Trainer's SummaryWriter at the run's output folder.
7. ``import recbole.quick_start`` imports ray 2.6.3, which fails on numpy 2 (``np.bool8``) and setuptools >= 81
   (``pkg_resources``): this project never imports ``recbole.quick_start`` (tested).
8. Two warnings that RecBole 1.2.1's own code triggers on every run and a user cannot act on: torch's
   deprecation of ``torch.cuda.amp.GradScaler(...)`` (``recbole/trainer/trainer.py``) and "The given NumPy array is
   not writable" (``recbole/data/dataset/dataset.py``, a read-only pandas-3 array turned into a tensor that RecBole
   never writes to). ``apply()`` filters exactly these two messages; every other warning still shows.
9. RecBole's ``Trainer.__init__`` creates ``checkpoint_dir`` with ``ensure_dir`` (``if not exists: makedirs``), a
   check-then-create race: under DDP every rank builds its Trainer at the same moment and the loser raises
   ``FileExistsError`` (seen in CI on ``tests/test_reliability_distributed.py``). ``make_checkpoint_dir`` creates the
   folder race-free (``exist_ok=True``) before RecBole's check runs; ``recbole_famous.trainer.Trainer`` calls it.

Fixes for RecBole's distributed mode (``nproc`` > 1) on CPU and with uneven shards:

10. RecBole's ``AbstractTrainer.__init__`` wraps the model in ``DistributedDataParallel(model,
    device_ids=[local_rank])``; torch refuses ``device_ids`` for a CPU module (ValueError), so distributed training on
    CPU (gloo) cannot start. ``cpu_ddp(config)``, around the Trainer's construction, drops ``device_ids`` on CPU.
11. RecBole's ``Trainer._map_reduce`` averages each process's metrics weighted by ``num_sample``, which it counts as
    ``len(batched_data)`` per batch: the length of the batch *tuple* (4), so the weights are batch counts, not users.
    Processes that evaluate different numbers of users (the last batch, ``world_size`` not dividing the users)
    get the wrong mean. ``UserWeightedEvaluation`` (a Trainer mixin) counts the users each process evaluated and
    weights by them, so the reduced metric is the single-process one.
12. RecBole's dataloaders take torch's ``DistributedSampler``, which pads the evaluation users with duplicates
    (counted twice in the metrics) and shuffles training in another order than a single process.
    ``distributed_sampler(cls)``, around ``data_preparation``, gives them ``cls`` instead
    (``recbole_famous.distributed.ShardSampler``: no duplicates, the single-process batches split between
    processes).

Fixes for the hyper-parameter search (``recbole_famous.tuning``):

13. ``recbole.trainer.hyper_tuning.exhaustive_search`` (``HyperTuning(algo="exhaustive")``) draws with
   ``np.random.RandomState(seed)``, but hyperopt >= 0.2.7 samples with numpy Generator methods (``rng.integers``),
   so the first draw raises AttributeError. ``exhaustive_search`` below runs RecBole's own function with a
   ``default_rng`` in place of ``RandomState`` for the call; ``recbole_famous.tuning`` uses it.
"""

from __future__ import annotations

import contextlib
import importlib
import os

import numpy as np

# Old numpy aliases of Python builtins that RecBole 1.2.1's own code still uses (fix 1).
_NUMPY_BUILTIN_ALIASES = {
    "float": float,
    "int": int,
    "bool": np.bool_,
    "complex": complex,
    "object": object,
    "str": str,
    "long": int,
    "unicode": str,
}

_applied = False


def apply() -> None:
    """Apply the process-wide fixes (idempotent). Cheap: imports numpy only."""
    global _applied
    if _applied:
        return
    for name, value in _NUMPY_BUILTIN_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
    quiet_recbole_warnings()
    _applied = True


def quiet_recbole_warnings() -> None:
    """Filter the two warnings RecBole 1.2.1 itself causes on every run (fix 8), by message, nothing wider."""
    import warnings

    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated",
                            category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"The given NumPy array is not writable", category=UserWarning)


def disable_import_time_anomaly_detection() -> None:
    """Import RecBole's sequential models without letting sine.py switch on anomaly detection (fix 2)."""
    import torch

    before = torch.is_anomaly_enabled()
    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(before)


def load_checkpoint(path, map_location=None):
    """Load a checkpoint written by RecBole's Trainer (fix 4): it pickles the Config, so weights_only=False."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)


def make_checkpoint_dir(config) -> None:
    """Fix 9: create ``config["checkpoint_dir"]`` race-free, so RecBole's check-then-create never runs makedirs."""
    os.makedirs(config["checkpoint_dir"], exist_ok=True)


@contextlib.contextmanager
def patched(obj, name, value):
    """Temporarily replace ``obj.name`` (used for narrowly scoped redirects, restored on exit)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def cpu_ddp(config):
    """Fix 10: while RecBole's Trainer is built, ``DistributedDataParallel`` gets no ``device_ids`` on CPU."""
    import torch

    if config["single_spec"] or torch.device(config["device"]).type != "cpu":
        yield
        return
    import recbole.trainer.trainer as rb_trainer

    ddp = rb_trainer.DistributedDataParallel

    def without_device_ids(module, device_ids=None, **kwargs):
        return ddp(module, **kwargs)

    with patched(rb_trainer, "DistributedDataParallel", without_device_ids):
        yield


class UserWeightedEvaluation:
    """Fix 11, a mixin for RecBole's Trainer: distributed metrics averaged over processes weighted by the number of
    users each evaluated (RecBole weights by batches). Only takes effect in distributed runs (``_map_reduce``)."""

    _eval_count = 0

    def evaluate(self, *args, **kwargs):
        self._eval_count = 0
        return super().evaluate(*args, **kwargs)

    def _full_sort_batch_eval(self, batched_data):
        out = super()._full_sort_batch_eval(batched_data)
        self._eval_count += int(out[1].shape[0])
        return out

    def _neg_sample_batch_eval(self, batched_data):
        out = super()._neg_sample_batch_eval(batched_data)
        self._eval_count += int(out[1].shape[0])
        return out

    def _map_reduce(self, result, num_sample):
        return super()._map_reduce(result, self._eval_count)


def distributed_sampler(sampler_class):
    """Fix 12: context in which RecBole's dataloaders build ``sampler_class`` instead of torch's
    DistributedSampler (RecBole reads ``torch.utils.data.distributed.DistributedSampler`` when it builds them)."""
    import torch.utils.data.distributed

    return patched(torch.utils.data.distributed, "DistributedSampler", sampler_class)


def exhaustive_search(new_ids, domain, trials, seed, nbMaxSucessiveFailures=1000):
    """Fix 13: RecBole's ``exhaustive_search`` (a hyperopt ``algo``), drawing with a numpy Generator."""
    import types

    from recbole.trainer import hyper_tuning

    shim = types.SimpleNamespace(random=types.SimpleNamespace(RandomState=np.random.default_rng))
    with patched(hyper_tuning, "np", shim):
        return hyper_tuning.exhaustive_search(new_ids, domain, trials, seed, nbMaxSucessiveFailures)


def tensorboard_in(directory: str):
    """Context in which RecBole's Trainer creates its SummaryWriter under ``directory`` (fix 6)."""
    import os

    import recbole.trainer.trainer as rb_trainer
    from torch.utils.tensorboard import SummaryWriter

    def _writer(logger):
        return SummaryWriter(os.path.join(directory, "tensorboard"))

    return patched(rb_trainer, "get_tensorboard", _writer)


def _make_sequential_dataset():
    from recbole.data.dataset import SequentialDataset as _RBSequentialDataset
    from recbole.utils import FeatureType

    class SequentialDataset(_RBSequentialDataset):
        """RecBole's SequentialDataset with its pandas-3 missing-value imputation fixed (fix 3)."""

        def _fill_nan(self):
            # Same imputation as RecBole's _fill_nan, written as assignments so that it takes effect on pandas 3.
            for feat_name in self.feat_name_list:
                feat = getattr(self, feat_name)
                for field in feat:
                    ftype = self.field2type[field]
                    if ftype == FeatureType.TOKEN:
                        feat[field] = feat[field].fillna(value=0)
                    elif ftype == FeatureType.FLOAT:
                        feat[field] = feat[field].fillna(value=feat[field].mean())
                    else:
                        dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                        feat[field] = feat[field].apply(
                            lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                        )

    return SequentialDataset


_sequential_dataset_cls = None


def sequential_dataset_class():
    """The fixed SequentialDataset class (built on first use so that importing this module stays cheap)."""
    global _sequential_dataset_cls
    if _sequential_dataset_cls is None:
        _sequential_dataset_cls = _make_sequential_dataset()
    return _sequential_dataset_cls
