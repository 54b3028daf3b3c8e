"""Running depth metrics for `eval_node` (live `ros2 bag play` replays), without ROS.

Each synchronised (prediction, ground truth) pair is scored by the per-frame function of `adu-depth
eval` and `bag-eval`, `adu_depth_core.evaluation.evaluate_image`, into the shared `MetricAccumulator`:
cumulatively (its running-sums mode, constant memory for hours of replay). What is added here is only the
window: the mean over the most recent `window` pairs (an accumulator rebuilt from a bounded deque at
report time), and the pairing statistics (stamp differences, errors).

Differences from the offline protocol are explicit parameters: `crop` (a `crops.CROPS` name) and
`ignore_invalid_prediction` — the node publishes NaN where the network saw nothing (e.g. outside
the KB crop); with True (default) those pixels are left out instead of being scored as min_depth.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from adu_depth_core.data.ros_messages import msg_to_depth, msg_to_image, stamp_to_ns
from adu_depth_core.evaluation import MetricAccumulator, evaluate_image

from .params import EvalParams

LOG_KEYS = ("abs_rel", "rmse", "silog", "d1")

# eval_node's relative topics (launch files remap GT_TOPIC to the bag's ground-truth depth topic)
PREDICTION_TOPIC = "depth/image"
GT_TOPIC = "gt/depth/image"
METRICS_TOPIC = "depth/metrics"


class PairError(ValueError):
    """A depth/GT pair that cannot be evaluated (wrong encoding, size mismatch)."""


def prediction_from_msg(msg: Any) -> np.ndarray:
    """Predicted depth (float32 metres, NaN invalid) of a 32FC1 depth/image message."""
    if str(msg.encoding) != "32FC1":
        raise PairError(f"prediction: expected a 32FC1 depth image (metres), got encoding {msg.encoding!r}")
    try:
        return msg_to_image(msg)
    except ValueError as exc:
        raise PairError(f"prediction: {exc}") from None


def ground_truth_from_msg(msg: Any) -> np.ndarray:
    """GT depth in metres (0 = no measurement) of a 32FC1 (m) or 16UC1 (mm) depth image message."""
    try:
        return msg_to_depth(msg)
    except ValueError as exc:
        raise PairError(f"ground truth: {exc}") from None


@dataclass(frozen=True)
class PairResult:
    metrics: dict[str, float] | None  # None: no valid GT pixel (counted as skipped)
    stamp_diff_s: float


class LiveEvaluator:
    """Accumulates metrics of synchronised prediction/GT pairs; thread-safe.

    Args:
        params: `EvalParams` (depth range, crop, window, ignore_invalid_prediction).
    """

    def __init__(self, params: EvalParams) -> None:
        self.params = params
        self._lock = threading.Lock()
        self._all = MetricAccumulator(keep_per_image=False)
        self._recent: deque[tuple[str, dict[str, float]]] = deque(maxlen=params.window)
        self.pairs = 0
        self.errors = 0
        self.last_error = ""
        self._stamp_diff_sum = 0.0
        self._stamp_diff_max = 0.0

    def add(
        self, pred: np.ndarray, gt: np.ndarray, stamp_diff_s: float = 0.0, pair_id: str = ""
    ) -> PairResult:
        """Evaluate one pair: `pred` in metres (NaN invalid), `gt` in metres (0/NaN = no measurement).

        Raises PairError (also counted) when the two images differ in size.
        """
        pred, gt = np.asarray(pred), np.asarray(gt)
        try:
            if pred.ndim != 2 or gt.ndim != 2:
                raise PairError(f"expected HxW depth images, got prediction {pred.shape} and GT {gt.shape}")
            if pred.shape != gt.shape:
                raise PairError(
                    f"prediction is {pred.shape[1]}x{pred.shape[0]} but ground truth is "
                    f"{gt.shape[1]}x{gt.shape[0]} (WxH); the GT must be rendered at the camera's resolution"
                )
            mask = np.isfinite(pred) if self.params.ignore_invalid_prediction else None
            metrics = evaluate_image(
                pred, gt, None, self.params.min_depth, self.params.max_depth, mask, crop=self.params.crop
            )
        except PairError as exc:
            self._record_error(str(exc))
            raise
        except ValueError as exc:
            self._record_error(str(exc))
            raise PairError(str(exc)) from None
        stamp_diff_s = abs(float(stamp_diff_s))
        with self._lock:
            self.pairs += 1
            self._stamp_diff_sum += stamp_diff_s
            self._stamp_diff_max = max(self._stamp_diff_max, stamp_diff_s)
            pair_id = pair_id or str(self.pairs)
            self._all.add(metrics, pair_id)
            if metrics is not None:
                self._recent.append((pair_id, metrics))
        return PairResult(metrics, stamp_diff_s)

    @property
    def evaluated(self) -> int:
        """Pairs scored (at least one valid GT pixel)."""
        return self._all.n_images

    @property
    def skipped(self) -> int:
        """Pairs without a valid GT pixel."""
        return self._all.n_skipped

    def add_messages(self, pred_msg: Any, gt_msg: Any) -> PairResult:
        """`add` for a depth/image message and a GT depth message (rclpy or rosbags)."""
        try:
            pred, gt = prediction_from_msg(pred_msg), ground_truth_from_msg(gt_msg)
        except PairError as exc:
            self._record_error(str(exc))
            raise
        pred_ns, gt_ns = stamp_to_ns(pred_msg.header.stamp), stamp_to_ns(gt_msg.header.stamp)
        return self.add(pred, gt, (pred_ns - gt_ns) / 1e9, pair_id=str(pred_ns))

    def _record_error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

    def cumulative(self) -> dict[str, float]:
        """Mean of each metric over every evaluated pair so far."""
        with self._lock:
            return self._all.mean()

    def recent(self) -> dict[str, float]:
        """Mean of each metric over the last `window` evaluated pairs (via MetricAccumulator)."""
        acc = MetricAccumulator()
        with self._lock:
            for pair_id, metrics in self._recent:
                acc.add(metrics, pair_id)
        return acc.mean()

    def report(self) -> dict[str, Any]:
        """JSON-able summary (what eval_node publishes on depth/metrics)."""
        cumulative, recent = self.cumulative(), self.recent()
        with self._lock:
            return {
                "pairs": self.pairs,
                "evaluated": self.evaluated,
                "skipped_no_gt": self.skipped,
                "errors": self.errors,
                "last_error": self.last_error,
                "mean_stamp_diff_ms": 1000.0 * self._stamp_diff_sum / self.pairs if self.pairs else None,
                "max_stamp_diff_ms": 1000.0 * self._stamp_diff_max,
                "protocol": {
                    "min_depth": self.params.min_depth,
                    "max_depth": self.params.max_depth,
                    "crop": self.params.crop,
                    "ignore_invalid_prediction": self.params.ignore_invalid_prediction,
                },
                "cumulative": _finite(cumulative),
                "recent": _finite(recent),
                "recent_frames": len(self._recent),
            }

    def report_json(self) -> str:
        return json.dumps(self.report(), sort_keys=True)


def _finite(metrics: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if math.isfinite(v) else None) for k, v in metrics.items()}


def format_report(report: Mapping[str, Any], keys: tuple[str, ...] = LOG_KEYS) -> str:
    """One log line: counts, then cumulative and recent values of `keys`."""

    def values(metrics: Mapping[str, Any]) -> str:
        parts = []
        for key in keys:
            value = metrics.get(key)
            if value is not None:
                parts.append(f"{key} {value:.4f}" if key not in ("rmse",) else f"{key} {value:.3f} m")
        return ", ".join(parts) if parts else "no metrics yet"

    counts = f"{report['skipped_no_gt']} without GT, {report['errors']} errors"
    head = f"{report['evaluated']} pairs evaluated ({counts})"
    recent = f"last {report['recent_frames']}: {values(report['recent'])}"
    return f"{head} | all: {values(report['cumulative'])} | {recent}"


__all__ = [
    "GT_TOPIC",
    "METRICS_TOPIC",
    "PREDICTION_TOPIC",
    "LOG_KEYS",
    "LiveEvaluator",
    "PairError",
    "PairResult",
    "format_report",
    "ground_truth_from_msg",
    "prediction_from_msg",
]
