"""``RunResult``: what one run gives, returned by ``runner.run`` / ``runner.evaluate_checkpoint`` and written as its
``result.json``; the command line, the benchmark's executor, tuning and the launcher read it.

Fields are ``None`` where a run has no value for them (an evaluation trains no epoch; an interrupted run has no
test result). ``to_dict()`` is the ``result.json`` (the fields that are set, plus ``resumed_from`` / ``checkpoint``
as they are); ``result["test_result"]`` reads a field by name, as code written against ``result.json`` does.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from recbole_famous.files import write_json

# Kept in result.json even when None: they say "not resumed" / "no checkpoint kept (saved=False)".
_ALWAYS = ("resumed_from", "checkpoint", "resume_checkpoint")


@dataclass
class RunResult:
    run_id: str
    model: str
    dataset: str
    status: str  # running, finished, interrupted, diverged, evaluated
    output_dir: str
    config: dict = field(default_factory=dict)
    # training runs
    resumed_from: str | None = None
    checkpoint: str | None = None  # the best model (an evaluation: the checkpoint evaluated)
    resume_checkpoint: str | None = None
    error: str | None = None  # interrupted / diverged: the message the user saw
    # evaluation of a checkpoint (--eval_only / eval)
    eval_only: bool | None = None
    checkpoint_epoch: int | None = None
    # results
    best_epoch: int | None = None
    best_valid_score: float | None = None
    valid_metric: str | None = None
    best_valid_result: dict | None = None
    test_result: dict | None = None
    epochs_run: int | None = None
    epoch_seconds: list | None = None
    train_loss: list | None = None
    valid_scores: dict | None = None
    data_seconds: float | None = None
    fit_seconds: float | None = None
    test_seconds: float | None = None
    num_users: int | None = None
    num_items: int | None = None
    num_interactions: int | None = None
    world_size: int | None = None

    @property
    def path(self) -> str:
        """The run's ``result.json``."""
        return os.path.join(self.output_dir, "result.json")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None or f.name in _ALWAYS}

    def write(self) -> str:
        write_json(self.path, self.to_dict())
        return self.path

    @classmethod
    def from_dict(cls, data: dict) -> "RunResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __getitem__(self, key: str):
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)
