"""``run()``: one experiment through RecBole's own pipeline, with the plugin's config layering.

config (``recbole_famous.config``) -> dataset (RecBole, pandas-3 fixed) -> split dataloaders (RecBole; sharded by
``recbole_famous.distributed`` in multi-process runs) -> model (plugin first, then RecBole) -> ``Trainer.fit`` /
``evaluate`` (``recbole_famous.trainer``) -> a result dict, also written as ``<results_dir>/<run_id>/result.json``
next to the run's log.

Also here: ``run(..., resume=PATH)`` continues an interrupted run exactly; ``evaluate_checkpoint`` is
``--checkpoint=PATH --eval_only``. Checkpoints are ``<checkpoint_dir>/<run_id>.pth`` (best) and
``<run_id>.resume.pth`` (last validated epoch); see ``recbole_famous.checkpoint`` for what they hold and when one
is refused. With ``reproducibility: True`` (the protocol's default) torch's deterministic algorithms are switched on
for the run (``warn_only``), which matters on CUDA; on CPU the runs are bit-for-bit repeatable already.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import sys
import time

from recbole_famous.config import Config, PROPS_DIR
from recbole_famous.errors import UsageError

DEFAULT_DATASET = "ml-100k"
DEFAULT_JOB_CONFIG = os.path.join(PROPS_DIR, "default_job.yaml")


def default_model() -> str:
    """FamouSRec when it is available, else SASRec."""
    from recbole_famous.config import plugin_model_names

    return "FamouSRec" if "FamouSRec" in plugin_model_names() else "SASRec"


def build_config(model=None, dataset=None, config_files=None, overrides=None) -> Config:
    """The layered Config, with RecBole's own complaints turned into one-line ``UsageError``s."""
    try:
        config = Config(model or default_model(), dataset or DEFAULT_DATASET, list(config_files or []), dict(overrides or {}))
    except UsageError:
        raise
    except (ValueError, KeyError, NotImplementedError, TypeError) as exc:
        raise UsageError(f"invalid configuration: {exc}") from None
    _check_metrics(config)
    return config


def _check_metrics(config) -> None:
    from recbole.evaluator import metric_types

    unknown = [m for m in config["metrics"] if m.lower() not in metric_types]
    if unknown:
        raise UsageError(f"unknown metric(s) {unknown}; known: {sorted(metric_types)}")
    name = config["valid_metric"].split("@")[0].lower()
    if name not in metric_types:
        raise UsageError(f"unknown valid_metric '{config['valid_metric']}'")


def _check_dataset(config) -> None:
    inter = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    if os.path.isfile(inter):
        return
    try:
        from recbole_famous.data import ensure_prepared
    except ImportError:
        ensure_prepared = None
    if ensure_prepared is not None:
        try:
            ensure_prepared(config["dataset"], os.path.dirname(config["data_path"].rstrip("/")), config["source_path"] if "source_path" in config else None)
        except Exception as exc:  # the data package's own errors carry the fix in one line
            raise UsageError(str(exc)) from None
        if os.path.isfile(inter):
            return
    raise UsageError(
        f"dataset '{config['dataset']}' not found: no file {inter}. Prepare it with "
        f"`python -m recbole_famous.data prepare {config['dataset']} --source PATH`, or set data_path."
    )


class _NoColor(logging.Filter):
    _ansi = re.compile(r"\x1b\[[0-9;]*m")

    def filter(self, record):
        record.msg = self._ansi.sub("", str(record.msg))
        return True


