"""Checkpoint files: one dict, written atomically, read with `torch.load(weights_only=True)`.

Layout (every value is a tensor, a plain python container or a primitive, so `weights_only` works):

    format:        "adu_depth/1"
    stage:         "teacher" | "student"
    model_config:  dict for `adu_depth_core.models.ModelConfig` (preset, max_depth, input size, ...)
    model:         state_dict of the DepthNet
    adapters:      state_dict of the distillation adapters (student stage only) or absent
    optimizer, scheduler, step, rng: training state (absent in export-only files)
    config:        the full training config as a dict
    meta:          {"focal_px": fx at the network input size, "versions": {...}, "git_commit": ...}
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "adu_depth/1"
_UMASK = os.umask(0)
os.umask(_UMASK)
STAGES = ("teacher", "student")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    except Exception as exc:  # torch raises many types for corrupt files; keep the first line of its story
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an adu_depth checkpoint (expected format {FORMAT!r})")
    return ckpt


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
