"""CPU training-step time per preset and teacher fusion, side by side in one run (docs/benchmarks/train.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py            # the demo's networks
    .venv/bin/python benchmarks/bench_train_step.py --size 96x320 --batch 8 --reps 7

One step = forward, a depth (+ log-variance) loss, backward and an Adam update at the given batch; the
median of `--reps` steps after two warm-up steps. Student rows are the baseline's step (no teacher, no
adapters); a distilled step adds a teacher forward and the adapters (see docs/benchmarks/train.md). The
`proxy` row adds the teacher option `proxy` (OpenCV SGBM on every pair of the batch, `distill/proxy.py`); the
`sgbm hint` row is the teacher with `teacher_hint: sgbm` (SGBM inside its forward pass, `models/stereo.py`);
`refine` adds the full-resolution refinement (`model.refine`, `models/refine.py`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adu_depth_core.config import parse_size
from adu_depth_core.data.synthetic import SyntheticRig, split_seed
from adu_depth_core.distill import ProxyConfig, sgbm_proxy_depth
from adu_depth_core.models import ModelConfig, build_model
from adu_depth_core.sysinfo import cpu_name

COST_VOLUME = {"preset": "nano", "teacher_fusion": "cost_volume", "max_disparity": 96}
# (label, stage, model config overrides, with the SGBM proxy labels)
ROWS = (
    ("teacher nano, concat (paper's early fusion)", "teacher", {"preset": "nano"}, False),
    ("teacher nano, cost_volume", "teacher", COST_VOLUME, False),
    ("teacher nano, cost_volume + proxy (SGBM per pair)", "teacher", COST_VOLUME, True),
    ("teacher nano, cost_volume + sgbm hint", "teacher", {**COST_VOLUME, "teacher_hint": "sgbm"}, False),
    ("teacher nano, cost_volume + sgbm hint + refine (demo)", "teacher",
     {**COST_VOLUME, "teacher_hint": "sgbm", "refine": True}, False),
    ("student nano (Swin)", "student", {"preset": "nano"}, False),
    ("student ghostnet_nano", "student", {"preset": "ghostnet_nano"}, False),
    ("student ghostnet_nano + refine", "student", {"preset": "ghostnet_nano", "refine": True}, False),
)


def rig_batch(size: tuple[int, int], batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 6, H, W) rig stereo pairs (SGBM's time depends on the content), their focal and baseline."""
    rig = SyntheticRig(size=size)
    frames = [rig.render(split_seed("train", i)) for i in range(batch)]
    x = torch.stack([torch.from_numpy(np.concatenate([f.left, f.right], 2)).permute(2, 0, 1) for f in frames])
    focal = torch.tensor([f.K[0, 0] for f in frames], dtype=torch.float32)
    return x.float() / 255, focal, torch.full((batch,), rig.config.baseline)


def step_seconds(
    stage: str, overrides: dict, size: tuple[int, int], batch: int, reps: int, proxy: bool
) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=size, **overrides), stage)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    stereo, focal, baseline = rig_batch(size, batch)
    x = stereo if model.in_chans == 6 else stereo[:, :3]
    proxy_cfg = ProxyConfig(weight=1.0, max_disparity=96)
    gt = torch.zeros(batch, 1, *size)
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        if proxy:
            sgbm_proxy_depth(x[:, :3], x[:, 3:], focal, baseline, gt, proxy_cfg)
        out = model(x)
        loss = out.depth.mean() + (out.log_var.mean() if out.log_var is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="96x320")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    size = parse_size(args.size)
    print(f"{datetime.date.today()}, {cpu_name()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"torch {torch.__version__}, {args.size}, batch {args.batch}, median of {args.reps} steps\n")
    print("| network | s/step | steps/s | ratio to the concat teacher |\n|---|---|---|---|")
    base = None
    for label, stage, overrides, proxy in ROWS:
        sec = step_seconds(stage, overrides, size, args.batch, args.reps, proxy)
        base = base or sec
        print(f"| {label} | {sec:.3f} | {1 / sec:.2f} | {sec / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
