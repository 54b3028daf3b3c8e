"""Depth metrics: one function for training validation, dataset evaluation, bag evaluation and the ROS node.

Protocol (``docs/EVALUATION.md``; the facts are those of BTS/NeWCRFs and the KITTI devkit):

* Valid pixels: ``min_depth < gt < max_depth`` and finite (default 1e-3 and 80 m), AND an optional crop
  (``crops.crop_mask``) AND an optional caller mask.
* Predictions are clipped to ``[min_depth, max_depth]`` over the whole image: NaN -> min_depth,
  +inf -> max_depth, -inf -> min_depth (REP 117's "too close").
* Optional median scaling (off by default): pred *= median(gt) / median(pred) over the valid pixels, after
  the NaN/inf replacement and before the final clip.
* Metrics per image, averaged over images (``MetricAccumulator``). An image without a valid pixel gives
  ``None``: the caller counts it as skipped.

Keys of the per-image dict, with e = ln pred - ln gt over the valid pixels:

    abs_rel   mean |gt - pred| / gt             sq_rel   mean (gt - pred)^2 / gt
    rmse      sqrt mean (gt - pred)^2 [m]       rmse_log sqrt mean e^2
    log10     mean |log10 pred - log10 gt|      silog    100 sqrt(mean e^2 - (mean e)^2)
    d1,d2,d3  fraction with max(gt/pred, pred/gt) < 1.25, 1.25^2, 1.25^3
    # KITTI official benchmark, in the units its server reports (paper Table 2):
    sq_error_rel   100 mean (gt - pred)^2 / gt^2   [percent]
    abs_error_rel  100 mean |gt - pred| / gt       [percent]
    irmse          sqrt mean (1/gt - 1/pred)^2     [1/km]
    # only with median_scaling=True:
    median_scale   the factor applied to pred

Arrays are numpy (any float dtype; computed in float64); pred and gt share one shape (HxW for crops).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from adu_depth_core.depth_traits import valid_depth

from .crops import crop_mask, normalize_crop_name
from .uncertainty import uncertainty_metrics

MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0
EIGEN_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
OFFICIAL_KEYS = ("silog", "sq_error_rel", "abs_error_rel", "irmse", "rmse", "d1", "d2", "d3")


def _check_same_shape(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} shape {a.shape} does not match {b_name} shape {b.shape}")


def clip_prediction(
    pred: np.ndarray, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH
) -> np.ndarray:
    """float64 copy of `pred` with NaN -> min_depth and everything (±inf too) clipped to [min, max]."""
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    out = np.array(pred, dtype=np.float64)
    out[np.isnan(out)] = min_depth
    return np.clip(out, min_depth, max_depth, out=out)


def valid_mask(gt: np.ndarray, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH) -> np.ndarray:
    """Boolean mask of measured GT (`valid_depth`) inside the open range (min_depth, max_depth)."""
    gt = np.asarray(gt)
    with np.errstate(invalid="ignore"):
        return valid_depth(gt) & (gt > min_depth) & (gt < max_depth)


def prepare(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    mask: np.ndarray | None = None,
    crop: str | None = None,
    median_scaling: bool = False,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(clipped pred as float64, boolean valid mask, median scale or None): the protocol's first step.

    The valid mask is valid GT AND `crop` (a `crops.CROPS` name, built over gt's HxW) AND `mask`.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    _check_same_shape(pred, gt, "pred", "gt")
    valid = valid_mask(gt, min_depth, max_depth)
    if normalize_crop_name(crop) != "none":
        if gt.ndim != 2:
            raise ValueError(f"a crop needs HxW arrays, got gt shape {gt.shape}")
        valid &= crop_mask(gt.shape[0], gt.shape[1], crop)
    if mask is not None:
        mask = np.asarray(mask)
        _check_same_shape(mask, gt, "mask", "gt")
        valid &= mask.astype(bool)
    clipped = clip_prediction(pred, min_depth, max_depth)
    scale = None
    if median_scaling and valid.any():
        scale = float(np.median(gt[valid]) / np.median(clipped[valid]))
        clipped = clip_prediction(clipped * scale, min_depth, max_depth)
    return clipped, valid, scale


def compute_errors(pred: np.ndarray, gt: np.ndarray, official: bool = True) -> dict[str, float]:
    """Metrics over paired 1-D arrays of valid pixels (pred > 0 and gt > 0, both finite, non-empty)."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    _check_same_shape(p, g, "pred", "gt")
    if p.size == 0:
        raise ValueError("compute_errors needs at least one valid pixel")
    ratio = np.maximum(g / p, p / g)
    diff = g - p
    sq = diff * diff
    e = np.log(p) - np.log(g)
    out = {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(sq / g)),
        "rmse": math.sqrt(np.mean(sq)),
        "rmse_log": math.sqrt(np.mean(e * e)),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "silog": 100.0 * math.sqrt(max(float(np.mean(e * e) - np.mean(e) ** 2), 0.0)),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
    }
    if official:
        inv = 1.0 / g - 1.0 / p
        out["sq_error_rel"] = 100.0 * float(np.mean(sq / (g * g)))
        out["abs_error_rel"] = 100.0 * out["abs_rel"]
        out["irmse"] = 1000.0 * math.sqrt(np.mean(inv * inv))
    return out


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    mask: np.ndarray | None = None,
    *,
    crop: str | None = None,
    median_scaling: bool = False,
    official: bool = True,
) -> dict[str, float] | None:
    """Metrics of one image (keys: module docstring), or None when no pixel is valid (count it skipped).

    Args:
        pred: predicted depth in metres; NaN/inf allowed (clipped as documented).
        gt: ground-truth depth in metres, 0 (or NaN) where there is no measurement; same shape as pred.
        min_depth, max_depth: evaluation range (GT outside it is ignored; pred is clipped to it).
        mask: optional boolean mask ANDed with the valid GT (e.g. a semantic region).
        crop: optional crop name from `crops.CROPS` applied over gt's HxW.
        median_scaling: scale pred by median(gt) / median(pred) first (adds key ``median_scale``).
        official: also compute the KITTI official set (sq_error_rel, abs_error_rel, irmse).
    """
    clipped, valid, scale = prepare(pred, gt, min_depth, max_depth, mask, crop, median_scaling)
    if not valid.any():
        return None
    out = compute_errors(clipped[valid], np.asarray(gt)[valid], official=official)
    if scale is not None:
        out["median_scale"] = scale
    return out


