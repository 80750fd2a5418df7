"""Rebuild a finished benchmark run's model and data, and load its best checkpoint.

Used for everything measured after training: efficiency (``efficiency.py``), fixed-expert inference
(Table 5, ``ablations.py``) and the analyses (``analysis.py``). The run is rebuilt from the exact overrides
stored in its JSON, through the plugin's own config layering and RecBole's data preparation, so the split
and the item ids are the ones the model was trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from recbole_famous.errors import UsageError


@dataclass
class Loaded:
    config: object
    model: object
    train_data: object
    valid_data: object
    test_data: object


def build_data(model: str, dataset: str, overrides: dict):
    """Config, and RecBole's (train, valid, test) dataloaders for it."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_famous.runner import _check_dataset, _create_dataset, build_config

    config = build_config(model, dataset, overrides=overrides)
    _check_dataset(config)
    init_seed(config["seed"], config["reproducibility"])
    data = _create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    return config, train_data, valid_data, test_data


def load_model(config, train_data, checkpoint_file: str | None):
    """The model class of ``config`` on ``train_data``'s dataset, with the checkpoint's weights, in eval mode."""
    from recbole.utils import init_seed

    from recbole_famous import compat

    init_seed(config["seed"], config["reproducibility"])
    model = config.model_class(config, train_data._dataset).to(config["device"])
    if checkpoint_file:
        if not os.path.isfile(checkpoint_file):
            raise UsageError(f"checkpoint not found: {checkpoint_file}")
        state = compat.load_checkpoint(checkpoint_file, map_location=config["device"])
        model.load_state_dict(state["state_dict"])
        model.load_other_parameter(state.get("other_parameter"))
    return model.eval()


def load_run(record: dict, extra_overrides: dict | None = None, data=None) -> Loaded:
    """Model and data of a run JSON (``runs.py``); ``extra_overrides`` change inference-time keys only
    (e.g. FamouSRec's ``force_expert``); ``data`` reuses already built ``(config, train, valid, test)``."""
    spec, result = record["spec"], record["result"]
    checkpoint = result.get("checkpoint")
    if not checkpoint:
        raise UsageError(f"run {spec['model']} on {spec['dataset']} (seed {spec['seed']}) kept no checkpoint")
    overrides = dict(spec["overrides"])
    overrides.update(record.get("paths") or {})
    overrides.update(extra_overrides or {})
    if data is None:
        config, train_data, valid_data, test_data = build_data(spec["model"], spec["dataset"], overrides)
    else:
        _, train_data, valid_data, test_data = data
        from recbole_famous.runner import build_config

        config = build_config(spec["model"], spec["dataset"], overrides=overrides)
    model = load_model(config, train_data, checkpoint)
    return Loaded(config, model, train_data, valid_data, test_data)
