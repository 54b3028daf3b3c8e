"""`adu-depth import-newcrfs`: a released NeWCRFs checkpoint → a project student checkpoint.

adu-depth import-newcrfs model_kittieigen.ckpt --out newcrfs_kitti.pt                # KITTI, large07
adu-depth import-newcrfs model_nyu.ckpt --out newcrfs_nyu.pt --max-depth 10 --size 480x640 --focal-px 518.8579

The output is a normal student checkpoint (preset `newcrfs_<variant>`, which reproduces NeWCRFs' depth) for
`export`, `predict`, `eval`, `bag-eval` and the node. NeWCRFs has no uncertainty branch: the UEM is freshly
initialised and the checkpoint says so (`meta.sigma_trained: false`), so σ is reported as untrained until
a `train` run with `init_from:` trains it (training/README.md).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

HELP = "Convert a NeWCRFs checkpoint (KITTI / NYU release) into a student checkpoint"
KITTI_FOCAL_PX = 721.5377  # fx of KITTI's 2011_09_26 drives, unchanged by the 352x1216 KB crop

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adu_depth_core.models.newcrfs_weights import VARIANTS

    parser.add_argument("checkpoint", metavar="CKPT", help="NeWCRFs checkpoint (e.g. model_kittieigen.ckpt)")
    parser.add_argument("--out", required=True, metavar="OUT.pt", help="student checkpoint to write")
    parser.add_argument("--variant", choices=sorted(VARIANTS),
                        help="NeWCRFs --encoder of the checkpoint (default: read from its Swin width)")
    parser.add_argument("--max-depth", type=float, default=80.0,
                        help="NeWCRFs --max_depth of the checkpoint (KITTI 80, NYU 10; default 80)")
    parser.add_argument("--size", default="352x1216", metavar="HxW",
                        help="network input, multiples of 32 (default 352x1216, the KITTI KB crop)")
    parser.add_argument("--focal-px", type=float, default=KITTI_FOCAL_PX,
                        help=f"fx of the training images at the network input (default {KITTI_FOCAL_PX}, "
                             "KITTI)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    import torch

    from adu_depth_core.checkpoint import save_checkpoint
    from adu_depth_core.config import parse_size, to_dict
    from adu_depth_core.fileio import file_sha256
    from adu_depth_core.models import ModelConfig, build_student
    from adu_depth_core.models.newcrfs_weights import (
        VARIANTS,
        detect_variant,
        map_newcrfs_state_dict,
        read_newcrfs_checkpoint,
    )
    from adu_depth_core.train.state import git_commit, versions

    src, out = Path(args.checkpoint), Path(args.out)
    if out.exists() and out.resolve() == src.resolve():
        raise ValueError(f"{out}: refusing to overwrite the input checkpoint")
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; choose another --out or pass --force to replace it")
    if not args.focal_px > 0 or not args.max_depth > 0:
        raise ValueError(f"--focal-px and --max-depth must be > 0, got {args.focal_px} and {args.max_depth}")
    sd = read_newcrfs_checkpoint(src)
    variant = args.variant or detect_variant(sd)
    cfg = ModelConfig(preset=VARIANTS[variant], max_depth=float(args.max_depth),  # type: ignore[arg-type]
                      input_size=parse_size(args.size), pretrained=False)
    torch.manual_seed(0)  # the UEM's initialisation, the one part not taken from the checkpoint
    model = build_student(cfg)
    try:
        weights = map_newcrfs_state_dict(sd, model)
    except ValueError as exc:
        raise ValueError(f"{src} does not fit NeWCRFs {variant}: {exc}") from None
    payload = {
        "stage": "student",
        "model_config": to_dict(cfg),
        "model": weights,
        "meta": {
            "stage": "student",
            "preset": cfg.preset,
            "input_size": list(cfg.input_size),
            "max_depth": float(cfg.max_depth),
            "min_depth": 0.0,
            "focal_px": float(args.focal_px),
            "sigma_trained": False,
            "imported_from": {"format": "newcrfs", "variant": variant, "file": src.name,
                              "sha256": file_sha256(src), "tensors": len(sd)},
            "versions": versions(),
            "git_commit": git_commit(),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    save_checkpoint(out, payload)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: NeWCRFs %s, %d tensors mapped, %.2fM parameters → %s (preset %s, %dx%d, max depth %g m, "
             "f_train %.4f px)", src, variant, len(sd), n_params / 1e6, out, cfg.preset, *cfg.input_size,
             cfg.max_depth, args.focal_px)
    log.warning("the uncertainty branch (UEM) is untrained: σ is a placeholder until a `train` run with "
                "init_from: %s trains it", out)
    return 0
