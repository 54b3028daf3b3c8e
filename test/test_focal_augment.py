"""Focal augmentation (`transforms.focal_zoom` / `random_focal_rescale`, `data.augment.focal_scale`):
a zoom is a longer lens at the same place, so K scales by s, depth values stay, both views zoom alike,
and the zoomed sample is the same scene rendered with s times the focal. Off unless configured."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from adu_depth_core.config import read_yaml
from adu_depth_core.data.factory import build_dataset
from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, split_seed
from adu_depth_core.data.transforms import (
    StereoPipeline,
    check_focal_scale,
    focal_zoom,
    make_sample,
    random_crop,
    random_focal_rescale,
)
from adu_depth_core.geometry import backproject_depth, crop_intrinsics, scale_intrinsics
from adu_depth_core.train.config import AugmentConfig, DataConfig, load_train_config

SIZE = (96, 320)
SEED = split_seed("test", 5)
RECIPES = Path(__file__).resolve().parent.parent / "training" / "configs"


def rig_sample(fx_scale: float = 1.0, seed: int = SEED) -> dict:
    # the scene the error margins below were calibrated on (any scene checks the geometry)
    f = SyntheticRig(RigConfig.preset("varied_mount", fx_scale=fx_scale), SIZE).render(seed)
    return make_sample(
        f.left,
        f.right,
        f.lidar_depth,
        f.K,
        f.baseline,
        depth_dense=f.depth,
        depth_dense_right=f.right_depth,
        id="rig",
    )


@pytest.fixture(scope="module")
def sample() -> dict:
    return rig_sample()


@pytest.mark.parametrize("s", [0.6, 1.0, 1.37, 1.5])
def test_K_scales_exactly(sample, s):
    z = focal_zoom(sample, s, rng=np.random.default_rng(0))
    K, Kz = sample["K"], z["K"]
    assert Kz[0, 0] == pytest.approx(s * K[0, 0], rel=1e-12)
    assert Kz[1, 1] == pytest.approx(s * K[1, 1], rel=1e-12)
    # the principal point moves exactly as scale-then-crop says, for an integer window offset
    top = (K[1, 2] + 0.5) * s - 0.5 - Kz[1, 2]
    left = (K[0, 2] + 0.5) * s - 0.5 - Kz[0, 2]
    assert top == pytest.approx(round(top), abs=1e-9) and left == pytest.approx(round(left), abs=1e-9)
    np.testing.assert_allclose(Kz, crop_intrinsics(scale_intrinsics(K, s, s), round(top), round(left)))
    assert z["left"].shape == sample["left"].shape and z["left"].dtype == np.float32
    assert z["baseline"] == sample["baseline"]


def test_tensor_focal_follows_the_zoom(sample):
    pipe = StereoPipeline.build(mode="train", crop_size=SIZE, focal_scale=(0.6, 1.6), flip_prob=0.0)
    f0 = sample["K"][0, 0]
    focals = [float(pipe(sample, i)["focal"]) for i in range(12)]
    ks = [pipe(sample, i)["K"] for i in range(3)]
    assert all(0.6 * f0 - 1e-3 <= f <= 1.6 * f0 + 1e-3 for f in focals)
    assert len({round(f, 3) for f in focals}) > 6  # random per index
    assert all(float(k[0, 0]) == pytest.approx(float(k[1, 1])) for k in ks)
    again = [float(pipe(sample, i)["focal"]) for i in range(12)]
    assert again == focals  # reproducible per (seed, epoch, index)


def test_lidar_point_projects_onto_its_own_depth_after_zoom(sample):
    """A 3-D LiDAR point, back-projected with the old K and projected with the new one, lands on a
    pixel of the zoomed map holding exactly its depth (nearest sampling, s > 1)."""
    for s in (1.25, 1.5):
        z = focal_zoom(sample, s, rng=np.random.default_rng(3))
        P, _ = backproject_depth(sample["depth"], sample["K"])
        Kz = z["K"]
        u = np.rint(P[:, 0] / P[:, 2] * Kz[0, 0] + Kz[0, 2]).astype(int)
        v = np.rint(P[:, 1] / P[:, 2] * Kz[1, 1] + Kz[1, 2]).astype(int)
        inside = (u >= 0) & (u < SIZE[1]) & (v >= 0) & (v < SIZE[0])
        assert inside.sum() > 200
        np.testing.assert_array_equal(z["depth"][v[inside], u[inside]], P[inside, 2].astype(np.float32))


@pytest.mark.parametrize("s", [0.6, 1.5])
def test_zoom_is_the_scene_through_a_longer_lens(sample, s):
    """Zooming the 1x render by s matches the same scene rendered with fx_scale = s: every pixel of the
    s-focal render, mapped into the zoomed image through the two K's, finds the same colour and depth.
    A K off by 5 % (or a 2-px principal-point error) makes both errors much larger."""
    truth = rig_sample(fx_scale=s)
    z = focal_zoom(sample, s)
    vv, uu = np.mgrid[0 : SIZE[0], 0 : SIZE[1]].astype(np.float64)
    edges = np.abs(cv2.Sobel(truth["left"].mean(2), cv2.CV_32F, 1, 0)) > 0.1

    def errors(K):
        Kt = truth["K"]
        mu = ((uu - Kt[0, 2]) / Kt[0, 0] * K[0, 0] + K[0, 2]).astype(np.float32)
        mv = ((vv - Kt[1, 2]) / Kt[1, 1] * K[1, 1] + K[1, 2]).astype(np.float32)
        img = cv2.remap(z["left"], mu, mv, cv2.INTER_LINEAR)
        depth = cv2.remap(z["depth_dense"], mu, mv, cv2.INTER_NEAREST)
        m = (depth > 0) & (truth["depth_dense"] > 0)
        rel = np.abs(depth - truth["depth_dense"])[m] / truth["depth_dense"][m]
        return float(np.abs(img - truth["left"])[m & edges].mean()), float(rel.mean())

    img_err, depth_err = errors(z["K"])
    assert img_err < 0.05 and depth_err < 0.03
    for wrong in (focal_zoom(sample, s * 1.05)["K"], z["K"] + _shift(2.0)):
        bad_img, bad_depth = errors(wrong)
        assert bad_img > 1.4 * img_err and bad_depth > 1.8 * depth_err


def _shift(px: float) -> np.ndarray:
    out = np.zeros((3, 3))
    out[0, 2] = px
    return out


@pytest.mark.parametrize("s", [0.6, 0.8, 1.3, 1.6])
def test_depth_values_unchanged(sample, s):
    z = focal_zoom(sample, s, rng=np.random.default_rng(1))
    for key in ("depth", "depth_dense", "depth_dense_right"):
        vals = z[key][z[key] > 0]
        assert vals.size > 0
        assert np.isin(vals, sample[key][sample[key] > 0]).all()  # only original values, none invented
        assert z[key].dtype == np.float32


def test_zoom_out_pads_with_zero_image_and_no_depth(sample):
    z = focal_zoom(sample, 0.6)
    # 320·0.6 = 192 columns and 96·0.6 = 57.6 rows of content, centred
    assert np.all(z["left"][:, :60] == 0) and np.all(z["left"][:, -60:] == 0)
    assert np.all(z["depth_dense"][:, :60] == 0) and np.all(z["depth"][:18] == 0)
    assert z["left"][:, 70:250].mean() > 0.05


def test_both_views_zoomed_identically():
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    depth = rng.uniform(2, 50, SIZE).astype(np.float32)
    K = np.array([[190.0, 0, 157.3], [0, 190.0, 44.1], [0, 0, 1]])
    s0 = make_sample(
        left, left[:, :, ::-1], depth, K, 0.54, depth_dense=depth, depth_dense_right=depth, id="x"
    )
    for s in (0.7, 1.45):
        z = random_focal_rescale(s0, np.random.default_rng(7), (s, s))
        np.testing.assert_array_equal(z["right"], z["left"][:, :, ::-1])
        np.testing.assert_array_equal(z["depth_dense_right"], z["depth_dense"])
        assert z["baseline"] == 0.54


def test_unit_zoom_is_a_plain_crop():
    rig = SyntheticRig(RigConfig(), (128, 384)).render(SEED)
    s0 = make_sample(rig.left, rig.right, rig.lidar_depth, rig.K, rig.baseline, depth_dense=rig.depth, id="x")
    zoomed = random_focal_rescale(s0, np.random.default_rng(4), (1.0, 1.0), SIZE)
    rng = np.random.default_rng(4)
    cropped = random_crop(s0, SIZE, rng)
    for key in ("left", "depth", "depth_dense"):
        np.testing.assert_allclose(zoomed[key], cropped[key], atol=1e-6)
    np.testing.assert_allclose(zoomed["K"], cropped["K"])


def test_off_by_default(sample):
    assert AugmentConfig().focal_scale is None
    assert StereoPipeline().focal_scale is None
    assert StereoPipeline.build(mode="train").focal_scale is None
    # an eval pipeline never zooms, whatever it is given
    assert StereoPipeline.build(mode="eval", focal_scale=(0.5, 2.0)).focal_scale is None
    plain = StereoPipeline.build(mode="train", crop_size=SIZE)(sample, 0)
    assert float(plain["focal"]) == pytest.approx(sample["K"][0, 0])
    for recipe in sorted(RECIPES.glob("*.yaml")):
        assert read_yaml(recipe)["data"].get("augment", {}).get("focal_scale") is None, recipe.name


def test_config_reaches_the_training_pipeline_only():
    data = DataConfig(train_frames=2, val_frames=1, test_frames=1, render_size=SIZE)
    assert build_dataset(data, "train", seed=0).pipeline.focal_scale is None
    zoom = dataclasses.replace(data, augment=AugmentConfig(focal_scale=(0.6, 1.6)))
    train = build_dataset(zoom, "train", seed=0)
    assert train.pipeline.focal_scale == (0.6, 1.6)
    assert build_dataset(zoom, "val", seed=0).pipeline.focal_scale is None
    off = dataclasses.replace(data, augment=AugmentConfig(enabled=False, focal_scale=(0.6, 1.6)))
    assert build_dataset(off, "train", seed=0).pipeline.focal_scale is None
    focals = {round(float(train[i]["focal"]), 2) for i in range(2)}
    assert all(0.6 * 185.9 <= f <= 1.6 * 185.91 for f in focals)


@pytest.mark.parametrize(
    "value",
    ["[1.6, 0.6]", "[0, 1.5]", "[-1, 1]", "[0.5, .inf]", "[1.0, 2.0, 3.0]", "[1.0]"],
)
def test_config_validation_names_the_key(value):
    with pytest.raises(ValueError, match=r"data\.augment\.focal_scale"):
        load_train_config(RECIPES / "synthetic_teacher.yaml", [f"data.augment.focal_scale={value}"])


def test_config_accepts_a_range():
    recipe = RECIPES / "synthetic_teacher.yaml"
    for value, expected in (("[0.6, 1.6]", (0.6, 1.6)), ("[1.2, 1.2]", (1.2, 1.2))):
        cfg = load_train_config(recipe, [f"data.augment.focal_scale={value}"])
        assert tuple(cfg.data.augment.focal_scale) == expected
    assert load_train_config(recipe).data.augment.focal_scale is None


@pytest.mark.parametrize("value", [(2.0, 1.0), (0.0, 1.0), (1.0, float("nan")), (1.0,), "ab", 3.0])
def test_direct_validation(value):
    with pytest.raises(ValueError, match="focal_scale"):
        check_focal_scale(value)
    with pytest.raises(ValueError, match="focal_scale"):
        StereoPipeline.build(mode="train", focal_scale=value)


def test_zoom_factor_must_be_positive(sample):
    with pytest.raises(ValueError, match="zoom factor"):
        focal_zoom(sample, 0.0)
