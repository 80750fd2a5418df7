"""Settings shared by the reliability tests (tests/test_reliability_*.py).

``SMALL`` narrows the ml-100k slice to its users with at most 95 interactions (42 users, 137 items, 1,000 training
sequences: 5 batches of 200, which two processes split evenly) and makes the models small, so that a real
two-epoch run takes seconds.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

SMALL = {"user_inter_num_interval": "[5,95]", "train_batch_size": 200, "hidden_size": 16, "inner_size": 32,
         "learning_rate": 0.01}


def quick(ml100k_slice: str, folder) -> dict:
    """``quick_overrides`` (tests/conftest.py) for a module-scoped folder, plus ``SMALL``."""
    return {
        "data_path": ml100k_slice,
        "epochs": 1,
        "MAX_ITEM_LIST_LENGTH": 10,
        "show_progress": False,
        "checkpoint_dir": str(folder / "saved"),
        "results_dir": str(folder / "results"),
        "state": "WARNING",
        **SMALL,
    }


def sha1(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for the module's runs: on a busy 2-core machine, two intra-op threads made an epoch of
    these small models 30x slower (spin-waiting), one thread keeps them at a fraction of a second."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
