"""Where does FamouSRec win and lose against another model? Its paired per-user values, in groups of users.

``bench compare`` gives one paired test over all test users. This splits the same per-user values (``peruser.py``:
RecBole's own per-user NDCG@10 / HR@10 of each run's best epoch on the test split) into groups of users:

* by **test-history length**: the number of the user's interactions before the test item (the model sees at most
  ``MAX_ITEM_LIST_LENGTH`` of them);
* by the **test item's training count**: how many training interactions the test item has (the long tail, where
  a learned embedding has had little to learn from, against the head).

``--split valid`` does the same on the validation split, whose per-user values are computed once from each run's
best checkpoint (checked against its recorded validation metrics, cached beside the test ones): a gap on test can be
looked into there, where settings are chosen.

Per seed, first the paired test over all the split's users (``compare.paired_test``: users better / worse, Wilcoxon
signed-rank p), so a model that is not ``compare``'s best baseline gets one too; then per group: users, both models'
mean NDCG@10 and HR@10, the mean paired difference, and on how many users each model is better. Each seed of ours is
paired with the same seed of the other model (a rule, which does not depend on the seed, with its one run), users
matched by id, as in ``compare.paired_test``.

The groups come from RecBole's own leave-one-out split of the dataset, built with the run's settings (its
filtering, id remapping and time order, ties included, so the ids and items are the records'): the test item, the
validation item before it, the training interactions before that. Only records already made are read; nothing is
chosen here: it describes a gap that the tables report.
"""

from __future__ import annotations

import os

import numpy as np

from recbole_famous import pipeline
from recbole_famous.bench import compare, peruser
from recbole_famous.errors import UsageError

LENGTH_EDGES = (0, 6, 8, 11, 21, 51)  # test-history length groups [a, b); the last is open
COUNT_EDGES = (0, 10, 30, 100, 300)  # training count of the test item, groups [a, b); the last is open
GROUPINGS = (("{split}-history length", "history_length", LENGTH_EDGES),
             ("{split} item's training count", "item_count", COUNT_EDGES))
SPLITS = {"test": "test", "valid": "validation"}


def user_facts(model: str, dataset: str, overrides: dict, split: str = "test") -> dict:
    """``{"user_id", "target", "history_length", "item_count"}``, one entry per user of ``split`` (``test`` or
    ``valid``) sorted by internal user id, from RecBole's own split of the dataset built with ``overrides`` (a run's
    own): its training split holds one row per training target (each user's first item is in the row of length 1),
    its validation and test splits the target items."""
    config = pipeline.build_config(model, dataset, overrides={**overrides, "show_progress": False, "state": "WARNING"})
    protocol = config["eval_args"]
    if protocol.get("split") != {"LS": "valid_and_test"} or protocol.get("order") != "TO":
        raise UsageError(f"breakdown needs the leave-one-out split in time order; {dataset} has {protocol}")
    data = pipeline.create_dataset(config)
    train, valid, test = (part.inter_feat for part in data.build())
    evaluated = test if split == "test" else valid
    uid, iid, length = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["ITEM_LIST_LENGTH_FIELD"]
    first = train[iid + config["LIST_SUFFIX"]][train[length] == 1, 0]
    counts = np.bincount(np.concatenate([train[iid].numpy(), first.numpy()]), minlength=data.item_num)
    targets = np.bincount(train[uid].numpy(), minlength=data.user_num)  # training targets per user
    order = np.argsort(evaluated[uid].numpy())
    users, items = evaluated[uid].numpy()[order], evaluated[iid].numpy()[order]
    # before the target: the first item, the training targets (and, for the test item, the validation item)
    before = targets[users] + (2 if split == "test" else 1)
    return {"user_id": users, "target": items, "history_length": before, "item_count": counts[items]}


def group_labels(edges) -> list:
    return [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])] + [f"{edges[-1]}+"]


def aligned(values: dict, user_id: np.ndarray, what: str) -> dict:
    """``values`` reordered to ``user_id`` (the users of the split); every user must be there exactly once."""
    ids = values["user_id"]
    order = np.argsort(ids)
    if len(ids) != len(user_id) or not np.array_equal(ids[order], user_id):
        raise UsageError(f"the per-user values of {what} do not hold the split's users "
                         f"({len(ids)} users against {len(user_id)})")
    return {k: np.asarray(v)[order] for k, v in values.items()}


