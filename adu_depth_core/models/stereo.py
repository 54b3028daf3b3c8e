"""Explicit stereo matching for the teacher: a correlation cost volume at 1/4 (or 1/2) resolution, fused
into the encoder's four feature levels.

Early fusion (left and right stacked on channels) leaves it to the encoder to discover matching; a
from-scratch network on a small budget mostly does not and learns monocular depth instead. Here matching
is built in, as in DispNetC / PSMNet / RAFT-Stereo: a small CNN shared by both views gives L2-normalised
features f_L, f_R at 1/r resolution (r = `reduction`, 4 or 2), and

    C[d](y, x) = < f_L(y, x), f_R(y, x − d) >        d = 0 … D − 1   (zero where x − d < 0)

for D = max_disparity / r candidate disparities. The volume and f_L go through a few convolutions (the first
of stride 2 when r = 2, so the result is at 1/4 either way); the result is added to the encoder feature of
each level (strided convolutions carry it down to 1/8, 1/16, 1/32), so the decoder, the depth head and the
feature distillation see the same levels and widths as with early fusion. Depth is then learned from
disparity by the decoder; nothing assumes the rig's focal or baseline, so the teacher works for any
calibrated rig of the training geometry.

With `hint=True` (`model.teacher_hint: sgbm`) the aggregation also sees OpenCV SGBM's disparity of the
pair, pooled to 1/r over the pixels it matched: its value (linear and log, over the search range) and the
share of matched pixels. Classical matching is strong exactly where the learned one is weak on a small
budget (far, small disparities, and everywhere the sparse GT never supervises: a network learns from the
labelled rows how far to trust the hint, and that transfers to the rows without labels). The hint is not
differentiable and runs on the CPU, in every forward pass of the teacher.
"""

from __future__ import annotations

import math

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torch.nn import functional as F

from ..evaluation.sgbm import sgbm_disparity_batch
from .presets import COST_VOLUME_REDUCTIONS

__all__ = ["CostVolumeFusion", "ImageNetNormalize", "correlation_volume", "pooled_disparity_hint"]

ENCODER_FINEST = 4  # the encoder's finest level, where the volume is injected


def correlation_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """(B, D, H, W) mean over channels of left(x) · right(x − d) for d < num_disp; 0 where x − d < 0.

    Args:
        left, right: (B, C, H, W) feature maps of the rectified left and right views.
        num_disp: D, number of integer disparities (at this resolution) to test.
    """
    b, _, h, w = left.shape
    if not 0 < num_disp < w:
        raise ValueError(f"correlation over {num_disp} disparities needs a map wider than that, "
                         f"got width {w}")
    volume = left.new_zeros(b, num_disp, h, w)
    for d in range(num_disp):
        volume[:, d, :, d:] = (left[..., d:] * right[..., : w - d]).mean(1)
    return volume


HINT_CHANNELS = 3  # disparity / D, log(1 + disparity) / log(1 + D), share matched
HINT_BLOCK_SIZE = 3  # SGBM's block side for the hint


def pooled_disparity_hint(disparity: torch.Tensor, reduction: int, max_disparity: int) -> torch.Tensor:
    """(B, 3, H/r, W/r) hint channels from a (B, 1, H, W) disparity map (0 = no match): the mean matched
    disparity of each r x r cell, linear and log, normalised by `max_disparity`, and the share matched."""
    valid = (disparity > 0).float()
    matched = F.avg_pool2d(valid, reduction)
    mean = F.avg_pool2d(disparity * valid, reduction) / matched.clamp_min(1e-6)
    d = float(max_disparity)
    return torch.cat([mean / d, torch.log1p(mean) / math.log1p(d), matched], 1)


class ImageNetNormalize(nn.Module):
    """RGB in [0, 1] → ImageNet-normalised, for the small CNNs that read the raw views."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class CostVolumeFusion(nn.Module):
    """Cost volume of the two views, added to the left view's encoder features at every level.

    Args:
        enc_channels: channels of the four encoder levels (1/4 … 1/32), finest first.
        max_disparity: largest disparity searched, in input pixels (a multiple of 4).
        feat_dim: channels of the matching features.
        width: channels of the aggregated volume.
        reduction: the volume's resolution, 1/4 (one candidate per 4 input pixels of disparity) or 1/2.
        hint: also aggregate SGBM's disparity of the pair (`pooled_disparity_hint`).
    """

    def __init__(
        self,
        enc_channels: list[int],
        max_disparity: int,
        feat_dim: int = 24,
        width: int = 48,
        reduction: int = 4,
        hint: bool = False,
    ):
        super().__init__()
        if reduction not in COST_VOLUME_REDUCTIONS:
            raise ValueError(
                f"cost volume reduction must be one of {COST_VOLUME_REDUCTIONS}, got {reduction}"
            )
        if max_disparity <= 0 or max_disparity % ENCODER_FINEST:
            raise ValueError(
                f"max_disparity must be a positive multiple of {ENCODER_FINEST}, got {max_disparity}"
            )
        self.max_disparity = max_disparity
        self.reduction = reduction
        self.num_disp = max_disparity // reduction
        self.hint = hint
        self.normalize = ImageNetNormalize()
        self.features = nn.Sequential(  # shared by both views; 1/reduction resolution
            _conv(3, 16, 2), _conv(16, 32, reduction // 2), _conv(32, 32), nn.Conv2d(32, feat_dim, 1)
        )
        to_quarter = ENCODER_FINEST // reduction  # stride of the first aggregation conv
        evidence = self.num_disp + feat_dim + (HINT_CHANNELS if hint else 0)
        self.aggregate = nn.Sequential(_conv(evidence, width, to_quarter), _conv(width, width))
        self.down = nn.ModuleList(_conv(width, width, 2) for _ in enc_channels[1:])
        self.inject = nn.ModuleList(nn.Conv2d(width, c, 1) for c in enc_channels)

    def forward(
        self,
        left: torch.Tensor,
        right: torch.Tensor,
        enc: list[torch.Tensor],
        hint_disparity: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Encoder features of the left view plus the stereo evidence, level by level.

        Args:
            left, right: (B, 3, H, W) RGB in [0, 1].
            enc: the left view's four encoder features, finest first.
            hint_disparity: (B, 1, H, W) SGBM disparity of this pair when the caller has it already (the
                trainer shares it with the proxy labels); None: computed here when the hint is on.
        """
        f_l, f_r = (F.normalize(self.features(self.normalize(x)), dim=1) for x in (left, right))
        volume = correlation_volume(f_l, f_r, self.num_disp)  # B, D, H/r, W/r
        evidence = [volume, f_l]
        if self.hint:
            disparity = hint_disparity
            if disparity is None:
                disparity = sgbm_disparity_batch(left, right, self.max_disparity, HINT_BLOCK_SIZE)  # B,1,H,W
            evidence.append(pooled_disparity_hint(disparity, self.reduction, self.max_disparity))
        g = self.aggregate(torch.cat(evidence, 1))
        fused = []
        for lv, feat in enumerate(enc):
            if lv > 0:
                g = self.down[lv - 1](g)
            if g.shape[-2:] != feat.shape[-2:]:
                g = F.interpolate(g, size=feat.shape[-2:], mode="bilinear", align_corners=False)
            fused.append(feat + self.inject[lv](g))
        return fused
