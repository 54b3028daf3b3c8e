"""Training state that has to survive a checkpoint: RNG states, run metadata, per-sample seeds.

Everything returned here is a tensor or a plain python value so that the checkpoint loads with
`torch.load(weights_only=True)` (numpy's RNG state holds an ndarray, which is stored as a tensor).
"""

from __future__ import annotations

import logging
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 over the parts): (seed, epoch, index) → seed."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & _MASK64)) & _MASK64
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        x = z ^ (z >> 31)
    return x & ((1 << 63) - 1)


def set_determinism(enabled: bool) -> None:
    """Deterministic kernels (and cuDNN without autotuning) when `enabled`."""
    if enabled:
        # cuBLAS needs a fixed workspace for deterministic GEMMs; harmless on CPU.
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def get_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA when present) RNG states as tensors / plain types."""
    py_version, py_state, py_gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": py_version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # the current device only: under DDP each rank owns one GPU, and touching the others would
        # create a CUDA context on every GPU in every process
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"].cpu())
        else:
            log.warning("the checkpoint holds a CUDA RNG state but CUDA is not available; not restored")


def git_commit(path: str | Path | None = None) -> str | None:
    """HEAD commit of the repository holding this package (None outside a git checkout)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if not commit:
        return None
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of the pieces that shape a trained model."""
    import adu_depth_core

    out = {
        "adu_depth": adu_depth_core.__version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only loading refuses
        "numpy": str(np.__version__),
    }
    try:
        import timm

        out["timm"] = str(timm.__version__)
    except ImportError:  # pragma: no cover - timm is a hard dependency of the models
        pass
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    return out


class FocalStats:
    """Running mean / min / max of the per-sample focal length (px) seen by the network in training.

    Stored in `meta["focal_px"]` (mean), `meta["focal_px_min"]`, `meta["focal_px_max"]`; the runtime uses
    it to rescale depth for cameras with another focal length.
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.min = float("inf")
        self.max = float("-inf")

    def update(self, focal: torch.Tensor) -> None:
        f = focal.detach().double().flatten().cpu()
        if f.numel() == 0:
            return
        self.total += float(f.sum())
        self.count += int(f.numel())
        self.min = min(self.min, float(f.min()))
        self.max = max(self.max, float(f.max()))

    def merge(self, other: FocalStats) -> None:
        self.total += other.total
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def state_dict(self) -> dict[str, float | int]:
        return {"total": self.total, "count": self.count, "min": self.min, "max": self.max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = float(state["total"])
        self.count = int(state["count"])
        self.min = float(state["min"])
        self.max = float(state["max"])

    def meta(self) -> dict[str, float | None]:
        if not self.count:
            return {"focal_px": None, "focal_px_min": None, "focal_px_max": None}
        return {"focal_px": self.mean, "focal_px_min": self.min, "focal_px_max": self.max}
