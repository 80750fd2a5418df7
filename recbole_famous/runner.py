"""``run()``: one experiment as a short list of the public pipeline steps (``recbole_famous.pipeline``).

``build_config`` -> ``create_dataset`` -> ``data_preparation`` -> ``build_model`` -> ``get_trainer`` ->
``fit`` / ``evaluate`` -> a ``RunResult`` (``run_result.py``), also written as ``<results_dir>/<run_id>/result.json``
next to the run's log. What this module adds around the steps: the run's id, output folder and log, timings, and the result file.

Also here: ``run(..., resume=PATH)`` continues an interrupted run exactly; ``evaluate_checkpoint`` is
``--checkpoint=PATH --eval_only``. Checkpoints are ``<checkpoint_dir>/<run_id>.pth`` (best) and
``<run_id>.resume.pth`` (last validated epoch); see ``recbole_famous.checkpoint`` for what they hold and when one
is refused. With ``reproducibility: True`` (the protocol's default) torch's deterministic algorithms are switched on
for the run (``warn_only``), which matters on CUDA; on CPU the runs are bit-for-bit repeatable already.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import re
import sys
import time

from recbole_famous import checkpoint, pipeline
from recbole_famous.errors import NonFiniteLoss, TrainingInterrupted, UsageError
from recbole_famous.run_result import RunResult


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
    """Check the data, then open the run's output folder and logging (rank 0 writes run.log, other processes
    run.rank<k>.log); ``(output_dir, rank)``."""
    pipeline.check_dataset(config)
    output_dir = os.path.join(config["results_dir"] if "results_dir" in config else "results", run_id)
    os.makedirs(output_dir, exist_ok=True)
    rank = config["local_rank"] + (config["offset"] or 0 if not config["single_spec"] else 0)
    _init_logging(config, os.path.join(output_dir, "run.log" if rank == 0 else f"run.rank{rank}.log"))
    return output_dir, rank


def _log_data(data) -> None:
    """RecBole's summary of the dataset and its Table-1 statistics, before it is split."""
    logger = logging.getLogger()
    logger.info(data)
    _log_table1(data, logger)