def group_rows(ours: dict, other: dict, key: np.ndarray, edges) -> list:
    """One dict per nonempty group of ``key`` (users aligned): users, means, mean difference, better / worse."""
    which = np.searchsorted(np.asarray(edges), key, side="right") - 1
    rows = []
    for i, label in enumerate(group_labels(edges)):
        m = which == i
        if not m.any():
            continue
        a, b = ours["ndcg@10"][m], other["ndcg@10"][m]
        rows.append({"group": label, "users": int(m.sum()), "ours": float(a.mean()), "other": float(b.mean()),
                     "diff": float((a - b).mean()), "better": int((a > b).sum()), "worse": int((a < b).sum()),
                     "ours_hit": float(ours["hit@10"][m].mean()), "other_hit": float(other["hit@10"][m].mean())})
    return rows


def _table(ours: str, other: str, title: str, rows: list) -> list:
    lines = [f"| {title} | users | {ours} NDCG@10 | {other} NDCG@10 | difference | relative | "
             f"{ours} better / worse | {ours} HR@10 | {other} HR@10 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rel = f"{r['diff'] / r['other']:+.1%}" if r["other"] > 0 else "-"
        lines.append(f"| {r['group']} | {r['users']:,} | {r['ours']:.4f} | {r['other']:.4f} | {r['diff']:+.4f} | "
                     f"{rel} | {r['better']:,} / {r['worse']:,} | {r['ours_hit']:.4f} | {r['other_hit']:.4f} |")
    return lines


def values_for(entry: dict, split: str, echo=print) -> dict:
    """A finished run's per-user values on ``split``: the test ones where ``compare`` cached them, the validation
    ones computed once from its checkpoint and cached beside them (``<record>.peruser-valid.npz``)."""
    return peruser.for_record(entry["record"], peruser.cache_path(entry["path"], split=split), echo=echo, split=split)


def write(specs, out_dir: str, doc_dir: str, dataset: str, ours: str, others: list, command: str,
          echo=print, split: str = "test") -> str:
    """``breakdown_<dataset>[_<variant of ours>][_valid].md`` in ``doc_dir`` from the finished runs among ``specs``; its
    path."""
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {sorted(SPLITS)}, got {split!r}")
    name = SPLITS[split]
    entries = compare.entries([s for s in specs if s.dataset == dataset], out_dir)
    models = compare.by_dataset(entries).get(dataset, {})
    mine, _ = compare.seed_pairs(models, ours, None)
    if not mine:
        raise UsageError(f"no finished run of {ours} on {dataset}")
    first = mine[min(mine)]["spec"]
    facts = user_facts(first.model, dataset, first.overrides_dict(), split)
    source = ("the values of `bench compare`'s paired test; only the test split, read by each run's own final test"
              if split == "test" else "computed from each run's best checkpoint, checked against its recorded "
              "validation metrics")
    lines = [f"# {dataset}: where {ours} wins and loses, per {name} user", "",
             f"Per-user {name} NDCG@10 / HR@10 of each run's best validated epoch ({source}), split by the user's "
             f"history length before the {name} item and by that item's training count "
             "(`recbole_famous/bench/breakdown.py`). Nothing here chose a setting.", ""]
    for other in others:
        _, theirs = compare.seed_pairs(models, ours, other)
        seeds = sorted(set(mine) & set(theirs))
        lines += [f"## {ours} against {other}", ""]
        if not seeds:
            lines += [f"No seed finished by both ({ours}: {sorted(mine)}, {other}: {sorted(theirs)}).", ""]
            continue
        for seed in seeds:
            pair = []
            for e in (mine[seed], theirs[seed]):
                what = f"{e['spec'].model} seed {e['spec'].seed}"
                pair.append(aligned(values_for(e, split, echo), facts["user_id"], what))
            test = compare.paired_test(*pair, metric="ndcg@10")
            lines += [f"Seed {seed}: {len(facts['user_id']):,} {name} users; overall NDCG@10 "
                      f"{pair[0]['ndcg@10'].mean():.4f} against {pair[1]['ndcg@10'].mean():.4f}, paired difference "
                      f"{test['mean_diff']:+.4f}, {ours} better / worse on {test['ours_better']:,} / "
                      f"{test['ours_worse']:,} users, Wilcoxon p {compare.format_p(test['wilcoxon_p'])}.", ""]
            for title, key, edges in GROUPINGS:
                rows = group_rows(pair[0], pair[1], facts[key], edges)
                lines += _table(ours, other, title.format(split=name), rows) + [""]
    lines += [f"Made by: `{command}`.", ""]
    os.makedirs(doc_dir, exist_ok=True)
    variant = first.variant and "_" + first.variant
    path = os.path.join(doc_dir, f"breakdown_{dataset}{variant}{'' if split == 'test' else '_' + split}.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
