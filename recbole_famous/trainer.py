"""RecBole's Trainer, extended only where this project needs it.

- Loads its own checkpoints with ``weights_only=False`` (torch >= 2.6 default breaks RecBole's, compat fix 4).
- Records the wall-clock seconds of every training epoch (``epoch_seconds``) for the run's result file.
- Writes its tensorboard events under the run's output folder instead of ``./log_tensorboard`` (compat fix 6).
"""

from __future__ import annotations

import time

from recbole.trainer import Trainer as _RecBoleTrainer

from recbole_famous import compat


class Trainer(_RecBoleTrainer):
    def __init__(self, config, model, output_dir: str):
        with compat.tensorboard_in(output_dir):
            super().__init__(config, model)
        self.epoch_seconds: list[float] = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss

    def load_best(self, checkpoint_file: str | None = None) -> None:
        """Load the saved best model into ``self.model`` (what ``evaluate(load_best_model=True)`` does)."""
        checkpoint = compat.load_checkpoint(checkpoint_file or self.saved_model_file, map_location=self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loaded best model from {checkpoint_file or self.saved_model_file}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            self.load_best(model_file)
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
