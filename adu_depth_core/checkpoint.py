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
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from adu_depth_core.paths import naming

FORMAT = "adu_depth/1"
_UMASK = os.umask(0)
os.umask(_UMASK)
STAGES = ("teacher", "student")


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file `.<name>.XXXX.tmp` beside `path`, with the usual permissions (mkstemp gives 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename. An OSError (a full
    disk) names `path` and leaves nothing behind."""
    path = Path(path)
    with naming(path, always=True):
        fd, tmp = _temp_beside(path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy `src` to `dst` through a temp file beside `dst` and a rename (same permissions as
    `atomic_write_bytes`)."""
    dst = Path(dst)
    with naming(dst, always=True):
        fd, tmp = _temp_beside(dst)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def remove_stale_temps(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Remove the `.<name>.XXXX.tmp` files a killed writer left in `folder` (for each of `names`, which
    may be globs such as `ckpt_*.pt`); returns what was removed."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return sorted(removed)


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


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
