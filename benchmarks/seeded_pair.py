"""Seeded before/after check of a change that must change no result: SASRec and FamouSRec, one epoch each on a
real ml-100k slice (the interactions of its first USERS users), through ``recbole_famous.runner.run`` (the one
entry point every version of the runner has). Prints one JSON object: per model, the best-validation and test
metrics and the training loss. Run it on two checkouts and compare the outputs; identical numbers = no change.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/seeded_pair.py [OUT_DIR]
"""

import json
import os
import sys
import tempfile

import torch

torch.set_num_threads(1)

import recbole_famous  # noqa: E402,F401  (RecBole compatibility fixes first)
from recbole_famous.data.slices import write_ml100k_slice
from recbole_famous.runner import run

USERS = 200


def make_slice(root: str) -> str:
    return write_ml100k_slice(root, "mlpair", USERS)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="seeded_pair_")
    data = make_slice(os.path.join(out, "data"))
    common = {"data_path": data, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 20, "show_progress": False, "state": "WARNING",
              "checkpoint_dir": os.path.join(out, "saved"), "results_dir": os.path.join(out, "results"), "seed": 2020,
              "metric_decimal_place": 10}
    report = {}
    for model in ("SASRec", "FamouSRec"):
        result = run(model, "mlpair", overrides=common)
        loss = result["train_loss"]
        report[model] = {"valid": result["best_valid_result"], "test": result["test_result"],
                         "train_loss": {str(k): v for k, v in loss.items()}}
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
