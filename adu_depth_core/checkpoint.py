"""Checkpoint files: one dict, written atomically, read with `torch.load(weights_only=True)`.

Layout (every value is a tensor, a plain python container or a primitive, so `weights_only` works):

    format:        "adu_depth/1"
    stage:         "teacher" | "student"
    model_config:  dict for `adu_depth_core.models.ModelConfig` (preset, max_depth, input size, ...)
    model:         state_dict of the DepthNet (the weight average when the run had `ema_decay`)
    training_weights: the optimiser's weights, for resuming (only with `ema_decay`)
    adapters:      state_dict of the distillation adapters (student stage only) or absent
    optimizer, scheduler, step, rng: training state (absent in export-only files)
    config:        the full training config as a dict
    meta:          {"focal_px": fx at the network input size, "versions": {...}, "git_commit": ...}
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from adu_depth_core.fileio import atomic_write_bytes

FORMAT = "adu_depth/1"
STAGES = ("teacher", "student")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Validate and atomically write a checkpoint dict."""
    missing = [k for k in ("stage", "model_config", "model") if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    if payload["stage"] not in STAGES:
        raise ValueError(f"checkpoint stage must be one of {STAGES}, got {payload['stage']!r}")
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; clear errors for missing/corrupt/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        # say what the file is; never repeat torch's advice to retry with weights_only=False
        raise ValueError(
            f"{path}: not a readable checkpoint ({_what_file_is(path, exc)}); expected an adu_depth "
            "checkpoint (.pt) written by `adu-depth train`"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an adu_depth checkpoint (expected format {FORMAT!r})")
    return ckpt


def _what_file_is(path: Path, exc: Exception) -> str:
    """What a file that `torch.load(weights_only=True)` refused is, from its name and first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "it is an ONNX model (what `adu-depth export` writes), not a checkpoint"
    if suffix in (".engine", ".plan", ".trt"):
        return "it is a TensorRT engine"
    if not head:
        return "the file is empty"
    if isinstance(exc, pickle.UnpicklingError) and (head.startswith(b"PK") or head[:1] == b"\x80"):
        return (
            "a PyTorch file holding Python objects beyond tensors and plain containers, which are not "
            "unpickled because that can run code"
        )
    if head.startswith(b"PK"):
        return "a zip archive that is not a complete PyTorch file (truncated or corrupt)"
    return f"not a PyTorch file: it starts with bytes {head[:4].hex()} (corrupt or another format)"
