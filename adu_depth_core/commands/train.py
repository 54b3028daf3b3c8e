"""`adu-depth train`: train the stereo teacher or distil the monocular student from a recipe.

adu-depth train --config training/configs/synthetic_teacher.yaml [--set key=value ...] [--out DIR]
adu-depth train --resume runs/synthetic_teacher/last.pt            # continue where it stopped
torchrun --standalone --nproc_per_node=4 -m adu_depth_core.cli train --config ...   # DDP
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

HELP = "Train the stereo teacher or distil the monocular student from a recipe"

log = logging.getLogger(__name__)


def add_overrides(parser: argparse.ArgumentParser, flag: str, dest: str, help_text: str) -> None:
    """A repeatable `KEY=VALUE ...` option collecting config overrides (`config.apply_overrides`)."""
    parser.add_argument(
        flag, dest=dest, metavar="KEY=VALUE", nargs="+", action="extend", default=[], help=help_text
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="recipe YAML (training/configs/*.yaml); optional with --resume")
    add_overrides(
        parser,
        "--set",
        "overrides",
        "override config keys, e.g. --set steps=200 optim.lr=1e-3 data.augment.flip_prob=0",
    )
    parser.add_argument(
        "--resume", metavar="CKPT", help="continue this run from a checkpoint (e.g. OUT/last.pt)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (overrides out_dir)")
    parser.add_argument(
        "--overwrite", action="store_true", help="start a fresh run even if --out already holds checkpoints"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def resolve_config(args: argparse.Namespace):
    """The TrainConfig of a command line: recipe (or the resumed checkpoint's config) + --set + --out."""
    from adu_depth_core.checkpoint import load_checkpoint
    from adu_depth_core.config import apply_overrides, from_dict, read_yaml
    from adu_depth_core.train.config import TrainConfig

    if args.config is None and getattr(args, "resume", None) is None:
        raise ValueError("--config is required (or --resume CKPT to continue with the checkpoint's config)")
    if args.config is not None:
        data = read_yaml(args.config)
    else:
        ckpt = load_checkpoint(args.resume)
        data = ckpt.get("config")
        if not isinstance(data, dict):
            raise ValueError(f"{args.resume}: holds no training config; pass --config")
    cfg = from_dict(TrainConfig, apply_overrides(data, list(args.overrides)))
    if args.out:
        cfg = dataclasses.replace(cfg, out_dir=str(args.out))
    return cfg


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.config import to_dict
    from adu_depth_core.train.run import train

    cfg = resolve_config(args)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from adu_depth_core.paths import check_output_dir

    # a folder (existing or creatable); the trainer itself refuses one that already holds checkpoints
    check_output_dir(cfg.out_dir, "--out" if args.out else "out_dir", overwrite=True)
    summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if summary.get("rank", 0) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "rank"}, indent=2, default=str))
    return 0
