"""RosbagStereoDataset on real rosbag2 files written by the project's writers from synthetic rig frames:
rectified and raw (distorted, rotated) stereo, depth-image and LiDAR GT, pairing, cache, splits, errors."""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data import rosbag_dataset as rd
from adu_depth_core.data import rosbag_io as rb
from adu_depth_core.data.config import DataConfig, RosbagConfig
from adu_depth_core.data.rosbag_dataset import RosbagStereoDataset
from adu_depth_core.data.synthetic import SyntheticRig
from adu_depth_core.geometry import backproject_depth, rigid_transform, scale_intrinsics, transform_points

H, W, N = 48, 160, 8
RIG = SyntheticRig(size=(H, W))
K = RIG.K
B = RIG.config.baseline
PERIOD_NS = 100_000_000
MARGIN = 8  # px: rectified pixels this close to the border may map outside the raw image


def cfg(**kw) -> RosbagConfig:
    """The recording settings for the test bags: no GT source and no cache unless given."""
    return RosbagConfig(**{"lidar_topic": None, "cache_dir": None, **kw})


def stamp(i: int) -> int:
    return rb.DEFAULT_START_NS + i * PERIOD_NS


def _rot(rx: float, ry: float, rz: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([rx, ry, rz], dtype=np.float64))[0]


def _raw_k(scale: float, dcx: float, dcy: float) -> np.ndarray:
    Kr = K.copy()
    Kr[0, 0] *= scale
    Kr[1, 1] *= scale
    Kr[0, 2] += dcx
    Kr[1, 2] += dcy
    return Kr


# A made-up stereo calibration as camera_calibration would write it: raw K and plumb_bob D per camera, the
# rectifying rotations R, and the rectified projections P (shared K = the rig's, right Tx = −fx·B).
P_LEFT = np.hstack([K, np.zeros((3, 1))])
P_RIGHT = P_LEFT.copy()
P_RIGHT[0, 3] = -K[0, 0] * B
RAW_CAL = {
    "left": {"K": _raw_k(1.03, 1.5, -1.0), "D": np.array([-0.06, 0.012, 0.001, -0.0008, 0.0]),
             "R": _rot(0.012, -0.018, 0.006), "P": P_LEFT},
    "right": {"K": _raw_k(0.98, -2.0, 0.5), "D": np.array([-0.05, 0.01, -0.0012, 0.001, 0.0]),
              "R": _rot(-0.01, 0.015, -0.005), "P": P_RIGHT},
}


