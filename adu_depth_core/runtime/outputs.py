"""What a depth estimator publishes, shared by the ROS node and `bag-eval` so both write the same thing.

REP 117/118: depth is 32FC1 metres with NaN wherever it is invalid; σ is 32FC1 metres with NaN where the
depth is invalid; the "confident" depth is the depth with NaN where σ exceeds a threshold.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class OutputSpec(NamedTuple):
    topic: str
    encoding: str | None  # None: a CameraInfo, not an Image


# Output name -> relative topic and encoding. Relative names: launch files remap them (depth_image_proc).
OUTPUTS: dict[str, OutputSpec] = {
    "depth": OutputSpec("depth/image", "32FC1"),
    "camera_info": OutputSpec("depth/camera_info", None),
    "uncertainty": OutputSpec("depth/uncertainty", "32FC1"),
    "confident": OutputSpec("depth/confident", "32FC1"),
    "depth_colorized": OutputSpec("depth/colorized", "bgr8"),
    "uncertainty_colorized": OutputSpec("depth/uncertainty/colorized", "bgr8"),
}
IMAGE_OUTPUTS = tuple(name for name, spec in OUTPUTS.items() if spec.encoding is not None)


def to_rep118_depth(depth: np.ndarray) -> np.ndarray:
    """REP 117/118 depth: float32, C-contiguous, NaN wherever depth is not a finite positive number."""
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
    return np.ascontiguousarray(np.where(valid, d, np.float32(np.nan)), dtype=np.float32)


def clean_sigma(sigma: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """sigma as float32 with NaN where depth is invalid or sigma is not a finite number >= 0."""
    s = np.asarray(sigma, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(s) & (s >= 0) & np.isfinite(depth)
    return np.ascontiguousarray(np.where(valid, s, np.float32(np.nan)), dtype=np.float32)


def confident_depth(depth: np.ndarray, sigma: np.ndarray, threshold: float) -> np.ndarray:
    """depth with NaN where sigma > threshold (m) or sigma is NaN."""
    with np.errstate(invalid="ignore"):
        keep = sigma <= np.float32(threshold)
    return np.ascontiguousarray(np.where(keep, depth, np.float32(np.nan)), dtype=np.float32)
