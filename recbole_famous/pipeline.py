"""The public steps of an experiment, named like RecBole's own (``recbole.quick_start``), that the runner, the
evaluation of a checkpoint, serving, the benchmark and the scripts in ``benchmarks/`` are built from::

    config = build_config("FamouSRec", "Instruments", ["my.yaml"], {"epochs": 5})
    init_seed(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = build_model(config, train_data._dataset)  # RecBole's dataset of the dataloader
    trainer = get_trainer(config, model, output_dir="results/x", dataset=dataset)
    trainer.fit(train_data, valid_data); trainer.evaluate(test_data)

and the one way to load a trained model: ``load_trained(path)``, always through the checkpoint's checks (same
model and dataset, a compatible config, the same item vocabulary, parameter names and shapes; see
``recbole_famous.checkpoint``).

Below this module: ``config`` (layering), ``trainer``, ``checkpoint``, ``distributed`` (sharded dataloaders in
multi-process runs), then the models, the data layer and ``compat``. Above it: ``runner`` (``run``,
``evaluate_checkpoint``), ``serving``, ``bench``, ``launch`` and the command line.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from recbole_famous import checkpoint, compat, distributed
from recbole_famous.config import PROPS_DIR, Config, plugin_model_names
from recbole_famous.data import length_batches
from recbole_famous.errors import UsageError
from recbole_famous.trainer import Trainer

DEFAULT_MODEL = "FamouSRec"
DEFAULT_DATASET = "ml-100k"
DEFAULT_JOB_CONFIG = os.path.join(PROPS_DIR, "default_job.yaml")


def default_model() -> str:
    """The model a job runs when none is named."""
    if DEFAULT_MODEL not in plugin_model_names():  # the package is incomplete, not a reason to run another model
        raise UsageError(f"the default model {DEFAULT_MODEL} is not available; name one with --model")
    return DEFAULT_MODEL


# ---- config ------------------------------------------------------------------------------------
def build_config(model=None, dataset=None, config_files=None, overrides=None) -> Config:
    """The layered Config (``recbole_famous.config``), with RecBole's own complaints turned into one-line
    ``UsageError``s and the metric names checked."""
    try:
        config = Config(model or default_model(), dataset or DEFAULT_DATASET, list(config_files or []),
                        dict(overrides or {}))
    except UsageError:
        raise
    except (ValueError, KeyError, NotImplementedError, TypeError) as exc:
        raise UsageError(f"invalid configuration: {exc}") from None
    check_metrics(config)
    return config


def check_metrics(config) -> None:
    """``UsageError`` for a metric or validation metric RecBole does not know."""
    from recbole.evaluator import metric_types

    unknown = [m for m in config["metrics"] if m.lower() not in metric_types]
    if unknown:
        raise UsageError(f"unknown metric(s) {unknown}; known: {sorted(metric_types)}")
    name = config["valid_metric"].split("@")[0].lower()
    if name not in metric_types:
        raise UsageError(f"unknown valid_metric '{config['valid_metric']}'")


def init_seed(config, offset: int = 0) -> None:
    """RecBole's ``init_seed`` with the config's ``seed`` (+ ``offset``) and ``reproducibility``."""
    from recbole.utils import init_seed as recbole_init_seed

    recbole_init_seed(config["seed"] + offset, config["reproducibility"])


# ---- data --------------------------------------------------------------------------------------
def check_dataset(config) -> None:
    """The dataset's atomic ``.inter`` file must exist: prepared on demand when the data layer knows the
    dataset and its source (``recbole_famous.data.ensure_prepared``), else a ``UsageError`` saying how."""
    inter = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    if os.path.isfile(inter):
        return
    from recbole_famous.data import ensure_prepared

    try:
        ensure_prepared(config["dataset"], os.path.dirname(config["data_path"].rstrip("/")),
                        config["source_path"] if "source_path" in config else None)
    except Exception as exc:  # the data package's own errors carry the fix in one line
        raise UsageError(str(exc)) from None
    if os.path.isfile(inter):
        return
    raise UsageError(
        f"dataset '{config['dataset']}' not found: no file {inter}. Prepare it with "
        f"`python -m recbole_famous.data prepare {config['dataset']} --source PATH`, or set data_path."
    )


def create_dataset(config):
    """RecBole's dataset for the config; sequential models get the pandas-3-fixed SequentialDataset (compat 3)."""
    from recbole.data import create_dataset as recbole_create_dataset
    from recbole.utils import ModelType

    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        return compat.sequential_dataset_class()(config)
    return recbole_create_dataset(config)


def data_preparation(config, dataset):
    """RecBole's ``data_preparation``: the (train, valid, test) dataloaders. In a multi-process run their
    samplers shard each global batch of the single-process order (``recbole_famous.distributed``)."""
    from recbole.data import data_preparation as recbole_data_preparation

    with distributed.sharding(config):
        train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
        train_data = length_batches.regroup(config, train_data)  # length-grouped batches when asked (issue 13)
    distributed.attach(config, train_data)
    return train_data, valid_data, test_data


# ---- model and trainer -------------------------------------------------------------------------
def build_model(config, dataset):
    """The config's model class on ``dataset`` (RecBole's dataset, or anything with the counts the model's
    constructor reads), seeded with ``seed + local_rank`` as RecBole's quick start does, on the config's device."""
    init_seed(config, config["local_rank"])
    # the encoder on length-sorted parts of each batch (issue 13): a subclass, when length_split asks for it
    model_class, _ = length_batches.split_model_class(config, config.model_class)
    return model_class(config, dataset).to(config["device"])