def raw_from_rect(rect: np.ndarray, cal: dict, interpolation: int) -> np.ndarray:
    """Synthesise a raw (distorted, unrotated) view: each raw pixel samples the rectified image where
    undistorting and rotating it lands (cv2.undistortPoints with R and P)."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    pts = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
    rect_pts = cv2.undistortPoints(pts, cal["K"], cal["D"], R=cal["R"], P=cal["P"][:, :3]).reshape(H, W, 2)
    mx, my = rect_pts[..., 0].astype(np.float32), rect_pts[..., 1].astype(np.float32)
    return cv2.remap(rect, mx, my, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0), rect_pts


def raw_depth_from_rect(depth_rect: np.ndarray, cal: dict) -> np.ndarray:
    """Depth along the raw left axis of what each raw pixel sees (nearest rectified pixel's point)."""
    near, rect_pts = raw_from_rect(depth_rect, cal, cv2.INTER_NEAREST)
    d = np.linalg.solve(K, np.stack([rect_pts[..., 0].ravel(), rect_pts[..., 1].ravel(), np.ones(H * W)]))
    z_raw = (cal["R"][:, 2] @ d).reshape(H, W) * near  # X_raw = Rᵀ·X_rect, X_rect = z_rect·d
    return np.where(near > 0, z_raw, 0.0).astype(np.float32)


def write_bag(out, frames, *, raw: bool = False, depth_encoding: str = "32FC1", storage: str = "mcap",
              tf: bool = True, skip=lambda topic, i: False, right_offset_ns: int = 0, gt_offset_ns: int = 0,
              left_info_k_zero: bool = False, right_width: int = W, rate_ns: int = PERIOD_NS,
              compressed: str | None = None, corrupt=lambda topic, i: False):
    """A rig bag like `write_rig_bag`, optionally with raw views and their stereo calibration, 16UC1 depth,
    no /tf_static, dropped messages, right stamps offset, an uncalibrated left camera_info or a narrower
    right camera, or CompressedImage views (`compressed` "jpeg"/"png", on `<image topic>/compressed`;
    `corrupt` truncates chosen payloads). The LiDAR cloud and extrinsic describe the *physical* left camera
    (raw frame)."""
    R_left = RAW_CAL["left"]["R"] if raw else np.eye(3)
    # X_raw = R_leftᵀ · X_rect, and the rig's LiDAR extrinsic is given in the rectified frame
    T_raw_from_lidar = rigid_transform(R_left.T, np.zeros(3)) @ rb.T_CAMERA_FROM_LIDAR
    t0 = rb.DEFAULT_START_NS
    msgs = []
    if tf:
        msgs.append((rb.TF_STATIC, rm.TF_MESSAGE, t0, rm.tf_message(
            [rm.transform_stamped_msg(rb.LEFT_FRAME, rb.LIDAR_FRAME, T_raw_from_lidar, t0)])))
    for i, f in enumerate(frames):
        t = t0 + i * rate_ns
        tr, tg = t + right_offset_ns, t + gt_offset_ns
        if raw:
            left = raw_from_rect(f.left, RAW_CAL["left"], cv2.INTER_LINEAR)[0]
            right = raw_from_rect(f.right, RAW_CAL["right"], cv2.INTER_LINEAR)[0]
            depth = raw_depth_from_rect(f.depth, RAW_CAL["left"])
            infos = [rm.camera_info_msg(RAW_CAL[s]["K"], H, W, tt, fr, D=RAW_CAL[s]["D"], R=RAW_CAL[s]["R"],
                                        P=RAW_CAL[s]["P"])
                     for s, tt, fr in (("left", t, rb.LEFT_FRAME), ("right", tr, rb.RIGHT_FRAME))]
        else:
            left, right, depth = f.left, f.right[:, :right_width], f.depth
            infos = [rm.camera_info_msg(K, H, W, t, rb.LEFT_FRAME),
                     rm.camera_info_msg(K, H, right_width, tr, rb.RIGHT_FRAME, P=P_RIGHT)]
        if left_info_k_zero:
            infos[0].k[:] = 0.0  # an uncalibrated driver publishes all zeros
        points_rect, _ = backproject_depth(f.lidar_depth, K)
        points_lidar = transform_points(np.linalg.inv(rb.T_CAMERA_FROM_LIDAR), points_rect)
        def camera(topic, image, tt, frame, i=i):
            if compressed is None:
                return topic, rm.IMAGE, tt, rm.image_to_msg(image, "rgb8", tt, frame)
            msg = rm.compressed_image_msg(image, compressed, tt, frame)
            if corrupt(topic, i):
                msg.data = msg.data[: len(msg.data) // 2].copy()
            return topic + "/compressed", rm.COMPRESSED_IMAGE, tt, msg

        frame_msgs = [
            camera(rb.LEFT_IMAGE, left, t, rb.LEFT_FRAME),
            (rb.LEFT_INFO, rm.CAMERA_INFO, t, infos[0]),
            camera(rb.RIGHT_IMAGE, right, tr, rb.RIGHT_FRAME),
            (rb.RIGHT_INFO, rm.CAMERA_INFO, tr, infos[1]),
            (rb.DEPTH_GT, rm.IMAGE, tg, rm.depth_image_msg(depth, tg, rb.LEFT_FRAME, depth_encoding)),
            (rb.LIDAR_POINTS, rm.POINT_CLOUD2, t, rm.depth_to_pointcloud2(points_lidar, t, rb.LIDAR_FRAME)),
        ]
        msgs.extend(m for m in frame_msgs if not skip(m[0], i))
    msgs.sort(key=lambda m: m[2])
    return rb.write_topics_bag(out, msgs, storage)


def _u8(t) -> np.ndarray:
    return np.rint(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def frames():
    return [RIG.render(seed) for seed in range(N)]


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory, frames):
    return rb.write_rig_bag(tmp_path_factory.mktemp("rig") / "rig", frames, rate_hz=1e9 / PERIOD_NS)


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory, frames):
    return write_bag(tmp_path_factory.mktemp("raw") / "raw", frames, raw=True)


# --- samples --------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_samples_equal_the_rig_frames(tmp_path, frames, storage):
    bag = rb.write_rig_bag(tmp_path / "run", frames, storage=storage, rate_hz=10.0)
    ds = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT))
    assert len(ds) == N
    assert ds.report["total"] == {"left": N, "right": N, "gt": N, "stereo_pairs": N, "unmatched_left": 0,
                                  "unmatched_right": 0, "no_gt": 0, "unused_gt": 0, "frames": N}
    assert ds.report["bags"]["run"]["rectified_from_raw"] is False
    for i, f in enumerate(frames):
        s = ds[i]
        assert s["id"] == f"run@{stamp(i)}"
        assert s["left"].shape == (3, H, W) and s["depth"].shape == (1, H, W)
        np.testing.assert_array_equal(_u8(s["left"]), f.left)
        np.testing.assert_array_equal(_u8(s["right"]), f.right)
        np.testing.assert_array_equal(s["depth"][0].numpy(), f.depth)  # NaN in the bag -> 0
        np.testing.assert_allclose(s["K"].numpy(), K, rtol=1e-6)
        assert s["baseline"].item() == pytest.approx(B, rel=1e-6)
        assert s["focal"].item() == pytest.approx(K[0, 0], rel=1e-6)
        assert s["has_gt"] is True


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_views_decode_to_the_rig_frames(tmp_path, frames, fmt):
    bag = write_bag(tmp_path / fmt, frames, compressed=fmt)
    ds = RosbagStereoDataset(bag, cfg(left_topic=rb.LEFT_IMAGE + "/compressed",
                                      right_topic=rb.RIGHT_IMAGE + "/compressed", gt_topic=rb.DEPTH_GT))
    assert len(ds) == N
    assert ds.report["total"]["corrupt_left"] == ds.report["total"]["corrupt_right"] == 0
    for i, f in enumerate(frames):
        s = ds[i]
        np.testing.assert_array_equal(s["depth"][0].numpy(), f.depth)
        for view in ("left", "right"):
            got, want = _u8(s[view]).astype(int), getattr(f, view).astype(int)
            if fmt == "png":
                np.testing.assert_array_equal(got, want)  # lossless
            else:
                assert np.abs(got - want).mean() < 6.0  # JPEG q95 of a textured render


