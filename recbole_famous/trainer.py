"""RecBole's Trainer, extended only where this project needs it.

- Loads its own checkpoints with ``weights_only=False`` (torch >= 2.6 default breaks RecBole's, compat fix 4).
- Records the wall-clock seconds of every training epoch (``epoch_seconds``) for the run's result file.
- Writes its tensorboard events under the run's output folder instead of ``./log_tensorboard`` (compat fix 6).
- Checkpoints (``recbole_famous.checkpoint``): every save is atomic and carries the metadata and the full
  training state (optimizer, counters, random states); after every validated epoch the state is also written to
  ``<best>.resume.pth``, so ``restore`` + ``fit`` continue a run exactly where it stopped.
- SIGINT / SIGTERM during ``fit`` raise ``TrainingInterrupted`` (deferred while a checkpoint is being written, so
  the files on disk are always whole).
- Numerical safety: every loss part and the gradients are checked before the optimizer steps; a non-finite one
  stops training with ``NonFiniteLoss`` naming the part (``model.loss_names`` when the model has it), and the
  parameters are never updated with it, so the last checkpoint stays the last good one.
- Distributed mode: RecBole's patches for it are in ``compat`` (fix 10: DistributedDataParallel without
  ``device_ids`` on CPU; fix 11: metrics reduced over processes weighted by users, not batches).
- Models that train nothing (``model.rules.is_one_pass``: the plugin's reference rules, RecBole's traditional Pop
  and ItemKNN) take one pass over the training split, as RecBole's ``TraditionalTrainer`` runs them: one epoch
  whatever ``epochs`` says, no optimiser step; a rule's ``fit_pass`` reads the split once, RecBole's models count in
  ``calculate_loss`` batch by batch.
- ``TrainingInterrupted`` and ``NonFiniteLoss`` live in ``recbole_famous.errors`` (re-exported here).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time

import numpy as np
import torch
from recbole.trainer import Trainer as _RecBoleTrainer

from recbole_famous import checkpoint as ckpt_mod
from recbole_famous import compat, diagnostics
from recbole_famous.errors import NonFiniteLoss, TrainingInterrupted
from recbole_famous.model.rules import is_one_pass

__all__ = ["NonFiniteLoss", "Trainer", "TrainingInterrupted", "rng_state", "set_rng_state"]


class _SignalGuard:
    """Turns SIGINT / SIGTERM into ``TrainingInterrupted`` while installed; defers them inside ``critical()``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._critical = 0
        self._pending = None

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.getsignal(s) for s in self.SIGNALS}
        for s in self.SIGNALS:
            signal.signal(s, self._handle)
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self._critical:
            self._pending = signum
            return
        raise TrainingInterrupted(signum)

    @contextlib.contextmanager
    def critical(self):
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._pending is not None:
            signum, self._pending = self._pending, None
            raise TrainingInterrupted(signum)


def _distributed(config) -> bool:
    return not config["single_spec"]


def rng_state(train_data=None) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(train_data, "generator", None) if train_data is not None else None
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: dict, train_data=None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(train_data, "generator", None) if train_data is not None else None
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


class _NoOptimizer:
    """The optimiser of a model without parameters (a reference rule): nothing to step, nothing to save."""

    param_groups: list = []

    def zero_grad(self, set_to_none=True):
        pass

    def step(self, closure=None):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def register_step_pre_hook(self, hook):
        pass


