"""`train.side_by_side`: independent runs in their own processes, same numbers as one after the other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.config import from_dict
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.side_by_side import TrainJob, train_side_by_side

pytestmark = pytest.mark.slow


def job(out: Path, **top) -> TrainJob:
    d = {
        "stage": "student",
        "model": {"preset": "ghostnet_nano", "input_size": [64, 192], "max_depth": 80.0},
        "data": {"kind": "synthetic", "train_frames": 8, "val_frames": 2, "test_frames": 2},
        "distill": {"mode": "baseline"},
        "steps": 3,
        "batch_size": 2,
        "num_workers": 0,
        "val_every": 0,
        "ckpt_every": 0,
        "log_every": 1,
        "out_dir": str(out),
        **top,
    }
    return TrainJob(from_dict(TrainConfig, d), overwrite=True)


def test_runs_side_by_side_give_the_numbers_of_the_same_runs_at_one_thread_here(tmp_path):
    jobs = [job(tmp_path / "a", seed=0), job(tmp_path / "b", seed=1)]
    train_side_by_side(jobs, cores=2)  # two processes, one thread each
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_side_by_side([job(tmp_path / "a_here", seed=0), job(tmp_path / "b_here", seed=1)], cores=1)
    finally:
        torch.set_num_threads(threads)
    for name in ("a", "b"):
        there, here = (load_checkpoint(tmp_path / n / "last.pt") for n in (name, f"{name}_here"))
        assert there["step"] == here["step"] == 3
        assert all(torch.equal(there["model"][k], here["model"][k]) for k in here["model"])
    a, b = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("a", "b"))
    assert not all(torch.equal(a[k], b[k]) for k in a)  # two seeds: two different runs


def test_a_failing_run_is_raised_after_its_neighbour_finished(tmp_path):
    bad = job(tmp_path / "bad", distill={"mode": "full"}, teacher_checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        train_side_by_side([bad, job(tmp_path / "good")], cores=2)
    assert load_checkpoint(tmp_path / "good" / "last.pt")["step"] == 3


def test_cores_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="cores must be >= 1, got 0"):
        train_side_by_side([job(tmp_path / "a")], cores=0)
