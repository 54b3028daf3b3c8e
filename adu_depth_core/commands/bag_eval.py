"""`adu-depth bag-eval`: evaluate a model on a rosbag2 recording and write the depth topics to a new bag.

adu-depth bag-eval --model student.onnx --bag run1 --image-topic /camera/left/image_raw \\
    --lidar-topic /lidar/points --json run1.json --out-bag run1_depth
adu-depth bag-eval --model student.pt --bag rig.mcap --gt-topic /camera/left/depth_gt --tolerance-ms 5
adu-depth bag-eval --model teacher.pt --bag run1 --lidar-topic /lidar/points \\
    --right-image-topic /camera/right/image_raw                                    # a stereo teacher

The library is `adu_depth_core.eval_bag` (`BagEvalSpec`, `evaluate_bag`; its docstring describes the
frames, the ground truth and the output bag); this module parses the flags into a `BagEvalSpec` and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from adu_depth_core.eval_bag import BagEvalSpec, evaluate_bag

HELP = "Evaluate a model on a rosbag2 recording and write an output bag with depth topics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adu_depth_core.commands.eval import add_model_arguments
    from adu_depth_core.data import rosbag_io as rb
    from adu_depth_core.data.rectification import RECTIFY_MODES

    add_model_arguments(parser)
    parser.add_argument(
        "--bag", required=True, type=Path, help="rosbag2 folder, or a single .mcap / .db3 file"
    )
    parser.add_argument(
        "--image-topic", default=rb.LEFT_IMAGE, help=f"camera image topic (default: {rb.LEFT_IMAGE})"
    )
    gt = parser.add_mutually_exclusive_group(required=True)
    gt.add_argument("--gt-topic", help="ground truth as a depth image topic (32FC1 m or 16UC1 mm)")
    gt.add_argument(
        "--lidar-topic", help="ground truth from a LiDAR PointCloud2 topic projected into the camera"
    )
    parser.add_argument(
        "--camera-info-topic", help="CameraInfo of the image (default: <image topic namespace>/camera_info)"
    )
    parser.add_argument("--right-image-topic", help="right camera image (needed by a stereo teacher)")
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        default=0.0,
        help="stamp matching: 0 = exact (default), else nearest within",
    )
    parser.add_argument(
        "--extrinsic",
        type=Path,
        help="YAML/JSON 4x4 T_camera_from_lidar (a matrix, or a mapping with T_camera_from_lidar / "
        "T_lidar_from_camera) instead of /tf_static",
    )
    parser.add_argument(
        "--rectify",
        choices=RECTIFY_MODES,
        default="auto",
        help="auto (default): rectify raw views (camera_info with distortion D or rotation R), as the rosbag "
        "training dataset does; never: the images are rectified already (image_rect topics); always",
    )
    parser.add_argument("--out-bag", type=Path, metavar="OUT", help="write the depth topics to this new bag")
    parser.add_argument(
        "--storage", choices=("mcap", "sqlite3"), help="--out-bag storage (default: the input's)"
    )
    parser.add_argument(
        "--sigma-threshold", type=float, default=2.0, help="depth/confident keeps σ <= this (m; default 2.0)"
    )
    parser.add_argument("--out-namespace", default="", help="namespace of the depth/* topics (default: none)")
    parser.add_argument(
        "--no-passthrough", action="store_true", help="do not copy the image, camera_info and /tf_static"
    )
    parser.add_argument("--per-frame", action="store_true", help="print one line of metrics per frame")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N image frames")


def bag_eval_spec(args: argparse.Namespace) -> BagEvalSpec:
    from adu_depth_core.commands.eval import scoring_spec

    fields = {f.name for f in dataclasses.fields(BagEvalSpec)} - {"scoring"}
    return BagEvalSpec(scoring=scoring_spec(args), **{name: getattr(args, name) for name in fields})


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.commands.eval import check_report_outputs, report

    spec = bag_eval_spec(args)
    spec.validate()  # the bag and --out-bag before the report outputs, those before the model
    check_report_outputs(args, [args.model, args.bag, args.extrinsic, args.out_bag])
    result, extra = evaluate_bag(spec)
    if args.per_frame:
        for r in result.records:
            latency = f"  {r['latency_ms']:.1f} ms" if "latency_ms" in r else ""
            if r.get("skipped"):
                print(f"{r['id']}  skipped: {r['skipped']}{latency}")
            else:
                print(
                    f"{r['id']}  abs_rel {r['abs_rel']:.4f}  rmse {r['rmse']:.3f}  d1 {r['d1']:.3f}{latency}"
                )
    report(result, args, "eigen", extra)
    return 0