def test_a_corrupt_compressed_payload_skips_that_frame_and_is_counted(tmp_path, frames, caplog):
    bag = write_bag(tmp_path / "bad", frames, compressed="jpeg",
                    corrupt=lambda topic, i: topic == rb.LEFT_IMAGE and i == 3)
    with caplog.at_level(logging.WARNING):
        ds = RosbagStereoDataset(bag, cfg(left_topic=rb.LEFT_IMAGE + "/compressed",
                                          right_topic=rb.RIGHT_IMAGE + "/compressed", gt_topic=rb.DEPTH_GT))
    t = ds.report["total"]
    assert (len(ds), t["left"], t["corrupt_left"], t["corrupt_right"], t["unmatched_right"]) == (N - 1, N - 1,
                                                                                                 1, 0, 1)
    assert ds.ids == [f"bad@{stamp(i)}" for i in range(N) if i != 3]
    assert "1 corrupt compressed image(s) skipped" in caplog.text and "truncated" in caplog.text
    for k, i in enumerate(i for i in range(N) if i != 3):  # the rows after the hole are the right frames
        np.testing.assert_array_equal(ds[k]["depth"][0].numpy(), frames[i].depth)
        assert np.abs(_u8(ds[k]["right"]).astype(int) - frames[i].right.astype(int)).mean() < 6.0


def test_lidar_gt_from_tf_static_equals_rig_lidar_depth(rig_bag, frames):
    ds = RosbagStereoDataset(rig_bag, cfg(lidar_topic=rb.LIDAR_POINTS))
    for i, f in enumerate(frames):
        np.testing.assert_allclose(ds[i]["depth"][0].numpy(), f.lidar_depth, rtol=1e-5, atol=0)
    assert int((ds[0]["depth"] > 0).sum()) == int((frames[0].lidar_depth > 0).sum()) > 100


def test_16uc1_depth_gt_in_millimetres(tmp_path, frames):
    bag = write_bag(tmp_path / "mm", frames[:3], depth_encoding="16UC1")
    ds = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT))
    for i in range(3):
        mm = np.rint(frames[i].depth.astype(np.float64) * 1000)
        expect = np.where(mm <= 65535, mm / 1000, 0.0)  # 16UC1 holds up to 65.535 m
        assert (expect == 0).sum() > (frames[i].depth == 0).sum()  # the rig has depth beyond that
        np.testing.assert_allclose(ds[i]["depth"][0].numpy(), expect, atol=1e-6)