def run(model=None, dataset=None, config_files=None, overrides=None, saved=True, *, resume=None, run_id=None,
        epoch_callback=None) -> RunResult:
    """Train, validate and test one model on one dataset; return (and write) its ``RunResult``.

    ``resume``: a checkpoint of an earlier run (its best ``.pth`` or its ``.resume.pth``); the run continues from
    it with the checkpoint's settings (``config_files`` / ``overrides`` on top may change only the budget,
    ``epochs`` and ``stopping_step``) and gives the result the uninterrupted run would have given.
    ``epoch_callback(epoch_idx, valid_score)`` is called after each validated epoch, once its checkpoints are
    written. ``run_id`` names the output folder and the checkpoint (distributed runs share one).

    Raises ``UsageError`` (bad input), ``TrainingInterrupted`` (SIGINT / SIGTERM; the checkpoints are kept, its
    message says how to resume) and ``NonFiniteLoss`` (a loss part went NaN / inf), all from ``errors``.
    """
    logger = logging.getLogger()
    resumed = best_file = None
    if resume:  # the checkpoint's settings, checked for resuming, before any data is read
        resume_file, best_file = checkpoint.resume_source(resume)
        resumed, config = pipeline.checkpoint_config(resume_file, model, dataset, config_files, overrides,
                                                     use="resume")
    else:
        config = pipeline.build_config(model, dataset, config_files, overrides)
    run_id = run_id or make_run_id(config["model"], config["dataset"])
    output_dir, rank = _start(config, run_id)
    t0 = time.perf_counter()
    if resumed is not None:  # its model and data, through the checkpoint's checks
        trained = pipeline.load_trained(resumed, config=config, on_data=_log_data)
        data, model_obj = trained.dataset, trained.model
        train_data, valid_data, test_data = trained.splits
        data_seconds = time.perf_counter() - t0
    else:
        pipeline.init_seed(config)
        data = pipeline.create_dataset(config)
        _log_data(data)
        train_data, valid_data, test_data = pipeline.data_preparation(config, data)
        data_seconds = time.perf_counter() - t0
        model_obj = pipeline.build_model(config, train_data._dataset)
    logger.info(model_obj)
    saved_model_file = best_file or os.path.join(config["checkpoint_dir"], f"{run_id}.pth")
    trainer = pipeline.get_trainer(config, model_obj, output_dir, saved_model_file, dataset=data, run_id=run_id)
    if resumed is not None:
        trainer.restore(resumed, train_data)

    result = RunResult(run_id, config["model"], config["dataset"], "running", output_dir,
                       config=dict(config.final_config_dict),
                       resumed_from=checkpoint.meta(resumed)["path"] if resumed is not None else None,
                       checkpoint=trainer.saved_model_file if saved else None,
                       resume_checkpoint=trainer.resume_file if saved else None)
    show = bool(config["show_progress"])
    with _determinism(config):
        t1 = time.perf_counter()
        try:
            best_valid_score, best_valid_result = trainer.fit(
                train_data, valid_data, saved=saved, show_progress=show, callback_fn=epoch_callback
            )
        except (TrainingInterrupted, NonFiniteLoss) as exc:
            result.status = "interrupted" if isinstance(exc, TrainingInterrupted) else "diverged"
            result.error, result.best_epoch = str(exc), trainer.best_epoch
            result.epochs_run, result.epoch_seconds = len(trainer.epoch_seconds), trainer.epoch_seconds
            if rank == 0:
                result.write()
            logger.warning(str(exc))
            raise
        fit_seconds = time.perf_counter() - t1
        t2 = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show)
        test_seconds = time.perf_counter() - t2

    result = dataclasses.replace(
        result, status="finished", best_epoch=trainer.best_epoch, best_valid_score=best_valid_score,
        valid_metric=config["valid_metric"], best_valid_result=dict(best_valid_result or {}),
        test_result=dict(test_result or {}), epochs_run=len(trainer.epoch_seconds),
        epoch_seconds=trainer.epoch_seconds, train_loss=trainer.train_loss, valid_scores=trainer.valid_scores,
        data_seconds=data_seconds, fit_seconds=fit_seconds, test_seconds=test_seconds, num_users=data.user_num,
        num_items=data.item_num, num_interactions=len(data.inter_feat),
        world_size=1 if config["single_spec"] else config["world_size"])
    if rank == 0:
        logger.info("result written to %s", result.write())
    return result


def evaluate_checkpoint(checkpoint_path, model=None, dataset=None, config_files=None, overrides=None,
                        run_id=None) -> RunResult:
    """``eval --checkpoint=PATH`` (``--checkpoint=PATH --eval_only``): evaluate a saved model on the validation and
    test splits, no training.

    The model is loaded by ``pipeline.load_trained`` (use ``eval``): the config is the checkpoint's own (its
    stored settings), with ``config_files`` and ``overrides`` on top; a model or dataset other than the
    checkpoint's, or a change of anything but environment, training-only and inference-time keys (metrics, topk,
    ``eval_top_k``, ``force_expert``, ...), is refused with a ``UsageError`` naming what differs; so is a dataset
    whose items or size changed since.
    """
    logger = logging.getLogger()
    ckpt, config = pipeline.checkpoint_config(checkpoint_path, model, dataset, config_files, overrides, use="eval")
    if not config["single_spec"]:
        raise UsageError("--eval_only runs in one process (drop nproc / world_size)")
    run_id = run_id or make_run_id(config["model"], config["dataset"]) + "-eval"
    output_dir, _ = _start(config, run_id)
    t0 = time.perf_counter()
    trained = pipeline.load_trained(ckpt, config=config)
    data_seconds = time.perf_counter() - t0
    meta = trained.meta
    logger.info(f"evaluating checkpoint {meta['path']} (epoch {ckpt.get('epoch')})")
    trainer = pipeline.get_trainer(config, trained.model, output_dir, saved_model_file=meta["path"])
    show = bool(config["show_progress"])
    with _determinism(config):
        t1 = time.perf_counter()
        valid_result = trainer.evaluate(trained.valid_data, load_best_model=False, show_progress=show)
        test_result = trainer.evaluate(trained.test_data, load_best_model=False, show_progress=show)
        test_seconds = time.perf_counter() - t1
    data = trained.dataset
    result = RunResult(
        run_id, config["model"], config["dataset"], "evaluated", output_dir, config=dict(config.final_config_dict),
        eval_only=True, checkpoint=meta["path"], checkpoint_epoch=ckpt.get("epoch"),
        best_epoch=meta.get("best_epoch", ckpt.get("epoch")), valid_metric=config["valid_metric"],
        best_valid_result=dict(valid_result or {}), test_result=dict(test_result or {}),
        epochs_run=len(meta.get("epoch_seconds") or []), epoch_seconds=list(meta.get("epoch_seconds") or []),
        data_seconds=data_seconds, test_seconds=test_seconds, num_users=data.user_num, num_items=data.item_num,
        num_interactions=len(data.inter_feat))
    result.write()
    return result


