"""Depth metrics, crops, flip TTA, accumulation and tables of `adu_depth_core.evaluation` (values by hand)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from adu_depth_core.evaluation import (
    EIGEN_KEYS,
    OFFICIAL_KEYS,
    MetricAccumulator,
    clip_prediction,
    crop_box,
    crop_mask,
    depth_metrics,
    evaluate_image,
    flip_tta,
    format_table,
    kb_crop_box,
    official_metrics,
    valid_mask,
)

KITTI_H, KITTI_W = 375, 1242


def _gt(shape=(6, 7), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(2.0, 35.0, size=shape)  # x2 stays below the 80 m cap


# ---------------------------------------------------------------- metrics


def test_perfect_prediction_has_zero_errors():
    gt = _gt()
    m = depth_metrics(gt.copy(), gt)
    for key in set(EIGEN_KEYS + OFFICIAL_KEYS) - {"d1", "d2", "d3"}:
        assert m[key] == pytest.approx(0.0, abs=1e-12), key
    assert m["d1"] == m["d2"] == m["d3"] == 1.0
    assert set(EIGEN_KEYS) | set(OFFICIAL_KEYS) == set(m)


@pytest.mark.parametrize("k", [1.1, 0.7, 1.3])
def test_scaled_prediction(k):
    gt = _gt()
    m = depth_metrics(k * gt, gt)
    assert m["abs_rel"] == pytest.approx(abs(k - 1))
    assert m["silog"] == pytest.approx(0.0, abs=1e-5)  # constant log error is scale-invariant
    assert m["rmse_log"] == pytest.approx(abs(math.log(k)))
    assert m["log10"] == pytest.approx(abs(math.log10(k)))
    assert m["sq_rel"] == pytest.approx((k - 1) ** 2 * gt.mean())
    assert m["rmse"] == pytest.approx(abs(k - 1) * math.sqrt(np.mean(gt**2)))
    assert m["sq_error_rel"] == pytest.approx(100 * (k - 1) ** 2)
    assert m["abs_error_rel"] == pytest.approx(100 * abs(k - 1))
    assert m["irmse"] == pytest.approx(1000 * abs(1 - 1 / k) * math.sqrt(np.mean(gt**-2.0)))
    ratio = max(k, 1 / k)  # 1.1, 1.43, 1.3
    assert m["d1"] == float(ratio < 1.25)
    assert m["d2"] == float(ratio < 1.25**2) == 1.0


def test_hand_computed_small_image():
    # gt 0 is invalid; the valid (gt, pred) pairs are (2, 1), (4, 4), (8, 10).
    gt = np.array([[2.0, 4.0], [0.0, 8.0]])
    pred = np.array([[1.0, 4.0], [5.0, 10.0]])
    m = depth_metrics(pred, gt)
    ln2, ln125 = math.log(2.0), math.log(1.25)
    assert m["abs_rel"] == pytest.approx((1 / 2 + 0 + 2 / 8) / 3)
    assert m["sq_rel"] == pytest.approx((1 / 2 + 0 + 4 / 8) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((ln2**2 + ln125**2) / 3))
    assert m["log10"] == pytest.approx(math.log10(2.5) / 3)
    mean_e = (-ln2 + ln125) / 3
    assert m["silog"] == pytest.approx(100 * math.sqrt((ln2**2 + ln125**2) / 3 - mean_e**2))
    # ratios 2, 1, 1.25: 1.25 is not < 1.25
    assert m["d1"] == pytest.approx(1 / 3)
    assert m["d2"] == pytest.approx(2 / 3)
    assert m["d3"] == pytest.approx(2 / 3)
    # KITTI official set: relative errors in percent, iRMSE in 1/km
    assert m["sq_error_rel"] == pytest.approx(100 * (1 / 4 + 0 + 4 / 64) / 3)
    assert m["abs_error_rel"] == pytest.approx(25.0)
    assert m["irmse"] == pytest.approx(1000 * math.sqrt((0.5**2 + 0 + 0.025**2) / 3))
    off = official_metrics(pred, gt)
    assert list(off) == list(OFFICIAL_KEYS)
    assert off["silog"] == m["silog"] and off["irmse"] == m["irmse"]


def test_invalid_gt_is_ignored():
    gt = np.array([[2.0, 4.0, 0.0, np.nan, 80.0, 1e-3, 100.0]])
    pred = np.array([[2.0, 4.0, 9.0, 9.0, 9.0, 9.0, 9.0]])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == 0.0 and m["d1"] == 1.0  # only the two exact pixels count
    assert valid_mask(gt).tolist() == [[True, True, False, False, False, False, False]]
    assert depth_metrics(pred, gt, max_depth=120.0)["abs_rel"] > 0  # 80 and 100 count under a 120 m cap
    assert depth_metrics(pred, np.zeros_like(gt)) is None  # no valid pixel: the caller skips the image


def test_non_finite_predictions_are_clipped():
    gt = np.array([[2.0, 40.0, 5.0, 0.5]])
    pred = np.array([[np.nan, np.inf, -np.inf, 100.0]])
    assert clip_prediction(pred).tolist() == [[1e-3, 80.0, 1e-3, 80.0]]
    m = depth_metrics(pred, gt)
    expected = (abs(2 - 1e-3) / 2 + abs(40 - 80) / 40 + abs(5 - 1e-3) / 5 + abs(0.5 - 80) / 0.5) / 4
    assert m["abs_rel"] == pytest.approx(expected)
    assert clip_prediction(np.array([np.inf, 0.0]), 0.5, 10.0).tolist() == [10.0, 0.5]
    with pytest.raises(ValueError, match="min_depth"):
        clip_prediction(pred, 10.0, 1.0)


def test_median_scaling_is_off_by_default():
    gt = _gt()
    assert depth_metrics(2 * gt, gt)["abs_rel"] == pytest.approx(1.0)
    m = depth_metrics(2 * gt, gt, median_scaling=True)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert m["median_scale"] == pytest.approx(0.5)


def test_mask_and_crop_restrict_pixels():
    gt = np.full((KITTI_H, KITTI_W), 10.0)
    pred = gt.copy()
    pred[:100] = 20.0  # wrong only above the Garg and Eigen crops (rows >= 124)
    assert depth_metrics(pred, gt)["abs_rel"] > 0
    assert depth_metrics(pred, gt, crop="garg")["abs_rel"] == 0.0
    assert depth_metrics(pred, gt, crop="eigen")["abs_rel"] == 0.0
    mask = np.zeros(gt.shape, bool)
    mask[:100] = True
    assert depth_metrics(pred, gt, mask=mask)["abs_rel"] == pytest.approx(1.0)
    assert depth_metrics(pred, gt, mask=mask, crop="garg") is None  # mask and crop do not overlap


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"pred shape \(2, 3\) does not match gt shape \(2, 4\)"):
        depth_metrics(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"mask shape \(2, 2\) does not match gt shape \(2, 4\)"):
        depth_metrics(np.ones((2, 4)), np.ones((2, 4)), mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="unknown evaluation crop"):
        depth_metrics(np.ones((2, 4)), np.ones((2, 4)), crop="kb")


# ---------------------------------------------------------------- crops


def _box_of(mask):
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def test_garg_and_eigen_crops_on_full_kitti_image():
    # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44, int(0.96405229*1242)=1197
    garg = crop_mask(KITTI_H, KITTI_W, "garg")
    assert garg.shape == (KITTI_H, KITTI_W) and garg.dtype == bool
    assert _box_of(garg) == (153, 371, 44, 1197)
    assert garg.sum() == (371 - 153) * (1197 - 44)  # one solid rectangle
    assert garg[153, 44] and garg[370, 1196] and not garg[152, 44] and not garg[371, 44] and not garg[153, 43]
    # int(0.3324324*375)=124, int(0.91351351*375)=342
    eigen = crop_mask(KITTI_H, KITTI_W, "eigen")
    assert _box_of(eigen) == (124, 342, 44, 1197)
    assert eigen.sum() == (342 - 124) * (1197 - 44)
    assert crop_mask(KITTI_H, KITTI_W, None).all() and crop_mask(4, 5, "none").all()


def test_newcrfs_crops_on_the_kb_crop():
    assert kb_crop_box(KITTI_H, KITTI_W) == (23, 13, 352, 1216)  # bottom 352 rows, centred 1216 columns
    # on the 352x1216 KB crop: int(0.40810811*352)=143, int(0.99189189*352)=349, 43, 1172
    assert crop_box(352, 1216, "garg_kb") == crop_box(352, 1216, "garg") == (143, 349, 43, 1172)
    assert crop_box(352, 1216, "eigen_kb") == (117, 321, 43, 1172)  # int(0.3324324*352)=117
    # on the full image the same pixels are selected, shifted by the KB offset (23, 13)
    full = crop_mask(KITTI_H, KITTI_W, "garg_kb")
    assert _box_of(full) == (166, 372, 56, 1185)
    assert np.array_equal(full[23:375, 13:1229], crop_mask(352, 1216, "garg"))
    assert full.sum() == crop_mask(352, 1216, "garg").sum()
    with pytest.raises(ValueError, match="at least 352x1216"):
        crop_mask(300, 1216, "eigen_kb")
    with pytest.raises(ValueError, match="expected one of"):
        crop_mask(KITTI_H, KITTI_W, "bts")


# ---------------------------------------------------------------- flip TTA


def _asymmetric_predictor_numpy(image):
    h, w, _ = image.shape
    return image[:, :, 0].astype(np.float64) + np.arange(w)[None, :]  # depends on absolute column


def test_flip_tta_numpy():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(4, 6, 3), dtype=np.uint8)
    out = flip_tta(_asymmetric_predictor_numpy, image)
    # (I + ramp + unflip(flip(I) + ramp)) / 2 = I + (ramp + ramp[::-1]) / 2 = I + (W - 1) / 2
    assert np.allclose(out, image[:, :, 0] + 2.5)
    depth, sigma = flip_tta(lambda im: (_asymmetric_predictor_numpy(im), None), image)
    assert np.allclose(depth, out) and sigma is None
    with pytest.raises(ValueError, match="image width 6"):
        flip_tta(lambda im: np.zeros((4, 5)), image)
    with pytest.raises(ValueError, match="HxWxC"):
        flip_tta(_asymmetric_predictor_numpy, image[:, :, 0])


def test_flip_tta_torch_nchw():
    x = torch.rand(2, 3, 4, 6)
    ramp = torch.arange(6.0)

    def predict(t):
        return t[:, :1] * 2 + ramp, t[:, :1]

    depth, sigma = flip_tta(predict, x)
    assert depth.shape == (2, 1, 4, 6)
    assert torch.allclose(depth, x[:, :1] * 2 + 2.5)
    assert torch.allclose(sigma, x[:, :1])  # an equivariant output is unchanged by TTA


# ---------------------------------------------------------------- accumulator


def test_accumulator_means_skips_and_json():
    acc = MetricAccumulator(meta={"crop": "garg"})
    acc.add({"abs_rel": 0.1, "rmse": 2.0}, "a")
    acc.add(None, "b")
    acc.add({"abs_rel": 0.3, "rmse": 4.0, "ause_rmse": 0.5}, "c")
    assert acc.n_images == 2 and acc.n_skipped == 1 and acc.skipped == ["b"]
    mean = acc.mean()
    assert mean["abs_rel"] == pytest.approx(0.2) and mean["rmse"] == pytest.approx(3.0)
    assert mean["ause_rmse"] == pytest.approx(0.5)  # averaged over the one image that has it
    assert acc.counts() == {"abs_rel": 2, "rmse": 2, "ause_rmse": 1}
    acc.add({"abs_rel": float("nan")}, "d")
    data = json.loads(acc.to_json())
    assert data["meta"] == {"crop": "garg"} and data["n_images"] == 3 and data["skipped"] == ["b"]
    assert data["mean"]["abs_rel"] is None  # NaN is written as null, the file stays standard JSON
    assert data["per_image"][0] == {"id": "a", "abs_rel": 0.1, "rmse": 2.0}
    with pytest.raises(ValueError, match="must be a number"):
        acc.add({"abs_rel": "x"}, "e")
    assert MetricAccumulator().mean() == {}


def test_accumulator_running_sums_mode_gives_the_same_means():
    """keep_per_image=False (hours of live replay): constant memory, the same means and counts."""
    rng = np.random.default_rng(3)
    full, running = MetricAccumulator(), MetricAccumulator(keep_per_image=False)
    for i in range(50):
        metrics = None if i % 7 == 3 else {"abs_rel": float(rng.random()), "rmse": float(rng.random() * 9)}
        if metrics is not None and i % 5 == 0:
            metrics["ause_rmse"] = float(rng.random())
        full.add(metrics, str(i))
        running.add(metrics, str(i))
    assert running.mean() == full.mean() and running.counts() == full.counts()
    assert (running.n_images, running.n_skipped) == (full.n_images, full.n_skipped) == (43, 7)
    assert running.per_image == [] and running.skipped == []


def test_evaluate_image_combines_depth_and_uncertainty():
    gt = _gt((10, 12))
    gt[0] = 0
    rng = np.random.default_rng(2)
    pred = gt * np.exp(rng.normal(0, 0.2, gt.shape))
    plain = evaluate_image(pred, gt)
    assert plain == depth_metrics(pred, gt)
    with_u = evaluate_image(pred, gt, np.abs(pred - gt) / np.maximum(gt, 1e-3))
    assert {k: with_u[k] for k in plain} == plain
    assert with_u["ause_abs_rel"] == pytest.approx(0.0, abs=1e-12)  # oracle uncertainty
    assert evaluate_image(pred, np.zeros_like(gt), np.ones_like(gt)) is None
    with pytest.raises(ValueError, match=r"uncertainty shape \(3, 3\) does not match gt shape \(10, 12\)"):
        evaluate_image(pred, gt, np.ones((3, 3)))


# ---------------------------------------------------------------- tables


def test_eigen_table_layout():
    metrics = {
        "sq_rel": 0.147,
        "abs_rel": 0.049,
        "rmse": 2.08,
        "rmse_log": 0.076,
        "d1": 0.976,
        "d2": 0.997,
        "d3": 0.999,
    }
    table = format_table({"ADU-Depth": metrics, "Partial": {"abs_rel": 0.06}}, crop="garg_kb")
    lines = table.splitlines()
    assert lines[0] == (
        "| Method | Sq Rel ↓ | Abs Rel ↓ | RMSE ↓ | RMSE log ↓ | δ<1.25 ↑ | δ<1.25² ↑ | δ<1.25³ ↑ |"
    )
    assert lines[1] == "|---" * 8 + "|"
    assert lines[2] == "| ADU-Depth | 0.147 | 0.049 | 2.080 | 0.076 | 0.976 | 0.997 | 0.999 |"
    assert lines[3] == "| Partial | - | 0.060 | - | - | - | - | - |"
    assert "crop garg_kb" in lines[-1] and "0-80 m" in lines[-1]
    assert "AUSE" not in table


def test_official_table_and_uncertainty_columns():
    m = {
        "silog": 6.64,
        "sq_error_rel": 0.61,
        "abs_error_rel": 4.61,
        "irmse": 5.25,
        "rmse": 1.98,
        "d1": 0.981,
        "d2": 0.997,
        "d3": 0.999,
        "ause_rmse": 0.51234,
        "aurg_rmse": 1.2,
        "log10": 0.02,
    }
    table = format_table({"ADU-Depth": m}, protocol="official", extra=("log10",), crop=None)
    header, _, row = table.splitlines()[:3]
    assert header.startswith("| Method | SILog ↓ | sqErrorRel ↓ | absErrorRel ↓ | iRMSE ↓ | RMSE ↓ |")
    assert header.endswith("| δ<1.25³ ↑ | log10 ↓ | AUSE RMSE ↓ | AURG RMSE ↑ |")  # only present AUSE/AURG
    cells = "6.64 | 0.61 | 4.61 | 5.25 | 1.98 | 0.981 | 0.997 | 0.999 | 0.020 | 0.5123 | 1.2000"
    assert row == f"| ADU-Depth | {cells} |"
    assert "no crop" in table and "official" in table
    with pytest.raises(ValueError, match="unknown table protocol"):
        format_table({}, protocol="bts")