def test_raw_views_are_rectified_to_the_rig_frames(raw_bag, frames):
    ds = RosbagStereoDataset(raw_bag, cfg(lidar_topic=rb.LIDAR_POINTS))
    assert ds.report["bags"]["raw"]["rectified_from_raw"] is True
    inner = np.s_[MARGIN:-MARGIN, MARGIN:-MARGIN]
    with Reader(raw_bag) as reader:  # the raw images themselves are far from the rectified ones
        conn = next(c for c in reader.connections if c.topic == rb.LEFT_IMAGE)
        raw0 = rm.msg_to_image(rm.deserialize(next(reader.messages([conn]))[2], rm.IMAGE))
    raw_err = np.abs(raw0[inner].astype(float) - frames[0].left[inner]).mean()
    errors = []
    for i, f in enumerate(frames):
        s = ds[i]
        for view in ("left", "right"):
            err = np.abs(_u8(s[view])[inner].astype(float) - getattr(f, view)[inner])
            errors.append((err.mean(), np.median(err)))
        # LiDAR: rotated by R_left into the rectified frame, projected with P_left -> exactly the rig's
        np.testing.assert_allclose(s["depth"][0].numpy(), f.lidar_depth, rtol=1e-5, atol=0)
        np.testing.assert_allclose(s["K"].numpy(), K, rtol=1e-6)
        assert s["baseline"].item() == pytest.approx(B, rel=1e-6)
    # two bilinear resamplings of a high-frequency texture: ~1 grey level typically, 3-5 on average
    assert max(e[0] for e in errors) < 5.0 and max(e[1] for e in errors) <= 1.0
    assert raw_err > 3 * max(e[0] for e in errors)
    # rectify="never" (image_rect topics with the raw camera_info): images as recorded, the LiDAR still
    # rotated by R_left into the rectified frame the images are taken to be in
    never = RosbagStereoDataset(raw_bag, cfg(lidar_topic=rb.LIDAR_POINTS, rectify="never"))
    assert never.report["bags"]["raw"]["rectified_from_raw"] is False
    np.testing.assert_array_equal(_u8(never[0]["left"]), raw0)
    np.testing.assert_allclose(never[0]["depth"][0].numpy(), frames[0].lidar_depth, rtol=1e-5, atol=0)
    # geometrically exact: the rectification maps invert the raw synthesis to within 0.01 px
    cals = [rm.camera_info_to_calibration(rm.camera_info_msg(RAW_CAL[s]["K"], H, W, 0, s, D=RAW_CAL[s]["D"],
                                                             R=RAW_CAL[s]["R"], P=RAW_CAL[s]["P"]))
            for s in ("left", "right")]
    maps = rd.stereo_rectification(*cals).maps
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    for side, (mx, my) in (("left", maps[:2]), ("right", maps[2:])):
        raw_pts = np.stack([mx.ravel(), my.ravel()], axis=1).astype(np.float64)[:, None, :]
        cal = RAW_CAL[side]
        back = cv2.undistortPoints(raw_pts, cal["K"], cal["D"], R=cal["R"], P=cal["P"][:, :3])
        back = back.reshape(H, W, 2)
        np.testing.assert_allclose(back[..., 0][inner], u[inner], atol=0.01)
        np.testing.assert_allclose(back[..., 1][inner], v[inner], atol=0.01)


def test_raw_depth_image_gt_is_rectified_with_nearest_and_axis_change(raw_bag, frames):
    ds = RosbagStereoDataset(raw_bag, cfg(gt_topic=rb.DEPTH_GT))
    inner = np.s_[MARGIN:-MARGIN, MARGIN:-MARGIN]
    got, want = ds[0]["depth"][0].numpy()[inner], frames[0].depth[inner]
    both = (got > 0) & (want > 0)
    rel = np.abs(got[both] - want[both]) / want[both]
    assert both.mean() > 0.5 and np.median(rel) < 1e-4 and np.mean(rel < 0.01) > 0.9
    # the axis change on a fronto-parallel plane: within 0.05 % after rectification (the nearest raw pixel's
    # ray is up to half a pixel off), 0.5-1 % off without it
    plane = np.full((H, W), 10.0, np.float32)
    raw_plane = raw_depth_from_rect(plane, RAW_CAL["left"])
    cals = [rm.camera_info_to_calibration(rm.camera_info_msg(RAW_CAL[s]["K"], H, W, 0, s, D=RAW_CAL[s]["D"],
                                                             R=RAW_CAL[s]["R"], P=RAW_CAL[s]["P"]))
            for s in ("left", "right")]
    rect = rd.stereo_rectification(*cals)
    back = rect.depth(raw_plane)[inner]
    np.testing.assert_allclose(back, 10.0, rtol=5e-4)
    assert np.abs(raw_plane[inner] - 10.0).max() > 0.05


