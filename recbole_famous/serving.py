"""Serving: top-N recommendations from a checkpoint, for item histories in the dataset's original ids.

Python::

    from recbole_famous.serving import recommend, Recommender
    recommend("saved/FamouSRec-Arts-....pth", {"alice": ["B00004Y2UT", "B0000302Y4"]}, top_n=10)
    rec = Recommender("saved/....pth")            # load once, call many times
    rec.recommend([["242", "302"], []], top_n=5)  # a list of histories: users are keyed 0, 1, ...

Command line (JSON out, one object per user; a summary of what was dropped or replaced on stderr)::

    python run_recbole_famous.py recommend --checkpoint=PATH --histories=histories.json --top_n=10
    python run_recbole_famous.py recommend --checkpoint=PATH --history="242 302 377"
    python run_recbole_famous.py recommend --checkpoint=PATH --histories=-        # JSON from stdin
    python run_recbole_famous.py recommend --checkpoint=PATH --all-users --top_n=10 --out top10.csv

``--all-users``: every user of the checkpoint's dataset, each from the whole history it has there (train, valid and
test items, the last ``MAX_ITEM_LIST_LENGTH``), in one CSV: ``user_id, rank, item_id, original_id, score``
(``original_id`` from the converter's ``<dataset>.item_map`` where there is one, else the item token). Progress on
stderr; the file appears only when complete (``export_all_users``).

``histories``: a mapping ``user -> [item, ...]`` or a list of such lists, oldest item first, in the dataset's
original ids (ASINs, StockCodes, ml-100k item ids; numbers are read as their text). Each answer::

    {"user": ..., "items": [top-N original ids], "scores": [...], "expert": "gru" | None, "expert_index": 1 | None,
     "history_used": n, "unknown_items": [...], "truncated": k, "fallback": None | "popularity", "error": None | text}

* ``expert``: the expert that served the user (FamouSRec: the top-1 expert of the last MoE layer, the one whose
  output is the read-out; with ``force_expert`` that expert); ``None`` for other models.
* Unknown ids (not in the training data, or the padding token) are dropped and listed in ``unknown_items``.
* A history longer than the model's ``MAX_ITEM_LIST_LENGTH`` keeps its most recent items; ``truncated`` counts
  the oldest ones dropped.
* An empty history (or one with only unknown ids) gets the most popular items of the training data
  (``fallback: "popularity"``, no expert).
* A history that is not a list gets ``error`` and no items; the other users are still served.
* Items already in the history are not recommended again (``exclude_seen=False`` keeps them).

The checkpoint alone is enough (it holds the item vocabulary and popularity); the dataset files are read only
for models whose construction needs more than the item count. The model is loaded by ``pipeline.load_trained``
(through the checkpoint's checks). Checkpoints are pickles: load only trusted files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

from recbole_famous.errors import UsageError


def routed_experts(model, interaction):
    """Per user, ``(index, kind)`` of the expert that served it, or None for models without experts.

    The model says it: ``model.route(interaction) -> LongTensor (B,)``, the index (into ``model.kinds``) of the
    expert that serves each user of the batch at inference (FamouSRec: the top-1 expert of the last MoE layer, or
    ``force_expert``), or ``None`` when no single expert does (e.g. without a router).
    """
    kinds = getattr(model, "kinds", None)
    if not hasattr(model, "route"):
        return None
    chosen = model.route(interaction)
    if chosen is None:  # e.g. FamouSRec without a router: every expert serves every user
        return None
    return [(int(j), kinds[int(j)] if kinds is not None else str(int(j))) for j in chosen.tolist()]


class Recommender:
    """A model loaded from a checkpoint, ready to serve (see the module docstring)."""

    def __init__(self, checkpoint_path: str, device=None, overrides=None):
        import torch

        from recbole_famous import checkpoint, pipeline

        overrides = {"state": "WARNING", "show_progress": False, **dict(overrides or {})}
        if device is not None:
            overrides["use_gpu"] = str(device).startswith("cuda")
        ckpt = checkpoint.load(checkpoint_path)
        meta = checkpoint.meta(ckpt)
        if not meta.get("data"):
            raise UsageError(
                f"checkpoint {checkpoint_path} has no item vocabulary (written by plain RecBole or an older "
                "version): evaluate it with --eval_only, or re-train to serve it"
            )
        trained = pipeline.load_trained(ckpt, overrides=overrides, use="eval", with_data=False,
                                        on_config=_sequential_only)
        config = trained.config
        self.device = torch.device(device) if device is not None else torch.device(config["device"])
        self.model = trained.model.to(self.device).eval()
        self.config = config
        self.checkpoint = meta["path"]
        self.tokens = list(meta["data"]["item_tokens"])
        self.token_id = {t: i for i, t in enumerate(self.tokens) if i > 0}  # id 0 is RecBole's [PAD]
        counts = torch.tensor(meta["data"]["item_counts"], dtype=torch.float64)
        counts[0] = -1
        self.popular = counts.argsort(descending=True, stable=True).tolist()
        self.max_len = int(config["MAX_ITEM_LIST_LENGTH"])

    def recommend(self, histories, top_n: int = 10, exclude_seen: bool = True) -> list[dict]:
        import torch
        from recbole.data.interaction import Interaction

        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise UsageError(f"top_n must be a positive integer, got {top_n!r}")
        if isinstance(histories, Mapping):
            pairs = list(histories.items())
        elif isinstance(histories, (list, tuple)):
            pairs = list(enumerate(histories))
        else:
            raise UsageError("histories must be a mapping user -> list of item ids, or a list of such lists")
        answers, batch = [], []
        for user, history in pairs:
            answer = {"user": user, "items": [], "scores": [], "expert": None, "expert_index": None,
                      "history_used": 0, "unknown_items": [], "truncated": 0, "fallback": None, "error": None}
            answers.append(answer)
            if not isinstance(history, (list, tuple)):
                answer["error"] = f"history must be a list of item ids, got {type(history).__name__}"
                continue
            ids = []
            for item in history:
                index = self.token_id.get(str(item))
                if index is None:
                    answer["unknown_items"].append(item)
                else:
                    ids.append(index)
            if len(ids) > self.max_len:
                answer["truncated"] = len(ids) - self.max_len
                ids = ids[-self.max_len:]
            answer["history_used"] = len(ids)
            if not ids:
                answer["fallback"] = "popularity"
                answer["items"] = [self.tokens[i] for i in self.popular[:top_n]]
                continue
            batch.append((answer, ids, set(ids)))
        if batch:
            model = self.model
            seq = torch.zeros(len(batch), self.max_len, dtype=torch.long)
            lengths = torch.tensor([len(ids) for _, ids, _ in batch], dtype=torch.long)
            for row, (_, ids, _) in enumerate(batch):
                seq[row, : len(ids)] = torch.tensor(ids)
            seq, lengths = seq.to(self.device), lengths.to(self.device)
            interaction = Interaction({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths})
            with torch.no_grad():
                scores = model.full_sort_predict(interaction)
                scores = scores.view(len(batch), -1).float().clone()
                experts = routed_experts(model, interaction)
            scores[:, 0] = -torch.inf
            for row, (_, _, seen) in enumerate(batch):
                if exclude_seen:
                    scores[row, list(seen)] = -torch.inf
            k = min(top_n, scores.size(1) - 1)
            values, indices = scores.topk(k, dim=1)
            for row, (answer, _, _) in enumerate(batch):
                keep = torch.isfinite(values[row])
                answer["items"] = [self.tokens[i] for i in indices[row][keep].tolist()]
                answer["scores"] = [round(float(v), 6) for v in values[row][keep].tolist()]
                if experts is not None:
                    answer["expert_index"], answer["expert"] = experts[row]
        return answers


def _sequential_only(config) -> None:
    from recbole.utils import ModelType

    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        raise UsageError(f"serving takes item histories: {config['model']} is not a sequential model")


def recommend(checkpoint, histories, top_n: int = 10, *, exclude_seen: bool = True, device=None) -> list[dict]:
    """Top-N items (original ids) per user from a checkpoint path or a loaded ``Recommender``."""
    rec = checkpoint if isinstance(checkpoint, Recommender) else Recommender(checkpoint, device=device)
    return rec.recommend(histories, top_n=top_n, exclude_seen=exclude_seen)


def _original_ids(config) -> dict:
    """Item token -> original id (ASIN, StockCode) from the converter's ``<dataset>.item_map``; {} without one."""
    import os

    path = os.path.join(config["data_path"], f"{config['dataset']}.item_map")
    try:
        with open(path, encoding="utf-8") as f:
            next(f)
            return dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    except (OSError, StopIteration):
        return {}


