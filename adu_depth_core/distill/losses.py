"""Depth and distillation losses of ADU-Depth (arXiv 2309.14744, §3.2–3.3, Eqs. 2–8).

Every loss is a small `nn.Module` whose `forward` takes the tensors it compares plus an optional
boolean valid mask and returns a dict with one named scalar. Shapes follow the project contract:
depth and log variance are (B, 1, H, W), features are (B, C, h, w). `docs/DISTILLATION.md` states the
equations exactly as implemented, the normalisations and the defaults.

Conventions shared by all terms:

- Pixel means are pooled over the whole batch (every valid pixel of every image counts once), except
  the focal-depth score, which the paper defines per image.
- A term with no valid pixel is an exact zero that is still attached to the graph (backward works and
  gives zero gradients): batches without GT (`has_gt` False) or without valid teacher depth are
  legitimate and must not crash or poison a training step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of `values` over `valid` (same shape); an attached zero when nothing is valid."""
    count = valid.sum()
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / count.clamp_min(1)


def _check_same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def teacher_valid_mask(teacher_depth: Tensor, valid: Tensor | None = None) -> Tensor:
    """Pixels where the teacher's dense depth can serve as a soft label: finite and > 0 (0 = invalid)."""
    mask = torch.isfinite(teacher_depth) & (teacher_depth > 0)
    if valid is not None:
        _check_same_shape(valid, teacher_depth, "teacher valid mask")
        mask = mask & valid.bool()
    return mask


def resize_log_var(log_var: Tensor, size: tuple[int, int]) -> Tensor:
    """Log variance s (B,1,H,W) at another resolution: area average when shrinking, bilinear otherwise.

    Averaging s (not σ²) gives the log of the geometric-mean variance of the pooled pixels, which keeps
    the map in the same units as the UEM output and is what a feature pixel "sees".
    """
    h, w = log_var.shape[-2:]
    if (h, w) == tuple(size):
        return log_var
    if size[0] <= h and size[1] <= w:
        return F.adaptive_avg_pool2d(log_var, size)
    return F.interpolate(log_var, size=size, mode="bilinear", align_corners=False)