def _init_logging(config, log_file: str) -> None:
    """Root-logger handlers for this run (RecBole logs through the root logger); replaces ``./log/``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_recbole_famous", False):
            root.removeHandler(handler)
            handler.close()
    level = logging.getLevelName(str(config["state"]).upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(log_file, encoding="utf-8")):
        handler.setFormatter(fmt)
        handler._recbole_famous = True
        if isinstance(handler, logging.FileHandler):
            handler.addFilter(_NoColor())
        root.addHandler(handler)


def _create_dataset(config):
    from recbole.data import create_dataset
    from recbole.utils import ModelType

    from recbole_famous import compat

    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        return compat.sequential_dataset_class()(config)
    return create_dataset(config)


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def _log_table1(data, logger) -> None:
    """The paper's Table-1 statistics of the dataset, as converted and after RecBole's filtering (info level)."""
    from recbole_famous.data.stats import describe

    try:
        logger.info("dataset statistics (Table 1 layout):\n%s", describe(data))
    except (OSError, ValueError, KeyError) as exc:  # statistics are informative only; never stop a run for them
        logger.warning("could not compute the dataset statistics: %s", exc)


_RUNS_IN_THIS_PROCESS = itertools.count()


def make_run_id(model: str, dataset: str) -> str:
    """``<model>-<dataset>-<date>-<time>-<pid>``, plus ``-<n>`` for the n-th later run of this process, so two runs
    of one model started in the same second by one process never share an output folder or a checkpoint."""
    n = next(_RUNS_IN_THIS_PROCESS)
    return f"{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" + (f"-{n}" if n else "")


@contextlib.contextmanager
def _determinism(config):
    """With ``reproducibility: True``, also ask torch for deterministic kernels (``warn_only``: an op without one
    warns instead of failing). On CPU our models already are; on CUDA this covers the embedding and index_add
    backward passes (atomics), and cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG``. Restored afterwards."""
    import torch

    if not config["reproducibility"]:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if torch.device(config["device"]).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _start(config, run_id):
    """The run's output folder and logging (rank 0 writes run.log, other processes run.rank<k>.log)."""
    output_dir = os.path.join(config["results_dir"] if "results_dir" in config else "results", run_id)
    os.makedirs(output_dir, exist_ok=True)
    rank = config["local_rank"] + (config["offset"] or 0 if not config["single_spec"] else 0)
    _init_logging(config, os.path.join(output_dir, "run.log" if rank == 0 else f"run.rank{rank}.log"))
    return output_dir, rank


def _meta(config, data, run_id) -> dict:
    import recbole
    import torch

    from recbole_famous import __version__, checkpoint

    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "run_id": run_id,
        "settings": checkpoint.settings_of(config),
        "fingerprint": checkpoint.fingerprint(config),
        "data": checkpoint.data_summary(data),
        "versions": {"recbole_famous": __version__, "recbole": recbole.__version__, "torch": torch.__version__},
    }


def _load_for_resume(path: str):
    """The state to resume from: the run's ``.resume.pth`` (last validated epoch) when it exists, else the best
    checkpoint itself (which holds the full state of its epoch)."""
    from recbole_famous import checkpoint

    best, resume_file = checkpoint.companion_paths(path)
    if not os.path.isfile(best) and not os.path.isfile(resume_file):
        raise UsageError(f"checkpoint not found: {path}")
    ckpt = checkpoint.load(resume_file if os.path.isfile(resume_file) else best)
    return ckpt, best


