"""Shared test setup: deterministic, single-threaded torch so the suite behaves the same on 2-core CI."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def shared_dir():
    """`../shared` beside the checkout (real KITTI split lists); skip when absent."""
    path = os.path.abspath(SHARED)
    if not os.path.isdir(os.path.join(path, "data", "kitti_splits")):
        pytest.skip("../shared/data/kitti_splits not beside the checkout")
    return path
