"""Stereo-aware transforms: crops keep image, depth and K aligned; the flip swaps views and keeps the depth
on the (new) left view; rotation keeps K and depth values; colour jitter is identical on both views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, split_seed
from adu_depth_core.data.transforms import (
    StereoPipeline,
    color_jitter,
    crop,
    hflip_stereo,
    kb_crop,
    make_sample,
    random_crop,
    rotate,
    to_tensors,
    warp_depth_to_right,
)


def coded_sample(h: int = 375, w: int = 1242) -> dict:
    """Images and depth that encode their own pixel coordinates, so any misalignment shows."""
    v, u = np.mgrid[0:h, 0:w]
    left = np.stack([u % 256, v % 256, (u // 256) * 16 + v // 256], axis=2).astype(np.uint8)
    right = left[:, :, ::-1].copy()
    depth = (1.0 + v * 0.01 + u * 0.0001).astype(np.float32)  # decodable: u = (d − 1 − 0.01 v)/1e-4
    depth[::7] = 0  # some pixels without measurement
    K = np.array([[700.0, 0, 600.3], [0, 700.0, 170.2], [0, 0, 1]])
    return make_sample(left, right, depth, K, 0.54, depth_dense=depth * 2, id="coded")


def decode(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of the original pixel every output pixel came from, read from the left image."""
    img = np.rint(sample["left"] * 255).astype(int)
    return img[..., 0] + 256 * (img[..., 2] // 16), img[..., 1] + 256 * (img[..., 2] % 16)


@pytest.fixture(scope="module")
def rig_frame():
    return SyntheticRig(RigConfig(), (96, 320)).render(split_seed("val", 3))


def rig_sample(frame, with_right_depth: bool = True) -> dict:
    return make_sample(
        frame.left,
        frame.right,
        frame.lidar_depth,
        frame.K,
        frame.baseline,
        depth_dense=frame.depth,
        depth_dense_right=frame.right_depth if with_right_depth else None,
        id="rig",
    )


def test_kb_crop_keeps_image_depth_and_K_aligned():
    s = coded_sample()
    c = kb_crop(s)
    assert c["left"].shape[:2] == (352, 1216) and c["depth"].shape == (352, 1216)
    top, left = 375 - 352, (1242 - 1216) // 2
    u, v = decode(c)
    assert (u == np.arange(1216)[None, :] + left).all() and (v == np.arange(352)[:, None] + top).all()
    np.testing.assert_array_equal(c["depth"], s["depth"][top:, left : left + 1216])
    np.testing.assert_array_equal(c["depth_dense"], s["depth_dense"][top:, left : left + 1216])
    np.testing.assert_array_equal(c["right"], s["right"][top:, left : left + 1216])
    assert c["K"][0, 2] == pytest.approx(600.3 - left) and c["K"][1, 2] == pytest.approx(170.2 - top)
    assert c["K"][0, 0] == 700.0
    assert kb_crop(c) is c  # already the benchmark crop
    small = coded_sample(96, 320)
    assert kb_crop(small) is small  # not KITTI-sized: untouched


def test_random_crop_keeps_alignment_and_is_skipped_at_crop_size():
    s = kb_crop(coded_sample())
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(5):
        c = random_crop(s, (352, 1120), rng)
        u, v = decode(c)
        left = int(u[0, 0])
        offsets.add(left)
        orig_left = left - (1242 - 1216) // 2
        np.testing.assert_array_equal(c["depth"], s["depth"][:, orig_left : orig_left + 1120])
        assert c["K"][0, 2] == pytest.approx(s["K"][0, 2] - orig_left)
        assert (v[:, 0] == np.arange(352) + 23).all()
    assert len(offsets) > 1
    assert random_crop(s, (352, 1216), rng) is s
    with pytest.raises(ValueError, match="larger than"):
        random_crop(s, (400, 1216), rng)


def test_crop_rejects_boxes_outside_the_image():
    with pytest.raises(ValueError, match="does not fit"):
        crop(coded_sample(96, 320), 50, 0, 64, 320)


def test_flip_swaps_views_and_keeps_depth_on_the_new_left(rig_frame):
    s = rig_sample(rig_frame)
    f = hflip_stereo(s)
    w = s["left"].shape[1]
    np.testing.assert_array_equal(f["left"], s["right"][:, ::-1])
    np.testing.assert_array_equal(f["right"], s["left"][:, ::-1])
    np.testing.assert_array_equal(f["depth_dense"], rig_frame.right_depth[:, ::-1])
    assert f["K"][0, 2] == pytest.approx(w - 1 - s["K"][0, 2]) and f["baseline"] == s["baseline"]
    # geometry of the flipped pair is that of a real rectified pair: right view at +B again
    visible = f["depth_dense"] > 0
    disp = f["K"][0, 0] * f["baseline"] / np.where(visible, f["depth_dense"], 1.0)
    u = np.arange(w)[None, :] - np.rint(disp).astype(int)
    rows = np.arange(u.shape[0])[:, None].repeat(w, 1)
    ok = visible & (u >= 0) & (u < w)
    err = np.abs(f["right"][rows[ok], u[ok]] - f["left"][ok]).mean(axis=1)
    assert np.median(err) < 0.03  # photo-consistent (rounded disparity, sensor noise)
    # flipping twice restores the sample exactly
    back = hflip_stereo(f)
    for key in ("left", "right", "depth_dense", "depth_dense_right", "K"):
        np.testing.assert_array_equal(back[key], s[key])


def test_flip_warps_the_sparse_gt_into_the_right_view(rig_frame):
    s = rig_sample(rig_frame, with_right_depth=False)
    f = hflip_stereo(s)
    truth = rig_frame.right_depth[:, ::-1]
    pts = f["depth"] > 0
    rel = np.abs(f["depth"][pts] - truth[pts]) / truth[pts]
    assert pts.sum() > 0.8 * (s["depth"] > 0).sum()
    assert np.median(rel) < 0.01 and (rel < 0.05).mean() > 0.9


def test_warp_depth_to_right_shifts_by_the_disparity():
    depth = np.zeros((4, 100), np.float32)
    depth[:, 60:70] = 10.0
    depth[:, 30] = 5.0
    out = warp_depth_to_right(depth, fx=100.0, baseline=0.5)  # disparities 5 px and 10 px
    np.testing.assert_array_equal(np.nonzero(out[0])[0], list(range(20, 21)) + list(range(55, 65)))
    assert out[0, 55] == 10.0 and out[0, 20] == 5.0
    occl = np.zeros((1, 50), np.float32)
    occl[0, 20], occl[0, 35] = 10.0, 2.5  # disparities 5 and 20 px: both land on u = 15, the nearer wins
    assert warp_depth_to_right(occl, 100.0, 0.5)[0, 15] == 2.5


def test_rotation_is_about_the_principal_point_and_keeps_K_and_depth_values():
    h, w = 31, 41
    depth = np.zeros((h, w), np.float32)
    depth[15, 30] = 7.5  # 10 px right of the principal point (20, 15)
    img = np.zeros((h, w, 3), np.uint8)
    K = np.array([[50.0, 0, 20.0], [0, 50.0, 15.0], [0, 0, 1]])
    s = make_sample(img, img, depth, K, 0.5, id="rot")
    r = rotate(s, 90.0)  # counter-clockwise on screen: right of centre -> above centre
    assert r["depth"][5, 20] == 7.5 and (r["depth"] > 0).sum() == 1
    np.testing.assert_array_equal(r["K"], K)
    sr = rotate(coded_sample(96, 320), 1.0)
    assert set(np.unique(sr["depth"])) <= set(np.unique(coded_sample(96, 320)["depth"]))  # nearest only


def test_color_jitter_is_identical_on_both_views_and_follows_the_formula():
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    s = make_sample(img, img, np.ones((8, 8)), np.diag([10.0, 10.0, 1.0]), 0.5, id="c")
    j = color_jitter(s, 1.1, 0.9, [1.0, 1.05, 0.95])
    np.testing.assert_array_equal(j["left"], j["right"])
    expect = np.clip((img / 255.0) ** 1.1 * 0.9 * np.array([1.0, 1.05, 0.95]), 0, 1)
    np.testing.assert_allclose(j["left"], expect, atol=1e-6)


def test_transforms_never_modify_their_input(rig_frame):
    s = rig_sample(rig_frame, with_right_depth=False)
    before = {k: v.copy() for k, v in s.items() if isinstance(v, np.ndarray)}
    pipe = StereoPipeline.build(mode="train", crop_size=(64, 256), flip_prob=1.0, color_prob=1.0)
    pipe(s, 0)
    rotate(s, 1.0)
    hflip_stereo(s)
    for k, v in before.items():
        np.testing.assert_array_equal(s[k], v)


def test_to_tensors_follows_the_sample_contract(rig_frame):
    t = to_tensors(rig_sample(rig_frame))
    assert set(t) == {"left", "right", "depth", "depth_dense", "K", "baseline", "focal", "has_gt", "id"}
    assert t["left"].shape == (3, 96, 320) and t["left"].dtype == torch.float32
    assert 0.0 <= t["left"].min() and t["left"].max() <= 1.0
    assert t["depth"].shape == (1, 96, 320) and t["K"].shape == (3, 3) and t["K"].dtype == torch.float32
    assert t["baseline"].shape == () and t["focal"].item() == t["K"][0, 0].item()


def test_pipeline_is_reproducible_per_epoch_and_index(rig_frame):
    s = rig_sample(rig_frame)
    pipe = StereoPipeline.build(mode="train", crop_size=(64, 256), seed=3)
    a, b = pipe(s, 5), pipe(s, 5)
    assert torch.equal(a["left"], b["left"]) and torch.equal(a["K"], b["K"])
    outs = set()
    for epoch in range(6):
        pipe.epoch = epoch
        outs.add(pipe(s, 5)["left"].sum().item())
    assert len(outs) > 1
    ev = StereoPipeline.build(mode="eval", crop_size=(64, 256))
    e = ev(s, 0)
    assert e["left"].shape == (3, 64, 256) and e["K"][0, 2].item() == pytest.approx(s["K"][0, 2] - 32)
    with pytest.raises(ValueError, match="mode must be one of"):
        StereoPipeline.build(mode="test")
    with pytest.raises(ValueError, match="augment=True needs mode='train'"):
        StereoPipeline.build(mode="eval", augment=True)
