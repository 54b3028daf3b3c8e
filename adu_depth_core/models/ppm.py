"""Pyramid pooling module (PSPNet, Zhao et al. 2017, https://arxiv.org/abs/1612.01105) as NeWCRFs uses it.

NeWCRFs puts a PPM on the stride-32 encoder feature: average pools to 1x1, 2x2, 3x3 and 6x6, a 1x1 conv +
norm + ReLU per scale, bilinear upsampling back, concatenation with the input and a 3x3 conv + norm + ReLU.

`F.adaptive_avg_pool2d` to a size that does not divide the input does not export to ONNX, and deployment
sizes such as 352x1216 give an 11x38 stride-32 map. `adaptive_avg_pool2d_export` computes the same bins
(PyTorch's formula start = floor(i·H/s), end = ceil((i+1)·H/s)) as two matrix products with constant
averaging matrices, which export as MatMul at any size.

Deviation from NeWCRFs: GroupNorm instead of BatchNorm. The 1x1 pooled branch has one value per channel
and sample, so BatchNorm fails in training at batch size 1 (a partial last batch) and its running
statistics make train and eval outputs differ on the small batches this project trains with. Groups hold at
least 16 channels (32 groups at the paper's 512 channels), so the 1x1 branch is normalised over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PPM", "adaptive_avg_pool2d_export", "adaptive_pool_matrix"]


def adaptive_pool_matrix(
        n_in: int,
        n_out: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(n_out, n_in) matrix whose row i averages inputs [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))."""
    idx = torch.arange(n_out, device=device)
    start = torch.div(idx * n_in, n_out, rounding_mode="floor")
    end = torch.div((idx + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    pos = torch.arange(n_in, device=device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])  # n_out, n_in
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def adaptive_avg_pool2d_export(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """`F.adaptive_avg_pool2d(x, size)` computed as `P_h @ x @ P_wᵀ`, exportable at any input size.

    Args:
        x: (B, C, H, W) tensor.
        size: output size s or (s_h, s_w).
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    _, _, h, w = x.shape
    p_h = adaptive_pool_matrix(h, out_h, x.device, x.dtype)  # s_h, H
    p_w = adaptive_pool_matrix(w, out_w, x.device, x.dtype)  # s_w, W
    return torch.matmul(torch.matmul(p_h, x), p_w.t())  # B, C, s_h, s_w


def _conv_norm_act(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    # at least 16 channels per group: the 1x1 branch normalises one value per channel, and tiny groups
    # would flatten it to ±1
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if out_ch % g == 0 and out_ch // g >= 16 or g == 1)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(groups, out_ch),
        nn.ReLU(inplace=True),
    )


class PPM(nn.Module):
    """Pyramid pooling over one feature map, returning `channels` maps at the input's size.

    Args:
        in_channels: channels of the input feature (the encoder's stride-32 level).
        channels: channels of every branch and of the output.
        pool_scales: output sizes of the adaptive average pools.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.branches = nn.ModuleList(_conv_norm_act(in_channels, channels, 1) for _ in self.pool_scales)
        self.bottleneck = _conv_norm_act(in_channels + len(self.pool_scales) * channels, channels, 3)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for scale, branch in zip(self.pool_scales, self.branches):
            pooled = branch(adaptive_avg_pool2d_export(x, scale))  # B, C, s, s
            outs.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=False))
        return self.bottleneck(torch.cat(outs, dim=1))  # B, channels, H, W
