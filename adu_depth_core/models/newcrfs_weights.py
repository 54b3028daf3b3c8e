"""NeWCRFs checkpoints (https://github.com/aliyun/NeWCRFs) → weights of the `newcrfs_*` presets.

NeWCRFs' `train.py` saves `{'model': state_dict, 'optimizer': ..., 'global_step': ..., 'best_eval_steps':
<numpy int32 array>, ...}` from a `DataParallel` / `DistributedDataParallel` model, so every key starts with
`module.`; its attention layers keep `relative_position_index` as persistent buffers, and the PPM is built
from mmcv `ConvModule`s (`conv`, then `bn` or `gn`). Key layout (NeWCRFs → project):

    backbone.patch_embed.*                   → encoder.backbone.patch_embed.*
    backbone.layers.i.blocks.j.*             → encoder.backbone.layers_i.blocks.j.*
    backbone.layers.i.downsample.*           → encoder.backbone.layers_{i+1}.downsample.*  (timm merges first)
    backbone.norm{i}.*                       → encoder.norms.i.*
    decoder.psp_modules.k.1.{conv,gn}.*      → ppm.branches.k.{0,1}.*
    decoder.bottleneck.{conv,bn}.*           → ppm.bottleneck.{0,1}.*   (BatchNorm running statistics too)
    crf{i}.proj_x / proj_v / norm_crf        → decoder.levels.i.proj_x / proj_v / norm
    crf{i}.crf_layer.blocks.j.*              → decoder.levels.i.blocks.j.*
    disp_head1.conv1.*                       → depth_head.conv.*

The UEM (`uem.*`) has no NeWCRFs counterpart and keeps its initialisation. `relative_position_index`
buffers are not weights: they are checked against the ones the model computes, then dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "VARIANTS",
    "detect_variant",
    "map_newcrfs_state_dict",
    "newcrfs_key",
    "read_newcrfs_checkpoint",
    "to_newcrfs_state_dict",
]

# NeWCRFs `--encoder` name → preset; the Swin embedding width tells them apart
VARIANTS = {"large07": "newcrfs_large07", "base07": "newcrfs_base07", "tiny07": "newcrfs_tiny07"}
_EMBED_DIMS = {192: "large07", 128: "base07", 96: "tiny07"}
_PATCH_KEY = "backbone.patch_embed.proj.weight"
_REL_INDEX = "relative_position_index"
_SHOWN = 6  # tensor names listed in an error

_RULES: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(p), r) for p, r in [
        (r"^encoder\.backbone\.patch_embed\.(.+)$", r"backbone.patch_embed.\1"),
        (r"^encoder\.backbone\.layers_(\d+)\.downsample\.(.+)$", "<down>"),
        (r"^encoder\.backbone\.layers_(\d+)\.blocks\.(.+)$", r"backbone.layers.\1.blocks.\2"),
        (r"^encoder\.norms\.(\d+)\.(.+)$", r"backbone.norm\1.\2"),
        (r"^ppm\.branches\.(\d+)\.0\.(.+)$", r"decoder.psp_modules.\1.1.conv.\2"),
        (r"^ppm\.branches\.(\d+)\.1\.(.+)$", r"decoder.psp_modules.\1.1.gn.\2"),
        (r"^ppm\.bottleneck\.0\.(.+)$", r"decoder.bottleneck.conv.\1"),
        (r"^ppm\.bottleneck\.1\.(.+)$", r"decoder.bottleneck.bn.\1"),
        (r"^decoder\.levels\.(\d+)\.(proj_x|proj_v)\.(.+)$", r"crf\1.\2.\3"),
        (r"^decoder\.levels\.(\d+)\.blocks\.(.+)$", r"crf\1.crf_layer.blocks.\2"),
        (r"^decoder\.levels\.(\d+)\.norm\.(.+)$", r"crf\1.norm_crf.\2"),
        (r"^depth_head\.conv\.(.+)$", r"disp_head1.conv1.\1"),
        (r"^uem\..+$", None),
    ]
]


def newcrfs_key(key: str) -> str | None:
    """NeWCRFs' name of a project state-dict key (or buffer name); None for the UEM, which NeWCRFs lacks."""
    for pattern, repl in _RULES:
        m = pattern.match(key)
        if not m:
            continue
        if repl is None:
            return None
        if repl == "<down>":  # timm downsamples at the start of stage i, Swin at the end of stage i - 1
            return f"backbone.layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        return m.expand(repl)
    raise KeyError(f"no NeWCRFs name for {key!r}; is this a newcrfs_* preset?")


