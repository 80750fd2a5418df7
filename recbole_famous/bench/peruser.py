"""Per-user test metrics of a finished run, computed exactly as RecBole computes the averages it reports.

RecBole's full-ranking evaluation (``Trainer._full_sort_batch_eval`` and ``Collector.eval_batch_collect``,
RecBole 1.2.1) scores every item for each test user with ``full_sort_predict``, sets the padding item (and, for
non-sequential models, the user's history; RecBole's full-sort loader gives sequential models no history mask) to
``-inf``, takes ``torch.topk`` of the scores, marks which of the top-k are
the user's test items, and its metric classes (``recbole.evaluator.metrics.NDCG`` / ``Hit``) turn that 0/1 matrix
into one value per user (``metric_info``) before averaging them. This module does the same steps, with RecBole's
own metric classes, and keeps the per-user values instead of their mean, so a paired test over test users
(``compare.py``) compares the same numbers the run reported. ``check`` asserts that: the mean of the per-user
values must equal the run's recorded test metric (rounded by RecBole to ``metric_decimal_place``) within
``TOLERANCE``.

The values are cached next to the run record (``<record>.peruser.npz``, or under another folder), keyed by the
run id and checkpoint they came from, so tables can be remade without loading any model.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from recbole_famous import pipeline

METRICS = ("ndcg", "hit")  # RecBole's metric classes (NDCG, Hit) whose per-user values are kept
TOLERANCE = 1e-4  # recorded metrics are rounded to 4 decimals (metric_decimal_place): at most 5e-5 off, plus float


class PerUserMismatch(AssertionError):
    """The per-user values do not average to what the run recorded: they are not the run's metric."""


@torch.no_grad()
def per_user(loaded, split: str = "test") -> dict:
    """``{"user_id": (U,) int64, "ndcg@k" / "hit@k": (U,) float64 for every k of the config's topk}`` over the
    users of a loaded run's ``split`` (``trained.load_run``), in the dataloader's order."""
    from recbole.data.dataloader import FullSortEvalDataLoader
    from recbole.evaluator.metrics import NDCG, Hit

    from recbole_famous.errors import UsageError

    model, config = loaded.model.eval(), loaded.config
    data = loaded.test_data if split == "test" else loaded.valid_data
    if not isinstance(data, FullSortEvalDataLoader):
        raise UsageError(f"per-user metrics need full-ranking evaluation (eval_args mode full), got {type(data).__name__}")
    topk = list(config["topk"])
    classes = {"ndcg": NDCG(config), "hit": Hit(config)}
    device = pipeline.model_device(model)
    n_items = data._dataset.item_num
    users, rows = [], []
    for interaction, history_index, positive_u, positive_i in data:
        interaction = interaction.to(device)
        scores = model.full_sort_predict(interaction).view(-1, n_items)  # RecBole's _full_sort_batch_eval
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        _, topk_idx = torch.topk(scores, max(topk), dim=-1)  # RecBole's Collector, "rec.topk"
        pos_matrix = torch.zeros_like(scores, dtype=torch.int)
        pos_matrix[positive_u, positive_i] = 1
        pos_len = pos_matrix.sum(dim=1, keepdim=True)
        rows.append(torch.cat((torch.gather(pos_matrix, 1, topk_idx), pos_len), dim=1).cpu())
        users.append(interaction[config["USER_ID_FIELD"]].cpu())
    rec = torch.cat(rows)
    pos_index, pos_len = rec[:, :-1].to(torch.bool).numpy(), rec[:, -1].numpy()  # TopkMetric.used_info
    out = {"user_id": torch.cat(users).numpy().astype(np.int64)}
    for name in METRICS:
        args = (pos_index, pos_len) if name == "ndcg" else (pos_index,)  # as each class's calculate_metric calls it
        values = classes[name].metric_info(*args)  # (U, max k): metric@1 .. metric@max(k) per user
        for k in topk:
            out[f"{name}@{k}"] = np.asarray(values[:, k - 1], dtype=np.float64)
    return out


