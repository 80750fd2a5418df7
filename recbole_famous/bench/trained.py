"""A finished benchmark run's trained model and data, from its record (``runs.py``), through the public pipeline.

Used for everything measured after training: efficiency (``efficiency.py``), fixed-expert inference
(Table 5, ``ablations.py``) and the analyses (``analysis.py``). The model is loaded by ``pipeline.load_trained``
from the run's best checkpoint, so its config is the one stored with the model and every checkpoint check runs;
the split and the item ids are the ones the model was trained on.
"""

from __future__ import annotations

from recbole_famous import pipeline
from recbole_famous.errors import UsageError


def build_data(model: str, dataset: str, overrides: dict):
    """Config, and RecBole's (train, valid, test) dataloaders for it (no model)."""
    config = pipeline.build_config(model, dataset, overrides=overrides)
    pipeline.check_dataset(config)
    pipeline.init_seed(config)
    return (config, *pipeline.data_preparation(config, pipeline.create_dataset(config)))


def load_run(record: dict, extra_overrides: dict | None = None, data: pipeline.Trained | None = None) -> pipeline.Trained:
    """Model and data of a run record (``runs.py``), in eval mode; ``extra_overrides`` change inference-time keys
    only (e.g. FamouSRec's ``force_expert``); ``data`` reuses the dataset and dataloaders of an earlier
    ``load_run`` of the same record. The result has ``config``, ``model``, ``train_data``, ``valid_data``,
    ``test_data`` (and the checkpoint)."""
    spec, result = record["spec"], record["result"]
    checkpoint = result.get("checkpoint")
    if not checkpoint:
        raise UsageError(f"run {spec['model']} on {spec['dataset']} (seed {spec['seed']}) kept no checkpoint")
    overrides = dict(record.get("paths") or {})  # where the files are now; the rest is the checkpoint's own
    overrides.update(extra_overrides or {})
    trained = pipeline.load_trained(checkpoint, spec["model"], spec["dataset"], overrides=overrides, use="eval",
                                    data=data)
    trained.model.eval()
    return trained
