"""Smoke check of the five datasets: SASRec through recbole_famous.runner.run, one epoch whose training is
capped at BUDGET seconds (wall clock), then full-ranking validation and test. One JSON line per dataset is
appended to OUT/summary.jsonl; the datasets are prepared on first use from RECBOLE_FAMOUS_SOURCE.

  BUDGET=360 OUT=/tmp/sasrec3 RECBOLE_FAMOUS_SOURCE=../shared/datasets \\
    nice -n 10 python benchmarks/sasrec_datasets_smoke.py Instruments Arts OR Tmall Office
"""
import json, os, sys, time

import recbole_famous  # noqa: F401
from recbole_famous import trainer as T
from recbole_famous.runner import run

BUDGET = float(os.environ.get("BUDGET", 360))
OUT = os.environ.get("OUT", "/tmp/sasrec3")
SOURCE = os.environ.get("RECBOLE_FAMOUS_SOURCE", "../shared/datasets")
STEPS = []


class Budgeted:
    def __init__(self, data, seconds):
        self._data, self._seconds, self.batches = data, seconds, 0

    def __getattr__(self, k):
        return getattr(self._data, k)

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        end = time.perf_counter() + self._seconds
        for b in self._data:
            yield b
            self.batches += 1
            if time.perf_counter() > end:
                break


_orig = T.Trainer._train_epoch


def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
    w = Budgeted(train_data, BUDGET)
    out = _orig(self, w, epoch_idx, loss_func, show_progress)
    STEPS.append((w.batches, len(train_data)))
    return out


T.Trainer._train_epoch = _train_epoch

for name in sys.argv[1:]:
    t = time.perf_counter()
    STEPS.clear()
    try:
        r = run("SASRec", name, overrides={
            "data_path": os.path.join(OUT, "dataset/"), "source_path": SOURCE,
            "epochs": 1, "show_progress": False, "use_gpu": False, "seed": 2020,
            "checkpoint_dir": os.path.join(OUT, "saved"), "results_dir": os.path.join(OUT, "results")})
        row = {"dataset": name, "test": r["test_result"], "valid": r["best_valid_result"],
               "batches_trained_of": STEPS, "epoch_seconds": r["epoch_seconds"], "data_seconds": r["data_seconds"],
               "test_seconds": r["test_seconds"], "users": r["num_users"], "items": r["num_items"],
               "inters": r["num_interactions"], "total": time.perf_counter() - t}
    except Exception as e:
        row = {"dataset": name, "error": repr(e)}
    with open(os.path.join(OUT, "summary.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
