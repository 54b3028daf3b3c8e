"""Sparsification curves, AUSE and AURG (Poggi et al. 2020) of `adu_depth_core.evaluation.uncertainty`."""

from __future__ import annotations

import numpy as np
import pytest

from adu_depth_core.evaluation import (
    FRACTIONS,
    UNCERTAINTY_KEYS,
    MetricAccumulator,
    average_curves,
    compute_errors,
    evaluate_image,
    sparsification_curves,
    uncertainty_metrics,
)


def _image(n_rows=40, n_cols=50, noise=0.15, seed=0):
    """Dense-ish GT with holes and a noisy prediction (no clipping needed: all within (1e-3, 80))."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(2.0, 40.0, size=(n_rows, n_cols))
    pred = gt * np.exp(rng.normal(0.0, noise, size=gt.shape))
    valid = rng.random(gt.shape) > 0.3
    return pred, gt, valid, rng


def test_hand_computed_curve_and_areas():
    # gt = 1, abs_rel errors 0.4, 0.3, 0.2, 0.1; n = 4 so fraction i/50 removes floor(4 i / 50) pixels:
    # i = 0..12 -> 0, 13..24 -> 1, 25..37 -> 2, 38..49 -> 3, i = 50 -> all (curve 0).
    gt = np.ones((1, 4))
    pred = np.array([[1.4, 1.3, 1.2, 1.1]])
    valid = np.ones((1, 4), bool)
    oracle_like = np.array([[4.0, 3.0, 2.0, 1.0]])  # most uncertain = largest error
    model, oracle = sparsification_curves(pred, gt, oracle_like, valid)["abs_rel"]
    expected = np.array([0.25] * 13 + [0.2] * 12 + [0.15] * 13 + [0.1] * 12 + [0.0])
    assert np.allclose(model, expected) and np.allclose(oracle, expected)
    # reversed ranking removes the best pixels first: means 0.25, 0.3, 0.35, 0.4
    worst = sparsification_curves(pred, gt, -oracle_like, valid)["abs_rel"][0]
    assert np.allclose(worst, [0.25] * 13 + [0.3] * 12 + [0.35] * 13 + [0.4] * 12 + [0.0])
    # trapezoid areas: 0.02 * (sum - (first + last) / 2) = 0.1735 (oracle) and 0.3215 (reversed)
    m = uncertainty_metrics(pred, gt, -oracle_like, valid)
    assert m["ause_abs_rel"] == pytest.approx(0.3215 - 0.1735)
    assert m["aurg_abs_rel"] == pytest.approx(0.25 - 0.3215)
    assert set(m) == set(UNCERTAINTY_KEYS)


def _slow_curve(p, g, ranking, metric):
    """Direct recomputation: drop the floor(f n) highest-ranked pixels, evaluate the rest directly."""
    order = sorted(range(p.size), key=lambda i: -ranking[i])  # Python's sort is stable
    values = []
    for f in FRACTIONS[:-1]:
        keep = order[int(np.floor(f * p.size + 1e-9)) :]
        e = compute_errors(p[keep], g[keep], official=False)
        values.append({"abs_rel": e["abs_rel"], "rmse": e["rmse"], "a1": 1.0 - e["d1"]}[metric])
    return np.array(values + [0.0])


def test_vectorised_curves_equal_direct_recomputation():
    pred, gt, valid, rng = _image(n_rows=9, n_cols=19, noise=0.3)  # ~120 valid pixels, not a multiple of 50
    sigma = rng.random(gt.shape)
    curves = sparsification_curves(pred, gt, sigma, valid)
    p, g, u = pred[valid], gt[valid], sigma[valid]
    true_err = {"abs_rel": np.abs(p - g) / g, "rmse": (p - g) ** 2, "a1": np.maximum(p / g, g / p) >= 1.25}
    for metric in ("abs_rel", "rmse", "a1"):
        model, oracle = curves[metric]
        assert model.shape == oracle.shape == (51,)
        assert np.allclose(model, _slow_curve(p, g, u, metric), rtol=1e-12, atol=1e-12), metric
        slow_oracle = _slow_curve(p, g, true_err[metric].astype(float), metric)
        assert np.allclose(oracle, slow_oracle, rtol=1e-12, atol=1e-12), metric
        assert model[0] == pytest.approx(oracle[0], rel=1e-12) and model[-1] == oracle[-1] == 0.0


def test_oracle_uncertainty_gives_zero_ause():
    pred, gt, valid, _ = _image()
    m = uncertainty_metrics(pred, gt, np.abs(pred - gt) / gt, valid)
    assert m["ause_abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert m["ause_rmse"] >= -1e-12  # relative error is not the rmse oracle's ranking
    by_abs_error = uncertainty_metrics(pred, gt, np.abs(pred - gt), valid)
    assert by_abs_error["ause_rmse"] == pytest.approx(0.0, abs=1e-12)
    # |ln(pred/gt)| ranks exactly like the a1 flag max(p/g, g/p) >= 1.25
    log_err = np.abs(np.log(pred / gt))
    a1 = uncertainty_metrics(pred, gt, log_err, valid)
    assert a1["ause_a1"] == pytest.approx(0.0, abs=1e-12)
    assert a1["aurg_a1"] > 0 and a1["aurg_abs_rel"] > 0 and a1["aurg_rmse"] > 0


def test_random_uncertainty_gives_aurg_near_zero():
    # A random ranking keeps the curve flat at the full-set metric until the final 0, so
    # area = 0.99 * metric and AURG = metric / 100 (up to sampling noise): ~0 against the metric itself.
    acc = MetricAccumulator()
    for seed in range(12):
        pred, gt, valid, rng = _image(n_rows=60, n_cols=80, seed=seed)
        acc.add(evaluate_image(pred, gt, rng.random(gt.shape), mask=valid), str(seed))
    mean = acc.mean()
    assert acc.n_images == 12
    for metric, full in (("abs_rel", mean["abs_rel"]), ("rmse", mean["rmse"]), ("a1", 1 - mean["d1"])):
        assert abs(mean[f"aurg_{metric}"] - full / 100) < 0.02 * full, metric
        assert abs(mean[f"aurg_{metric}"]) < 0.03 * full, metric
        assert mean[f"ause_{metric}"] > 0.1 * full, metric  # far from the oracle


def test_anti_correlated_uncertainty_gives_negative_aurg():
    pred, gt, valid, _ = _image()
    m = uncertainty_metrics(pred, gt, -np.abs(np.log(pred / gt)), valid)  # most confident where worst
    assert m["aurg_abs_rel"] < 0 and m["aurg_rmse"] < 0 and m["aurg_a1"] < 0
    good = uncertainty_metrics(pred, gt, np.abs(np.log(pred / gt)), valid)
    assert m["ause_abs_rel"] > good["ause_abs_rel"]


def test_ause_is_never_negative():
    for seed in range(5):
        pred, gt, valid, rng = _image(n_rows=13, n_cols=17, seed=seed)
        m = uncertainty_metrics(pred, gt, rng.random(gt.shape), valid)
        assert min(m["ause_abs_rel"], m["ause_rmse"], m["ause_a1"]) >= -1e-12


def test_nan_uncertainty_counts_as_most_uncertain():
    pred, gt, valid, rng = _image(n_rows=10, n_cols=10)
    sigma = rng.random(gt.shape)
    with_nan, with_inf = sigma.copy(), sigma.copy()
    with_nan[valid & (sigma > 0.8)] = np.nan
    with_inf[valid & (sigma > 0.8)] = np.inf
    a = sparsification_curves(pred, gt, with_nan, valid)
    b = sparsification_curves(pred, gt, with_inf, valid)
    assert all(np.array_equal(a[k][0], b[k][0]) for k in a)


def test_input_checks_and_empty_images():
    pred, gt, valid, _ = _image(n_rows=4, n_cols=5)
    assert sparsification_curves(pred, gt, gt, np.zeros_like(valid)) is None
    assert uncertainty_metrics(pred, gt, gt, np.zeros_like(valid)) is None
    with pytest.raises(ValueError, match=r"uncertainty shape \(2, 2\) does not match pred shape \(4, 5\)"):
        uncertainty_metrics(pred, gt, np.ones((2, 2)), valid)
    with pytest.raises(ValueError, match="boolean"):
        uncertainty_metrics(pred, gt, gt, valid.astype(np.uint8))
    bad = pred.copy()
    bad[valid] = np.nan
    with pytest.raises(ValueError, match="clip_prediction"):
        uncertainty_metrics(bad, gt, gt, valid)


def test_average_curves():
    pred, gt, valid, rng = _image(n_rows=8, n_cols=9)
    c1 = sparsification_curves(pred, gt, rng.random(gt.shape), valid)
    c2 = sparsification_curves(pred, gt, rng.random(gt.shape), valid)
    avg = average_curves([c1, None, c2])
    for k in c1:
        assert np.allclose(avg[k][0], (c1[k][0] + c2[k][0]) / 2)
        assert np.allclose(avg[k][1], c1[k][1])  # the oracle does not depend on the uncertainty
    assert average_curves([None]) is None