def test_image_scale_resizes_images_k_and_gt(rig_bag, frames):
    dense = RosbagStereoDataset(rig_bag, cfg(gt_topic=rb.DEPTH_GT, image_scale=0.5))
    sparse = RosbagStereoDataset(rig_bag, cfg(lidar_topic=rb.LIDAR_POINTS, image_scale=0.5))
    K2 = scale_intrinsics(K, 0.5, 0.5)
    for i in (0, 5):
        s, f = dense[i], frames[i]
        assert s["left"].shape == (3, H // 2, W // 2)
        np.testing.assert_array_equal(_u8(s["right"]), cv2.resize(f.right, (W // 2, H // 2),
                                                                   interpolation=cv2.INTER_AREA))
        np.testing.assert_allclose(s["K"].numpy(), K2, rtol=1e-6)
        assert s["baseline"].item() == pytest.approx(B, rel=1e-6)
        # depth is never interpolated: each output pixel holds the depth of the source pixel under its centre
        np.testing.assert_array_equal(s["depth"][0].numpy(), f.depth[1::2, 1::2])
        # LiDAR points projected with the scaled K land on the half-resolution pixel of their full pixel
        d = sparse[i]["depth"][0].numpy()
        v, u = np.nonzero(f.lidar_depth)
        v2, u2 = np.rint((v + 0.5) / 2 - 0.5).astype(int), np.rint((u + 0.5) / 2 - 0.5).astype(int)
        assert np.all(d[v2, u2] > 0) and np.count_nonzero(d) == len(set(zip(v2.tolist(), u2.tolist())))
        assert np.all(d[v2, u2] <= f.lidar_depth[v, u] + 1e-4)  # nearest point wins per pixel


# --- pairing ----------------------------------------------------------------------------------------


def test_dropped_right_frame_is_reported_and_the_rest_pair_correctly(tmp_path, frames, caplog):
    bag = write_bag(tmp_path / "drop", frames, skip=lambda topic, i: topic == rb.RIGHT_IMAGE and i == 3)
    with caplog.at_level(logging.INFO, logger=rd.__name__):
        ds = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT))
    t = ds.report["total"]
    assert (t["left"], t["right"], t["stereo_pairs"], t["unmatched_left"], t["unmatched_right"]) == (N, N - 1,
                                                                                                  N - 1, 1, 0)
    assert t["frames"] == len(ds) == N - 1
    assert [r.levelname for r in caplog.records if "rosbag dataset" in r.message] == ["WARNING"]
    assert "unmatched: 1 left, 0 right" in caplog.text
    kept = [i for i in range(N) if i != 3]
    assert ds.ids == [f"drop@{stamp(i)}" for i in kept]
    for k, i in enumerate(kept):
        np.testing.assert_array_equal(_u8(ds[k]["right"]), frames[i].right)
        np.testing.assert_array_equal(ds[k]["depth"][0].numpy(), frames[i].depth)


def test_nearest_pairing_within_tolerance(tmp_path, frames):
    bag = write_bag(tmp_path / "jitter", frames[:5], right_offset_ns=3_000_000,
                    skip=lambda topic, i: topic == rb.DEPTH_GT and i == 2)
    with pytest.raises(ValueError, match=r"no left/right image pair within stereo_tolerance_ns=0 .*3\.000 "):
        RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT))
    ds = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, stereo_tolerance_ns=10_000_000))
    assert ds.report["total"]["no_gt"] == 1 and len(ds) == 4  # frame 2 has no GT: dropped, counted
    for k, i in enumerate([0, 1, 3, 4]):
        np.testing.assert_array_equal(_u8(ds[k]["right"]), frames[i].right)
    ds = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, stereo_tolerance_ns=10_000_000, require_gt=False))
    assert len(ds) == 5 and ds[2]["has_gt"] is False and float(ds[2]["depth"].abs().sum()) == 0.0


# --- cache ------------------------------------------------------------------------------------------


_OPEN_BAG = rb.open_bag


