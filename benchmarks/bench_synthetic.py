"""Throughput of the synthetic stereo rig (render only, and render + KITTI tree writing) on one core.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_synthetic.py --size 128x416 --frames 40 --repeats 5

Prints one Markdown table row per measurement: stereo pairs per second over the repeats, by wall clock
(median, min, max) and by the process's CPU time (median; less sensitive to other jobs on the machine).
Figures go to docs/benchmarks/data.md with the machine, the command and the date.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one core, as the docs report

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from adu_depth_core.config import parse_size
from adu_depth_core.data.kitti import write_kitti_tree
from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, split_seed


def _rates(fn, frames: int, repeats: int) -> tuple[list[float], list[float]]:
    """Pairs per second by wall clock and by this process's CPU time (less sensitive to other load)."""
    wall, cpu = [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(r)
        wall.append(frames / (time.perf_counter() - t0))
        cpu.append(frames / (time.process_time() - c0))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="128x416")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="vehicle")
    args = parser.parse_args()
    size = parse_size(args.size)
    rig = SyntheticRig(RigConfig.preset(args.preset), size)
    rig.render(0)  # warm-up (imports, allocator)

    def render(r: int) -> None:
        for i in range(args.frames):
            rig.render(split_seed("train", r * args.frames + i))

    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))

    def render_and_write(r: int) -> None:
        frames = (rig.render(split_seed("train", r * args.frames + i)) for i in range(args.frames))
        write_kitti_tree(tmp / f"run{r}", frames, "train")

    try:
        rows = [("render", _rates(render, args.frames, args.repeats))]
        rows.append(("render + KITTI PNG tree", _rates(render_and_write, args.frames, args.repeats)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}, "
        f"python {platform.python_version()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"{args.frames} frames x {args.repeats} repeats"
    )
    print("| size | preset | what | pairs/s (wall) median [min, max] | pairs/s (CPU time) median |")
    print("|---|---|---|---|---|")
    for what, (wall, cpu) in rows:
        print(
            f"| {size[0]}x{size[1]} | {args.preset} | {what} | {statistics.median(wall):.1f} "
            f"[{min(wall):.1f}, {max(wall):.1f}] | {statistics.median(cpu):.1f} |"
        )


if __name__ == "__main__":
    main()
