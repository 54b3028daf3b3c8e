"""`adu-depth synth`: render the synthetic stereo rig into KITTI / DrivingStereo / rosbag2 files.

Frame i of a run has seed `split_seed(split, seed + i)`, so train/val/test never share a scene and a run
is reproducible from its command line. Output goes to a temp folder beside `--out` and is renamed into
place when complete; an `--out` that already holds data is an error.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from adu_depth_core.config import apply_overrides, from_dict, parse_size, read_yaml, to_dict
from adu_depth_core.paths import check_output_dir
from adu_depth_core.vocab import SPLITS

HELP = "Render the synthetic stereo rig into KITTI / DrivingStereo / rosbag2 files"
FORMATS = ("kitti", "drivingstereo", "rosbag")

log = logging.getLogger("adu_depth.synth")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--format", choices=FORMATS, default="kitti", help="file layout (default: kitti)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default: 100)")
    parser.add_argument("--size", default="128x416", help="image size HxW (default: 128x416)")
    parser.add_argument("--seed", type=int, default=0, help="index of the first frame within the split")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="seed range to draw scenes from (disjoint per split; default: train)",
    )
    parser.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="rosbag frame rate in Hz (default: 10)")
    parser.add_argument(
        "--preset", default="vehicle", help="rig preset: vehicle (default), varied_mount or easy_mono"
    )
    parser.add_argument("--rig-config", help="YAML file of RigConfig fields applied on top of the preset")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a RigConfig field, e.g. --set fx_scale=1.5 (repeatable)",
    )
    parser.add_argument(
        "--none-every",
        type=int,
        default=8,
        help="kitti: every N-th frame has no GT and a 'None' split line (0: never; default: 8)",
    )
    parser.add_argument(
        "--kitti-official",
        action="store_true",
        help="kitti: also write frames with GT in the official depth_selection layout",
    )


def _rig_config(args: argparse.Namespace):
    from adu_depth_core.data.synthetic import RigConfig

    data = to_dict(RigConfig.preset(args.preset))
    if args.rig_config:
        data.update(read_yaml(args.rig_config))
    return from_dict(RigConfig, apply_overrides(data, args.overrides), prefix="rig")


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.data.synthetic import SyntheticRig, frames_for_split, split_seed

    size = parse_size(args.size)
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    split_seed(args.split, args.seed)  # both ends of the seed range must lie in the split
    split_seed(args.split, args.seed + args.frames - 1)
    out = Path(args.out)
    inputs = [args.rig_config] if args.rig_config else []
    check_output_dir(out, "--out", inputs=inputs, can_overwrite=False)  # new or empty, not a file
    cfg = _rig_config(args)
    rig = SyntheticRig(cfg, size)
    meta = {
        "rig": to_dict(cfg),
        "size": list(size),
        "K": rig.K.tolist(),
        "first_index": args.seed,
        "command": "adu-depth synth",
    }
    frames = frames_for_split(rig, args.split, args.frames, args.seed)
    t0 = time.perf_counter()
    if args.format == "kitti":
        from adu_depth_core.data.kitti import write_kitti_tree

        write_kitti_tree(
            out, frames, args.split, none_every=args.none_every, official=args.kitti_official, meta=meta
        )
    elif args.format == "drivingstereo":
        from adu_depth_core.data.drivingstereo import write_drivingstereo_tree

        write_drivingstereo_tree(out, frames, args.split, meta=meta)
    else:
        from adu_depth_core.data.rosbag_io import write_rig_bag

        if out.exists():  # empty folder: rosbag2 wants to create the bag folder itself
            out.rmdir()
        write_rig_bag(out, frames, storage=args.storage, rate_hz=args.rate)
    dt = time.perf_counter() - t0
    log.info(
        "wrote %d %s frames (%dx%d, %s split, seeds %d..%d) to %s in %.1f s",
        args.frames,
        args.format,
        size[0],
        size[1],
        args.split,
        split_seed(args.split, args.seed),
        split_seed(args.split, args.seed + args.frames - 1),
        out,
        dt,
    )
    return 0