def official_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    mask: np.ndarray | None = None,
    *,
    crop: str | None = None,
) -> dict[str, float] | None:
    """Only the KITTI official set, `OFFICIAL_KEYS` (SILog, sqErrorRel, absErrorRel, iRMSE, RMSE, δ)."""
    out = depth_metrics(pred, gt, min_depth, max_depth, mask, crop=crop)
    return None if out is None else {k: out[k] for k in OFFICIAL_KEYS}


def evaluate_image(
    pred: np.ndarray,
    gt: np.ndarray,
    uncertainty: np.ndarray | None = None,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    mask: np.ndarray | None = None,
    *,
    crop: str | None = None,
    median_scaling: bool = False,
) -> dict[str, float] | None:
    """`depth_metrics`, plus `uncertainty_metrics` on the same pixels when `uncertainty` (sigma) is given.

    The per-image step of an evaluation loop: ``acc.add(evaluate_image(d, gt, sigma, crop="garg"), id)``.
    None when no pixel is valid.
    """
    clipped, valid, scale = prepare(pred, gt, min_depth, max_depth, mask, crop, median_scaling)
    if not valid.any():
        return None
    gt = np.asarray(gt)
    out = compute_errors(clipped[valid], gt[valid])
    if scale is not None:
        out["median_scale"] = scale
    if uncertainty is not None:
        uncertainty = np.asarray(uncertainty)
        _check_same_shape(uncertainty, gt, "uncertainty", "gt")
        out.update(uncertainty_metrics(clipped, gt, uncertainty, valid) or {})
    return out


def _flip_width(x: Any) -> Any:
    """Mirror along the last axis (width) of a numpy array or torch tensor."""
    if isinstance(x, np.ndarray):
        return np.flip(x, axis=-1)
    if hasattr(x, "flip"):  # torch.Tensor, without importing torch here
        return x.flip(-1)
    raise ValueError(
        f"flip_tta: predict_fn must return numpy arrays or torch tensors, got {type(x).__name__}"
    )