class SILogLoss(nn.Module):
    """Scale-invariant log loss L_b of the baseline (NeWCRFs / Eigen et al.).

    L_b = scale · sqrt(mean(d²) − λ·mean(d)²), d = ln pred − ln gt over valid GT pixels pooled over the
    batch. GT is valid where min_depth < gt (< max_depth when given) and finite.

    Args:
        min_depth: GT at or below this is ignored (1.0 m on KITTI, the LiDAR's reliable range).
        max_depth: GT at or above this is ignored; None keeps every depth.
        variance_focus: λ in the formula (0.85 as in NeWCRFs; 1 = fully scale invariant).
        scale: the factor 10 of NeWCRFs, which puts the loss in the units of the KITTI SILog metric / 10.
        eps: added to the (non-negative-clamped) variance before the square root so the gradient stays
            finite when every log residual is equal; the loss of a perfect prediction is scale·sqrt(eps)
            (1e-5 with the defaults), far below any meaningful value.
        pred_floor: predictions are clamped to at least this many metres before the log, so a network
            output of 0 gives a large finite loss instead of inf.
    """

    def __init__(
        self,
        min_depth: float = 1.0,
        max_depth: float | None = None,
        variance_focus: float = 0.85,
        scale: float = 10.0,
        eps: float = 1e-12,
        pred_floor: float = 1e-3,
    ) -> None:
        super().__init__()
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.variance_focus = variance_focus
        self.scale = scale
        self.eps = eps
        self.pred_floor = pred_floor

    def gt_mask(self, gt: Tensor) -> Tensor:
        mask = torch.isfinite(gt) & (gt > self.min_depth)
        if self.max_depth is not None:
            mask = mask & (gt < self.max_depth)
        return mask

    def forward(self, pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
        _check_same_shape(pred, gt, "SILog pred/gt")
        mask = self.gt_mask(gt)
        if valid is not None:
            _check_same_shape(valid, gt, "SILog valid mask")
            mask = mask & valid.bool()
        safe_gt = torch.where(mask, gt, torch.ones_like(gt))
        d = torch.log(pred.clamp_min(self.pred_floor)) - torch.log(safe_gt)  # B,1,H,W
        d = torch.where(mask, d, torch.zeros_like(d))
        count = mask.sum().clamp_min(1)
        mean_d = d.sum() / count
        mean_d2 = (d * d).sum() / count
        var = (mean_d2 - self.variance_focus * mean_d * mean_d).clamp_min(0.0)
        loss = self.scale * torch.sqrt(var + self.eps)
        # Zero valid GT pixels: an exact, attached zero (see the module docstring).
        loss = torch.where(mask.any(), loss, d.sum() * 0.0)
        return {"silog": loss}


class ResponseL1Loss(nn.Module):
    """Soft-label response distillation (Eq. 6) as a mean: mean_i |d_t,i − d_s,i| over valid teacher pixels.

    Eq. 6 is written as a sum over pixels; the mean keeps λ1 independent of the resolution and is the
    form the Table 4 "−UEM" row swaps in for L_umr.
    """

    def forward(
        self, student_depth: Tensor, teacher_depth: Tensor, valid: Tensor | None = None
    ) -> dict[str, Tensor]:
        _check_same_shape(student_depth, teacher_depth, "response student/teacher depth")
        teacher_depth = teacher_depth.detach()
        mask = teacher_valid_mask(teacher_depth, valid)
        residual = (torch.where(mask, teacher_depth, student_depth) - student_depth).abs()
        return {"response_l1": _masked_mean(residual, mask)}


class UMRLoss(nn.Module):
    """Uncertainty-modelled response distillation L_umr (Eq. 8, Laplace).

    L_umr = mean_i ( √2·exp(−s_i)·|d_t,i − d_s,i| + s_i ) over valid teacher pixels, s = log σ² of the
    student's UEM. For a fixed residual r the per-pixel term is minimised at s = ln(√2·|r|).
    """

    def forward(
        self,
        student_depth: Tensor,
        log_var: Tensor,
        teacher_depth: Tensor,
        valid: Tensor | None = None,
    ) -> dict[str, Tensor]:
        _check_same_shape(student_depth, teacher_depth, "UMR student/teacher depth")
        _check_same_shape(log_var, student_depth, "UMR log_var/depth")
        teacher_depth = teacher_depth.detach()
        mask = teacher_valid_mask(teacher_depth, valid)
        residual = (torch.where(mask, teacher_depth, student_depth) - student_depth).abs()
        per_pixel = SQRT2 * torch.exp(-log_var) * residual + log_var
        return {"umr": _masked_mean(per_pixel, mask)}


class FocalDepthLoss(nn.Module):
    """Focal-depth loss (Eqs. 4–5).

    Per image b: p_d = 1 − mean_i |d_t,i − d_s,i| / d_t,i over its valid teacher pixels, clamped into
    [eps, 1]; L_b = −α·(1 − p_d)^γ·log p_d; the loss is the mean over images with at least one valid
    pixel. Once an image's mean relative error reaches 1 − eps the term saturates at −α(1−eps)^γ·log eps
    and gives no gradient for that image (the other terms pull the student back into range).

    Args:
        alpha: α_d. In Lin et al. α balances the two classes; here there is one "class", so α is only a
            scale that λ3 already provides: 1.0 keeps λ3 the weight of the term.
        gamma: focusing parameter γ ≥ 0; 2.0 is Lin et al.'s choice, which the paper says it follows.
        eps: lower clamp of p_d, bounding the loss by α·|log eps| (6.9 with 1e-3) and the gradient near
            saturation by α/eps.
    """

    def __init__(self, alpha: float = 1.0, gamma: float = 2.0, eps: float = 1e-3) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if not 0 < eps < 1:
            raise ValueError(f"focal eps must be in (0, 1), got {eps}")
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps

    def score(
        self, student_depth: Tensor, teacher_depth: Tensor, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Unclamped distillation score p_d per image (B,) and whether the image has valid pixels (B,)."""
        _check_same_shape(student_depth, teacher_depth, "focal student/teacher depth")
        teacher_depth = teacher_depth.detach()
        mask = teacher_valid_mask(teacher_depth, valid)
        safe_t = torch.where(mask, teacher_depth, torch.ones_like(teacher_depth))
        rel = torch.where(mask, (safe_t - student_depth).abs() / safe_t, torch.zeros_like(safe_t))
        count = mask.flatten(1).sum(1)  # B
        p_d = 1.0 - rel.flatten(1).sum(1) / count.clamp_min(1)
        return p_d, count > 0

    def forward(
        self, student_depth: Tensor, teacher_depth: Tensor, valid: Tensor | None = None
    ) -> dict[str, Tensor]:
        p_d, has_pixels = self.score(student_depth, teacher_depth, valid)
        p = p_d.clamp(self.eps, 1.0)
        per_image = -self.alpha * (1.0 - p).pow(self.gamma) * torch.log(p)
        return {"focal": _masked_mean(per_image, has_pixels)}


def _normalise_teacher(feat: Tensor, norm: str) -> Tensor:
    """Teacher feature in the units the adapters regress: divided by its per-image RMS ("rms")."""
    if norm == "none":
        return feat
    if norm == "rms":
        rms = feat.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()  # B,1,1,1
        return feat / rms.clamp_min(1e-6)
    raise ValueError(f"feature norm must be 'rms' or 'none', got {norm!r}")


def feature_residual_energy(student_adapted: Tensor, teacher_feat: Tensor, norm: str = "rms") -> Tensor:
    """Per-pixel e_i = (1/C)·‖F̂_t,i − F̃_s,i‖² as a (B,1,h,w) map, F̂_t the normalised teacher feature."""
    _check_same_shape(student_adapted, teacher_feat, "adapted student / teacher feature")
    target = _normalise_teacher(teacher_feat.detach(), norm)
    return (target - student_adapted).pow(2).mean(dim=1, keepdim=True)


def _level_masks(valid: list[Tensor] | None, n: int) -> list[Tensor | None]:
    if valid is None:
        return [None] * n
    if len(valid) != n:
        raise ValueError(f"expected {n} feature valid masks, got {len(valid)}")
    return list(valid)


class FeatureDistillLoss(nn.Module):
    """Plain feature distillation L_e + L_d (Eqs. 2–3), used when the UEM is switched off.

    L_feat = mean over the given levels of mean_i e_i, e_i = (1/C)‖F̂_t,i − F̃_s,i‖² (see
    `feature_residual_energy`): the mean squared error between the adapted student feature and the
    RMS-normalised teacher feature.
    """

    def __init__(self, norm: str = "rms") -> None:
        super().__init__()
        _normalise_teacher(torch.ones(1, 1, 1, 1), norm)  # validates the name
        self.norm = norm

    def forward(
        self,
        student_adapted: list[Tensor],
        teacher_feats: list[Tensor],
        valid: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        if len(student_adapted) != len(teacher_feats):
            raise ValueError(f"{len(student_adapted)} student levels vs {len(teacher_feats)} teacher levels")
        if not student_adapted:
            raise ValueError("feature distillation needs at least one level")
        terms = []
        for fs, ft, m in zip(student_adapted, teacher_feats, _level_masks(valid, len(teacher_feats))):
            e = feature_residual_energy(fs, ft, self.norm)
            mask = torch.ones_like(e, dtype=torch.bool) if m is None else m.bool()
            terms.append(_masked_mean(e, mask))
        return {"feat": torch.stack(terms).mean()}


class UMFLoss(nn.Module):
    """Uncertainty-modelled feature distillation L_umf (Eq. 7, Gaussian), on every given level.

    Per level: mean_i ( ½·exp(−s_i)·e_i + ½·s_i ) with e_i = (1/C)‖F̂_t,i − F̃_s,i‖² and s the student's
    log variance at that level's resolution; the loss is the mean over levels. For a fixed residual the
    per-pixel term is minimised at s = ln e_i.
    """

    def __init__(self, norm: str = "rms") -> None:
        super().__init__()
        _normalise_teacher(torch.ones(1, 1, 1, 1), norm)
        self.norm = norm

    def forward(
        self,
        student_adapted: list[Tensor],
        teacher_feats: list[Tensor],
        log_vars: list[Tensor],
        valid: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        if not (len(student_adapted) == len(teacher_feats) == len(log_vars)):
            raise ValueError(
                f"level counts differ: {len(student_adapted)} student, {len(teacher_feats)} teacher, "
                f"{len(log_vars)} log-variance maps"
            )
        if not student_adapted:
            raise ValueError("feature distillation needs at least one level")
        terms = []
        for fs, ft, s, m in zip(
            student_adapted, teacher_feats, log_vars, _level_masks(valid, len(teacher_feats))
        ):
            e = feature_residual_energy(fs, ft, self.norm)  # B,1,h,w
            if s.shape != e.shape:
                raise ValueError(f"log variance {tuple(s.shape)} does not match the level {tuple(e.shape)}")
            per_pixel = 0.5 * torch.exp(-s) * e + 0.5 * s
            mask = torch.ones_like(e, dtype=torch.bool) if m is None else m.bool()
            terms.append(_masked_mean(per_pixel, mask))
        return {"umf": torch.stack(terms).mean()}
