"""CPU forward time of the `newcrfs_*` presets beside the project's `paper` preset and, given a NeWCRFs
clone, beside NeWCRFs' own NewCRFDepth — measured side by side in one process, interleaved per repeat.

    OMP_NUM_THREADS=1 python benchmarks/bench_newcrfs.py --presets newcrfs_tiny07 --size 352x1216 \
        --newcrfs-repo ~/src/NeWCRFs --repeats 3

Random weights (speed does not depend on them), batch 1, `torch.no_grad`, eval mode; the first forward of
each model is a warm-up and not counted. NeWCRFs' code is imported from the clone given (nothing of it is
part of this project); its only dependency outside PyTorch/timm, mmcv's `ConvModule`, is replaced by an
equivalent conv → norm → ReLU module when mmcv is not installed. Prints a markdown table (median seconds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

from adu_depth_core.config import parse_size
from adu_depth_core.models import ModelConfig, build_student

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class _ConvModule(nn.Module):
    """mmcv's ConvModule as NeWCRFs uses it: conv (no bias under a norm) → BN / GN → ReLU."""

    def __init__(self, in_ch, out_ch, kernel, padding=0, conv_cfg=None, norm_cfg=None, act_cfg=None,
                 inplace=True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding, bias=norm_cfg is None)
        self.norm = None
        if norm_cfg is not None:
            self.norm = (nn.BatchNorm2d(out_ch) if norm_cfg["type"] == "BN"
                         else nn.GroupNorm(norm_cfg["num_groups"], out_ch))
        self.act = nn.ReLU(inplace=inplace)

    def forward(self, x):
        x = self.conv(x)
        return self.act(self.norm(x) if self.norm is not None else x)


def newcrfs_model(repo: Path, variant: str, max_depth: float) -> nn.Module:
    """NeWCRFs' NewCRFDepth from a clone of github.com/aliyun/NeWCRFs, ImageNet-normalising its input."""
    try:
        import mmcv.cnn
    except ImportError:
        mmcv = types.ModuleType("mmcv")
        mmcv.cnn = types.ModuleType("mmcv.cnn")  # type: ignore[attr-defined]
        mmcv.cnn.ConvModule = _ConvModule  # type: ignore[attr-defined]
        sys.modules.update({"mmcv": mmcv, "mmcv.cnn": mmcv.cnn})  # type: ignore[attr-defined]
    sys.path.insert(0, str(repo))
    from newcrfs.networks.NewCRFDepth import NewCRFDepth  # type: ignore[import-not-found]

    net = NewCRFDepth(version=variant, max_depth=max_depth)

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net((x - IMAGENET_MEAN) / IMAGENET_STD)

    return Normalised()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["paper", "newcrfs_large07"])
    parser.add_argument("--size", default="352x1216", metavar="HxW")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--newcrfs-repo", type=Path, help="a clone of github.com/aliyun/NeWCRFs")
    parser.add_argument("--newcrfs-variant", default="large07", choices=["large07", "base07", "tiny07"])
    args = parser.parse_args()
    h, w = parse_size(args.size)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {}
    for name in args.presets:
        model = build_student(ModelConfig(preset=name, input_size=(h, w)))
        model.inference_only = True
        models[name] = model.eval()
    if args.newcrfs_repo is not None:
        reference = newcrfs_model(args.newcrfs_repo, args.newcrfs_variant, 80.0)
        models[f"NeWCRFs {args.newcrfs_variant}"] = reference.eval()
    x = torch.rand(1, 3, h, w)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    threads = torch.get_num_threads()
    print(f"CPU forward, batch 1, {h}x{w}, {threads} thread(s), median of {args.repeats}")
    print("| model | parameters | seconds | relative to first |")
    print("|---|---|---|---|")
    first = statistics.median(next(iter(times.values())))
    for name, model in models.items():
        med = statistics.median(times[name])
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {params:.2f} M | {med:.2f} | {med / first:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
