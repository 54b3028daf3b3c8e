"""Classical stereo reference: OpenCV's semi-global block matching, depth = f·B / disparity.

No training, no learned prior: how much metric depth the two views of a rig hold on their own. The
project uses it to check that a rig's stereo signal is strong (a learned stereo teacher should approach
it) and as a reference row in the demo report.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["sgbm_depth", "sgbm_search_range"]


def sgbm_search_range(max_disparity: int) -> int:
    """The disparities SGBM searches for a requested `max_disparity`: rounded up to a multiple of 16, as
    OpenCV requires."""
    return int(np.ceil(max_disparity / 16) * 16)


def sgbm_depth(
        left: np.ndarray,
        right: np.ndarray,
        focal_px: float,
        baseline_m: float,
        max_disparity: int = 128,
        block_size: int = 3,
) -> np.ndarray:
    """Depth (metres, float32, 0 where SGBM finds no match) of a rectified pair.

    Args:
        left, right: HxWx3 uint8 RGB (or HxW grey) rectified views; right camera at +baseline along x.
        focal_px: fx of the rectified views, pixels.
        baseline_m: stereo baseline, metres.
        max_disparity: search range in pixels (rounded up to a multiple of 16, as OpenCV requires).
        block_size: matching block side (odd).
    """
    if left.shape != right.shape or left.ndim not in (2, 3) or left.dtype != np.uint8:
        raise ValueError(f"sgbm_depth needs two uint8 images of one shape, got {left.shape} {left.dtype} "
                         f"and {right.shape} {right.dtype}")
    if not (focal_px > 0 and baseline_m > 0):
        raise ValueError(f"focal_px and baseline_m must be > 0, got {focal_px} and {baseline_m}")
    grey = [cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) if v.ndim == 3 else v for v in (left, right)]
    num = sgbm_search_range(max_disparity)
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num, blockSize=block_size,
        P1=8 * block_size**2, P2=32 * block_size**2, uniquenessRatio=10, speckleWindowSize=50,
        speckleRange=2, disp12MaxDiff=1, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    disparity = matcher.compute(*grey).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    valid = disparity > 0
    depth = np.zeros_like(disparity)
    depth[valid] = focal_px * baseline_m / disparity[valid]
    return depth
