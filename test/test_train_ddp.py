"""DDP through torchrun: 2 CPU processes (gloo) train a few steps, write exactly one checkpoint set, and a
resumed multi-process run continues exactly (every rank's RNG state and data position are restored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from adu_depth_core.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed"
    ),
]

STEPS = 4


def recipe(tmp_path: Path) -> Path:
    cfg = {
        "stage": "teacher",
        "model": {"preset": "nano", "input_size": [64, 192]},
        "data": {"kind": "synthetic", "train_frames": 12, "val_frames": 2, "test_frames": 2},
        "optim": {"lr": 1e-3, "end_lr": 1e-4},
        "steps": STEPS,
        "batch_size": 4,  # global: 2 samples per process
        "num_workers": 0,
        "val_every": 2,
        "ckpt_every": 2,
        "log_every": 1,
        "deterministic": True,
        "device": "cpu",
        "progress": False,
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "adu_depth_core.cli",
        *args,
    ]
    # own session, so a hang kills torchrun *and* its workers
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    ) as popen:
        try:
            stdout, stderr = popen.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            stdout, stderr = popen.communicate()
            pytest.fail(f"torchrun hung:\n{stdout[-3000:]}\n{stderr[-6000:]}")
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    assert proc.returncode == 0, (
        f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc


def test_torchrun_two_processes_write_one_checkpoint_set_and_resume_exactly(tmp_path):
    cfg = recipe(tmp_path)
    out = tmp_path / "run"
    proc = torchrun("train", "--config", str(cfg), "--out", str(out))

    # exactly one set of outputs: rank 1 wrote nothing of its own, no temp files were left behind
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "best.pt",
        "ckpt_0000002.pt",
        "ckpt_0000004.pt",
        "config.yaml",
        "last.pt",
        "metrics.jsonl",
        "tb",
        "train.log",
    ]
    assert len(list((out / "tb").iterdir())) == 1
    assert proc.stdout.count('"out_dir"') == 1  # the summary is printed by rank 0 only
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, STEPS + 1))
    assert [r["step"] for r in rows if r["kind"] == "val"] == [2, 4]

    last = load_checkpoint(out / "last.pt")
    assert last["step"] == STEPS and last["data_state"]["world_size"] == 2
    assert last["data_state"]["per_rank_batch"] == 2
    assert len(last["rng"]) == 2 and not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])
    assert last["focal_stats"]["count"] == STEPS * 4  # focal statistics gathered over both ranks
    assert last["meta"]["world_size"] == 2 and last["meta"]["focal_px"] > 0
    assert not any(k.startswith("module.") for k in last["model"])  # the unwrapped model is saved

    # kill-and-resume under DDP: continue from step 2 into another folder, reach the same weights
    resumed = tmp_path / "resumed"
    torchrun("train", "--config", str(cfg), "--out", str(resumed), "--resume", str(out / "ckpt_0000002.pt"))
    again = load_checkpoint(resumed / "last.pt")
    assert again["step"] == STEPS
    assert all(torch.equal(last["model"][k], again["model"][k]) for k in last["model"])