def run_reference_rules(result: RunResult, config_files=None, overrides=None) -> list[RunResult]:
    """The no-training reference rules named by the run's ``reference_rules`` key (the default job sets it:
    ``props/default_job.yaml``), each run on the same dataset, config and split as ``result``, one pass, no
    checkpoint kept: a yardstick for the run's metrics. Empty when the key is empty or the run is itself a rule."""
    names = list((result.config or {}).get("reference_rules") or [])
    if result.model in names:
        return []
    quiet = {**dict(overrides or {}), "state": "WARNING", "show_progress": False}
    return [run(name, result.dataset, config_files, quiet, saved=False) for name in names]


def format_reference_table(result: RunResult, references: list[RunResult], metrics=("ndcg@10", "hit@10")) -> str:
    """Test metrics of ``result`` and of each reference rule's run, one line per model."""
    if not references:
        return ""
    width = max(len(r.model) for r in [result, *references]) + 2
    lines = [f"reference rules on the same split (they train nothing; test metrics):",
             f"{'model':<{width}}" + "".join(f"{m:>10}" for m in metrics)]
    for r in [*references, result]:
        lines.append(f"{r.model:<{width}}" + "".join(f"{r.test_result.get(m, float('nan')):>10.4f}"
                                                        for m in metrics))
    return "\n".join(lines)


def format_result_table(result: RunResult) -> str:
    """The final table: one row per metric, best-validation and test columns."""
    valid, test = result.best_valid_result, result.test_result
    metrics = list(test) or list(valid)
    width = max([len(m) for m in metrics] + [6])
    if result.eval_only:
        head = f"{result.model} on {result.dataset}: checkpoint {result.checkpoint} (best epoch {result.best_epoch})"
        lines = [head, f"{'metric':<{width}}  {'valid':>8}  {'test':>8}"]
        for m in metrics:
            lines.append(f"{m:<{width}}  {valid.get(m, float('nan')):>8.4f}  {test.get(m, float('nan')):>8.4f}")
        lines.append(f"result: {result.path}")
        return "\n".join(lines)
    lines = [
        f"{result.model} on {result.dataset}: best epoch {result.best_epoch} "
        f"of {result.epochs_run} ({result.valid_metric}), "
        f"{sum(result.epoch_seconds) / max(1, len(result.epoch_seconds)):.1f} s per training epoch",
        f"{'metric':<{width}}  {'valid':>8}  {'test':>8}",
    ]
    for m in metrics:
        v = valid.get(m)
        lines.append(f"{m:<{width}}  {v if v is not None else float('nan'):>8.4f}  {test.get(m, float('nan')):>8.4f}")
    lines.append(f"result: {result.path}")
    return "\n".join(lines)
