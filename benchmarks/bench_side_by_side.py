"""Two independent trainings: one after the other at all cores, or side by side at one thread each
(`train.side_by_side`, what the demo does), measured in one run (docs/BENCHMARKS.md).

    .venv/bin/python benchmarks/bench_side_by_side.py                    # two demo baselines, 120 steps
    .venv/bin/python benchmarks/bench_side_by_side.py --preset nano --steps 60 --reps 3

Each run is the demo's baseline student (or `--preset`) at 96x320, batch 8, from a fresh process state, with
its own rendering of the rig's frames; the wall clock covers everything `train` does. The orders alternate
over `--reps` repetitions; the table gives the median of each.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adu_depth_core.config import from_dict
from adu_depth_core.sysinfo import cpu_name
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.side_by_side import TrainJob, cpu_cores, train_side_by_side


def job(out: Path, preset: str, steps: int, seed: int) -> TrainJob:
    teacher = preset == "nano"
    d = {
        "stage": "teacher" if teacher else "student",
        "model": {"preset": preset, "input_size": [96, 320], "max_depth": 80.0},
        "data": {"kind": "synthetic", "train_frames": 400, "val_frames": 8, "test_frames": 8},
        "steps": steps,
        "batch_size": 8,
        "num_workers": 0,
        "val_every": 0,
        "ckpt_every": 0,
        "log_every": 25,
        "out_dir": str(out),
        "progress": False,
        "seed": seed,
        **({} if teacher else {"distill": {"mode": "baseline"}}),
    }
    return TrainJob(from_dict(TrainConfig, d), overwrite=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ghostnet_nano", help="ghostnet_nano (students) or nano (a teacher)")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cores = cpu_cores()
    times: dict[str, list[float]] = {"one after the other": [], "side by side": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = list(times) if rep % 2 == 0 else list(reversed(times))
            for mode in order:
                jobs = [job(Path(tmp) / f"{rep}_{mode[0]}_{i}", args.preset, args.steps, i) for i in range(2)]
                t0 = time.perf_counter()
                if mode == "side by side":
                    train_side_by_side(jobs, cores=cores)
                else:
                    for j in jobs:  # here, with torch's default threads
                        train_side_by_side([j], cores=1)
                times[mode].append(time.perf_counter() - t0)
    seq, par = (statistics.median(times[m]) for m in times)
    print(f"{datetime.date.today()}, {cpu_name()}, {cores} cores, two {args.preset} runs of {args.steps} "
          f"steps, 96x320, batch 8, median of {args.reps}")
    print("| two runs | seconds | ratio |\n|---|---|---|")
    print(f"| one after the other, {cores} threads | {seq:.0f} | 1.00 |")
    print(f"| side by side, one thread each | {par:.0f} | {par / seq:.2f} |")
    print("all:", {m: [round(t) for t in ts] for m, ts in times.items()})


if __name__ == "__main__":
    main()