def model_device(model):
    """The device a model's tensors are on: its parameters', else its buffers' (a reference rule has no
    parameters), else the CPU."""
    import torch

    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def checkpoint_meta(config, dataset=None, run_id: str | None = None) -> dict:
    """What every checkpoint of a run carries besides the weights (see ``recbole_famous.checkpoint``): model and
    dataset names, the settings and fingerprint of the config, the summary of ``dataset`` (RecBole's whole dataset,
    as created, so ``load_trained`` can check it; none without one), the versions."""
    import recbole
    import torch

    from recbole_famous import __version__

    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "run_id": run_id,
        "settings": checkpoint.settings_of(config),
        "fingerprint": checkpoint.fingerprint(config),
        "data": checkpoint.data_summary(dataset) if dataset is not None else None,
        "versions": {"recbole_famous": __version__, "recbole": recbole.__version__, "torch": torch.__version__},
    }


def get_trainer(config, model, output_dir: str, saved_model_file: str | None = None, dataset=None,
                run_id: str | None = None):
    """The plugin's Trainer (``recbole_famous.trainer``): its checkpoints under ``saved_model_file`` (default
    RecBole's name in ``checkpoint_dir``), each with ``checkpoint_meta(config, dataset, run_id)``, so
    ``load_trained`` can load them; its tensorboard events under ``output_dir``."""
    return Trainer(config, model, output_dir, saved_model_file, meta=checkpoint_meta(config, dataset, run_id))


# ---- a trained model ---------------------------------------------------------------------------
@dataclass
class Trained:
    """A model loaded from a checkpoint, with what it was built from."""

    config: object
    model: object
    checkpoint: dict  # the checkpoint dict (``checkpoint.load``), its metadata under ``checkpoint.meta(...)``
    dataset: object = None  # RecBole's dataset and its dataloaders, None when loaded without data
    train_data: object = None
    valid_data: object = None
    test_data: object = None

    @property
    def meta(self) -> dict:
        return checkpoint.meta(self.checkpoint)

    @property
    def splits(self) -> tuple:
        return self.train_data, self.valid_data, self.test_data


def checkpoint_config(path_or_checkpoint, model=None, dataset=None, config_files=None, overrides=None, *,
                      use: str = "eval") -> tuple:
    """``(checkpoint, config)``: a checkpoint and the config it is used with, checked for ``use``, before any data is
    read. The config is the checkpoint's own (its stored settings), with ``config_files`` and ``overrides`` on top;
    ``model`` / ``dataset``, when given, must be the checkpoint's. ``use`` is what for: ``"eval"`` (evaluation,
    serving, analyses: inference-time and training-only keys may change) or ``"resume"`` (only the budget may
    change); see ``checkpoint.check_compatible``."""
    ckpt = path_or_checkpoint if isinstance(path_or_checkpoint, dict) else checkpoint.load(path_or_checkpoint)
    model, dataset, config_files, overrides = checkpoint.rebuild_inputs(ckpt, model, dataset, config_files, overrides)
    config = build_config(model, dataset, config_files, overrides)
    checkpoint.check_compatible(ckpt, config, use)
    return ckpt, config


def load_trained(path_or_checkpoint, model=None, dataset=None, config_files=None, overrides=None, *,
                 use: str = "eval", with_data: bool = True, data: Trained | None = None, config=None,
                 on_config=None, on_data=None) -> Trained:
    """Load a trained model, always through the checkpoint's checks; the only place the project does.

    The config and its checks are ``checkpoint_config``'s (``config``: one it returned for this checkpoint, when
    the caller needed it before the data, as the runner does to open its log). Then the dataset is loaded and must
    be the one the model was trained on (``check_data``), and the parameter names and shapes must fit
    (``check_state_dict``).

    ``with_data=False`` builds the model from the item counts the checkpoint holds, without reading the dataset,
    when the model's constructor needs nothing more (serving); ``data`` reuses the dataset and dataloaders of an
    earlier ``Trained`` of the same checkpoint (e.g. the same model under another ``force_expert``).
    ``on_config(config)`` is called once the config is built and checked, before any data is read (serving
    refuses non-sequential models there); ``on_data(dataset)`` once RecBole's dataset is created, before it is
    split (the runner logs its statistics there).
    """
    if config is None:
        ckpt, config = checkpoint_config(path_or_checkpoint, model, dataset, config_files, overrides, use=use)
    elif isinstance(path_or_checkpoint, dict):
        ckpt = path_or_checkpoint
    else:
        raise TypeError("load_trained(config=...) takes the checkpoint dict that checkpoint_config returned")
    if on_config is not None:
        on_config(config)
    trained = Trained(config, None, ckpt)
    summary = checkpoint.meta(ckpt).get("data")
    if data is None and not with_data and summary:
        try:
            trained.model = build_model(config, checkpoint.ItemCounts(summary))
        except AttributeError:  # the model reads more of the dataset than its item count: load it
            pass
    if trained.model is None:
        if data is not None:
            trained.dataset, trained.train_data, trained.valid_data, trained.test_data = (
                data.dataset, data.train_data, data.valid_data, data.test_data)
        else:
            check_dataset(config)
            init_seed(config)
            trained.dataset = create_dataset(config)
            if on_data is not None:
                on_data(trained.dataset)
            trained.train_data, trained.valid_data, trained.test_data = data_preparation(config, trained.dataset)
        checkpoint.check_data(ckpt, trained.dataset)
        trained.model = build_model(config, trained.train_data._dataset)
    checkpoint.load_into(trained.model, ckpt)
    return trained