def _count_opens(monkeypatch):
    calls = []

    def counting(path):
        calls.append(path)
        return _OPEN_BAG(path)

    monkeypatch.setattr(rb, "open_bag", counting)
    return calls


def test_cache_is_used_on_later_epochs_and_runs_and_invalidated_on_change(tmp_path, frames, monkeypatch):
    bag = write_bag(tmp_path / "bags" / "run", frames[:4])
    cache = tmp_path / "cache"
    calls = _count_opens(monkeypatch)
    ds = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, cache_dir=cache))
    assert len(calls) == 1 and ds.report["bags"]["run"]["cache"] == "built"
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith("run-")  # no temp folder left behind
    assert sorted(p.name for p in (cache / entries[0]).iterdir()) == ["depth.npy", "left.npy", "meta.json",
                                                                     "right.npy"]
    first = [ds[i] for i in range(len(ds))]

    def no_bag(path):
        raise AssertionError(f"bag opened although cached: {path}")

    monkeypatch.setattr(rb, "open_bag", no_bag)
    for epoch in (1, 2):  # later epochs read the memory-mapped cache
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            np.testing.assert_array_equal(ds[i]["left"].numpy(), first[i]["left"].numpy())
    again = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, cache_dir=cache, train_fraction=0.5),
                                split="val")
    assert again.report["bags"]["run"]["cache"] == "hit" and len(again) == 2  # splits share the entry
    np.testing.assert_array_equal(again[1]["depth"].numpy(), first[3]["depth"].numpy())
    # workers get the dataset pickled without the frames; they map the cache themselves
    blob = pickle.dumps(again)
    assert len(blob) < 20_000 < ds._bags[0].array("left").nbytes
    np.testing.assert_array_equal(pickle.loads(blob)[0]["right"].numpy(), first[2]["right"].numpy())

    calls = _count_opens(monkeypatch)
    # a setting that changes decoding -> a new entry
    ds2 = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, cache_dir=cache, stereo_tolerance_ns=1))
    assert len(calls) == 1 and ds2.report["bags"]["run"]["cache"] == "built"
    assert len(list(cache.iterdir())) == 2
    # the bag changes (re-recorded / touched) -> rebuilt
    storage = next(p for p in bag.iterdir() if p.suffix == ".mcap")
    st = storage.stat()
    os.utime(storage, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ds3 = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, cache_dir=cache))
    assert len(calls) == 2 and ds3.report["bags"]["run"]["cache"] == "built"
    assert len(list(cache.iterdir())) == 2  # the entry of the old bag is gone, the other setting's stays
    np.testing.assert_array_equal(ds3[0]["left"].numpy(), first[0]["left"].numpy())
    # a damaged entry is rebuilt, not trusted
    entry = next(p for p in cache.iterdir() if p.name == ds3._bags[0].cache_path.name)
    (entry / "depth.npy").write_bytes(b"broken")
    ds4 = RosbagStereoDataset(bag, cfg(gt_topic=rb.DEPTH_GT, cache_dir=cache))
    assert len(calls) == 3 and ds4.report["bags"]["run"]["cache"] == "built"
    np.testing.assert_array_equal(ds4[3]["depth"].numpy(), first[3]["depth"].numpy())
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


# --- splits -----------------------------------------------------------------------------------------


def test_time_split_has_no_overlap_and_respects_the_gap(rig_bag):
    kw = {"gt_topic": rb.DEPTH_GT, "train_fraction": 0.5}
    train = RosbagStereoDataset(rig_bag, cfg(**kw), split="train")
    val = RosbagStereoDataset(rig_bag, cfg(**kw), split="val")
    everything = RosbagStereoDataset(rig_bag, cfg(**kw), split="all")
    assert not set(train.ids) & set(val.ids)
    assert sorted(train.ids + val.ids) == sorted(everything.ids)
    assert len(train) == len(val) == N // 2
    t_train = [int(i.split("@")[1]) for i in train.ids]
    t_val = [int(i.split("@")[1]) for i in val.ids]
    assert max(t_train) < min(t_val)
    gapped = RosbagStereoDataset(rig_bag, cfg(split_gap_s=0.25, **kw), split="val")
    assert len(gapped) == N // 2 - 2 and gapped.report["split_gap_dropped"] == 2
    assert min(int(i.split("@")[1]) for i in gapped.ids) - max(t_train) > 250_000_000