class Trainer(compat.UserWeightedEvaluation, _RecBoleTrainer):
    def __init__(self, config, model, output_dir: str, saved_model_file: str | None = None, meta: dict | None = None):
        compat.make_checkpoint_dir(config)  # before RecBole's racy ensure_dir (compat fix 9)
        with compat.tensorboard_in(output_dir), compat.cpu_ddp(config):  # compat fixes 6 and 10
            super().__init__(config, model)
        self.one_pass = is_one_pass(model)
        if self.one_pass:  # RecBole's TraditionalTrainer: one epoch whatever the config says
            self.epochs = self.eval_step = 1
        self.epoch_seconds: list[float] = []
        if saved_model_file:
            self.saved_model_file = saved_model_file
        self.meta = dict(meta or {})  # static checkpoint metadata from the runner (model, dataset, settings, data)
        self.best_epoch = None
        self.finished = False
        self.epochs_done = 0
        self.train_loss: dict = {}  # epoch -> summed loss (a tuple of parts when calculate_loss returns parts)
        self.valid_scores: dict = {}  # epoch -> validation score
        self._train_data = None
        self._last_valid_result = None
        self._epoch = self._batch = 0
        self._guard = _SignalGuard()
        self._param_names = {id(p): n for n, p in self.model.named_parameters()}
        self.optimizer.register_step_pre_hook(self._check_gradients)

    @property
    def resume_file(self) -> str:
        return ckpt_mod.companion_paths(self.saved_model_file)[1]

    # ---- training ------------------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._train_data = train_data
        if self.finished:  # resumed from a run that had already finished (budget spent or stopped early)
            self.logger.info("the resumed run had already finished training; nothing to train")
            return self.best_valid_score, self.best_valid_result

        def after_epoch(epoch_idx, valid_score):
            if self.cur_step == 0:  # RecBole's early_stopping resets it exactly when the best updates (ties too)
                self.best_epoch = epoch_idx
            self.valid_scores[epoch_idx] = valid_score
            self.finished = self.cur_step > self.stopping_step or epoch_idx + 1 >= self.epochs
            if saved:
                self._save_checkpoint(epoch_idx, verbose=False, saved_model_file=self.resume_file)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        try:
            with self._guard.installed():
                result = super().fit(train_data, valid_data, verbose, saved, show_progress, after_epoch)
        except TrainingInterrupted as exc:  # say how far the run got and what to resume from
            kept = saved and (os.path.isfile(self.resume_file) or os.path.isfile(self.saved_model_file))
            exc.epochs_done, exc.best_epoch = self.epochs_done, self.best_epoch
            exc.checkpoint = self.saved_model_file if kept else None
            raise
        self.finished = True
        return result

    def _build_optimizer(self, **kwargs):
        if not any(p.requires_grad for p in self.model.parameters()):
            return _NoOptimizer()
        return super()._build_optimizer(**kwargs)

    def _one_pass(self, train_data) -> float:
        """Fit a model that trains nothing: its ``fit_pass`` over the training split, or RecBole's way (its
        ``calculate_loss`` on every batch, which counts; no backward, no step)."""
        fit_pass = getattr(self.model, "fit_pass", None)
        self.model.train()
        if fit_pass is not None:
            fit_pass(train_data._dataset)
            return 0.0
        with torch.no_grad():
            for interaction in train_data:
                self.model.calculate_loss(interaction.to(self.device))
        return 0.0

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        inner = loss_func or self.model.calculate_loss
        self._epoch, self._batch = epoch_idx, 0

        def checked(interaction):
            self._batch += 1
            losses = inner(interaction)
            self._check_losses(losses)
            return losses

        if self.one_pass:
            loss = self._one_pass(train_data)
        else:
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=checked, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        self.train_loss[epoch_idx] = loss
        self.epochs_done = epoch_idx + 1
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self._last_valid_result = result
        line = diagnostics.epoch_line(self.model, valid_data)  # FamouSRec's routing; '' for other models
        if line:
            self.logger.info(f"routing diagnostics: {line}")
        return score, result

    # ---- numerical safety ----------------------------------------------------------------------
    def _where(self) -> str:
        kept = (
            f"the last good checkpoint {self.saved_model_file} (best epoch {self.best_epoch}) is intact"
            if os.path.isfile(self.saved_model_file)
            else "no checkpoint had been saved yet"
        )
        return f"at epoch {self._epoch}, batch {self._batch}; the parameters were not updated with it, and {kept}"

    def _check_losses(self, losses) -> None:
        parts = losses if isinstance(losses, tuple) else (losses,)
        for index, part in enumerate(parts):
            if torch.isfinite(part).all():
                continue
            names = getattr(self.model, "loss_names", None)
            if names and len(names) == len(parts):
                name = f"loss part '{names[index]}' ({index + 1} of {len(parts)})"
            elif len(parts) > 1:
                name = f"loss part {index + 1} of {len(parts)} returned by {type(self.model).__name__}.calculate_loss"
            else:
                name = "the loss"
            value = "nan" if torch.isnan(part).any() else "inf"
            raise NonFiniteLoss(f"training stopped: {name} is {value} {self._where()}")

    def _check_gradients(self, optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or torch.isfinite(torch.stack(torch._foreach_norm(grads))).all():
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    name = self._param_names.get(id(p), "?")
                    raise NonFiniteLoss(f"training stopped: the gradient of parameter '{name}' is not finite {self._where()}")

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        if saved_model_file == self.saved_model_file and epoch >= 0 and self._last_valid_result is not None:
            # called by fit when the validation score improved: record it before RecBole does
            self.best_epoch, self.best_valid_result = epoch, self._last_valid_result
        rng = [rng_state(self._train_data)]
        distributed = _distributed(self.config)
        if distributed:
            rng = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(rng, rng_state(self._train_data))
            if self.config["local_rank"] != 0:
                torch.distributed.barrier()  # returns once rank 0 has written the file
                return
        meta = dict(self.meta)
        meta.update(
            format=ckpt_mod.FORMAT,
            epoch=epoch,
            best_epoch=self.best_epoch,
            best_valid_result=dict(self.best_valid_result) if self.best_valid_result else None,
            finished=self.finished,
            epoch_seconds=list(self.epoch_seconds),
            train_loss=dict(self.train_loss),
            valid_scores=dict(self.valid_scores),
            rng=rng,
        )
        state = {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            ckpt_mod.META_KEY: meta,
        }
        tmp = f"{saved_model_file}.tmp{os.getpid()}"
        with self._guard.critical():
            torch.save(state, tmp, pickle_protocol=4)
            os.replace(tmp, saved_model_file)
            if distributed:
                torch.distributed.barrier()
        if verbose:
            self.logger.info(f"Saving current: {saved_model_file}")

    def restore(self, checkpoint: dict, train_data) -> None:
        """Continue from a checkpoint (``checkpoint.load``-ed and checked): model, optimizer, counters and random
        states, so the rest of the run is the same as if it had never stopped."""
        ckpt_mod.load_into(self.model, checkpoint)
        if checkpoint.get("optimizer"):
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        meta = checkpoint[ckpt_mod.META_KEY]
        self.best_valid_result = meta.get("best_valid_result")
        self.best_epoch = meta.get("best_epoch", checkpoint["epoch"])
        self.epoch_seconds = list(meta.get("epoch_seconds") or [])
        self.train_loss = dict(meta.get("train_loss") or {})
        self.valid_scores = dict(meta.get("valid_scores") or {})
        self.epochs_done = self.start_epoch
        self.finished = self.cur_step > self.stopping_step or self.start_epoch >= self.epochs
        self._train_data = train_data
        states = meta.get("rng") or []
        distributed = _distributed(self.config)
        if len(states) == (torch.distributed.get_world_size() if distributed else 1):
            set_rng_state(states[torch.distributed.get_rank() if distributed else 0], train_data)
        else:
            self.logger.warning(
                f"the checkpoint holds random states for {len(states)} process(es), this run has another number: "
                "training continues, but not bit for bit as the uninterrupted run would have"
            )
        self.logger.info(f"Checkpoint {meta.get('path')} loaded: training resumes at epoch {self.start_epoch}")

    def load_best(self, checkpoint_file: str | None = None) -> None:
        """Load the saved best model into ``self.model`` (what ``evaluate(load_best_model=True)`` does), through
        the checkpoint's checks (``checkpoint.load`` and ``load_into``)."""
        ckpt_mod.load_into(self.model, ckpt_mod.load(checkpoint_file or self.saved_model_file))
        self.logger.info(f"Loaded best model from {checkpoint_file or self.saved_model_file}")

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            self.load_best(model_file)
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
