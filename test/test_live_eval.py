"""eval_node's running metrics without ROS: real depth messages through CDR, numbers from `evaluation`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.evaluation import MetricAccumulator, depth_metrics
from adu_depth_ros.live_eval import LiveEvaluator, PairError, format_report
from adu_depth_ros.params import EvalParams, params_from_values

H, W = 24, 32


def cdr(msg):
    return rm.deserialize(rm.serialize(msg), msg.__msgtype__)


def scene(seed: int):
    """(pred with a NaN patch, sparse GT with 0 = no measurement), both in metres."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(2.0, 60.0, (H, W)).astype(np.float32)
    gt[rng.random((H, W)) < 0.6] = 0.0  # sparse, LiDAR-like
    pred = (gt * rng.uniform(0.85, 1.15, (H, W))).astype(np.float32)
    pred[gt == 0] = rng.uniform(1.0, 70.0, int((gt == 0).sum()))
    pred[:3, :5] = np.nan  # not seen by the network
    return pred, gt


def pred_msg(pred, stamp_ns):
    return cdr(rm.image_to_msg(pred, "32FC1", stamp_ns, "cam"))


def gt_msg(gt, stamp_ns, encoding):
    return cdr(rm.depth_image_msg(gt, stamp_ns, "cam", encoding=encoding))


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_pairs_from_messages_give_the_metrics_modules_numbers(encoding):
    evaluator = LiveEvaluator(EvalParams(window=2))
    acc = MetricAccumulator()
    per_pair = []
    for i in range(4):
        pred, gt = scene(i)
        result = evaluator.add_messages(
            pred_msg(pred, 1_000_000_000 * i + 7_000_000), gt_msg(gt, 1_000_000_000 * i, encoding)
        )
        if encoding == "16UC1":  # whole millimetres on the wire
            gt = np.rint(gt.astype(np.float64) * 1000).astype(np.uint16).astype(np.float32) / np.float32(1000)
        expected = depth_metrics(pred, gt, 1e-3, 80.0, np.isfinite(pred))
        assert result.metrics is not None and expected is not None
        for key, value in expected.items():
            assert result.metrics[key] == pytest.approx(value, rel=1e-6), key
        assert result.stamp_diff_s == pytest.approx(0.007)
        acc.add(expected, str(i))
        per_pair.append(expected)

    report = evaluator.report()
    for key, value in acc.mean().items():
        assert report["cumulative"][key] == pytest.approx(value, rel=1e-6)
        assert report["recent"][key] == pytest.approx((per_pair[2][key] + per_pair[3][key]) / 2, rel=1e-6)
    assert (report["pairs"], report["evaluated"], report["skipped_no_gt"], report["errors"]) == (4, 4, 0, 0)
    assert report["recent_frames"] == 2
    assert report["mean_stamp_diff_ms"] == pytest.approx(7.0) and report[
        "max_stamp_diff_ms"
    ] == pytest.approx(7.0)
    assert json.loads(evaluator.report_json()) == json.loads(json.dumps(report))


def test_nan_predictions_count_as_min_depth_when_not_ignored():
    pred, gt = scene(5)
    gt[:3, :5] = 10.0  # GT where the prediction is NaN
    strict = LiveEvaluator(EvalParams(ignore_invalid_prediction=False)).add(pred, gt).metrics
    lenient = LiveEvaluator(EvalParams()).add(pred, gt).metrics
    assert strict == pytest.approx(depth_metrics(pred, gt))
    assert lenient == pytest.approx(depth_metrics(pred, gt, mask=np.isfinite(pred)))
    assert strict["abs_rel"] > lenient["abs_rel"]


def test_crop_and_depth_range_are_applied():
    pred, gt = scene(6)
    params = EvalParams(crop="garg", max_depth=30.0)
    metrics = LiveEvaluator(params).add(pred, gt).metrics
    assert metrics == pytest.approx(depth_metrics(pred, gt, 1e-3, 30.0, np.isfinite(pred), crop="garg"))


def test_pairs_without_gt_are_skipped_and_bad_pairs_are_errors_that_do_not_stop_evaluation():
    evaluator = LiveEvaluator(EvalParams())
    pred, gt = scene(7)
    assert evaluator.add(pred, np.zeros_like(gt)).metrics is None  # no measurement at all
    with pytest.raises(PairError, match=r"prediction is 32x24 but ground truth is 16x12 \(WxH\)"):
        evaluator.add(pred, gt[::2, ::2])
    colour = cdr(rm.image_to_msg(np.zeros((H, W, 3), np.uint8), "bgr8", 0, "cam"))
    with pytest.raises(PairError, match="expected a 32FC1 depth image"):
        evaluator.add_messages(colour, gt_msg(gt, 0, "32FC1"))
    with pytest.raises(PairError, match="ground truth: depth image: expected encoding"):
        evaluator.add_messages(pred_msg(pred, 0), colour)
    assert evaluator.add(pred, gt).metrics is not None
    report = evaluator.report()
    assert (report["pairs"], report["evaluated"], report["skipped_no_gt"], report["errors"]) == (2, 1, 1, 3)
    assert "ground truth" in report["last_error"]


def test_report_before_any_pair_and_log_line():
    evaluator = LiveEvaluator(EvalParams())
    report = evaluator.report()
    assert report["cumulative"] == {} and report["mean_stamp_diff_ms"] is None
    assert format_report(report) == (
        "0 pairs evaluated (0 without GT, 0 errors) | all: no metrics yet | last 0: no metrics yet"
    )
    pred, gt = scene(8)
    evaluator.add(pred, gt)
    line = format_report(evaluator.report())
    m = evaluator.cumulative()
    assert line.startswith("1 pairs evaluated (0 without GT, 0 errors) | all: ")
    assert f"abs_rel {m['abs_rel']:.4f}" in line and f"rmse {m['rmse']:.3f} m" in line and "last 1:" in line


def test_eval_params_validation():
    EvalParams(crop="eigen_kb")
    for kw, match in [
        ({"crop": "kitti"}, "'crop'"),
        ({"min_depth": 0.0}, "min_depth"),
        ({"min_depth": 90.0}, "min_depth"),
        ({"slop": 0.0}, "'slop'"),
        ({"report_period": -1.0}, "'report_period'"),
        ({"window": 0}, "'window'"),
        ({"queue_size": 0}, "'queue_size'"),
        ({"qos_reliability": "sensor"}, "'qos_reliability'"),
    ]:
        with pytest.raises(ValueError, match=match):
            EvalParams(**kw)
    assert params_from_values(EvalParams, {"max_depth": 50}).max_depth == 50.0
