"""`adu-depth demo`: stereo rig → teacher → distilled student → evaluation → ONNX → rosbag replay → report."""

from __future__ import annotations

import argparse
import dataclasses

from adu_depth_core.config import parse_size
from adu_depth_core.paths import check_output_dir

HELP = "End-to-end demo on the synthetic stereo rig: data, teacher, student, eval, export, bag"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="demo_out", help="where everything goes (default: demo_out)")
    parser.add_argument(
        "--quick", action="store_true", help="a small budget (≈3 min on 2 cores) that checks the whole path"
    )
    parser.add_argument("--size", help="image size HxW, multiples of 32 (default: 96x320, quick 64x192)")
    parser.add_argument("--steps", type=int, help="training steps of each network (default: the budget's)")
    parser.add_argument(
        "--seeds", type=int, default=1, metavar="N",
        help="train both students with seeds 0 … N−1 and report mean ± std (default: 1; each extra seed "
             "adds two student trainings, run side by side with the others: about 9 min at the full budget "
             "on 2 cores)",
    )


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.demo import BUDGETS, Demo

    budget = BUDGETS["quick" if args.quick else "full"]
    if args.size:
        budget = dataclasses.replace(budget, size=parse_size(args.size))
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        budget = dataclasses.replace(
            budget,
            teacher_steps=args.steps,
            student_steps=args.steps,
            val_every=max(1, min(budget.val_every, args.steps)),
        )
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    h, w = budget.size
    if h % 32 or w % 32:
        raise ValueError(f"--size must be multiples of 32, got {h}x{w}")
    # finished stages in an existing workdir are reused; a file in its place is an error
    check_output_dir(args.workdir, "--workdir", overwrite=True)
    report = Demo(args.workdir, budget, seeds=args.seeds).run()
    print(f"\nReport: {report}\n")
    print(report.read_text().split("## The same frames")[0])
    return 0