def run(model=None, dataset=None, config_files=None, overrides=None, saved=True, *, resume=None, run_id=None,
        epoch_callback=None) -> dict:
    """Train, validate and test one model on one dataset; return (and write) the result dict.

    ``resume``: a checkpoint of an earlier run (its best ``.pth`` or its ``.resume.pth``); the run continues from
    it with the checkpoint's settings (``config_files`` / ``overrides`` on top may change only the budget,
    ``epochs`` and ``stopping_step``) and gives the result the uninterrupted run would have given.
    ``epoch_callback(epoch_idx, valid_score)`` is called after each validated epoch, once its checkpoints are
    written. ``run_id`` names the output folder and the checkpoint (distributed runs share one).

    Raises ``UsageError`` (bad input), ``trainer.TrainingInterrupted`` (SIGINT / SIGTERM; the checkpoints are
    kept, its message says how to resume) and ``trainer.NonFiniteLoss`` (a loss part went NaN / inf).
    """
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_famous import checkpoint, distributed
    from recbole_famous.data import length_batches
    from recbole_famous.trainer import NonFiniteLoss, Trainer, TrainingInterrupted

    resumed, best_file = None, None
    if resume:
        resumed, best_file = _load_for_resume(resume)
        model, dataset, config_files, overrides = checkpoint.rebuild_inputs(resumed, model, dataset, config_files, overrides)
    config = build_config(model, dataset, config_files, overrides)
    if resumed is not None:
        checkpoint.check_compatible(resumed, config, "resume")
    _check_dataset(config)
    run_id = run_id or make_run_id(config["model"], config["dataset"])
    output_dir, rank = _start(config, run_id)
    logger = logging.getLogger()
    init_seed(config["seed"], config["reproducibility"])

    t0 = time.perf_counter()
    data = _create_dataset(config)
    logger.info(data)
    _log_table1(data, logger)
    with distributed.sharding(config):
        train_data, valid_data, test_data = data_preparation(config, data)
        train_data = length_batches.regroup(config, train_data)  # length-grouped batches where exact (issue 13)
    if resumed is not None:
        checkpoint.check_data(resumed, data)
    distributed.attach(config, train_data)
    data_seconds = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = config.model_class(config, train_data._dataset).to(config["device"])
    length_batches.split_encoder(config, model_obj)  # length-split encoding where exact (issue 13)
    logger.info(model_obj)
    saved_model_file = best_file or os.path.join(config["checkpoint_dir"], f"{run_id}.pth")
    trainer = Trainer(config, model_obj, output_dir, saved_model_file, meta=_meta(config, data, run_id))
    if resumed is not None:
        checkpoint.check_state_dict(resumed, model_obj)
        trainer.restore(resumed, train_data)

    result = {
        "run_id": run_id,
        "model": config["model"],
        "dataset": config["dataset"],
        "status": "running",
        "resumed_from": checkpoint.meta(resumed)["path"] if resumed is not None else None,
        "output_dir": output_dir,
        "checkpoint": trainer.saved_model_file if saved else None,
        "resume_checkpoint": trainer.resume_file if saved else None,
        "config": {k: v for k, v in config.final_config_dict.items()},
    }
    show = bool(config["show_progress"])
    with _determinism(config):
        t1 = time.perf_counter()
        try:
            best_valid_score, best_valid_result = trainer.fit(
                train_data, valid_data, saved=saved, show_progress=show, callback_fn=epoch_callback
            )
        except (TrainingInterrupted, NonFiniteLoss) as exc:
            if isinstance(exc, TrainingInterrupted):
                resumable = saved and (os.path.isfile(trainer.resume_file) or os.path.isfile(trainer.saved_model_file))
                exc.detail = (
                    f"{exc} after {trainer.epochs_done} completed epoch(s)"
                    + (
                        f"; best checkpoint kept: {trainer.saved_model_file} (epoch {trainer.best_epoch}); "
                        f"continue with --resume={trainer.saved_model_file}"
                        if resumable
                        else "; no checkpoint had been saved yet"
                    )
                )
                result["status"] = "interrupted"
            else:
                result["status"] = "diverged"
            result.update(error=str(exc), epochs_run=len(trainer.epoch_seconds), epoch_seconds=trainer.epoch_seconds,
                          best_epoch=trainer.best_epoch)
            if rank == 0:
                _write_json(os.path.join(output_dir, "result.json"), result)
            logger.warning(str(exc))
            raise
        fit_seconds = time.perf_counter() - t1
        t2 = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show)
        test_seconds = time.perf_counter() - t2

    result.update({
        "status": "finished",
        "best_epoch": trainer.best_epoch,
        "best_valid_score": best_valid_score,
        "valid_metric": config["valid_metric"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result or {}),
        "epochs_run": len(trainer.epoch_seconds),
        "epoch_seconds": trainer.epoch_seconds,
        "train_loss": trainer.train_loss,
        "valid_scores": trainer.valid_scores,
        "data_seconds": data_seconds,
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        "num_users": data.user_num,
        "num_items": data.item_num,
        "num_interactions": len(data.inter_feat),
        "world_size": 1 if config["single_spec"] else config["world_size"],
    })
    if rank == 0:
        _write_json(os.path.join(output_dir, "result.json"), result)
        logger.info("result written to %s", os.path.join(output_dir, "result.json"))
    return result


