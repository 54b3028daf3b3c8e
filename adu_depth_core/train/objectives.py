"""What DDP wraps: the trainable modules of a stage and their loss, plus the batch → network-input and
autocast rules the step and the benchmarks share.

* teacher: `DepthNet` with 6 input channels (left and right concatenated), loss L_b (SILog), plus SILog on
  the classical-stereo proxy depths and the photometric self-supervision when enabled;
* student: the monocular `DepthNet` and the `DistillationLoss` adapters (paper Eq. 9).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from adu_depth_core.distill import (
    DistillationLoss,
    PhotometricConfig,
    ProxyConfig,
    SILogLoss,
    StereoPhotometricLoss,
    proxy_inliers,
)
from adu_depth_core.models import DepthNet


class TeacherObjective(nn.Module):
    """Stereo teacher with L_b (SILog on the sparse GT), plus SILog on the classical-stereo proxy depths
    (`distill/proxy.py`) when `proxy.weight` > 0 and the photometric self-supervision of the left view from
    the right (`distill/photometric.py`) when `photometric.weight` > 0."""

    def __init__(
        self,
        model: DepthNet,
        silog: SILogLoss,
        photometric: PhotometricConfig,
        proxy: ProxyConfig,
    ):
        super().__init__()
        self.model = model
        self.silog = silog
        self.photometric = StereoPhotometricLoss(photometric)
        self.proxy = proxy

    def forward(
        self,
        stereo: torch.Tensor,
        gt: torch.Tensor,
        focal: torch.Tensor,
        baseline: torch.Tensor,
        proxy_depth: torch.Tensor | None = None,
        hint_disparity: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        out = self.model(stereo, hint_disparity)
        depth = out.depth.float()
        loss = self.silog(depth, gt)["silog"]
        terms = {"silog": loss}
        if self.proxy.enabled:
            if proxy_depth is None:
                raise ValueError("proxy.weight > 0 needs the batch's proxy depths (sgbm_proxy_depth)")
            inliers = proxy_inliers(depth, proxy_depth, self.proxy.trim)
            terms["proxy"] = self.silog(depth, proxy_depth, inliers)["silog"]
            loss = loss + self.proxy.weight * terms["proxy"]
        cfg = self.photometric.cfg
        if cfg.enabled:
            left, right = stereo[:, :3].float(), stereo[:, 3:].float()
            terms.update(self.photometric(depth, left, right, focal, baseline))
            loss = loss + cfg.weight * (terms["photometric"] + cfg.smoothness * terms["smoothness"])
        return {**terms, "total": loss}


class StudentObjective(nn.Module):
    """Monocular student plus the distillation adapters, under `DistillationLoss` (paper Eq. 9)."""

    def __init__(self, model: DepthNet, loss: DistillationLoss):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, image: torch.Tensor, gt: torch.Tensor, teacher_out, step: int
    ) -> dict[str, torch.Tensor]:
        out = self.model(image)
        return self.loss(out, teacher_out, gt, step=step)


def model_input(model: DepthNet, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """The network input for a batch: left (student) or cat(left, right) on channels (teacher)."""
    left = batch["left"].to(device, non_blocking=True)
    if model.in_chans == 6:
        return torch.cat([left, batch["right"].to(device, non_blocking=True)], dim=1)
    return left


def autocast_context(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
