"""Finished run records kept in git, so that a benchmark on a new machine starts where the last one stopped.

The benchmark's output folder (``results/bench``, ``runs.py``) is git-ignored: its records, logs and checkpoints
go with the machine. A profile whose runs take longer than one machine lives (``cpu`` on all five datasets,
``converged``) would rerun every finished run on the next one. So:

* ``archive`` copies each planned run's finished record into a committed folder, by default
  ``docs/results/<profile>/records/<dataset>/<model>[--<variant>]/seed<N>.json``, with its per-user test metrics
  (``peruser.py``, the paired test's input) beside it as ``seed<N>.peruser.npz`` where the output folder has them
  (``compare`` made them) or, with ``peruser=True``, computed now from the run's checkpoint where this machine has
  it (a record restored here without them is archived without them, and counted), and the inference results
  cached beside it (``runs.DERIVED``: the routing probe's ``seed<N>.routing.json``, Table 5's
  ``seed<N>.table5.json``) and its per-user validation metrics (``seed<N>.peruser-valid.npz``, ``bench breakdown
  --split valid``) where the output folder has them. A record already archived is replaced only by a different one
  (a rerun), which is said.
* ``bench run`` does the first right after each run it finishes (``__main__._archiver``, unless ``--no-archive``),
  per-user values included, so that a machine that goes away after the run takes nothing with it that the
  tables need.
* ``restore`` copies archived records back into the output folder, never over a record that is there, and not a
  record made with other settings than the run it would stand for (``runs.changed_keys``: the profile was
  edited since; it is listed, not restored). ``run`` then skips the restored runs, ``status`` lists them as
  finished, ``table`` and ``compare`` use them (``compare`` reads the archived per-user values, so the paired test
  needs no checkpoint; ``routing`` and ``ablations`` read the archived inference results likewise).
* ``bench routing``, ``bench ablations`` and ``bench breakdown --split valid`` archive the inference results they
  compute (``cli/bench.py``).

What does not travel: a run's checkpoints (not for git), so ``analyze``, a routing probe or Table 5 not yet
computed, and the efficiency columns measured from a trained model need the machine the run finished on; and
runs half done, which restart from their first epoch on a new machine.
"""

from __future__ import annotations

import filecmp
import os
import shutil

from recbole_famous.bench import peruser, runs
from recbole_famous.errors import UsageError


def archive_path(dest: str, spec) -> str:
    """Where ``spec``'s record goes under ``dest``: its key without the profile's folder."""
    return os.path.join(dest, os.path.relpath(spec.key, spec.profile))


def _copy(src: str, dst: str) -> None:
    """Atomic copy (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _copy_derived(src: str, dst: str, replace: bool) -> int:
    """Copy the inference results cached beside record ``src`` (``runs.DERIVED``, the per-user validation metrics)
    to beside ``dst``: those not there yet, or, with ``replace``, those that differ. How many were copied."""
    copied = 0
    pairs = [(runs.derived_path(src, name), runs.derived_path(dst, name)) for name in runs.DERIVED]
    pairs.append((peruser.cache_path(src, split="valid"), peruser.cache_path(dst, split="valid")))
    for a, b in pairs:
        if os.path.isfile(a) and (not os.path.isfile(b) or (replace and not filecmp.cmp(a, b, shallow=False))):
            _copy(a, b)
            copied += 1
    return copied


def archive(specs, out_dir: str, dest: str, with_peruser: bool = False, echo=print) -> dict:
    """Copy the finished records of ``specs`` from ``out_dir`` to ``dest`` (with their per-user values and cached
    inference results); counts."""
    counts = {"archived": 0, "replaced": 0, "unchanged": 0, "not_finished": 0, "peruser": 0, "no_peruser": 0,
              "derived": 0}
    for spec in specs:
        src = runs.record_path(out_dir, spec)
        if runs.state(out_dir, spec) != "finished":
            counts["not_finished"] += 1
            continue
        dst = archive_path(dest, spec)
        if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
            counts["unchanged"] += 1
        else:
            counts["replaced" if os.path.isfile(dst) else "archived"] += 1
            if os.path.isfile(dst):
                echo(f"  {spec.label} on {spec.dataset}, seed {spec.seed}: the archived record is replaced by "
                     f"the different one in {out_dir} (a rerun)")
            _copy(src, dst)
        counts["derived"] += _copy_derived(src, dst, replace=True)
        record = runs.load_record(src)
        if peruser.load_cached(peruser.cache_path(dst), record) is not None:
            continue  # its per-user values are archived already
        values = peruser.load_cached(peruser.cache_path(src), record)
        if values is None and with_peruser:
            if peruser.obtainable(record, peruser.cache_path(src)):
                values = peruser.for_record(record, peruser.cache_path(src), echo=echo)
            else:  # e.g. restored from the archive on this machine without them: its checkpoint stayed on the old one
                counts["no_peruser"] += 1
                echo(f"  {spec.label} on {spec.dataset}, seed {spec.seed}: no per-user values (neither cached nor "
                     "its checkpoint on this machine); the record is archived without them")
        if values is not None:
            peruser.check(values, record["metrics"], f"{spec.label} on {spec.dataset}, seed {spec.seed}")
            peruser.save(peruser.cache_path(dst), record, values, compressed=True)
            counts["peruser"] += 1
    return counts


def restore(specs, dest: str, out_dir: str, echo=print) -> dict:
    """Copy the archived records of ``specs`` from ``dest`` into ``out_dir`` where it has none; counts."""
    if not os.path.isdir(dest):
        raise UsageError(f"no archived run records in {dest} (made by `python -m recbole_famous.bench archive`)")
    counts = {"restored": 0, "present": 0, "running": 0, "other_settings": 0, "not_archived": 0, "derived": 0}
    for spec in specs:
        src = archive_path(dest, spec)
        record = runs.load_record(src)
        if record is None:
            counts["not_archived"] += 1
            continue
        changed = runs.changed_keys(record, spec)
        if changed:
            counts["other_settings"] += 1
            echo(f"  not restored: {src} was made with other settings ({', '.join(changed)}) than the profile's "
                 f"{spec.label} on {spec.dataset}, seed {spec.seed}")
            continue
        dst = runs.record_path(out_dir, spec)
        if os.path.isfile(dst):
            counts["present"] += 1
            if filecmp.cmp(src, dst, shallow=False):  # the same run: bring what was computed from it elsewhere
                counts["derived"] += _copy_derived(src, dst, replace=False)
            continue
        if runs.state(out_dir, spec) == "running":  # its own record comes when it finishes
            counts["running"] += 1
            continue
        _copy(src, dst)
        if os.path.isfile(peruser.cache_path(src)):
            _copy(peruser.cache_path(src), peruser.cache_path(dst))
        counts["derived"] += _copy_derived(src, dst, replace=False)
        counts["restored"] += 1
    return counts
