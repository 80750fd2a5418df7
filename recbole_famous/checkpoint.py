"""Checkpoints: what a saved model carries, and the checks before one is loaded.

A checkpoint is RecBole's own checkpoint dict (``config``, ``epoch``, ``cur_step``, ``best_valid_score``,
``state_dict``, ``other_parameter``, ``optimizer``: RecBole's tools still read it) plus one key of ours,
``recbole_famous``, holding:

* ``model``, ``dataset``: names;
* ``settings``: the external settings the run was built from (its config files' and overrides' keys, merged), so
  ``--eval_only``, ``--resume`` and serving rebuild the same Config from the checkpoint alone;
* ``fingerprint``: every final config value, canonicalised, for the comparison below;
* ``data``: the dataset's item vocabulary (original ids in internal-id order), user / item / interaction counts and
  item popularity (serving maps ids with it and needs no dataset files);
* the training state needed to continue exactly: ``epoch``, ``best_epoch``, ``best_valid_result``, ``finished``,
  ``epoch_seconds``, ``train_loss``, and the random states (Python, numpy, torch, CUDA, the training dataloader's
  generator; one set per process in distributed runs).

Every run writes two files in ``checkpoint_dir``: ``<run_id>.pth``, the best model (what the test split and
``--eval_only`` use), and ``<run_id>.resume.pth``, the state after the last validated epoch (what ``--resume``
continues from). Both are written atomically (a temporary file, then a rename), so a run killed while saving keeps
the previous file whole.

Refusals (``UsageError``, one line naming what differs): a file that is missing or is not a checkpoint; another
model; another dataset; a changed config, compared key by key, where which keys may differ depends on the use:

* ``eval`` (``--eval_only``, serving): environment keys (paths, device, logging), training-only keys (epochs,
  learning rate, seed, ...) and inference-time keys (metrics, topk; a model's own, which it names: ``model_roles``)
  may differ; everything else (architecture, data processing, protocol) must match;
* ``resume``: only environment keys and the budget (``epochs``, ``stopping_step``) may differ.

Then, once the dataset is loaded, its item vocabulary and counts must match (``check_data``), and the state dict's
parameter names and shapes must match the model built from the config (``check_state_dict``, run by ``load_into``,
the one function that puts a checkpoint's weights into a model). ``pipeline.load_trained`` runs these steps in
order: it is how ``--eval_only``, ``--resume``, serving and the benchmark load a trained model.

Loading uses ``torch.load(weights_only=False)`` (RecBole pickles its Config into the file): load only checkpoints
you trust, as with any pickle.
"""

from __future__ import annotations

import hashlib
import json
import os

from recbole_famous.errors import UsageError

FORMAT = 1
META_KEY = "recbole_famous"

# Keys that never make a checkpoint incompatible: where files are, the device, logging, process layout.
ENV_KEYS = frozenset({
    "data_path", "checkpoint_dir", "results_dir", "source_path", "show_progress", "state", "verbose", "device",
    "gpu_id", "use_gpu", "local_rank", "single_spec", "nproc", "world_size", "ip", "port", "offset", "worker",
    "log_wandb", "wandb_project", "save_dataset", "save_dataloaders", "dataset_save_path", "dataloaders_save_path",
    "eval_batch_size", "config_files",
    "table_note",  # a dataset's provenance note for the benchmark tables (props/dataset/*.yaml): text, not a setting
    "reference_rules",  # the rules the command line runs after a run as a yardstick (props/default_job.yaml)
})
# Keys RecBole's data transforms write into the config while the dataloaders are built (recbole/data/transform.py:
# BERT4Rec's mask; the crop, reorder and inverse transforms): field names derived from the other keys, never a setting, and
# absent from a config that no dataloader has seen yet (the one a checkpoint is checked against).
DERIVED_KEYS = frozenset({
    "MASK_INDEX", "MASK_ITEM_SEQ", "POS_ITEMS", "NEG_ITEMS", "INVERSE_ITEM_SEQ", "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN",
    "REORDER_ITEM_SEQ",
})
# Keys that only shape training: a trained model is evaluated and served the same whatever they were.
TRAIN_KEYS = frozenset({
    "epochs", "stopping_step", "learner", "learning_rate", "weight_decay", "clip_grad_norm", "train_batch_size",
    "eval_step", "seed", "reproducibility", "train_neg_sample_args", "loss_decimal_place", "require_pow", "shuffle",
    "enable_amp", "enable_scaler", "length_batches", "length_split",
})
# Keys an evaluation or a serving call may choose freely: what is measured.
INFERENCE_KEYS = frozenset({"metrics", "topk", "valid_metric", "valid_metric_bigger", "metric_decimal_place"})
# A model's own settings add to these sets by role: the model class answers ``settings_roles()`` (FamouSRec:
# recbole_famous/model/famousrec_config.py), see ``model_roles``.
# Keys a resumed run may change: its budget.
RESUME_KEYS = frozenset({"epochs", "stopping_step"})
# Keys added after checkpoints were first written, with the value that reproduces what those runs did: a checkpoint
# without the key compares (and resumes) as if it held this value.
LEGACY_VALUES = {"length_batches": False, "length_split": 0}