def _whole_histories(model, inter):
    """Each test row's history with its test item appended (the oldest dropped when the window is full)."""
    import torch

    seq, length = inter[model.ITEM_SEQ].clone(), inter[model.ITEM_SEQ_LEN].clone()
    target, width = inter[model.ITEM_ID], seq.shape[1]
    full = length >= width
    seq[full] = torch.roll(seq[full], -1, dims=1)
    rows = torch.arange(len(seq))
    seq[rows, torch.where(full, width - 1, length)] = target
    return seq, torch.where(full, length, length + 1)


def export_all_users(checkpoint_path: str, out_path: str, top_n: int = 10, *, exclude_seen: bool = True,
                     device=None, batch_size: int = 1024, echo=None) -> dict:
    """Write every user's top-N (original ids) from a checkpoint into a CSV; returns counts. The dataset is loaded
    (the users' histories are there); the file is written under a temporary name and moved into place at the end."""
    import csv
    import os

    import torch
    from recbole.data.interaction import Interaction

    from recbole_famous import pipeline

    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise UsageError(f"top_n must be a positive integer, got {top_n!r}")
    overrides = {"state": "WARNING", "show_progress": False}
    if device is not None:
        overrides["use_gpu"] = str(device).startswith("cuda")
    trained = pipeline.load_trained(checkpoint_path, overrides=overrides, use="eval", on_config=_sequential_only)
    model, dataset = trained.model.eval(), trained.dataset
    dev = torch.device(device) if device is not None else pipeline.model_device(model)
    model.to(dev)
    inter = trained.test_data._dataset.inter_feat
    seq, length = _whole_histories(model, inter)
    users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
    tokens = dataset.field2id_token[dataset.iid_field]
    original = _original_ids(trained.config)
    k = min(top_n, len(tokens) - 1)
    tmp = f"{out_path}.tmp{os.getpid()}"
    total, done = len(seq), 0
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f, torch.no_grad():
            writer = csv.writer(f)
            writer.writerow(["user_id", "rank", "item_id", "original_id", "score"])
            for start in range(0, total, batch_size):
                s, n = seq[start:start + batch_size].to(dev), length[start:start + batch_size].to(dev)
                batch = Interaction({model.ITEM_SEQ: s, model.ITEM_SEQ_LEN: n,
                                     dataset.uid_field: inter[dataset.uid_field][start:start + batch_size].to(dev)})
                scores = model.full_sort_predict(batch).view(len(s), -1).float().clone()
                scores[:, 0] = -torch.inf
                if exclude_seen:
                    scores.scatter_(1, s, -torch.inf)
                values, indices = scores.topk(k, dim=1)
                for row in range(len(s)):
                    user = users[start + row]
                    for rank, (item, value) in enumerate(zip(indices[row].tolist(), values[row].tolist()), 1):
                        if value == -torch.inf:
                            break
                        token = str(tokens[item])
                        writer.writerow([user, rank, token, original.get(token, token), f"{value:.6g}"])
                before, done = done, done + len(s)
                if echo is not None and (done == total or 10 * done // total > 10 * before // total):
                    echo(f"  {done:,} / {total:,} users")  # about every tenth
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"users": total, "top_n": k, "path": out_path}


def summary(answers: list[dict]) -> str:
    """One line on what was dropped, truncated or replaced (the CLI prints it on stderr)."""
    unknown = sum(len(a["unknown_items"]) for a in answers)
    parts = [f"{len(answers)} user(s) served"]
    if unknown:
        parts.append(f"{unknown} unknown item id(s) dropped")
    truncated = sum(1 for a in answers if a["truncated"])
    if truncated:
        parts.append(f"{truncated} history(ies) cut to the most recent items")
    fallback = sum(1 for a in answers if a["fallback"])
    if fallback:
        parts.append(f"{fallback} empty history(ies) given the most popular items")
    errors = sum(1 for a in answers if a["error"])
    if errors:
        parts.append(f"{errors} malformed history(ies) skipped")
    return "; ".join(parts)


if __name__ == "__main__":  # the command line moved; say where, in one line
    print("python -m recbole_famous.serving is now: python run_recbole_famous.py recommend --checkpoint=PATH ... "
          "(recbole_famous/cli/recommend.py)", file=sys.stderr)
    sys.exit(2)
