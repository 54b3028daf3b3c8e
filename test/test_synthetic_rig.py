"""The synthetic stereo rig: determinism, disjoint split seeds, real stereo geometry, analytic ground
depth, scene independent of focal/size, LiDAR-like GT, the scene variations the experiments need."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import cv2
import numpy as np
import pytest
import torch

from adu_depth_core.config import from_dict
from adu_depth_core.data.config import DataConfig
from adu_depth_core.data.factory import build_dataset, build_unlabeled_dataset
from adu_depth_core.data.synthetic import (
    SPLIT_BLOCK,
    RigConfig,
    SyntheticRig,
    SyntheticStereoDataset,
    rig_intrinsics,
    sample_scene,
    seed_split,
    split_seed,
)
from adu_depth_core.data.transforms import warp_depth_to_right
from adu_depth_core.geometry import backproject_depth, project_points

SIZE = (96, 320)


@pytest.fixture(scope="module")
def rig() -> SyntheticRig:
    return SyntheticRig(RigConfig(), SIZE)


@pytest.fixture(scope="module")
def frames(rig):
    return [rig.render(split_seed("test", i)) for i in range(3)]


def test_split_seeds_are_disjoint_and_invertible():
    ranges = {
        s: {split_seed(s, i) for i in list(range(500)) + [SPLIT_BLOCK - 1]} for s in ("train", "val", "test")
    }
    assert not ranges["train"] & ranges["val"] and not ranges["train"] & ranges["test"]
    assert not ranges["val"] & ranges["test"]
    assert split_seed("train", 0) == 0 and split_seed("val", 0) == SPLIT_BLOCK
    assert max(ranges["train"]) < min(ranges["val"]) <= max(ranges["val"]) < min(ranges["test"])
    for s in ("train", "val", "test"):
        assert seed_split(split_seed(s, 1234)) == (s, 1234)
    with pytest.raises(ValueError, match="index"):
        split_seed("train", SPLIT_BLOCK)  # would spill into val
    with pytest.raises(ValueError, match="index"):
        split_seed("val", -1)
    with pytest.raises(ValueError, match="split must be one of"):
        split_seed("validation", 0)


def test_same_seed_same_frame_and_seeds_differ(rig, frames):
    again = rig.render(frames[0].seed)
    for key in ("left", "right", "depth", "lidar_depth", "right_depth"):
        np.testing.assert_array_equal(getattr(again, key), getattr(frames[0], key))
    assert again.meta == frames[0].meta
    assert not np.array_equal(frames[0].left, frames[1].left)
    # a fresh rig object (new process-like state) gives the same frame
    np.testing.assert_array_equal(SyntheticRig(RigConfig(), SIZE).render(frames[0].seed).left, frames[0].left)


def test_frame_fields(frames):
    f = frames[0]
    h, w = SIZE
    assert f.left.dtype == np.uint8 and f.left.shape == (h, w, 3) and f.right.shape == (h, w, 3)
    assert f.depth.dtype == np.float32 and f.depth.shape == (h, w)
    assert f.lidar_depth.dtype == np.float32 and f.K.dtype == np.float64 and f.K.shape == (3, 3)
    assert f.baseline == pytest.approx(0.54)
    assert 0 < f.depth.max() <= 80.0 and (f.depth == 0).any()  # sky / beyond 80 m are 0
    assert (f.depth[-1] > 0).all()  # the road fills the bottom row


def test_kitti_like_intrinsics():
    K = rig_intrinsics((375, 1242))
    assert K[0, 0] == pytest.approx(721.5377) and K[1, 1] == pytest.approx(721.5377)
    assert K[0, 2] == pytest.approx(609.5593) and K[1, 2] == pytest.approx(172.854)
    K2 = rig_intrinsics((96, 320), fx_scale=1.5)
    assert K2[0, 0] == pytest.approx(721.5377 * 320 / 1242 * 1.5)
    assert SyntheticRig(RigConfig(fx_scale=0.6), (96, 320)).K[0, 0] == pytest.approx(
        721.5377 * 320 / 1242 * 0.6
    )


def test_ground_depth_matches_the_plane_analytically():
    cfg = RigConfig(num_boxes=(0, 0), num_poles=(0, 0), buildings=False)
    rig = SyntheticRig(cfg, SIZE)
    for seed in (11, 12):
        f = rig.render(seed)
        h_cam, pitch = f.meta["camera_height"], math.radians(f.meta["pitch_deg"])
        v, u = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
        x, y = (u - f.K[0, 2]) / f.K[0, 0], (v - f.K[1, 2]) / f.K[1, 1]
        dy = math.cos(pitch) * y + math.sin(pitch)  # world "down" component of the ray (x, y, 1)
        with np.errstate(divide="ignore"):
            t = np.where(dy > 0, h_cam / dy, np.inf)
        on_road = np.isfinite(t) & (np.abs(x * t) < 2.9) & (t < 75)  # road is >= 3 m wide each side
        assert on_road.sum() > 1000
        np.testing.assert_allclose(f.depth[on_road], t[on_road], rtol=1e-4)


def _photometric_error(f, baseline: float, visible: np.ndarray) -> float:
    """Mean |left − right warped into the left with disparity fx·B/Z| over `visible` pixels."""
    h, w = f.depth.shape
    disp = np.where(f.depth > 0, f.K[0, 0] * baseline / np.maximum(f.depth, 1e-6), 0.0)
    map_x = (np.arange(w)[None, :] - disp).astype(np.float32)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    warped = cv2.remap(f.right.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
    return float(np.abs(warped - f.left.astype(np.float32)).mean(axis=2)[visible].mean())


def _visible_in_both(f) -> np.ndarray:
    """Left pixels seen by the right camera (its depth there agrees), away from depth edges."""
    h, w = f.depth.shape
    disp = np.where(f.depth > 0, f.K[0, 0] * f.baseline / np.maximum(f.depth, 1e-6), 0.0)
    ur = np.rint(np.arange(w)[None, :] - disp).astype(int)
    inside = (ur >= 1) & (ur < w - 1) & (f.depth > 0)
    rd = f.right_depth[np.arange(h)[:, None].repeat(w, 1), np.clip(ur, 0, w - 1)]
    ok = inside & (np.abs(rd - f.depth) < 0.02 * f.depth)
    edges = np.zeros((h, w), np.uint8)
    edges[:, 1:] |= np.abs(np.diff(f.depth, axis=1)) > 0.05 * f.depth[:, 1:]
    edges[1:] |= np.abs(np.diff(f.depth, axis=0)) > 0.05 * f.depth[1:]
    return ok & ~cv2.dilate(edges, np.ones((5, 5), np.uint8)).astype(bool)


def test_stereo_geometry_is_real(frames):
    for f in frames:
        visible = _visible_in_both(f)
        assert visible.mean() > 0.4
        good = _photometric_error(f, f.baseline, visible)
        wrong = _photometric_error(f, 0.6 * f.baseline, visible)
        none = _photometric_error(f, 0.0, visible)
        # the true baseline reproduces the left view up to sensor noise (σ = 1 grey level per view)
        assert good < 2.5, good
        assert wrong > 2 * good and none > 2 * good, (good, wrong, none)


def test_right_depth_is_the_left_depth_seen_from_the_right(frames):
    f = frames[1]
    warped = warp_depth_to_right(f.depth, f.K[0, 0], f.baseline)
    both = (warped > 0) & (f.right_depth > 0)
    rel = np.abs(warped[both] - f.right_depth[both]) / f.right_depth[both]
    assert both.mean() > 0.5 and np.median(rel) < 0.01 and (rel < 0.05).mean() > 0.9


def test_scene_depends_only_on_the_seed_not_focal_or_size():
    seed = split_seed("val", 7)
    a = SyntheticRig(RigConfig(), (96, 320)).render(seed)
    b = SyntheticRig(RigConfig(fx_scale=1.5), (64, 256)).render(seed)
    assert a.meta == b.meta
    # points seen by the long-focal camera land on the same surfaces in the reference camera
    pts, _ = backproject_depth(b.depth, b.K)
    reproj = project_points(pts, a.K, *a.depth.shape)
    # compare where a's depth is locally smooth (rounding to the nearest pixel then cannot matter)
    lo = cv2.erode(a.depth, np.ones((3, 3), np.uint8))
    hi = cv2.dilate(a.depth, np.ones((3, 3), np.uint8))
    smooth = (lo > 0) & (hi - lo < 0.01 * a.depth)
    both = (reproj > 0) & smooth
    rel = np.abs(reproj[both] - a.depth[both]) / a.depth[both]
    assert both.sum() > 1000
    assert np.median(rel) < 0.003 and (rel < 0.01).mean() > 0.95, (np.median(rel), (rel < 0.01).mean())


def test_lidar_gt_is_a_kitti_like_subset_of_the_dense_depth(rig, frames):
    for f in frames:
        hits = f.lidar_depth > 0
        np.testing.assert_array_equal(f.lidar_depth[hits], f.depth[hits])
        assert 0.02 < hits.mean() < 0.07, hits.mean()  # KITTI's projected scans cover ~5 % of pixels
        # nothing above the highest beam (+2 deg): rays of LiDAR pixels point at most 2 deg up
        v, u = np.nonzero(hits)
        pitch = math.radians(f.meta["pitch_deg"])
        x, y = (u - f.K[0, 2]) / f.K[0, 0], (v - f.K[1, 2]) / f.K[1, 1]
        up = -(math.cos(pitch) * y + math.sin(pitch)) / np.sqrt(x * x + y * y + 1)
        pixel_angle = 1.0 / f.K[1, 1]
        assert np.degrees(np.arcsin(up)).max() <= 2.0 + np.degrees(pixel_angle)
        # every point lies on a beam: its ray's elevation is within about half a pixel of a beam's
        beams = np.radians(np.linspace(-24.8, 2.0, 64))
        off = np.abs(np.arcsin(up)[:, None] - beams[None, :]).min(axis=1)
        assert off.max() < 0.75 * pixel_angle
        # scan lines: every LiDAR row holds points spread across the width
        rows = np.unique(v)
        assert len(rows) <= rig.config.lidar_beams
    mask = rig.lidar_mask(0.0, np.random.default_rng(0))
    assert 0.04 < mask.mean() < 0.06  # the sample pattern itself meets the density target


def test_scene_variations_weaken_monocular_shortcuts():
    cfg = RigConfig()  # the vehicle rig: one mounting, the scene varies
    scenes = [sample_scene(split_seed("train", i), cfg) for i in range(60)]
    heights = [s.camera_height for s in scenes]
    pitches = [math.degrees(s.pitch) for s in scenes]
    assert set(heights) == {1.65} and -0.3 <= min(pitches) < max(pitches) <= 0.3
    varied = [sample_scene(split_seed("train", i), RigConfig.preset("varied_mount")) for i in range(60)]
    v_heights, v_pitches = [s.camera_height for s in varied], [math.degrees(s.pitch) for s in varied]
    assert 1.0 <= min(v_heights) and max(v_heights) <= 2.6 and max(v_heights) - min(v_heights) > 1.0
    assert max(v_pitches) - min(v_pitches) > 5.0
    boxes = sum(s.counts["boxes"] for s in scenes)
    lifted = sum(s.counts["lifted"] for s in scenes)
    assert 0.35 < lifted / boxes < 0.65
    assert (
        min(s.surf["scale"].min() for s in scenes) < 0.5 and max(s.surf["scale"].max() for s in scenes) > 2.0
    )
    easy = [sample_scene(split_seed("train", i), RigConfig.preset("easy_mono")) for i in range(20)]
    assert {s.camera_height for s in easy} == {1.65} and {s.pitch for s in easy} == {0.0}
    assert sum(s.counts["lifted"] for s in easy) == 0


def test_rig_config_validation_names_the_field():
    with pytest.raises(ValueError, match="rig.camera_height"):
        RigConfig(camera_height=(2.0, 1.0)).validate()
    with pytest.raises(ValueError, match="rig.lifted_fraction"):
        RigConfig(lifted_fraction=1.5).validate()
    with pytest.raises(ValueError, match="rig.baseline"):
        SyntheticRig(RigConfig(baseline=0.0), SIZE)
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(RigConfig, {"baselin": 0.5})
    with pytest.raises(ValueError, match="rig preset"):
        RigConfig.preset("hard")
    with pytest.raises(ValueError, match="HxW"):
        SyntheticRig(RigConfig(), "96-320")
    assert from_dict(RigConfig, {"pitch_deg": [0, 1]}).pitch_deg == (0.0, 1.0)
    assert dataclasses.replace(RigConfig(), fx_scale=0.6).fx_scale == 0.6


def test_synthetic_dataset_sample_contract(frames):
    ds = SyntheticStereoDataset(3, SIZE, "test")
    s = ds[0]
    f = frames[0]
    assert s["id"] == f"seed-{f.seed:07d}"
    assert s["left"].shape == (3, *SIZE) and s["left"].dtype == torch.float32
    np.testing.assert_array_equal((s["left"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), f.left)
    np.testing.assert_array_equal(
        (s["right"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), f.right
    )
    np.testing.assert_array_equal(s["depth"][0].numpy(), f.lidar_depth)
    np.testing.assert_array_equal(s["depth_dense"][0].numpy(), f.depth)
    assert s["focal"].item() == pytest.approx(f.K[0, 0]) and s["K"].dtype == torch.float32
    assert s["baseline"].item() == pytest.approx(0.54) and s["has_gt"] is True
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["left"].shape == (2, 3, *SIZE) and batch["depth_dense"].shape == (2, 1, *SIZE)
    train = SyntheticStereoDataset(2, SIZE, "train", mode="train", crop_size=(64, 256))
    t = train[1]
    assert t["left"].shape == (3, 64, 256) and t["depth_dense"].shape == (1, 64, 256)
    with pytest.raises(ValueError, match="index"):
        SyntheticStereoDataset(2, SIZE, "train", first_index=SPLIT_BLOCK - 1)


def test_dense_training_labels_reach_only_the_labeled_training_frames():
    """`data.train_labels: dense` (the perfect-teacher ceiling) labels every training pixel with the rig's
    dense depth; validation and unlabeled frames keep the LiDAR-like scan, so scores stay comparable."""
    data = from_dict(DataConfig, {
        "train_frames": 2, "val_frames": 1, "render_size": list(SIZE), "train_labels": "dense",
        "augment": {"enabled": False}, "unlabeled": {"batch_size": 1, "frames": 2, "first_index": 1000},
    })
    train, val = build_dataset(data, "train"), build_dataset(data, "val")
    t, v = train[0], val[0]
    np.testing.assert_array_equal(t["depth"].numpy(), t["depth_dense"].numpy())
    assert (t["depth"] > 0).float().mean() > 0.5  # the scan labels ~5 % of the pixels
    scan = SyntheticRig(RigConfig(), SIZE).render(split_seed("val", 0)).lidar_depth
    np.testing.assert_array_equal(v["depth"][0].numpy(), scan)
    u = build_unlabeled_dataset(data)[0]
    assert (u["depth"] > 0).float().mean() < 0.1
    lidar = build_dataset(dataclasses.replace(data, train_labels="lidar"), "train")[0]
    scanned = lidar["depth"] > 0
    assert scanned.float().mean() < 0.1
    np.testing.assert_array_equal(lidar["depth"][scanned].numpy(), t["depth"][scanned].numpy())
    with pytest.raises(ValueError, match=r"train_labels: expected one of \['lidar', 'dense'\]"):
        from_dict(DataConfig, {"train_labels": "sparse"})
    with pytest.raises(ValueError, match="train_labels=dense needs the synthetic rig"):
        kitti = {"kind": "kitti", "root": "/x", "train_split": "/x/s.txt"}
        from_dict(DataConfig, {**kitti, "train_labels": "dense"})
    with pytest.raises(ValueError, match="labels: expected"):
        SyntheticStereoDataset(1, SIZE, "train", labels="semi")


# Digests of frames and scenes rendered by the single-module `data/synthetic.py` before it became a
# package (issue 15): the rig's output for a seed is a data format (training data, exported trees, pinned
# experiment numbers), so a refactor must leave every bit in place. Scenes are float64 draws (exact on
# any machine); frames use float32 numpy maths, pinned with numpy 2.4 on x86-64.
_PINNED_NUMPY = "2.4"
_SEEDS = (0, 7, 1_000_003, 2_000_011)  # train 0 and 7, val 3, test 11
_FRAME_DIGESTS = {
    "vehicle": ("003df21cf9b1b651", "f8d63b358fa1f255", "0196e5f0823c58be", "82634a6fe067ed25"),
    "varied_mount": ("35b5ed9899f8d9d7", "424e8a27144f5fa4", "6f36ba09602e94f1", "56731647eb9d2ec5"),
    "easy_mono": ("08c7a13bb0cbd8a2", "8a39a20307099991", "94323cf5b17d4f7a", "2487967e20d8df5a"),
}
_SCENE_DIGESTS = {
    "vehicle": ("2d2d797eeded4279", "1922f4441683ced5", "01788a29d6eaa243", "7d33eb83a31bb334"),
    "varied_mount": ("603b3b56b863249e", "01b9225d084cd8a4", "0d05035fc2134b4c", "2171948c794bfb7c"),
    "easy_mono": ("f8b1f2f0ad626be9", "0b0e683593288ba6", "50fa5067bc20765b", "c2482bcb3bd2b71b"),
}


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("preset", sorted(_SCENE_DIGESTS))
def test_scenes_of_a_seed_are_pinned(preset):
    for seed, want in zip(_SEEDS, _SCENE_DIGESTS[preset]):
        scene = sample_scene(seed, RigConfig.preset(preset))
        h = hashlib.sha256()
        for k in sorted(scene.surf):
            h.update(np.ascontiguousarray(scene.surf[k]).tobytes())
        h.update(repr((scene.camera_height, scene.pitch, scene.ambient, sorted(scene.road.items()),
                       scene.counts)).encode())  # fmt: skip
        for a in (scene.sun, scene.sky_horizon, scene.sky_zenith, scene.waves):
            h.update(np.ascontiguousarray(a).tobytes())
        assert h.hexdigest()[:16] == want, f"{preset} seed {seed}: the scene changed"


@pytest.mark.parametrize("preset", sorted(_FRAME_DIGESTS))
def test_rendered_frames_of_a_seed_are_pinned(preset):
    if not np.__version__.startswith(_PINNED_NUMPY + "."):
        pytest.skip(f"frame digests were pinned with numpy {_PINNED_NUMPY}; this is {np.__version__}")
    rig = SyntheticRig(RigConfig.preset(preset), (48, 160))
    for seed, want in zip(_SEEDS, _FRAME_DIGESTS[preset]):
        f = rig.render(seed)
        got = _digest([f.left, f.right, f.depth, f.lidar_depth, f.right_depth])
        assert got == want, f"{preset} seed {seed}: the rendered frame changed"
