"""Stereo-to-mono distillation of ADU-Depth: losses (Eqs. 2–8), feature adapters (Eq. 1) and the
student objective (Eq. 9) with the Table 4 ablations. Pure torch; see `docs/DISTILLATION.md`."""

from .adapters import AttentionAdapter, ConvAdapter, attention, build_adapter, chunked_attention
from .losses import (
    FeatureDistillLoss,
    FocalDepthLoss,
    ResponseL1Loss,
    SILogLoss,
    UMFLoss,
    UMRLoss,
    feature_residual_energy,
    resize_log_var,
    teacher_valid_mask,
)
from .photometric import PhotometricConfig, StereoPhotometricLoss, warp_right_to_left
from .proxy import ProxyConfig, proxy_inliers, sgbm_proxy_depth
from .total import TERMS, DistillationLoss, DistillConfig, ablation_configs

__all__ = [
    "TERMS",
    "AttentionAdapter",
    "ConvAdapter",
    "DistillConfig",
    "DistillationLoss",
    "FeatureDistillLoss",
    "FocalDepthLoss",
    "PhotometricConfig",
    "ProxyConfig",
    "ResponseL1Loss",
    "SILogLoss",
    "StereoPhotometricLoss",
    "UMFLoss",
    "UMRLoss",
    "ablation_configs",
    "attention",
    "build_adapter",
    "chunked_attention",
    "feature_residual_energy",
    "proxy_inliers",
    "resize_log_var",
    "sgbm_proxy_depth",
    "teacher_valid_mask",
    "warp_right_to_left",
]
