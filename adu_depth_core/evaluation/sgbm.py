"""Classical stereo reference: OpenCV's semi-global block matching, depth = f·B / disparity.

No training, no learned prior: how much metric depth the two views of a rig hold on their own. The
project uses it to check that a rig's stereo signal is strong (a learned stereo teacher should approach
it), as a reference row in the demo report, for the teacher's proxy labels (`distill/proxy.py`) and for
its optional disparity hint (`models/stereo.py`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

__all__ = ["check_sgbm_range", "sgbm_depth", "sgbm_disparity", "sgbm_disparity_batch", "sgbm_search_range"]


def sgbm_search_range(max_disparity: int) -> int:
    """The disparities SGBM searches for a requested `max_disparity`: rounded up to a multiple of 16, as
    OpenCV requires."""
    return int(np.ceil(max_disparity / 16) * 16)


def check_sgbm_range(max_disparity: int, width: int, setting: str, what: str) -> None:
    """Raise ValueError naming `setting` unless SGBM's rounded search range fits images `width` wide."""
    rounded = sgbm_search_range(max_disparity)
    if rounded >= width:
        raise ValueError(
            f"{setting} {max_disparity} px rounded up to {rounded} (SGBM searches multiples of 16) does not "
            f"fit {what} width {width} px; the search range must stay below the width"
        )


def sgbm_disparity(
        left: np.ndarray,
        right: np.ndarray,
        max_disparity: int = 128,
        block_size: int = 3,
) -> np.ndarray:
    """Disparity (pixels, float32, 0 where SGBM finds no left-right consistent match) of a rectified pair.

    Args:
        left, right: HxWx3 uint8 RGB (or HxW grey) rectified views; right camera at +baseline along x.
        max_disparity: search range in pixels (rounded up to a multiple of 16, as OpenCV requires).
        block_size: matching block side (odd).
    """
    if left.shape != right.shape or left.ndim not in (2, 3) or left.dtype != np.uint8:
        raise ValueError(f"SGBM needs two uint8 images of one shape, got {left.shape} {left.dtype} "
                         f"and {right.shape} {right.dtype}")
    grey = [cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) if v.ndim == 3 else v for v in (left, right)]
    num = sgbm_search_range(max_disparity)
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num, blockSize=block_size,
        P1=8 * block_size**2, P2=32 * block_size**2, uniquenessRatio=10, speckleWindowSize=50,
        speckleRange=2, disp12MaxDiff=1, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    disparity = matcher.compute(*grey).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    return np.where(disparity > 0, disparity, np.float32(0.0))


def sgbm_depth(
        left: np.ndarray,
        right: np.ndarray,
        focal_px: float,
        baseline_m: float,
        max_disparity: int = 128,
        block_size: int = 3,
) -> np.ndarray:
    """Depth (metres, float32, 0 where SGBM finds no match) of a rectified pair: f·B / `sgbm_disparity`.

    Args:
        left, right: HxWx3 uint8 RGB (or HxW grey) rectified views; right camera at +baseline along x.
        focal_px: fx of the rectified views, pixels.
        baseline_m: stereo baseline, metres.
        max_disparity, block_size: as for `sgbm_disparity`.
    """
    if not (focal_px > 0 and baseline_m > 0):
        raise ValueError(f"focal_px and baseline_m must be > 0, got {focal_px} and {baseline_m}")
    disparity = sgbm_disparity(left, right, max_disparity, block_size)
    valid = disparity > 0
    depth = np.zeros_like(disparity)
    depth[valid] = focal_px * baseline_m / disparity[valid]
    return depth


def sgbm_disparity_batch(
        left: torch.Tensor, right: torch.Tensor, max_disparity: int, block_size: int = 3
) -> torch.Tensor:
    """(B, 1, H, W) float32 SGBM disparity of a batch of rectified pairs, on `left`'s device.

    Args:
        left, right: (B, 3, H, W) views in [0, 1] (matched as 8-bit images, on the CPU).
        max_disparity, block_size: as for `sgbm_disparity`.
    """
    if left.shape != right.shape or left.ndim != 4 or left.shape[1] != 3:
        raise ValueError(f"SGBM on a batch needs (B, 3, H, W) left and right views, got {tuple(left.shape)} "
                         f"and {tuple(right.shape)}")

    def to_uint8(images: torch.Tensor) -> np.ndarray:  # (B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8
        scaled = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        return scaled.permute(0, 2, 3, 1).cpu().numpy()

    pairs = zip(to_uint8(left), to_uint8(right))
    out = np.stack([sgbm_disparity(lv, rv, max_disparity, block_size) for lv, rv in pairs])
    return torch.from_numpy(out)[:, None].to(left.device)
