"""Classical-stereo proxy labels for the teacher: depth where the LiDAR never looks.

A LiDAR-like GT labels a few percent of the pixels and none above the top scan line (on KITTI, and on the
synthetic rig, the top third of the image has no label at all), so the teacher's SILog never supervises
that part of the view. A rectified pair does: OpenCV's semi-global block matching (`evaluation/sgbm.py`)
turns each training pair into depth f·B / d wherever it finds a left-right consistent match. Those depths
become a second SILog target, used only on pixels with no GT (optionally only farther than `gap_px` from
any GT label, so the LiDAR, where it looks, is never overruled by the noisier matcher). In the spirit of
training on traditional-stereo proxies (Tosi et al., monoResMatch, CVPR 2019); a departure from the paper,
whose teacher learns from SILog on GT alone: `weight: 0` (the default) is the paper's teacher.

The proxies are computed on the training batch itself (after cropping, flipping and colour jitter, at the
network's input size and focal), so they always describe the pair the teacher sees.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch
from torch import Tensor

from adu_depth_core.evaluation.sgbm import check_sgbm_range, sgbm_disparity_batch, sgbm_search_range
from adu_depth_core.models.presets import ModelConfig
from adu_depth_core.models.stereo import HINT_BLOCK_SIZE

__all__ = ["ProxyConfig", "proxy_inliers", "sgbm_proxy_depth"]


@dataclasses.dataclass
class ProxyConfig:
    """The teacher's classical-stereo proxy labels (`proxy:` in a teacher recipe).

    Attributes:
        weight: weight of the SILog term on the proxy depths next to SILog on GT; 0 turns it off (the
            paper's teacher).
        gap_px: use a proxy pixel only when it is more than this many pixels from every GT label (0 = every
            pixel without GT).
        max_disparity: the matcher's search range in pixels of the network input (rounded up to a multiple
            of 16); nearer surfaces get no proxy.
        block_size: the matcher's block side (odd).
        trim: share of the batch's proxy pixels left out of the loss at each step, those farthest from the
            current prediction in log depth (the matcher's outliers, mostly); 0 keeps all.
    """

    weight: float = 0.0
    gap_px: float = 0.0
    max_disparity: int = 128
    block_size: int = 3
    trim: float = 0.0

    def __post_init__(self) -> None:
        for name in ("weight", "gap_px"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"proxy.{name}: must be >= 0, got {getattr(self, name)}")
        d = self.max_disparity
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise ValueError(f"proxy.max_disparity: must be a positive integer (pixels), got {d!r}")
        if not (isinstance(self.block_size, int) and self.block_size >= 1 and self.block_size % 2 == 1):
            raise ValueError(f"proxy.block_size: must be an odd integer >= 1, got {self.block_size!r}")
        if not 0 <= self.trim < 1:
            raise ValueError(f"proxy.trim: must be in [0, 1), got {self.trim}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    def shares_matcher_with(self, model: ModelConfig) -> bool:
        """True when a teacher with the SGBM hint runs the very matcher these proxies need (same search
        range and block), so one SGBM pass per pair serves both."""
        return (self.enabled and model.teacher_hint == "sgbm" and self.block_size == HINT_BLOCK_SIZE
                and sgbm_search_range(self.max_disparity) == sgbm_search_range(model.max_disparity))

    def check_width(self, width: int) -> None:
        """Raise unless the matcher's rounded search range fits an input `width` pixels wide."""
        check_sgbm_range(self.max_disparity, width, "proxy.max_disparity", "the network input")


def sgbm_proxy_depth(
    left: Tensor, right: Tensor, focal: Tensor, baseline: Tensor, gt: Tensor, cfg: ProxyConfig,
    disparity: Tensor | None = None,
) -> Tensor:
    """(B, 1, H, W) float32 proxy depth of a batch (0 where there is no proxy), on `left`'s device.

    Args:
        left, right: (B, 3, H, W) rectified views in [0, 1], as the teacher sees them.
        focal, baseline: (B,) fx in pixels of this resolution and baseline in metres.
        gt: (B, 1, H, W) GT depth (> 0 where labelled); labelled pixels, and with `gap_px` their
            neighbourhood, get no proxy.
        disparity: (B, 1, H, W) SGBM disparity of the pair with `cfg`'s matcher, when already computed.
    """
    expected = (left.shape[0], 1, *left.shape[2:])
    if gt.shape != expected:
        raise ValueError(f"sgbm_proxy_depth: gt must be (B, 1, H, W) = {expected}, got {tuple(gt.shape)}")
    if disparity is None:
        disparity = sgbm_disparity_batch(left, right, cfg.max_disparity, cfg.block_size)
    disparities = disparity.cpu().numpy()[:, 0]
    labelled = (gt > 0).cpu().numpy()[:, 0]
    out = np.zeros(labelled.shape, dtype=np.float32)
    for i, (f, b) in enumerate(zip(focal.cpu().tolist(), baseline.cpu().tolist())):
        keep = (disparities[i] > 0) & ~labelled[i]
        if cfg.gap_px > 0 and labelled[i].any():  # distance of every pixel to the nearest label
            keep &= cv2.distanceTransform((~labelled[i]).astype(np.uint8), cv2.DIST_L2, 5) > cfg.gap_px
        out[i][keep] = f * b / disparities[i][keep]
    return torch.from_numpy(out)[:, None].to(left.device)


def proxy_inliers(pred: Tensor, proxy: Tensor, trim: float) -> Tensor:
    """Bool mask of the proxy pixels (> 0) kept in the loss: all of them, or with `trim` > 0 all but the
    share `trim` whose |ln pred − ln proxy| is largest (no gradient flows through the choice)."""
    has = proxy > 0
    if trim <= 0 or not bool(has.any()):
        return has
    residual = (torch.log(pred.detach().clamp_min(1e-3)) - torch.log(proxy.clamp_min(1e-3))).abs()
    limit = torch.quantile(residual[has].float(), 1.0 - trim)
    return has & (residual <= limit)