def model_roles(model) -> dict:
    """What the model class called ``model`` says of its own settings (``settings_roles()``): ``{"training",
    "inference", "environment": frozensets of keys, "legacy": {key: value}}``; empty sets for a model that says
    nothing (RecBole's) or a name no longer known."""
    from recbole_famous.config import find_model

    empty = {"training": frozenset(), "inference": frozenset(), "environment": frozenset(), "legacy": {}}
    try:
        cls = find_model(str(model))
    except UsageError:
        return empty
    ask = getattr(cls, "settings_roles", None)
    return {**empty, **ask()} if ask else empty


def env_keys(model) -> frozenset:
    """Keys never part of a fingerprint: the environment's and the model's own (``model_roles``)."""
    return ENV_KEYS | model_roles(model)["environment"]


def legacy_values(model) -> dict:
    """The legacy values that apply to a checkpoint of ``model`` (a checkpoint of another model never holds a
    model's own keys)."""
    return {**LEGACY_VALUES, **model_roles(model)["legacy"]}

# Settings that describe one process of a run, not the run: never stored, never replayed.
_RUNTIME_SETTINGS = frozenset({"local_rank", "world_size", "ip", "port", "nproc", "offset", "device", "single_spec"})


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def fingerprint(config) -> dict:
    """Every final config value, canonicalised (json text), except the environment keys."""
    skip = env_keys(config.final_config_dict.get("model"))
    return {k: _canon(v) for k, v in config.final_config_dict.items() if k not in skip}


def settings_of(config) -> dict:
    """The external settings (config files merged, then overrides) a Config was built from."""
    merged = dict(getattr(config, "file_config_dict", None) or {})
    merged.update(getattr(config, "variable_config_dict", None) or {})
    return {k: v for k, v in merged.items() if k not in _RUNTIME_SETTINGS}


def data_summary(dataset) -> dict:
    """What serving and the data check need from the dataset: the item vocabulary, counts, item popularity."""
    import numpy as np

    iid, uid = dataset.iid_field, dataset.uid_field
    tokens = [str(t) for t in dataset.field2id_token[iid]]
    column = dataset.inter_feat[iid]  # a pandas Series before data_preparation, a torch tensor after
    values = column.to_numpy() if hasattr(column, "to_numpy") else column.numpy()
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=len(tokens)).tolist()
    return {
        "item_field": iid,
        "user_field": uid,
        "item_tokens": tokens,
        "items_sha1": hashlib.sha1("\n".join(tokens).encode("utf-8")).hexdigest(),
        "n_items": len(tokens),
        "n_users": int(dataset.user_num),
        "n_interactions": int(len(dataset.inter_feat)),
        "item_counts": counts,
    }


class ItemCounts:
    """What a sequential model's constructor reads from a dataset (its number of items), from a checkpoint's
    ``data`` summary: a model that reads more raises ``AttributeError`` (then the dataset itself is needed)."""

    def __init__(self, data: dict):
        self._num = {data["item_field"]: data["n_items"]}

    def num(self, field):
        if field not in self._num:
            raise AttributeError(f"the checkpoint holds no count for field {field}")
        return self._num[field]


def companion_paths(path: str) -> tuple[str, str]:
    """``(best, resume)`` file names of a run from either of them."""
    path = str(path)
    if path.endswith(".resume.pth"):
        return path[: -len(".resume.pth")] + ".pth", path
    stem = path[:-4] if path.endswith(".pth") else path
    return stem + ".pth", stem + ".resume.pth"


def resume_source(path: str) -> tuple[str, str]:
    """``(file to resume from, best file)`` of a run: its ``.resume.pth`` (the last validated epoch) when it exists,
    else the best checkpoint itself (which holds the full state of its epoch)."""
    best, resume_file = companion_paths(path)
    if not os.path.isfile(best) and not os.path.isfile(resume_file):
        raise UsageError(f"checkpoint not found: {path}")
    return (resume_file if os.path.isfile(resume_file) else best), best


def load(path: str, map_location="cpu") -> dict:
    """Read a checkpoint file; ``UsageError`` if it is missing or is not a RecBole / recbole-famous checkpoint."""
    from recbole_famous import compat

    path = str(path)
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint not found: {path}")
    try:
        ckpt = compat.load_checkpoint(path, map_location=map_location)
    except Exception as exc:  # torch / pickle raise many types for a truncated or foreign file
        raise UsageError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UsageError(f"{path} is not a model checkpoint (no state_dict)")
    if META_KEY not in ckpt:
        ckpt[META_KEY] = _legacy_meta(ckpt, path)
    ckpt[META_KEY]["path"] = path
    return ckpt


