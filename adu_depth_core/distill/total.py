"""The student's training objective (ADU-Depth Eq. 9) and its Table 4 ablations.

    L = L_b + w(step)·(λ1·L_umr + λ2·L_umf + λ3·L_focal)

L_b is SILog on the sparse GT; the distillation terms compare the student with the frozen stereo
teacher (outputs detached here). Switches follow the paper's Table 4: `focal` drops L_focal, `uem`
swaps L_umr / L_umf for their plain forms (L1 response, Eq. 6, and L_e + L_d, Eqs. 2–3), `attention`
swaps the self-attention adapters for 1×1 convolutions, `mode: baseline` keeps L_b only. w(step) is an
optional delayed start / linear ramp of the distillation terms. See `docs/DISTILLATION.md`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from .adapters import build_adapter
from .losses import (
    FeatureDistillLoss,
    FocalDepthLoss,
    ResponseL1Loss,
    SILogLoss,
    UMFLoss,
    UMRLoss,
    resize_log_var,
)

NUM_LEVELS = 4
TERMS = ("silog", "umr", "umf", "focal", "response_l1", "feat")


class DepthOutputLike(Protocol):
    """What the loss reads from a model output (`adu_depth_core.models.DepthOutput`)."""

    depth: Tensor
    log_var: Tensor | None
    enc_feats: Sequence[Tensor]
    dec_feats: Sequence[Tensor]
    log_var_pyramid: Sequence[Tensor] | None


@dataclasses.dataclass
class DistillConfig:
    """Student objective. Defaults are the paper's KITTI setting (Full row of Table 4).

    Attributes:
        mode: "full" = Eq. 9 with the switches below; "baseline" = L_b only (Table 4 Baseline).
        focal: include λ3·L_focal (False = Table 4 "−Focal").
        uem: uncertainty-modelled terms L_umr / L_umf (False = "−UEM": plain L1 response + L_e + L_d).
        attention: self-attention adapters (False = "−Attention": 1×1-conv adapters as in Wang et al.).
        lambda_response: λ1, weight of L_umr (or of the L1 response when uem is off).
        lambda_feature: λ2, weight of L_umf (or of L_e + L_d when uem is off).
        lambda_focal: λ3, weight of L_focal.
        focal_alpha: α_d (1.0: λ3 already scales the term; see FocalDepthLoss).
        focal_gamma: γ (2.0, Lin et al.'s focal-loss choice).
        focal_eps: lower clamp of the distillation score p_d.
        min_depth: GT at or below this is ignored by L_b (1.0 m on KITTI).
        max_depth: GT at or above this is ignored by L_b; None keeps all.
        silog_variance_focus: λ of SILog (0.85).
        enc_levels, dec_levels: which of the 4 encoder / decoder levels (0 = finest) are distilled.
        feature_norm: "rms" divides each teacher feature map by its per-image RMS so every level's target
            has unit mean energy; "none" regresses raw teacher features.
        adapter_heads: attention heads per adapter.
        adapter_residual: linear skip around the attention (False = Eq. 1 literally).
        adapter_chunk: query chunk of the attention's memory-bounded fallback path.
        distill_start: step before which the distillation terms are off (weight 0).
        warmup_steps: from distill_start the weight ramps linearly from 0 to 1 over this many steps.
    """

    mode: Literal["full", "baseline"] = "full"
    focal: bool = True
    uem: bool = True
    attention: bool = True
    lambda_response: float = 0.9
    lambda_feature: float = 0.6
    lambda_focal: float = 0.8
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    focal_eps: float = 1e-3
    min_depth: float = 1.0
    max_depth: float | None = None
    silog_variance_focus: float = 0.85
    enc_levels: tuple[int, ...] = (0, 1, 2, 3)
    dec_levels: tuple[int, ...] = (0, 1, 2, 3)
    feature_norm: Literal["rms", "none"] = "rms"
    adapter_heads: int = 4
    adapter_residual: bool = True
    adapter_chunk: int = 1024
    distill_start: int = 0
    warmup_steps: int = 0

    def validate(self) -> None:
        if self.mode not in ("full", "baseline"):
            raise ValueError(f"distill.mode: expected one of ['full', 'baseline'], got {self.mode!r}")
        if self.feature_norm not in ("rms", "none"):
            raise ValueError(
                f"distill.feature_norm: expected one of ['rms', 'none'], got {self.feature_norm!r}"
            )
        for name in ("lambda_response", "lambda_feature", "lambda_focal", "focal_alpha", "focal_gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"distill.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 < self.focal_eps < 1:
            raise ValueError(f"distill.focal_eps: must be in (0, 1), got {self.focal_eps}")
        if self.min_depth < 0:
            raise ValueError(f"distill.min_depth: must be >= 0, got {self.min_depth}")
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(
                f"distill.max_depth: must exceed min_depth {self.min_depth}, got {self.max_depth}"
            )
        for name in ("enc_levels", "dec_levels"):
            levels = tuple(getattr(self, name))
            if len(set(levels)) != len(levels) or any(not 0 <= lv < NUM_LEVELS for lv in levels):
                raise ValueError(
                    f"distill.{name}: distinct levels in 0..{NUM_LEVELS - 1}, got {list(levels)}"
                )
        if self.adapter_heads < 1 or self.adapter_chunk < 1:
            raise ValueError("distill.adapter_heads and distill.adapter_chunk must be >= 1")
        if self.distill_start < 0 or self.warmup_steps < 0:
            raise ValueError("distill.distill_start and distill.warmup_steps must be >= 0")

    def __post_init__(self) -> None:
        self.enc_levels = tuple(self.enc_levels)
        self.dec_levels = tuple(self.dec_levels)
        self.validate()


def ablation_configs(base: DistillConfig | None = None) -> dict[str, DistillConfig]:
    """The rows of the paper's Table 4, in its order, derived from `base` (default: the paper's setting)."""
    base = base if base is not None else DistillConfig()
    full = dataclasses.replace(base, mode="full", focal=True, uem=True, attention=True)
    return {
        "baseline": dataclasses.replace(full, mode="baseline"),
        "no_focal": dataclasses.replace(full, focal=False),
        "no_uem": dataclasses.replace(full, uem=False),
        "no_attention": dataclasses.replace(full, attention=False),
        "full": full,
    }


def _channels(value: Sequence[int], what: str) -> tuple[int, ...]:
    chans = tuple(int(c) for c in value)
    if len(chans) != NUM_LEVELS or any(c < 1 for c in chans):
        raise ValueError(f"{what}: expected {NUM_LEVELS} positive channel counts, got {list(value)}")
    return chans


class DistillationLoss(nn.Module):
    """Eq. 9 as a module that owns the feature adapters (its state_dict is the checkpoint's `adapters`).

    Args:
        cfg: the objective (see DistillConfig).
        student_enc_channels, student_dec_channels: the student's `enc_channels` / `dec_channels`.
        teacher_enc_channels, teacher_dec_channels: the teacher's `enc_channels` / `dec_channels` (None in
            baseline mode, which has no adapters).
    """

    def __init__(
        self,
        cfg: DistillConfig,
        student_enc_channels: Sequence[int],
        student_dec_channels: Sequence[int],
        teacher_enc_channels: Sequence[int] | None,
        teacher_dec_channels: Sequence[int] | None,
    ) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        distil = cfg.mode == "full"
        if distil and (teacher_enc_channels is None or teacher_dec_channels is None):
            raise ValueError("distill.mode=full needs the teacher's channel counts (a baseline has none)")
        s_enc = _channels(student_enc_channels, "student_enc_channels")
        s_dec = _channels(student_dec_channels, "student_dec_channels")
        t_enc: tuple[int, ...] = ()  # a baseline's: make() builds no adapter
        t_dec: tuple[int, ...] = ()
        if teacher_enc_channels is not None and teacher_dec_channels is not None:
            t_enc = _channels(teacher_enc_channels, "teacher_enc_channels")
            t_dec = _channels(teacher_dec_channels, "teacher_dec_channels")
        self.silog = SILogLoss(cfg.min_depth, cfg.max_depth, cfg.silog_variance_focus)
        self.response_l1 = ResponseL1Loss()
        self.umr = UMRLoss()
        self.focal = FocalDepthLoss(cfg.focal_alpha, cfg.focal_gamma, cfg.focal_eps)
        self.feat = FeatureDistillLoss(cfg.feature_norm)
        self.umf = UMFLoss(cfg.feature_norm)
        kind = "attention" if cfg.attention else "conv"

        def make(levels: tuple[int, ...], s_ch: tuple[int, ...], t_ch: tuple[int, ...]) -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    str(lv): build_adapter(
                        kind, s_ch[lv], t_ch[lv], cfg.adapter_heads, cfg.adapter_residual, cfg.adapter_chunk
                    )
                    for lv in (levels if distil else ())
                }
            )

        self.enc_adapters = make(cfg.enc_levels, s_enc, t_enc)
        self.dec_adapters = make(cfg.dec_levels, s_dec, t_dec)

    def distill_weight(self, step: int | None = None) -> float:
        """w(step) of the distillation terms: 0 in baseline mode and before distill_start, then a linear
        ramp from 0 at distill_start to 1 at distill_start + warmup_steps, then 1; `step=None` means 1.
        A trainer may skip the teacher's forward pass when this is 0."""
        cfg = self.cfg
        if cfg.mode == "baseline":
            return 0.0
        if step is None:
            return 1.0
        if step < cfg.distill_start:
            return 0.0
        if cfg.warmup_steps == 0:
            return 1.0
        return min(1.0, (step - cfg.distill_start) / cfg.warmup_steps)

    def _feature_pairs(
        self, student: DepthOutputLike, teacher: DepthOutputLike
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
        """Adapted student features, detached teacher features and the student's log variance per level."""
        pyramid = student.log_var_pyramid
        adapted, targets, log_vars = [], [], []
        for group, adapters, s_feats, t_feats in (
            ("enc", self.enc_adapters, student.enc_feats, teacher.enc_feats),
            ("dec", self.dec_adapters, student.dec_feats, teacher.dec_feats),
        ):
            for key, adapter in adapters.items():
                lv = int(key)
                f_s = adapter(s_feats[lv])
                f_t = t_feats[lv].detach()
                if f_s.shape != f_t.shape:
                    raise ValueError(
                        f"{group} level {lv}: adapted student feature {tuple(f_s.shape)} does not match the "
                        f"teacher's {tuple(f_t.shape)} (same input size and channel counts are required)"
                    )
                size = tuple(f_t.shape[-2:])
                s = None
                if group == "enc" and pyramid is not None:
                    s = resize_log_var(pyramid[lv], size)
                elif student.log_var is not None:
                    s = resize_log_var(student.log_var, size)
                adapted.append(f_s)
                targets.append(f_t)
                log_vars.append(s)
        return adapted, targets, log_vars

    def forward(
        self,
        student_out: DepthOutputLike,
        teacher_out: DepthOutputLike | None,
        gt_depth: Tensor,
        step: int | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms and their weighted sum `total`.

        Returns a dict with `total`, every raw (unweighted) term of TERMS (exact zeros for the terms the
        configuration does not use) and `distill_weight`. `teacher_out` may be None when
        `distill_weight(step)` is 0. Raises FloatingPointError naming the step and terms when the total is
        not finite.
        """
        cfg = self.cfg
        depth = student_out.depth
        zero = depth.new_zeros(())
        out: dict[str, Tensor] = {name: zero for name in TERMS}
        out["silog"] = self.silog(depth, gt_depth)["silog"]
        weight = self.distill_weight(step)
        total = out["silog"]
        if weight > 0:
            if teacher_out is None:
                raise ValueError("teacher_out is required while the distillation weight is > 0")
            t_depth = teacher_out.depth.detach()
            if cfg.uem and student_out.log_var is None:
                raise ValueError("distill.uem=true needs a student with a UEM (log_var is None)")
            if cfg.uem:
                out["umr"] = self.umr(depth, student_out.log_var, t_depth)["umr"]
                response = out["umr"]
            else:
                out["response_l1"] = self.response_l1(depth, t_depth)["response_l1"]
                response = out["response_l1"]
            feature = zero
            if len(self.enc_adapters) + len(self.dec_adapters) > 0:
                adapted, targets, log_vars = self._feature_pairs(student_out, teacher_out)
                if cfg.uem:
                    out["umf"] = self.umf(adapted, targets, log_vars)["umf"]  # type: ignore[arg-type]
                    feature = out["umf"]
                else:
                    out["feat"] = self.feat(adapted, targets)["feat"]
                    feature = out["feat"]
            focal = zero
            if cfg.focal:
                out["focal"] = self.focal(depth, t_depth)["focal"]
                focal = out["focal"]
            distill = cfg.lambda_response * response + cfg.lambda_feature * feature + cfg.lambda_focal * focal
            total = total + weight * distill
        out["total"] = total
        out["distill_weight"] = depth.new_tensor(weight)
        if not torch.isfinite(total.detach()):
            terms = {k: float(v.detach()) for k, v in out.items()}
            raise FloatingPointError(f"non-finite distillation loss at step {step}: {terms}")
        return out

    def extra_repr(self) -> str:
        cfg = self.cfg
        return (
            f"mode={cfg.mode}, focal={cfg.focal}, uem={cfg.uem}, attention={cfg.attention}, "
            f"lambdas=({cfg.lambda_response}, {cfg.lambda_feature}, {cfg.lambda_focal})"
        )
