"""Evaluation: the one metrics module shared by training validation, dataset/bag evaluation and the ROS node.

Pure numpy (pictures use OpenCV; only `plot_sparsification` imports matplotlib). Protocol, crops,
AUSE/AURG and the pictures are described in ``docs/EVALUATION.md``. A dataset loop::

    acc = MetricAccumulator(meta={"crop": "garg", "protocol": "eigen"})
    for sample in dataset:
        depth, sigma = estimator.estimate(rgb, K)
        acc.add(evaluate_image(depth, gt, sigma, crop="garg"), sample_id)   # None -> skipped
    print(format_table({"ADU-Depth": acc.mean()}, crop="garg"))
"""

from .crops import CROPS, crop_box, crop_mask, kb_crop_box, normalize_crop_name
from .metrics import (
    EIGEN_KEYS,
    MAX_DEPTH,
    MIN_DEPTH,
    OFFICIAL_KEYS,
    MetricAccumulator,
    clip_prediction,
    compute_errors,
    depth_metrics,
    evaluate_image,
    flip_tta,
    official_metrics,
    prepare,
    valid_mask,
)
from .tables import format_table, mean_std
from .uncertainty import (
    FRACTIONS,
    SPARSIFICATION_METRICS,
    UNCERTAINTY_KEYS,
    average_curves,
    curves_to_lists,
    sparsification_curves,
    uncertainty_metrics,
    uncertainty_metrics_from_curves,
)
from .visualize import (
    colorize_depth,
    colorize_uncertainty,
    error_map,
    make_panel,
    normalized_error,
    plot_sparsification,
    save_png,
)

__all__ = [
    "CROPS",
    "EIGEN_KEYS",
    "FRACTIONS",
    "MAX_DEPTH",
    "MIN_DEPTH",
    "OFFICIAL_KEYS",
    "SPARSIFICATION_METRICS",
    "UNCERTAINTY_KEYS",
    "MetricAccumulator",
    "average_curves",
    "clip_prediction",
    "colorize_depth",
    "colorize_uncertainty",
    "compute_errors",
    "crop_box",
    "crop_mask",
    "curves_to_lists",
    "depth_metrics",
    "error_map",
    "evaluate_image",
    "flip_tta",
    "format_table",
    "mean_std",
    "kb_crop_box",
    "make_panel",
    "normalize_crop_name",
    "normalized_error",
    "official_metrics",
    "plot_sparsification",
    "prepare",
    "save_png",
    "sparsification_curves",
    "uncertainty_metrics",
    "uncertainty_metrics_from_curves",
    "valid_mask",
]
