"""``run()``: one experiment through RecBole's own pipeline, with the plugin's config layering.

config (``recbole_famous.config``) -> dataset (RecBole, pandas-3 fixed) -> split dataloaders (RecBole) ->
model (plugin first, then RecBole) -> ``Trainer.fit`` / ``evaluate`` (RecBole's, checkpoint loading fixed) ->
a result dict, also written as ``<results_dir>/<run_id>/result.json`` next to the run's log.
"""

from __future__ import annotations

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


def run(model=None, dataset=None, config_files=None, overrides=None, saved=True) -> dict:
    """Train, validate and test one model on one dataset; return (and write) the result dict."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_famous.trainer import Trainer

    config = build_config(model, dataset, config_files, overrides)
    _check_dataset(config)
    run_id = f"{config['model']}-{config['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    output_dir = os.path.join(config["results_dir"] if "results_dir" in config else "results", run_id)
    os.makedirs(output_dir, exist_ok=True)
    _init_logging(config, os.path.join(output_dir, "run.log"))
    logger = logging.getLogger()
    init_seed(config["seed"], config["reproducibility"])

    t0 = time.perf_counter()
    data = _create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    data_seconds = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = config.model_class(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)
    trainer = Trainer(config, model_obj, output_dir)

    best = {"epoch": None, "score": None}

    def _track(epoch_idx, valid_score):  # RecBole's early_stopping rule: ties update the best
        better = best["score"] is None or (
            valid_score >= best["score"] if config["valid_metric_bigger"] else valid_score <= best["score"]
        )
        if better:
            best.update(epoch=epoch_idx, score=valid_score)

    show = bool(config["show_progress"])
    t1 = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=show, callback_fn=_track
    )
    fit_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show)
    test_seconds = time.perf_counter() - t2

    result = {
        "run_id": run_id,
        "model": config["model"],
        "dataset": config["dataset"],
        "best_epoch": best["epoch"],
        "best_valid_score": best_valid_score,
        "valid_metric": config["valid_metric"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result or {}),
        "epochs_run": len(trainer.epoch_seconds),
        "epoch_seconds": trainer.epoch_seconds,
        "data_seconds": data_seconds,
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        "num_users": data.user_num,
        "num_items": data.item_num,
        "num_interactions": len(data.inter_feat),
        "checkpoint": trainer.saved_model_file if saved else None,
        "output_dir": output_dir,
        "config": {k: v for k, v in config.final_config_dict.items()},
    }
    _write_json(os.path.join(output_dir, "result.json"), result)
    logger.info("result written to %s", os.path.join(output_dir, "result.json"))
    return result


def format_result_table(result: dict) -> str:
    """The final table: one row per metric, best-validation and test columns."""
    valid, test = result["best_valid_result"], result["test_result"]
    metrics = list(test) or list(valid)
    width = max([len(m) for m in metrics] + [6])
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
