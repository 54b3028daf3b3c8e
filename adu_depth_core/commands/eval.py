"""`adu-depth eval`: evaluate a checkpoint / ONNX graph / TensorRT engine on KITTI, DrivingStereo or the rig.

adu-depth eval --model student.onnx --dataset kitti --data-path kitti_raw --gt-path data_depth_annotated \\
    --split splits/eigen_test_files_with_gt.txt --crop garg_kb --json eigen.json
adu-depth eval --model student.pt --dataset kitti --data-path KITTI --split splits/kitti_official_val.txt \\
    --protocol kitti-official --policy kb_crop
adu-depth eval --model teacher.pt --dataset synthetic --frames 60 --size 128x416  # a teacher: stereo input
adu-depth eval --model student.pt --dataset kitti --data-path synth_kitti --crop garg  # a tree from `synth`

Frames go to the model at full camera resolution as RGB uint8 with the sample's K (the estimator applies its
resize/crop policy and the focal correction, exactly as `bag-eval` and the ROS node do). Datasets are built
in eval mode: no augmentation, no crop. Prints the paper's Table 1 (Table 2 with --protocol kitti-official)
and writes JSON (docs/EVALUATION.md, "Commands").
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from adu_depth_core.eval_run import PROTOCOLS, EvalSpec, ScoringSpec, evaluate_dataset, write_result_json
from adu_depth_core.paths import add_overwrite_argument, check_output_dir, check_output_file
from adu_depth_core.vocab import SPLITS

HELP = "Evaluate a checkpoint / ONNX / engine on KITTI, DrivingStereo or synthetic data"
DATASETS = ("kitti", "drivingstereo", "synthetic")

log = logging.getLogger("adu_depth.eval")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, backend and scoring options shared with `bag-eval`."""
    from adu_depth_core.evaluation import CROPS, MAX_DEPTH, MIN_DEPTH
    from adu_depth_core.vocab import BACKENDS, POLICIES

    parser.add_argument(
        "--model", required=True, help="student checkpoint (.pt), ONNX file, TensorRT engine, or teacher .pt"
    )
    parser.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="inference backend (default: auto)"
    )
    parser.add_argument(
        "--policy", default="resize", choices=POLICIES, help="camera frame → network input (default: resize)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU when present)")
    parser.add_argument(
        "--crop",
        choices=CROPS,
        help="evaluation crop (docs/EVALUATION.md; default: none, but garg_kb for `eval` on KITTI with "
        "--protocol eigen)",
    )
    parser.add_argument("--min-depth", type=float, default=MIN_DEPTH, help=f"(default: {MIN_DEPTH:g} m)")
    parser.add_argument(
        "--max-depth", type=float, default=MAX_DEPTH, help=f"depth cap (default: {MAX_DEPTH:g} m)"
    )
    parser.add_argument(
        "--median-scaling", action="store_true", help="scale predictions by median(gt)/median(pred) per image"
    )
    parser.add_argument(
        "--json", type=Path, metavar="OUT", help="write the metrics (and per-image records) here"
    )
    parser.add_argument(
        "--save-vis", type=Path, metavar="DIR", help="write per-image panels and the sparsification plot"
    )
    parser.add_argument(
        "--max-vis", type=int, default=20, help="panels to write with --save-vis (default: 20)"
    )
    parser.add_argument("--name", help="method name in the table (default: the model file name)")
    add_overwrite_argument(parser, "the --json file / write into a --save-vis folder that holds files")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--data-path",
        type=Path,
        help="kitti: raw-data root (official splits: the folder holding depth_selection/); "
        "drivingstereo: its root; not used by synthetic",
    )
    parser.add_argument(
        "--gt-path",
        type=Path,
        help="kitti: depth-annotation root (default: the gt_path of a `synth` tree's synth_meta.json)",
    )
    parser.add_argument(
        "--split",
        type=Path,
        metavar="FILE",
        help="kitti: split file (default: the only file in DATA/splits/); drivingstereo: optional image list",
    )
    parser.add_argument(
        "--raw-path", type=Path, help="kitti official split: raw root for right views (teacher)"
    )
    parser.add_argument(
        "--ds-folder", help="drivingstereo: folder prefix, e.g. test (default: test, or the only one present)"
    )
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="eigen",
        help="table layout: eigen (paper Table 1) or kitti-official (Table 2)",
    )
    parser.add_argument(
        "--flip-tta", action="store_true", help="average with the mirrored image's prediction"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    synth = parser.add_argument_group("synthetic rig (--dataset synthetic)")
    synth.add_argument("--frames", type=int, default=60, help="frames to render (default: 60)")
    synth.add_argument("--size", default="128x416", help="rendered size HxW (default: 128x416)")
    synth.add_argument(
        "--synth-split", choices=SPLITS, default="test", help="seed range (default: test)"
    )
    synth.add_argument("--first-index", type=int, default=0, help="first frame within the split (default: 0)")
    synth.add_argument("--rig-preset", default="vehicle", help="rig preset (default: vehicle)")
    synth.add_argument(
        "--rig-config", type=Path, help="YAML of RigConfig fields applied on top of the preset"
    )


def scoring_spec(args: argparse.Namespace) -> ScoringSpec:
    """The model and scoring flags (`add_model_arguments`, shared with `bag-eval`) as a `ScoringSpec`."""
    return ScoringSpec(
        model=Path(args.model),
        backend=args.backend,
        policy=args.policy,
        device=args.device,
        crop=args.crop,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        median_scaling=args.median_scaling,
        save_vis=args.save_vis,
        max_vis=args.max_vis,
    )


def _rig(args: argparse.Namespace):
    from adu_depth_core.config import from_dict, read_yaml, to_dict
    from adu_depth_core.data.synthetic import RigConfig

    data = to_dict(RigConfig.preset(args.rig_preset))
    if args.rig_config:
        data.update(read_yaml(args.rig_config))
    return from_dict(RigConfig, data, prefix="rig")


def eval_spec(args: argparse.Namespace) -> EvalSpec:
    """The command line as an `EvalSpec` (the rig preset and YAML are resolved into a `RigConfig`)."""
    from adu_depth_core.config import parse_size
    from adu_depth_core.data.factory import EvalDataSpec

    data = EvalDataSpec(
        kind=args.dataset,
        root=args.data_path,
        gt_root=args.gt_path,
        split_file=args.split,
        raw_root=args.raw_path,
        folder=args.ds_folder,
        frames=args.frames,
        split=args.synth_split,
        first_index=args.first_index,
    )
    if args.dataset == "synthetic":  # --size and the rig flags mean something only for rendered frames
        data = dataclasses.replace(data, size=parse_size(args.size), rig=_rig(args))
    return EvalSpec(scoring_spec(args), data, args.protocol, args.flip_tta, args.limit)


def check_report_outputs(args: argparse.Namespace, inputs: list[Any]) -> None:
    """--json and --save-vis (shared with `bag-eval`) checked before the evaluation runs: a folder as
    --json, an existing file or a non-empty --save-vis without --overwrite, or a path in an input fail."""
    inputs = [p for p in inputs if p is not None]
    if args.json is not None:
        check_output_file(args.json, "--json", overwrite=args.overwrite, inputs=inputs)
    if args.save_vis is not None:
        check_output_dir(args.save_vis, "--save-vis", overwrite=args.overwrite, inputs=inputs)


def report(result: Any, args: argparse.Namespace, protocol: str, extra: dict[str, Any] | None = None) -> None:
    """Print the table and write JSON / pictures' locations (shared with `bag-eval`)."""
    name = args.name or Path(args.model).name
    print(result.table(name, protocol=protocol))
    if result.meta.get("sigma_trained") is False:
        print("note: this model's σ is untrained (imported weights): "
              "its AUSE/AURG and σ describe a placeholder")
    lat = result.latency()
    if lat["latency_p50_ms"] is not None:
        print(
            f"{result.n_images} images scored, {result.n_skipped} skipped; predictor latency "
            f"p50 {lat['latency_p50_ms']:.1f} ms, p90 {lat['latency_p90_ms']:.1f} ms, "
            f"p99 {lat['latency_p99_ms']:.1f} ms"
        )
    else:
        print(f"{result.n_images} images scored, {result.n_skipped} skipped")
    if args.json is not None:
        write_result_json(args.json, result, extra)
        log.info("wrote %s", args.json)
    if args.save_vis is not None:
        log.info("wrote %d pictures to %s", len(result.vis_paths), args.save_vis)


def run(args: argparse.Namespace) -> int:
    spec = eval_spec(args)
    spec.validate()
    check_report_outputs(
        args, [args.model, args.data_path, args.gt_path, args.split, args.raw_path, args.rig_config]
    )
    result = evaluate_dataset(spec)
    report(result, args, PROTOCOLS[spec.protocol])
    return 0