def _legacy_meta(ckpt, path) -> dict:
    """Metadata for a plain RecBole checkpoint (no ``recbole_famous`` key): from its pickled Config."""
    config = ckpt.get("config")
    final = getattr(config, "final_config_dict", None)
    if not final:
        raise UsageError(f"{path} is not a RecBole checkpoint (no config inside)")
    return {
        "format": 0,
        "model": final.get("model"),
        "dataset": final.get("dataset"),
        "settings": settings_of(config),
        "fingerprint": {k: _canon(v) for k, v in final.items() if k not in env_keys(final.get("model"))},
        "data": None,
        "epoch": ckpt.get("epoch"),
    }


def meta(ckpt) -> dict:
    return ckpt[META_KEY]


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def check_compatible(ckpt, config, use: str) -> None:
    """Refuse (``UsageError``) a checkpoint of another model or dataset, or whose config differs where ``use``
    (``"eval"`` or ``"resume"``) needs it to match."""
    m = meta(ckpt)
    path = m.get("path", "checkpoint")
    if str(m["model"]).lower() != str(config["model"]).lower():
        raise UsageError(f"checkpoint {path} holds a {m['model']} model, not {config['model']}")
    if m["dataset"] != config["dataset"]:
        raise UsageError(f"checkpoint {path} was trained on dataset '{m['dataset']}', not '{config['dataset']}'")
    own = model_roles(m["model"])
    allowed = (TRAIN_KEYS | INFERENCE_KEYS | own["training"] | own["inference"] if use == "eval" else RESUME_KEYS)
    allowed |= DERIVED_KEYS
    theirs = {**{k: _canon(v) for k, v in legacy_values(m["model"]).items()}, **m["fingerprint"]}
    ours = fingerprint(config)
    diffs = []
    for key in sorted(set(theirs) | set(ours)):
        if key in allowed or theirs.get(key) == ours.get(key):
            continue
        diffs.append(f"{key}: {_short(theirs.get(key, '(unset)'))} in the checkpoint, {_short(ours.get(key, '(unset)'))} now")
    if diffs:
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise UsageError(
            f"checkpoint {path} was made with a different config: " + "; ".join(diffs[:4]) + more
            + ". Use the checkpoint's settings (drop the overrides that change them)"
            + (", or start a new run" if use == "resume" else "")
        )


def check_data(ckpt, dataset) -> None:
    """Refuse a checkpoint whose dataset, loaded now, is not the one it was trained on (items, users, size)."""
    m = meta(ckpt)
    saved = m.get("data")
    if not saved:
        return
    now = data_summary(dataset)
    diffs = [
        f"{what}: {saved[key]} in the checkpoint, {now[key]} now"
        for what, key in (("items", "n_items"), ("users", "n_users"), ("interactions", "n_interactions"))
        if saved[key] != now[key]
    ]
    if not diffs and saved["items_sha1"] != now["items_sha1"]:
        diffs.append("the item ids differ")
    if diffs:
        raise UsageError(
            f"dataset '{m['dataset']}' has changed since checkpoint {m.get('path')} was made: " + "; ".join(diffs)
        )


def check_state_dict(ckpt, model) -> None:
    """Parameter names and shapes must match the model the config builds (never load into wrong shapes). A model
    whose fitting sizes some buffers (``sized_by_fit``: a reference rule's sparse matrix) takes their sizes from
    the checkpoint."""
    theirs = ckpt["state_dict"]
    ours = model.state_dict()
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    sized_by_fit = set(getattr(model, "sized_by_fit", ()))
    shapes = [
        f"{k} {tuple(theirs[k].shape)} in the checkpoint, {tuple(ours[k].shape)} now"
        for k in ours
        if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape) and k not in sized_by_fit
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shapes differ: " + "; ".join(shapes[:3]))
        if missing:
            parts.append(f"missing parameters: {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected parameters: {unexpected[:3]}")
        raise UsageError(f"checkpoint {meta(ckpt).get('path')} does not fit the model: " + "; ".join(parts))


def load_into(model, ckpt) -> None:
    """Put a checkpoint's weights (and RecBole's ``other_parameter``) into ``model``, after ``check_state_dict``."""
    check_state_dict(ckpt, model)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))


def rebuild_inputs(ckpt, model=None, dataset=None, config_files=None, overrides=None):
    """The ``(model, dataset, config_files, overrides)`` that rebuild a checkpoint's Config: its stored settings,
    then the caller's config files (in order), then the caller's overrides. A model or dataset name the caller
    gives must be the checkpoint's (``check_compatible`` says so once the Config is built)."""
    from recbole_famous.config import read_yaml

    m = meta(ckpt)
    merged = {k: v for k, v in legacy_values(m["model"]).items() if k not in (m.get("fingerprint") or {})}
    merged.update(m.get("settings") or {})
    for path in config_files or []:
        merged.update(read_yaml(path))
    merged.update(dict(overrides or {}))
    return model or m["model"], dataset or m["dataset"], [], merged
