"""Uncertainty quality: sparsification curves, AUSE and AURG (Poggi et al., CVPR 2020).

Per image, the valid pixels are ranked by predicted uncertainty and the most uncertain are removed in
2 % steps (fractions 0, 0.02, ..., 0.98); the metric is recomputed on what remains. At fraction 1 nothing
remains and the curve is 0 (51 points in all). The oracle curve ranks by the true per-pixel error of the
same metric. With the trapezoid rule over the 51 points in [0, 1]:

    AUSE = area(model curve) - area(oracle curve)      lower is better, >= 0
    AURG = metric on all pixels - area(model curve)    higher is better

Metrics: ``abs_rel`` (per-pixel |p-g|/g), ``rmse`` (ranked by (p-g)^2, curve = sqrt of the remaining
mean) and ``a1`` = 1 - delta_1 (per-pixel flag max(p/g, g/p) >= 1.25).

Removing fraction f removes exactly ``floor(f * n)`` of the n valid pixels (integer arithmetic), so the
oracle is exactly optimal and AUSE >= 0 up to rounding. Ties in the uncertainty keep pixel order
(stable sort). NaN uncertainty counts as the most uncertain. Because the curve ends at 0, a random
ranking gives AURG ~= metric / 100, not 0 (the last trapezoid spans 1/50 and averages metric and 0).

Everything is O(n log n): one sort per ranking, then suffix sums of the sorted per-pixel errors give the
metric of every fraction at once.

Inputs are prepared by the caller (``metrics.prepare`` does it the same way as the depth metrics):
``pred`` clipped to the evaluation range, ``valid`` the evaluated pixels (valid GT, crop, extra mask).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

SPARSIFICATION_METRICS = ("abs_rel", "rmse", "a1")
N_STEPS = 50
FRACTIONS = np.linspace(0.0, 1.0, N_STEPS + 1)  # fraction of pixels removed at each curve point
UNCERTAINTY_KEYS = tuple(f"{kind}_{m}" for m in SPARSIFICATION_METRICS for kind in ("ause", "aurg"))

Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def _check_inputs(pred, gt, uncertainty, valid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt, uncertainty, valid = (np.asarray(a) for a in (pred, gt, uncertainty, valid))
    for name, arr in (("uncertainty", uncertainty), ("gt", gt), ("valid", valid)):
        if arr.shape != pred.shape:
            raise ValueError(f"{name} shape {arr.shape} does not match pred shape {pred.shape}")
    if valid.dtype != bool:
        raise ValueError(f"valid must be a boolean mask, got dtype {valid.dtype}")
    p = pred[valid].astype(np.float64)
    g = gt[valid].astype(np.float64)
    u = uncertainty[valid].astype(np.float64)
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise ValueError("pred must be finite and > 0 on valid pixels (clip it with metrics.clip_prediction)")
    if not (np.all(np.isfinite(g)) and np.all(g > 0)):
        raise ValueError("gt must be finite and > 0 on valid pixels (build valid with metrics.valid_mask)")
    return p, g, np.where(np.isnan(u), np.inf, u)


def per_pixel_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel error terms whose mean (sqrt of mean for rmse) is each sparsification metric."""
    diff = pred - gt
    return {
        "abs_rel": np.abs(diff) / gt,
        "rmse": diff * diff,
        "a1": (np.maximum(pred / gt, gt / pred) >= 1.25).astype(np.float64),
    }


def _curve(errors_sorted: np.ndarray, metric: str) -> np.ndarray:
    """Metric after removing the first floor(f*n) entries, for each of the 51 fractions f."""
    n = errors_sorted.size
    suffix = np.cumsum(errors_sorted[::-1])[::-1]  # suffix[m] = sum(errors_sorted[m:])
    removed = (np.arange(N_STEPS) * n) // N_STEPS
    values = suffix[removed] / (n - removed)
    if metric == "rmse":
        values = np.sqrt(np.maximum(values, 0.0))
    return np.append(values, 0.0)


def sparsification_curves(
    pred: np.ndarray, gt: np.ndarray, uncertainty: np.ndarray, valid: np.ndarray
) -> Curves | None:
    """{metric: (model_curve, oracle_curve)}, each 51 values at `FRACTIONS`; None if no pixel is valid.

    `pred`, `gt`, `uncertainty` (any monotone measure, e.g. sigma in metres) and the boolean `valid` share
    one shape; pred must be > 0 and finite on valid pixels.
    """
    p, g, u = _check_inputs(pred, gt, uncertainty, valid)
    if p.size == 0:
        return None
    errors = per_pixel_errors(p, g)
    model_order = np.argsort(-u, kind="stable")  # most uncertain first
    curves: Curves = {}
    for metric in SPARSIFICATION_METRICS:
        err = errors[metric]
        oracle_order = np.argsort(-err, kind="stable")  # largest true error first
        curves[metric] = (_curve(err[model_order], metric), _curve(err[oracle_order], metric))
    return curves


def _area(curve: np.ndarray) -> float:
    """Trapezoid rule over the evenly spaced `FRACTIONS`."""
    return float(np.sum(curve[1:] + curve[:-1]) * 0.5 / (curve.size - 1))


def uncertainty_metrics_from_curves(curves: Curves | None) -> dict[str, float] | None:
    """AUSE and AURG of each metric in `curves` (`sparsification_curves` output gives `UNCERTAINTY_KEYS`)."""
    if curves is None:
        return None
    out: dict[str, float] = {}
    for metric, (model, oracle) in curves.items():
        out[f"ause_{metric}"] = _area(model) - _area(oracle)
        out[f"aurg_{metric}"] = float(model[0]) - _area(model)
    return out


def uncertainty_metrics(
    pred: np.ndarray, gt: np.ndarray, uncertainty: np.ndarray, valid: np.ndarray
) -> dict[str, float] | None:
    """{"ause_abs_rel", "aurg_abs_rel", "ause_rmse", "aurg_rmse", "ause_a1", "aurg_a1"} for one image.

    None when no pixel is valid (count the image as skipped). Average over images with
    `MetricAccumulator`.
    """
    return uncertainty_metrics_from_curves(sparsification_curves(pred, gt, uncertainty, valid))


def average_curves(per_image: Iterable[Curves | None]) -> Curves | None:
    """Mean model and oracle curve over images (None entries skipped), e.g. for `plot_sparsification`."""
    sums: dict[str, list[np.ndarray]] = {}
    count = 0
    for curves in per_image:
        if curves is None:
            continue
        count += 1
        for metric, (model, oracle) in curves.items():
            acc = sums.setdefault(metric, [np.zeros_like(model), np.zeros_like(oracle)])
            acc[0] = acc[0] + model
            acc[1] = acc[1] + oracle
    if count == 0:
        return None
    return {m: (s[0] / count, s[1] / count) for m, s in sums.items()}


def curves_to_lists(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, list]]:
    """JSON-friendly form: {metric: {"fraction": [...], "model": [...], "oracle": [...]}}."""
    return {
        m: {"fraction": FRACTIONS.tolist(), "model": np.asarray(a).tolist(), "oracle": np.asarray(b).tolist()}
        for m, (a, b) in curves.items()
    }