def flip_tta(predict_fn: Callable[[Any], Any], image: Any) -> Any:
    """Flip test-time augmentation: mean of predict_fn(image) and the un-flipped predict_fn(mirrored image).

    `image` is either a numpy RGB image HxWx3 (mirrored along axis 1) or a torch tensor NCHW (mirrored
    along dim 3). `predict_fn` returns an array/tensor whose *last* axis is the width (HxW numpy depth,
    Nx1xHxW tensor), or a tuple/list of them (e.g. ``(depth, sigma)``); each element is averaged (sigma
    too, a plain mean) and None elements pass through. NaN in either prediction stays NaN.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3:
            raise ValueError(f"flip_tta: numpy images must be HxWxC, got shape {image.shape}")
        width, mirrored = image.shape[1], np.ascontiguousarray(image[:, ::-1])
    elif hasattr(image, "flip") and getattr(image, "ndim", 0) == 4:
        width, mirrored = image.shape[-1], image.flip(-1)
    else:
        raise ValueError(
            "flip_tta: image must be a numpy HxWx3 array or an NCHW torch tensor, "
            f"got {type(image).__name__} of shape {getattr(image, 'shape', None)}"
        )

    def average(a: Any, b: Any) -> Any:
        if a is None:
            return None
        if a.shape[-1] != width:
            raise ValueError(
                f"flip_tta: prediction shape {tuple(a.shape)} does not end in the image width {width}"
            )
        return (a + _flip_width(b)) * 0.5

    out, out_mirrored = predict_fn(image), predict_fn(mirrored)
    if isinstance(out, tuple | list):
        return type(out)(average(a, b) for a, b in zip(out, out_mirrored, strict=True))
    return average(out, out_mirrored)


def _json_number(v: float) -> float | None:
    return v if math.isfinite(v) else None


class MetricAccumulator:
    """Per-image metric dicts in order, their means, and the ids of skipped images.

    ``add(evaluate_image(...), image_id)``: a dict is kept for that image, None counts it as skipped.
    `mean()` averages each key over the images that have it (so depth-only and depth+uncertainty images
    can mix). `meta` (protocol, crop, checkpoint, ...) is carried into `to_json`. With
    `keep_per_image=False` only the running sums and counts are kept (constant memory for hours of live
    replay; `per_image` and `skipped` stay empty, the means and counts are the same).
    """

    def __init__(self, meta: Mapping[str, Any] | None = None, keep_per_image: bool = True) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self.keep_per_image = bool(keep_per_image)
        self.per_image: list[tuple[str, dict[str, float]]] = []
        self.skipped: list[str] = []
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._n_images = 0
        self._n_skipped = 0

    def add(self, metrics: Mapping[str, float] | None, image_id: str) -> None:
        if metrics is None:
            self._n_skipped += 1
            if self.keep_per_image:
                self.skipped.append(str(image_id))
            return
        values = {}
        for key, value in metrics.items():
            if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
                raise ValueError(f"metric {key!r} of image {image_id!r} must be a number, got {value!r}")
            values[str(key)] = float(value)
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1
        self._n_images += 1
        if self.keep_per_image:
            self.per_image.append((str(image_id), values))

    @property
    def n_images(self) -> int:
        return self._n_images

    @property
    def n_skipped(self) -> int:
        return self._n_skipped

    def counts(self) -> dict[str, int]:
        """How many images contributed to each key's mean."""
        return dict(self._counts)

    def mean(self) -> dict[str, float]:
        """Mean of each key over the images that have it; {} before the first image."""
        return {key: total / self._counts[key] for key, total in self._sums.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "n_images": self.n_images,
            "n_skipped": self.n_skipped,
            "mean": {k: _json_number(v) for k, v in self.mean().items()},
            "skipped": list(self.skipped),
            "per_image": [{"id": i, **{k: _json_number(v) for k, v in m.items()}} for i, m in self.per_image],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Standard JSON (non-finite values written as null)."""
        return json.dumps(self.to_dict(), indent=indent)
