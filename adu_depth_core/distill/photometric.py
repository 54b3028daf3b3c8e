"""Stereo photometric self-supervision for the teacher: a training signal where LiDAR never looks.

The teacher's SILog sees only the sparse LiDAR-like GT, so most pixels (and nearly all far structure) learn
only from their labelled neighbours. A rectified stereo pair supervises every textured pixel: with the
predicted disparity d = f·B / depth (pixels of the network input), the left view is re-rendered from the
right one,

    L̂(x, y) = R(x − d(x, y), y)        (bilinear, so a sub-pixel disparity still gets a gradient)

and compared with the real left view by the photometric error of Godard et al. (Monodepth, 2017):
α·(1 − SSIM)/2 + (1 − α)·|L − L̂| with α = 0.85 and a 3x3 SSIM, averaged over the pixels whose source lies
inside the right image. An edge-aware smoothness term on the mean-normalised disparity fills textureless
areas. This is a departure from the paper, whose teacher learns from SILog alone: `weight: 0` (the
default) is the paper's teacher. Only the stereo teacher uses it; the student never sees the right view.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["PhotometricConfig", "StereoPhotometricLoss", "warp_right_to_left"]


@dataclasses.dataclass
class PhotometricConfig:
    """The teacher's stereo self-supervision (`photometric:` in a teacher recipe).

    Attributes:
        weight: weight of the photometric term next to SILog; 0 turns it off (the paper's teacher).
        smoothness: weight of the edge-aware disparity smoothness term (used only when `weight` > 0).
        ssim_alpha: α of the SSIM / L1 mix.
    """

    weight: float = 0.0
    smoothness: float = 1e-3
    ssim_alpha: float = 0.85

    def __post_init__(self) -> None:
        for name in ("weight", "smoothness"):
            if getattr(self, name) < 0:
                raise ValueError(f"photometric.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ssim_alpha <= 1:
            raise ValueError(f"photometric.ssim_alpha: must be in [0, 1], got {self.ssim_alpha}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def warp_right_to_left(right: Tensor, disparity: Tensor) -> tuple[Tensor, Tensor]:
    """The right view sampled at x − d: (B, C, H, W) re-rendered left view and the (B, 1, H, W) mask of
    pixels whose source x − d lies inside the right image.

    Args:
        right: (B, C, H, W) right image.
        disparity: (B, 1, H, W) left-view disparity in pixels of this resolution (≥ 0).
    """
    b, _, h, w = right.shape
    if disparity.shape != (b, 1, h, w):
        raise ValueError(
            f"disparity must be {(b, 1, h, w)} for a right image of {tuple(right.shape)}, "
            f"got {tuple(disparity.shape)}"
        )
    xs = torch.arange(w, device=right.device, dtype=disparity.dtype).view(1, 1, 1, w)
    ys = torch.arange(h, device=right.device, dtype=disparity.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    src_x = xs - disparity
    grid = torch.cat([2 * src_x / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=1).permute(0, 2, 3, 1)
    warped = F.grid_sample(right, grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = (src_x >= 0) & (src_x <= w - 1)
    return warped, inside


def ssim_dissimilarity(x: Tensor, y: Tensor) -> Tensor:
    """(1 − SSIM) / 2 per pixel and channel over 3x3 windows (reflection padded), in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1)


def edge_aware_smoothness(disparity: Tensor, image: Tensor) -> Tensor:
    """Mean |∂disparity| weighted by exp(−|∂image|), on the per-image mean-normalised disparity."""
    disp = disparity / disparity.mean(dim=(2, 3), keepdim=True).clamp_min(1e-7)
    dx = (disp[..., :, 1:] - disp[..., :, :-1]).abs()
    dy = (disp[..., 1:, :] - disp[..., :-1, :]).abs()
    wx = torch.exp(-(image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True))
    wy = torch.exp(-(image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True))
    return (dx * wx).mean() + (dy * wy).mean()


class StereoPhotometricLoss(nn.Module):
    """Photometric reconstruction of the left view from the right through the predicted depth."""

    def __init__(self, cfg: PhotometricConfig):
        super().__init__()
        self.cfg = cfg

    def forward(
        self, depth: Tensor, left: Tensor, right: Tensor, focal: Tensor, baseline: Tensor
    ) -> dict[str, Tensor]:
        """`photometric` and `smoothness` (unweighted) for a batch.

        Args:
            depth: (B, 1, H, W) predicted depth of the left view, metres.
            left, right: (B, 3, H, W) the rectified views in [0, 1], at the depth's resolution.
            focal: (B,) fx of the network input in pixels; baseline: (B,) metres.
        """
        b = depth.shape[0]
        disparity = focal.view(b, 1, 1, 1).to(depth) * baseline.view(b, 1, 1, 1).to(depth)
        disparity = disparity / depth.clamp_min(1e-3)
        warped, inside = warp_right_to_left(right, disparity)
        alpha = self.cfg.ssim_alpha
        error = alpha * ssim_dissimilarity(left, warped) + (1 - alpha) * (left - warped).abs()
        error = error.mean(1, keepdim=True)
        mask = inside.to(error.dtype)
        photometric = (error * mask).sum() / mask.sum().clamp_min(1)
        return {"photometric": photometric, "smoothness": edge_aware_smoothness(disparity, left)}
