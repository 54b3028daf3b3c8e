"""`adu-depth synth`: render the synthetic stereo rig into KITTI / DrivingStereo / rosbag2 files.

Frame i of a run has seed `split_seed(split, seed + i)`, so train/val/test never share a scene and a run
is reproducible from its command line. Output goes to a temp folder beside `--out` and is renamed into
place when complete; an `--out` that already holds data is an error. The flags become a
`data.rig_export.RigExport`; `write_rig_data` does the work.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from adu_depth_core.config import apply_overrides, from_dict, parse_size, read_yaml, to_dict
from adu_depth_core.paths import check_output_dir
from adu_depth_core.vocab import SPLITS

HELP = "Render the synthetic stereo rig into KITTI / DrivingStereo / rosbag2 files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adu_depth_core.data.rig_export import FORMATS

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
    from adu_depth_core.data.rig_export import RigExport, write_rig_data

    spec = RigExport(
        out=Path(args.out),
        format=args.format,
        frames=args.frames,
        size=parse_size(args.size),
        first_index=args.seed,
        split=args.split,
        storage=args.storage,
        rate_hz=args.rate,
        none_every=args.none_every,
        kitti_official=args.kitti_official,
    )
    spec.validate()
    inputs = [args.rig_config] if args.rig_config else []
    check_output_dir(spec.out, "--out", inputs=inputs, can_overwrite=False)  # new or empty, not a file
    write_rig_data(dataclasses.replace(spec, rig=_rig_config(args)))
    return 0