def evaluate_checkpoint(checkpoint_path, model=None, dataset=None, config_files=None, overrides=None,
                        run_id=None) -> dict:
    """``--checkpoint=PATH --eval_only``: evaluate a saved model on the validation and test splits, no training.

    The config is the checkpoint's own (its stored settings), with ``config_files`` and ``overrides`` on top;
    a model or dataset other than the checkpoint's, or a change of anything but environment, training-only and
    inference-time keys (metrics, topk, ``eval_top_k``, ``force_expert``, ...), is refused with a ``UsageError``
    naming what differs; so is a dataset whose items or size changed since.
    """
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_famous import checkpoint
    from recbole_famous.trainer import Trainer

    ckpt = checkpoint.load(checkpoint_path)
    model, dataset, config_files, overrides = checkpoint.rebuild_inputs(ckpt, model, dataset, config_files, overrides)
    config = build_config(model, dataset, config_files, overrides)
    checkpoint.check_compatible(ckpt, config, "eval")
    if not config["single_spec"]:
        raise UsageError("--eval_only runs in one process (drop nproc / world_size)")
    _check_dataset(config)
    run_id = run_id or make_run_id(config["model"], config["dataset"]) + "-eval"
    output_dir, _ = _start(config, run_id)
    logger = logging.getLogger()
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    data = _create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    checkpoint.check_data(ckpt, data)
    data_seconds = time.perf_counter() - t0
    model_obj = config.model_class(config, train_data._dataset).to(config["device"])
    checkpoint.check_state_dict(ckpt, model_obj)
    model_obj.load_state_dict(ckpt["state_dict"])
    model_obj.load_other_parameter(ckpt.get("other_parameter"))
    meta = checkpoint.meta(ckpt)
    logger.info(f"evaluating checkpoint {meta['path']} (epoch {ckpt.get('epoch')})")
    trainer = Trainer(config, model_obj, output_dir, saved_model_file=meta["path"])
    show = bool(config["show_progress"])
    with _determinism(config):
        t1 = time.perf_counter()
        valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=show)
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=show)
        test_seconds = time.perf_counter() - t1
    result = {
        "run_id": run_id,
        "model": config["model"],
        "dataset": config["dataset"],
        "status": "evaluated",
        "eval_only": True,
        "checkpoint": meta["path"],
        "checkpoint_epoch": ckpt.get("epoch"),
        "best_epoch": meta.get("best_epoch", ckpt.get("epoch")),
        "valid_metric": config["valid_metric"],
        "best_valid_result": dict(valid_result or {}),
        "test_result": dict(test_result or {}),
        "epochs_run": len(meta.get("epoch_seconds") or []),
        "epoch_seconds": list(meta.get("epoch_seconds") or []),
        "data_seconds": data_seconds,
        "test_seconds": test_seconds,
        "num_users": data.user_num,
        "num_items": data.item_num,
        "num_interactions": len(data.inter_feat),
        "output_dir": output_dir,
        "config": {k: v for k, v in config.final_config_dict.items()},
    }
    _write_json(os.path.join(output_dir, "result.json"), result)
    return result


def format_result_table(result: dict) -> str:
    """The final table: one row per metric, best-validation and test columns."""
    valid, test = result["best_valid_result"], result["test_result"]
    metrics = list(test) or list(valid)
    width = max([len(m) for m in metrics] + [6])
    if result.get("eval_only"):
        head = f"{result['model']} on {result['dataset']}: checkpoint {result['checkpoint']} (best epoch {result['best_epoch']})"
        lines = [head, f"{'metric':<{width}}  {'valid':>8}  {'test':>8}"]
        for m in metrics:
            lines.append(f"{m:<{width}}  {valid.get(m, float('nan')):>8.4f}  {test.get(m, float('nan')):>8.4f}")
        lines.append(f"result: {os.path.join(result['output_dir'], 'result.json')}")
        return "\n".join(lines)
    lines = [
        f"{result['model']} on {result['dataset']}: best epoch {result['best_epoch']} "
        f"of {result['epochs_run']} ({result['valid_metric']}), "
        f"{sum(result['epoch_seconds']) / max(1, len(result['epoch_seconds'])):.1f} s per training epoch",
        f"{'metric':<{width}}  {'valid':>8}  {'test':>8}",
    ]
    for m in metrics:
        v = valid.get(m)
        lines.append(f"{m:<{width}}  {v if v is not None else float('nan'):>8.4f}  {test.get(m, float('nan')):>8.4f}")
    lines.append(f"result: {os.path.join(result['output_dir'], 'result.json')}")
    return "\n".join(lines)
