"""Shared fixtures: small real data slices, and settings that keep test runs short and self-contained."""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.join(os.path.dirname(REPO), "shared", "datasets")


from recbole_famous.data.slices import write_ml100k_slice


@pytest.fixture(scope="session")
def ml100k_slice(tmp_path_factory):
    """A real slice of MovieLens-100K: the interactions of its first 120 users (file order), as dataset 'mlslice'.

    Returns the data_path folder that holds ``mlslice/mlslice.inter``.
    """
    return write_ml100k_slice(tmp_path_factory.mktemp("data"), "mlslice", 120)


@pytest.fixture
def quick_overrides(ml100k_slice, tmp_path):
    """Overrides for a seconds-long real run on the ml-100k slice, with every output under tmp_path."""
    return {
        "data_path": ml100k_slice,
        "epochs": 1,
        "MAX_ITEM_LIST_LENGTH": 10,
        "show_progress": False,
        "train_batch_size": 256,
        "checkpoint_dir": str(tmp_path / "saved"),
        "results_dir": str(tmp_path / "results"),
        "state": "WARNING",
    }