def check(values: dict, recorded: dict, what: str = "run", tolerance: float = TOLERANCE) -> dict:
    """Raise ``PerUserMismatch`` unless every per-user metric averages to the recorded one (within ``tolerance``);
    returns ``{metric: (per-user mean, recorded)}``."""
    out = {}
    for key, vector in values.items():
        if key == "user_id" or key not in recorded:
            continue
        mean, want = float(np.mean(vector)), float(recorded[key])
        if not abs(mean - want) <= tolerance:
            raise PerUserMismatch(f"{what}: the mean of the per-user {key} is {mean:.6f}, the run recorded "
                                  f"{want:.6f} (tolerance {tolerance:g}): not the run's own metric")
        out[key] = (mean, want)
    if not out:
        raise PerUserMismatch(f"{what}: none of the per-user metrics {sorted(values)} was recorded by the run")
    return out


def cache_path(record_path: str, out_dir: str | None = None, cache_dir: str | None = None,
               split: str = "test") -> str:
    """``<record>.peruser.npz`` (``split`` test) or ``<record>.peruser-<split>.npz`` next to the record, or at the
    record's path relative to ``out_dir``/runs under ``cache_dir``."""
    stem = record_path[: -len(".json")] if record_path.endswith(".json") else record_path
    if cache_dir and out_dir:
        stem = os.path.join(cache_dir, os.path.relpath(stem, os.path.join(out_dir, "runs")))
    return stem + (".peruser.npz" if split == "test" else f".peruser-{split}.npz")


def identity(record: dict) -> str:
    """What per-user values are keyed by: the run id and checkpoint of the record they were computed from."""
    result = record.get("result") or {}
    return f"{result.get('run_id')}|{result.get('checkpoint')}"


def load_cached(path: str, record: dict) -> dict | None:
    """The cached values if the file exists and was made from this record's run and checkpoint."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["identity"]) != identity(record):
                return None
            return {k: data[k] for k in data.files if k != "identity"}
    except (OSError, KeyError, ValueError):
        return None


def save(path: str, record: dict, values: dict, compressed: bool = False) -> str:
    """Write ``values`` keyed by the record's ``identity``, atomically (``compressed``: for files kept in git)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    (np.savez_compressed if compressed else np.savez)(tmp, identity=np.array(identity(record)), **values)
    os.replace(tmp, path)
    return path


def obtainable(record: dict, path: str) -> bool:
    """Whether ``for_record`` can have this run's per-user values here: cached at ``path`` for this run, or its
    checkpoint file on this machine (a record restored from the archive without them has neither)."""
    checkpoint = (record.get("result") or {}).get("checkpoint")
    return load_cached(path, record) is not None or bool(checkpoint and os.path.isfile(checkpoint))


def for_record(record: dict, path: str, recompute: bool = False, echo=print, split: str = "test") -> dict:
    """Per-user metrics of a finished run record on ``split`` (``test``: the paired tests' input; ``valid``: the
    validation split of the best epoch): from the cache at ``path`` when it is this run's, else computed from the
    run's best checkpoint (``trained.load_run``), checked against the recorded metrics of that split (``check``:
    ``metrics`` or ``valid_metrics``), and cached. The cached values are checked again on every read."""
    spec = record["spec"]
    what = f"{spec['model']} on {spec['dataset']}, seed {spec['seed']}" + ("" if split == "test" else f" ({split})")
    recorded = record["metrics"] if split == "test" else record.get("valid_metrics") or {}
    values = None if recompute else load_cached(path, record)
    if values is None:
        from recbole_famous.bench import trained

        echo(f"per-user metrics of {what}: loading its checkpoint and ranking every item for each user")
        values = per_user(trained.load_run(record), split)
        check(values, recorded, what)
        save(path, record, values)
    check(values, recorded, what)
    return values