def test_bag_split_and_training_crops(tmp_path, rig_bag, frames):
    other = write_bag(tmp_path / "other", frames[:3])
    by_bag = cfg(gt_topic=rb.DEPTH_GT, split_mode="bag", train_fraction=0.5)
    train = RosbagStereoDataset([rig_bag, other], by_bag, split="train", input_size=(32, 128),
                                rotation_deg=0.0, flip_prob=0.0, color_prob=0.0)
    val = RosbagStereoDataset([rig_bag, other], by_bag, split="val", input_size=(32, 128))
    assert {i.split("@")[0] for i in train.ids} == {"rig"} and len(train) == N
    assert {i.split("@")[0] for i in val.ids} == {"other"} and len(val) == 3
    s = train[5]
    assert s["left"].shape == (3, 32, 128)
    top, left = K[1, 2] - s["K"][1, 2].item(), K[0, 2] - s["K"][0, 2].item()
    top, left = round(top), round(left)
    np.testing.assert_array_equal(_u8(s["left"]), frames[5].left[top:top + 32, left:left + 128])
    np.testing.assert_array_equal(s["depth"][0].numpy(), frames[5].depth[top:top + 32, left:left + 128])
    v = val[0]  # centred crop, no augmentation
    np.testing.assert_array_equal(_u8(v["left"]), frames[0].left[8:40, 16:144])


# --- bad input --------------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error_at_construction(tmp_path, rig_bag, frames):
    with pytest.raises(FileNotFoundError, match="rosbag not found"):
        RosbagStereoDataset(tmp_path / "nope", cfg(gt_topic=rb.DEPTH_GT))
    missing = r"missing topic\(s\) /cam/depth; the bag has: .*/camera/left/image_raw"
    with pytest.raises(ValueError, match=missing):
        RosbagStereoDataset(rig_bag, cfg(gt_topic="/cam/depth"))
    with pytest.raises(ValueError, match="not both"):
        RosbagStereoDataset(rig_bag, cfg(gt_topic=rb.DEPTH_GT, lidar_topic=rb.LIDAR_POINTS))
    with pytest.raises(ValueError, match="no GT source"):
        RosbagStereoDataset(rig_bag, cfg())
    with pytest.raises(ValueError, match="split must be one of"):
        RosbagStereoDataset(rig_bag, cfg(gt_topic=rb.DEPTH_GT), split="test")
    with pytest.raises(ValueError, match="smaller than input_size 64x128"):
        RosbagStereoDataset(rig_bag, cfg(gt_topic=rb.DEPTH_GT), input_size=(64, 128))
    with pytest.raises(ValueError, match="depth_gt message at .* '32FC1'; expected a colour image"):
        RosbagStereoDataset(rig_bag, cfg(left_topic=rb.DEPTH_GT, gt_topic=rb.DEPTH_GT))

    uncal = write_bag(tmp_path / "uncal", frames[:2], left_info_k_zero=True)
    with pytest.raises(ValueError, match=r"uncal: /camera/left/camera_info: .*not calibrated"):
        RosbagStereoDataset(uncal, cfg(gt_topic=rb.DEPTH_GT))
    narrow = write_bag(tmp_path / "narrow", frames[:2], right_width=W - 16)
    with pytest.raises(ValueError, match=r"narrow.*left camera_info is 48x160, right is 48x144"):
        RosbagStereoDataset(narrow, cfg(gt_topic=rb.DEPTH_GT))
    no_tf = write_bag(tmp_path / "no_tf", frames[:2], tf=False)
    with pytest.raises(ValueError, match=r"no_tf: no /tf_static .* pass T_cam_from_lidar"):
        RosbagStereoDataset(no_tf, cfg(lidar_topic=rb.LIDAR_POINTS))
    ds = RosbagStereoDataset(no_tf, cfg(lidar_topic=rb.LIDAR_POINTS, T_cam_from_lidar=rb.T_CAMERA_FROM_LIDAR))
    np.testing.assert_allclose(ds[1]["depth"][0].numpy(), frames[1].lidar_depth, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="no .*/camera/left/depth_gt message within gt_tolerance_ns=0"):
        RosbagStereoDataset(write_bag(tmp_path / "late", frames[:2], gt_offset_ns=2_000_000),
                            cfg(gt_topic=rb.DEPTH_GT))


