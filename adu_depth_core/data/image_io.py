"""Image files with clear errors: RGB images (uint8) and depth PNGs (uint16, metres·scale).

Every reader raises FileNotFoundError for a missing file and ValueError naming the path for a file that
is not what it should be (unreadable, wrong dtype, wrong channel count); writers are atomic.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from adu_depth_core.depth_traits import uint16_png
from adu_depth_core.fileio import atomic_write_bytes

DEPTH_SCALE = 256.0  # KITTI / DrivingStereo: uint16 value = metres · 256, 0 = no measurement
MAX_PNG_DEPTH = 65535 / DEPTH_SCALE  # 255.996 m, the largest depth a /256 PNG can hold


def _read_unchanged(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    # imdecode instead of imread: never prints warnings and handles non-ASCII paths
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"{path}: not a readable image file (corrupt or unsupported format)")
    return img


def read_rgb(path: str | Path) -> np.ndarray:
    """RGB uint8 HxWx3 image (grey images are replicated to three channels, alpha is dropped)."""
    img = _read_unchanged(path)
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit colour image, got dtype {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected 1, 3 or 4 channels, got shape {img.shape}")
    return np.ascontiguousarray(
        cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    )


def _encode(path: Path, img: np.ndarray) -> bytes:
    ext = path.suffix.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"{path}: image files must end in .png, .jpg or .jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext != ".png" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ValueError(f"{path}: could not encode the image ({img.shape} {img.dtype})")
    return buf.tobytes()


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB uint8 HxWx3 image (PNG is lossless; JPEG quality 95), atomically."""
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path}: expected an RGB uint8 HxWx3 image, got {image.shape} {image.dtype}")
    atomic_write_bytes(path, _encode(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)))


def read_depth_png(path: str | Path, scale: float = DEPTH_SCALE) -> np.ndarray:
    """float32 HxW depth in metres from a single-channel uint16 PNG (value / scale, 0 = no measurement)."""
    img = _read_unchanged(path)
    if img.dtype != np.uint16 or img.ndim != 2:
        chans = 1 if img.ndim == 2 else img.shape[2]
        raise ValueError(
            f"{path}: a depth PNG must be single-channel uint16 (metres x {scale:g}), got {img.dtype} with "
            f"{chans} channel(s)"
        )
    return uint16_png(scale).to_metres(img)


def depth_to_uint16(depth: np.ndarray, scale: float = DEPTH_SCALE, what: str = "depth") -> np.ndarray:
    """Round metres·scale to uint16 (0 stays 0); ValueError for negative, non-finite or too large depth
    (a dataset's ground truth is written exactly or not at all)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"{what}: expected an HxW depth map, got shape {depth.shape}")
    if not np.all(np.isfinite(depth)) or (depth < 0).any():
        raise ValueError(f"{what}: depth must be finite and >= 0 (0 = no measurement)")
    if depth.max(initial=0.0) * scale > 65535:
        raise ValueError(
            f"{what}: depth {depth.max():.2f} m does not fit a uint16 PNG at scale {scale:g} "
            f"(max {65535 / scale:.2f} m)"
        )
    return uint16_png(scale).from_metres(depth)


def write_depth_png(path: str | Path, depth: np.ndarray, scale: float = DEPTH_SCALE) -> None:
    """Write float depth (metres, 0 = none) as a uint16 PNG of metres·scale, atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: depth maps are written as .png")
    atomic_write_bytes(path, _encode(path, depth_to_uint16(depth, scale, what=str(path))))
