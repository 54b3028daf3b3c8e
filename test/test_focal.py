"""Focal-aware metric depth: the f_eff / f_train factor, analytically and through the estimator."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from adu_depth_core.geometry import KITTI_FX, scale_intrinsics
from adu_depth_core.runtime import DepthEstimator, ModelInfo, TorchBackend, focal_scale_factor, plan_input

NET = (128, 384)
F_TRAIN = 200.0
SIDE = 2.0  # metres: the edge of the square the stand-in measures


def K_of(fx: float, fy: float | None = None, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fx if fy is None else fy, cy], [0.0, 0.0, 1.0]])


# ---- the factor, analytically ----------------------------------------------------------------------


def test_resize_factor_is_fx_times_width_ratio():
    K = K_of(KITTI_FX, cx=609.6, cy=172.9)
    f = focal_scale_factor(K, (375, 1242), (352, 1216), "resize", KITTI_FX)
    assert f == pytest.approx(1216 / 1242, rel=1e-12)
    # a camera with twice the focal at the same resolution: objects look twice as large → depth x2
    assert focal_scale_factor(2 * K, (375, 1242), (352, 1216), "resize", KITTI_FX) == pytest.approx(
        2 * 1216 / 1242
    )


def test_crop_factor_keeps_fx():
    K = K_of(KITTI_FX, cx=609.6, cy=172.9)
    assert focal_scale_factor(K, (375, 1242), (352, 1216), "kb_crop", KITTI_FX) == pytest.approx(1.0)
    assert focal_scale_factor(K, (375, 1242), (352, 1216), "kb_crop", KITTI_FX / 2) == pytest.approx(2.0)


def test_resize_then_crop_factor():
    """A 2x-resolution camera (fx 1000) downscaled by the user to half size, then KB-cropped: f_eff = 500."""
    K_native = K_of(1000.0, cx=1241.5, cy=374.5)
    K_half = scale_intrinsics(K_native, 0.5, 0.5)
    assert focal_scale_factor(K_half, (375, 1242), (352, 1216), "kb_crop", 250.0) == pytest.approx(2.0)
    # and the same native frame resized straight to the network: fx·1216/2484
    assert focal_scale_factor(K_native, (750, 2484), (352, 1216), "resize", 250.0) == pytest.approx(
        1000 * 1216 / 2484 / 250
    )


def test_factor_uses_the_horizontal_focal():
    K = K_of(400.0, fy=300.0)
    assert focal_scale_factor(K, (256, 768), NET, "resize", F_TRAIN) == pytest.approx(
        400 * 384 / 768 / F_TRAIN
    )


def test_network_intrinsics_follow_the_pixels():
    K = K_of(721.5, cx=609.6, cy=172.9)
    crop = plan_input((375, 1242), (352, 1216), "kb_crop")
    assert crop.box == (23, 13, 352, 1216)
    Kc = crop.network_intrinsics(K)
    np.testing.assert_allclose(Kc, K_of(721.5, cx=609.6 - 13, cy=172.9 - 23))
    resize = plan_input((375, 1242), (352, 1216), "resize")
    Kr = resize.network_intrinsics(K)
    sx, sy = 1216 / 1242, 352 / 375
    np.testing.assert_allclose(Kr[0], [721.5 * sx, 0, (609.6 + 0.5) * sx - 0.5])
    np.testing.assert_allclose(Kr[1], [0, 721.5 * sy, (172.9 + 0.5) * sy - 0.5])


@pytest.mark.parametrize(
    "K, f_train, message",
    [
        (np.zeros((3, 3)), F_TRAIN, "not calibrated"),
        (K_of(0.0), F_TRAIN, "not calibrated"),
        (K_of(float("nan")), F_TRAIN, "positive and finite"),
        (np.eye(2), F_TRAIN, "3x3"),
        (K_of(200.0), 0.0, "f_train"),
        (K_of(200.0), None, "f_train"),
    ],
)
def test_bad_calibration_is_rejected(K, f_train, message):
    with pytest.raises(ValueError, match=message):
        focal_scale_factor(K, (128, 384), NET, "resize", f_train)


def test_bad_policy_and_small_frame():
    with pytest.raises(ValueError, match="resize.*kb_crop"):
        focal_scale_factor(K_of(200.0), (128, 384), NET, "stretch", F_TRAIN)
    with pytest.raises(ValueError, match="at least as large"):
        focal_scale_factor(K_of(200.0), (100, 384), NET, "kb_crop", F_TRAIN)


# ---- through the estimator, with a stand-in that reads depth from apparent size --------------------


class ApparentSizeNet(nn.Module):
    """Depth of a bright square of known side from its apparent size: Z = f_train · side / s_px.

    A network trained on images of focal f_train learns exactly this cue; fed an image of another focal
    it is wrong by f_train / f_eff, which the estimator's focal rescaling undoes.
    """

    stage = "student"

    def __init__(self):
        super().__init__()
        self.inference_only = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (x.mean(1, keepdim=True) > 0.5).float()  # B, 1, H, W
        s_px = mask.sum((2, 3), keepdim=True).clamp_min(1.0).sqrt()  # B, 1, 1, 1
        depth = (F_TRAIN * SIDE / s_px).expand_as(mask).contiguous()
        return depth, torch.full_like(depth, 2 * np.log(0.1))  # σ = 0.1 m at the network


def render_square(hw: tuple[int, int], fx: float, Z: float, centre: tuple[float, float]) -> np.ndarray:
    """uint8 RGB frame of a white square (side SIDE at depth Z, fronto-parallel) centred at pixel (u, v),
    with exact area coverage at its edges so resizing keeps its area."""
    half = fx * SIDE / Z / 2

    def coverage(n: int, c: float) -> np.ndarray:
        pix = np.arange(n, dtype=np.float64)
        return np.clip(np.minimum(pix + 0.5, c + half) - np.maximum(pix - 0.5, c - half), 0, 1)

    img = np.outer(coverage(hw[0], centre[1]), coverage(hw[1], centre[0]))
    return np.repeat(np.rint(img * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def estimator(policy: str = "resize", focal_px: float | None = F_TRAIN) -> DepthEstimator:
    info = ModelInfo(source="apparent-size stand-in", backend="torch", input_hw=NET, focal_px=focal_px)
    return DepthEstimator(TorchBackend(ApparentSizeNet(), info, "cpu"), policy)


Z_TRUE = 10.0


def test_training_focal_gives_true_depth():
    est = estimator()
    rgb = render_square(NET, F_TRAIN, Z_TRUE, (191.5, 63.5))
    depth, sigma = est.estimate(rgb, K_of(F_TRAIN, cx=191.5, cy=63.5))
    assert np.nanmedian(depth) == pytest.approx(Z_TRUE, rel=0.02)
    assert np.nanmedian(sigma) == pytest.approx(0.1, rel=1e-5)


def test_twice_the_focal_is_wrong_raw_and_right_rescaled():
    est = estimator()
    K = K_of(2 * F_TRAIN, cx=191.5, cy=63.5)
    rgb = render_square(NET, 2 * F_TRAIN, Z_TRUE, (191.5, 63.5))
    raw, raw_sigma = est.estimate(rgb, K, focal_rescale=False)
    assert np.nanmedian(raw) == pytest.approx(Z_TRUE / 2, rel=0.02)  # looks twice as close
    depth, sigma = est.estimate(rgb, K)
    assert np.nanmedian(depth) == pytest.approx(Z_TRUE, rel=0.02)
    np.testing.assert_allclose(depth, 2 * raw, rtol=1e-6)
    np.testing.assert_allclose(sigma, 2 * raw_sigma, rtol=1e-6)  # σ scales with depth


def test_double_resolution_camera_is_resized_to_the_training_focal():
    est = estimator("resize")
    hw = (2 * NET[0], 2 * NET[1])
    K = K_of(2 * F_TRAIN, cx=383.5, cy=127.5)
    assert est.focal_factor(K, hw) == pytest.approx(1.0)
    depth, _ = est.estimate(render_square(hw, 2 * F_TRAIN, Z_TRUE, (383.5, 127.5)), K)
    assert depth.shape == hw
    assert np.nanmedian(depth) == pytest.approx(Z_TRUE, rel=0.02)


def test_kb_crop_keeps_the_focal_and_rescales():
    est = estimator("kb_crop")
    hw = (2 * NET[0], 2 * NET[1])
    K = K_of(2 * F_TRAIN, cx=383.5, cy=127.5)
    assert est.focal_factor(K, hw) == pytest.approx(2.0)
    rgb = render_square(hw, 2 * F_TRAIN, Z_TRUE, (383.5, 192.0))  # inside the bottom-centre crop
    depth, _ = est.estimate(rgb, K)
    top, left, h, w = est.mapping(hw).box
    inside = depth[top : top + h, left : left + w]
    assert np.isfinite(inside).all() and np.median(inside) == pytest.approx(Z_TRUE, rel=0.02)
    assert np.isnan(depth[:top]).all() and np.isnan(depth[:, :left]).all()


def test_uncalibrated_K_is_rejected_even_without_rescaling():
    est = estimator()
    rgb = render_square(NET, F_TRAIN, Z_TRUE, (191.5, 63.5))
    for rescale in (True, False):
        with pytest.raises(ValueError, match="not calibrated"):
            est.estimate(rgb, np.zeros((3, 3)), focal_rescale=rescale)


def test_without_K_the_training_focal_is_assumed_and_said_once(caplog):
    est = estimator()
    rgb = render_square(NET, 2 * F_TRAIN, Z_TRUE, (191.5, 63.5))
    with caplog.at_level(logging.INFO, logger="adu_depth_core.runtime.estimator"):
        d1, _ = est.estimate(rgb)
        d2, _ = est.estimate(rgb)
    said = [r for r in caplog.records if "no camera matrix" in r.getMessage()]
    assert len(said) == 1
    assert np.nanmedian(d1) == pytest.approx(Z_TRUE / 2, rel=0.02)  # factor 1: the raw output
    np.testing.assert_array_equal(d1, d2)


def test_model_without_training_focal_warns_and_does_not_rescale(caplog):
    est = estimator(focal_px=None)
    rgb = render_square(NET, 2 * F_TRAIN, Z_TRUE, (191.5, 63.5))
    with caplog.at_level(logging.WARNING, logger="adu_depth_core.runtime.estimator"):
        depth, _ = est.estimate(rgb, K_of(2 * F_TRAIN))
        est.estimate(rgb, K_of(2 * F_TRAIN))
    assert sum("records no training focal" in r.getMessage() for r in caplog.records) == 1
    assert np.nanmedian(depth) == pytest.approx(Z_TRUE / 2, rel=0.02)