def _numpy_globals() -> list:
    reconstruct = np._core.multiarray._reconstruct  # type: ignore[attr-defined]
    dtype_classes = [type(np.dtype(t)) for t in ("i1", "i2", "i4", "i8", "u1", "u4", "u8", "f4", "f8", "?")]
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
            *dtype_classes]


def read_newcrfs_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of a NeWCRFs checkpoint file, `module.` prefixes removed, on the CPU.

    Read with `weights_only=True`; numpy arrays (NeWCRFs stores `best_eval_steps` as one) are allowed as
    data. Accepts `{'model': state_dict, ...}` or a bare state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NeWCRFs checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        reason = (str(exc).strip().splitlines() or [""])[0]
        msg = f"{path}: not a readable NeWCRFs checkpoint ({type(exc).__name__}: {reason})"
        raise ValueError(msg) from None
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        keys = sorted(ckpt)[:_SHOWN] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: expected a NeWCRFs checkpoint {{'model': state_dict}}, found {keys}")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if _PATCH_KEY not in sd:
        raise ValueError(f"{path}: no {_PATCH_KEY!r}; not a NeWCRFs NewCRFDepth checkpoint "
                         f"(first keys: {sorted(sd)[:_SHOWN]})")
    return sd


def detect_variant(sd: dict[str, torch.Tensor]) -> str:
    """'large07' / 'base07' / 'tiny07' from the Swin embedding width of a NeWCRFs state dict."""
    width = int(sd[_PATCH_KEY].shape[0])
    if width not in _EMBED_DIMS:
        raise ValueError(f"{_PATCH_KEY} has {width} channels; NeWCRFs variants have "
                         f"{ {v: k for k, v in _EMBED_DIMS.items()} } — pass --variant for a custom one")
    return _EMBED_DIMS[width]


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def map_newcrfs_state_dict(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s full state dict with every NeWCRFs tensor of `sd` in place (the UEM keeps `model`'s).

    Raises ValueError naming the tensors when `sd` does not fit `model`: NeWCRFs tensors the model has no
    place for, model tensors the checkpoint lacks, shape mismatches, or `relative_position_index` buffers
    that differ from the model's.
    """
    target = model.state_dict()
    names = {k: newcrfs_key(k) for k in target}
    expected = {src: k for k, src in names.items() if src is not None}
    indices = {newcrfs_key(k): b for k, b in model.named_buffers() if k.endswith(_REL_INDEX)}
    unmapped = sorted(k for k in sd if k not in expected and k not in indices)
    # BatchNorm's counter is bookkeeping, absent from checkpoints of old PyTorch versions
    missing = sorted(k for k in expected if k not in sd and not k.endswith("num_batches_tracked"))
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} NeWCRFs tensors have no place in the model: {_listed(unmapped)}")
    if missing:
        problems.append(f"{len(missing)} model tensors are missing from the checkpoint: {_listed(missing)}")
    shapes = sorted(f"{src} {tuple(sd[src].shape)} vs {tuple(target[k].shape)}"
                    for src, k in expected.items() if src in sd and sd[src].shape != target[k].shape)
    if shapes:
        problems.append(f"{len(shapes)} tensors differ in shape (checkpoint vs model): {_listed(shapes)}")
    wrong = sorted(k for k, b in indices.items() if k in sd and not torch.equal(sd[k].to(b.dtype), b.cpu()))
    if wrong:
        problems.append(f"{len(wrong)} {_REL_INDEX} buffers differ from the model's: {_listed(wrong)}")
    if problems:
        raise ValueError("; ".join(problems))
    out = dict(target)
    for src, k in expected.items():
        if src in sd:
            out[k] = sd[src].to(dtype=target[k].dtype).clone()
    return out


def to_newcrfs_state_dict(model: nn.Module, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """`model`'s weights in NeWCRFs' layout (with its persistent `relative_position_index` buffers), as
    NeWCRFs' `train.py` saves them from a `DataParallel` model; the inverse of `map_newcrfs_state_dict`."""
    out = {prefix + name: v.clone() for k, v in model.state_dict().items() if (name := newcrfs_key(k))}
    for k, b in model.named_buffers():
        if k.endswith(_REL_INDEX):
            out[prefix + str(newcrfs_key(k))] = b.clone()
    return out
