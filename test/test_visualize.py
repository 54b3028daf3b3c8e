"""Pictures of `adu_depth_core.evaluation.visualize`: colour maps, KITTI error maps, panels, PNG files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from adu_depth_core.evaluation import (
    colorize_depth,
    colorize_uncertainty,
    error_map,
    make_panel,
    normalized_error,
    plot_sparsification,
    save_png,
    sparsification_curves,
)
from adu_depth_core.evaluation.visualize import ERROR_COLORS, colormap_lut


def _luma(rgb):
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


def test_colorize_depth_marks_invalid_black_and_near_bright():
    depth = np.array([[5.0, 20.0, 60.0, 0.0], [np.nan, np.inf, -3.0, 80.0]])
    rgb = colorize_depth(depth, max_depth=80.0)
    assert rgb.shape == (2, 4, 3) and rgb.dtype == np.uint8
    invalid = ~(np.isfinite(depth) & (depth > 0))
    assert (rgb[invalid] == 0).all()
    assert (rgb[~invalid].sum(axis=1) > 0).all()  # even the farthest valid depth is not black
    luma = _luma(rgb)
    assert luma[0, 0] > luma[0, 1] > luma[0, 2] > luma[1, 3]  # near bright, far dark
    lut = colormap_lut("magma")
    assert (rgb[0, 0] == lut[round(26 + (1 - 5 / 80) * 229)]).all()  # documented linear mapping
    assert (colorize_depth(depth)[1, 3] == rgb[1, 3]).all()  # default scale: the largest valid depth (80)
    with pytest.raises(ValueError, match="unknown colour map"):
        colorize_depth(depth, cmap="nope")
    with pytest.raises(ValueError, match="HxW"):
        colorize_depth(np.ones((2, 2, 1)))


def test_colorize_uncertainty_high_is_bright():
    sigma = np.array([[0.1, 0.5, 2.0, np.nan]])
    rgb = colorize_uncertainty(sigma, max_sigma=2.0)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 3] == 0).all()
    luma = _luma(rgb)[0]
    assert luma[2] > luma[1] > luma[0] > 0
    assert colorize_uncertainty(np.full((3, 3), np.nan)).sum() == 0


def test_normalized_error_follows_the_devkit_tolerance():
    # tolerance max(3 m, 5 % of gt): gt 10 -> 3 m; gt 70 -> 3.5 m
    gt = np.array([[10.0, 10.0, 70.0, 0.0, 100.0]])
    pred = np.array([[11.5, 16.0, 77.0, 5.0, 5.0]])
    assert np.allclose(normalized_error(pred, gt), [[0.5, 2.0, 2.0, -1.0, -1.0]])
    assert np.allclose(normalized_error(pred, gt, abs_tol=None)[0, :3], [3.0, 12.0, 2.0])  # purely relative


def test_error_map_is_blue_where_correct_and_red_where_wrong():
    gt = np.zeros((9, 12))
    pred = np.full(gt.shape, 10.0)
    gt[4, 2] = 10.1  # n = 0.1 / 3 < 1/16 -> darkest blue
    gt[4, 9] = 70.0  # pred 10 is 60 m off, n = 60 / 3.5 >= 16 -> darkest red
    rgb = error_map(pred, gt)
    assert rgb.shape == (9, 12, 3) and rgb.dtype == np.uint8
    assert (rgb[3:6, 1:4] == ERROR_COLORS[0]).all()  # 3x3 square around the GT pixel
    assert (rgb[3:6, 8:11] == ERROR_COLORS[9]).all()
    assert rgb[4, 2, 2] > rgb[4, 2, 0] and rgb[4, 9, 0] > rgb[4, 9, 2]  # blue vs red
    drawn = np.zeros(gt.shape, bool)
    drawn[3:6, 1:4] = drawn[3:6, 8:11] = True
    assert (rgb[~drawn] == 0).all()  # no GT: black
    single = error_map(pred, gt, dilate=0)
    assert (single.sum(axis=2) > 0).sum() == 2


def test_error_map_bins_and_overlap():
    gt = np.zeros((5, 6))
    gt[2, 2], gt[2, 3] = 10.0, 10.0
    pred = np.full(gt.shape, 10.0)
    pred[2, 3] = 13.0  # n = 1: first "wrong" bin [1, 2)
    rgb = error_map(pred, gt)
    assert (rgb[2, 1] == ERROR_COLORS[0]).all()  # only the correct pixel's square
    assert (rgb[2, 2] == ERROR_COLORS[5]).all() and (rgb[2, 4] == ERROR_COLORS[5]).all()  # worst wins
    with pytest.raises(ValueError, match=r"pred shape \(5, 5\) does not match gt shape \(5, 6\)"):
        error_map(pred[:, :5], gt)


def test_make_panel_stacks_titled_images():
    a = np.full((20, 40, 3), 200, np.uint8)
    b = np.full((10, 80), 100, np.uint8)  # grey, twice as wide: scaled to the 80 px cell width
    panel = make_panel([("Input image", a), ("SILog = 9.54", b)], title_height=18)
    assert panel.dtype == np.uint8 and panel.shape == (18 + 40 + 18 + 10, 80, 3)
    assert (panel[18:58] == 200).all() and (panel[76:] == 100).all()
    assert len(np.unique(panel[:18])) > 1  # the title text is drawn
    grid = make_panel([("a", a), ("b", a), ("c", a)], columns=2, width=40, title_height=18)
    assert grid.shape == (2 * (18 + 20), 80, 3)
    assert (grid[38 + 18 :, 40:] == 0).all()  # empty cell
    with pytest.raises(ValueError, match="uint8"):
        make_panel([("depth", np.ones((4, 4)))])
    with pytest.raises(ValueError, match="at least one"):
        make_panel([])


def test_save_png_roundtrip_is_rgb_and_atomic(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    path = save_png(tmp_path / "sub" / "red.png", rgb)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert (back[..., 2] == 255).all() and (back[..., :2] == 0).all()  # OpenCV reads BGR
    depth16 = (np.arange(20, dtype=np.uint16) * 1000).reshape(4, 5)
    back16 = cv2.imread(str(save_png(tmp_path / "d.png", depth16)), cv2.IMREAD_UNCHANGED)
    assert back16.dtype == np.uint16 and np.array_equal(back16, depth16)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["d.png", "red.png", "sub"]  # no temp files left
    with pytest.raises(ValueError, match="RGB uint8"):
        save_png(tmp_path / "x.png", rgb.astype(np.float32))


def test_plot_sparsification_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(2, 40, (20, 30))
    pred = gt * np.exp(rng.normal(0, 0.2, gt.shape))
    curves = sparsification_curves(pred, gt, np.abs(pred - gt), np.ones(gt.shape, bool))
    path = plot_sparsification(curves, tmp_path / "sparsification.png", title="test")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] > img.shape[0] > 100
    with pytest.raises(ValueError, match="shape"):
        plot_sparsification({"rmse": (np.zeros(3), np.zeros(3))}, tmp_path / "bad.png")
