"""Output heads: metric depth (NeWCRFs' disparity head) and ADU-Depth's uncertainty estimation module (UEM).

Both read the finest decoder feature (1/4 of the input), predict one channel at that resolution and are
bilinearly upsampled x4 to the input size. Bilinear interpolation is a convex combination, so the bounds a
head enforces at 1/4 hold at full resolution too.

Uncertainty is the log variance s = log σ² (Kendall & Gal 2017), bounded to `log_var_range` by an affine map
of a sigmoid (the UEM: conv → sigmoid → scaling). The default (−10, 6) lets σ = exp(s/2) span 6.7 mm to 20 m,
which covers sub-centimetre errors near the camera and the worst far-range errors at 80 m, while keeping
exp(−s) in the uncertainty losses within [2.5e−3, 2.2e4], far from float16/float32 overflow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthHead", "UncertaintyHead", "log_var_pyramid"]


def log_var_pyramid(log_var_quarter: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """Log variance at 1/4, 1/8, 1/16, 1/32 of the input (finest first), by 2x2 average pooling.

    Averaging s = log σ² is the geometric mean of the variances of the pixels a feature covers.

    Args:
        log_var_quarter: (B, 1, H/4, W/4) log variance at the finest feature resolution.
        levels: number of pyramid levels.
    """
    out = [log_var_quarter]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2))  # B, 1, h/2, w/2
    return out


class DepthHead(nn.Module):
    """3x3 conv → sigmoid → metric depth in (min_depth, max_depth], upsampled to the input size.

    NeWCRFs uses depth = max_depth · sigmoid; the `min_depth` offset (1 mm by default) keeps depth strictly
    positive even where the sigmoid underflows, so log-depth losses never see log(0).

    Args:
        in_channels: channels of the finest decoder feature.
        max_depth: largest depth in metres.
        min_depth: smallest depth in metres.
        upscale: factor from the feature to the input resolution.
    """

    def __init__(self, in_channels: int, max_depth: float, min_depth: float = 1e-3, upscale: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.max_depth = float(max_depth)
        self.min_depth = float(min_depth)
        self.upscale = upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.sigmoid(self.conv(x))  # B, 1, H/4, W/4
        d = F.interpolate(d, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return self.min_depth + (self.max_depth - self.min_depth) * d  # B, 1, H, W


class UncertaintyHead(nn.Module):
    """UEM: 3x3 conv → sigmoid → affine scaling to the log variance range.

    Args:
        in_channels: channels of the finest decoder feature.
        log_var_range: (low, high) bounds of s = log σ².
        upscale: factor from the feature to the input resolution.
    """

    def __init__(
        self,
        in_channels: int,
        log_var_range: tuple[float, float] = (-10.0, 6.0),
        upscale: int = 4,
        init_log_var: float = 2.0,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.low, self.high = (float(v) for v in log_var_range)
        self.upscale = upscale
        # Start near s = init_log_var (σ ≈ 2.7 m for 2.0): an untrained depth head is metres off, and a
        # small initial σ would scale the uncertainty-weighted losses by exp(-s) and swamp SILog.
        frac = (min(max(init_log_var, self.low), self.high) - self.low) / (self.high - self.low)
        frac = min(max(frac, 1e-3), 1 - 1e-3)
        nn.init.constant_(self.conv.bias, math.log(frac / (1 - frac)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (log variance at the input size, log variance at the feature size)."""
        s = self.low + (self.high - self.low) * torch.sigmoid(self.conv(x))  # B, 1, H/4, W/4
        full = F.interpolate(s, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return full, s