@pytest.mark.parametrize(("setting", "match"), [
    ({"train_fraction": 0.0}, r"data\.rosbag\.train_fraction must be in \(0, 1\]"),
    ({"image_scale": 1.5}, r"data\.rosbag\.image_scale must be in \(0, 1\]"),
    ({"stereo_tolerance_ns": -1}, r"data\.rosbag\.stereo_tolerance_ns must be an integer >= 0"),
    ({"gt_tolerance_ns": 0.5}, r"data\.rosbag\.gt_tolerance_ns must be an integer >= 0"),
    ({"rectify": "sometimes"}, r"data\.rosbag\.rectify must be one of \['auto', 'always', 'never'\]"),
    ({"split_mode": "random"}, r"data\.rosbag\.split_mode must be one of \['time', 'bag'\]"),
    ({"split_gap_s": -1.0}, r"data\.rosbag\.split_gap_s must be >= 0"),
    ({"T_cam_from_lidar": [[1.0]]}, r"data\.rosbag\.T_cam_from_lidar is only used with"),
    ({"lidar_topic": rb.LIDAR_POINTS, "gt_topic": None, "T_cam_from_lidar": [[1.0]]},
     r"data\.rosbag\.T_cam_from_lidar: not a rigid transform"),
])
def test_the_config_names_a_bad_setting_for_the_dataset_and_the_training_config(rig_bag, setting, match):
    bad = cfg(**{"gt_topic": rb.DEPTH_GT, **setting})
    with pytest.raises(ValueError, match=match):
        RosbagStereoDataset(rig_bag, bad)
    with pytest.raises(ValueError, match=match):
        training = dataclasses.replace(bad, bags=[str(rig_bag)])
        DataConfig(kind="rosbag", eval_size=(32, 128), rosbag=training).validate()


def test_no_gt_source_needs_require_gt_false_and_bag_split_needs_two_bags(rig_bag):
    ds = RosbagStereoDataset(rig_bag, cfg(require_gt=False))  # stereo only, e.g. for distillation
    assert len(ds) == N and not any(ds[i]["has_gt"] for i in range(len(ds)))
    with pytest.raises(ValueError, match=r"data\.rosbag\.split_mode='bag' needs at least two bags, got 1"):
        RosbagStereoDataset(rig_bag, cfg(gt_topic=rb.DEPTH_GT, split_mode="bag"), split="train")


# --- one geometry in training and evaluation ------------------------------------------------------------


class _Capture:
    """Stands in for bag-eval's evaluator: keeps the samples it is given."""

    def __init__(self):
        self.samples = []

    def add(self, sample):
        self.samples.append(sample)
        return sample

    def skip(self, *args):
        raise AssertionError(f"skipped: {args}")


def _bag_eval_samples(bag, **kw):
    from pathlib import Path
    from types import SimpleNamespace

    from adu_depth_core.data.bag_frames import BagFrameSource
    from adu_depth_core.eval_bag import BagEvalSpec, BagEvaluation, frame_spec
    from adu_depth_core.eval_run import ScoringSpec

    spec = BagEvalSpec(ScoringSpec(Path("unused.pt")), bag=bag, **kw)
    with BagFrameSource(bag, frame_spec(spec)) as source:
        evaluation = BagEvaluation(spec, SimpleNamespace(needs_right=False), source)
        capture = _Capture()
        list(evaluation.frames(capture))
    return capture.samples


@pytest.mark.parametrize("gt", ["depth", "lidar"])
def test_raw_bag_gives_bag_eval_the_dataset_geometry(raw_bag, gt):
    topic = {"gt_topic": rb.DEPTH_GT} if gt == "depth" else {"lidar_topic": rb.LIDAR_POINTS}
    ds = RosbagStereoDataset(raw_bag, cfg(**topic))
    samples = _bag_eval_samples(raw_bag, **topic)  # --rectify auto, the default
    assert len(samples) == len(ds) == N
    assert ds.report["bags"]["raw"]["rectified_from_raw"] is True
    for i in (0, N - 1):
        s = ds[i]  # eval mode, whole frame
        np.testing.assert_array_equal(samples[i].image, _u8(s["left"]))  # the same rectified left image
        np.testing.assert_allclose(samples[i].K, s["K"].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(samples[i].gt, s["depth"][0].numpy())
    # --rectify never takes the recorded images as they are, as the dataset's rectify: never
    never = _bag_eval_samples(raw_bag, rectify="never", **topic)
    ds_never = RosbagStereoDataset(raw_bag, cfg(rectify="never", **topic))
    np.testing.assert_array_equal(never[0].image, _u8(ds_never[0]["left"]))
    assert np.abs(never[0].image.astype(int) - samples[0].image.astype(int)).mean() > 1.0
