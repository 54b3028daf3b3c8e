"""Parameter counts and CPU forward times of the model presets; writes docs/benchmarks/models.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_models.py            # all presets, 1 thread
    .venv/bin/python benchmarks/bench_models.py --presets nano --reps 10 --out -   # print only

Forward: student, batch 1, eval mode, no_grad, median over `--reps` runs after one warm-up run (the `paper`
preset at 352x1216 runs `--paper-reps` times, default 1, no warm-up). Train step: nano student,
forward + backward of a depth + log-variance loss at batch 4, 96x320 (the CPU demo's setting).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adu_depth_core.models import PRESETS, ModelConfig, build_student, build_teacher, preset_table
from adu_depth_core.sysinfo import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((352, 1216), (128, 416))


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def time_forward(preset: str, size: tuple[int, int], reps: int, warmup: int) -> list[float]:
    model = build_student(ModelConfig(preset=preset, input_size=size)).eval()
    model.inference_only = True
    x = torch.rand(1, 3, *size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def time_train_step(reps: int, batch: int = 4, size: tuple[int, int] = (96, 320)) -> list[float]:
    model = build_student(ModelConfig(preset="nano", input_size=size)).train()
    x = torch.rand(batch, 3, *size)
    times = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        out = model(x)
        (out.depth.mean() + out.log_var.mean()).backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--reps", type=int, default=5, help="timed runs per preset and size")
    parser.add_argument("--paper-reps", type=int, default=1, help="timed runs of paper at 352x1216")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks/models.md"),
                        help="markdown file to write, or - for stdout only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    for preset in args.presets:
        student = _params(build_student(ModelConfig(preset=preset)))
        teacher = _params(build_teacher(ModelConfig(preset=preset)))
        cells = [preset, f"{student:.2f}", f"{teacher:.2f}"]
        for size in SIZES:
            slow = preset == "paper" and size == SIZES[0]
            reps, warmup = (args.paper_reps, 0) if slow else (args.reps, 1)
            times = time_forward(preset, size, reps, warmup)
            cells.append(f"{statistics.median(times) * 1e3:.0f} ms (n={len(times)})")
            print(preset, size, [round(t, 3) for t in times], flush=True)
        rows.append("| " + " | ".join(cells) + " |")
    step = time_train_step(args.reps)
    print("nano train step", [round(t, 3) for t in step], flush=True)

    flags = " ".join(argv if argv is not None else sys.argv[1:])
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    command = f"OMP_NUM_THREADS={threads} python benchmarks/bench_models.py {flags}".strip()
    text = "\n".join([
        "# Model presets: size and CPU speed",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical cores (shared with other jobs), "
        f"torch {torch.__version__} with {args.threads} thread(s).  ",
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}, commit {_git_commit()}.",
        "",
        "Forward: student, batch 1, eval, `torch.inference_mode`, median of n runs after one warm-up run "
        "(paper at 352x1216: no warm-up). Parameters in millions. Other jobs share the cores, so single "
        "runs vary by up to ~50 %; compare medians.",
        "",
        "| preset | student params (M) | teacher params (M) | forward 352x1216 | forward 128x416 |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Training step (nano student, batch 4, 96x320, forward + backward): median "
        f"{statistics.median(step) * 1e3:.0f} ms over {len(step)} runs.",
        "",
        "Presets (from `adu_depth_core.models.presets.PRESETS`; widths and heads finest level first):",
        "",
        preset_table(),
        "",
    ])
    if args.out == "-":
        print(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
