"""rosbag2 writing and reading on real MCAP and sqlite3 files, read back with `rosbags` itself."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data import rosbag_io as rb
from adu_depth_core.data.lidar import lidar_to_depth_image
from adu_depth_core.data.synthetic import SyntheticRig

H, W, N_FRAMES = 48, 160, 3
RATE_HZ = 10.0
RIG = SyntheticRig(size=(H, W))
BASELINE = RIG.config.baseline
K = RIG.K


@pytest.fixture(scope="module")
def frames():
    """Real synthetic rig frames: textured stereo pairs, dense depth with sky, scan-line LiDAR depth."""
    return [RIG.render(seed) for seed in range(N_FRAMES)]


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def rig_bag(request, tmp_path_factory, frames):
    out = tmp_path_factory.mktemp(f"rig_{request.param}") / "rig"
    return rb.write_rig_bag(out, frames, storage=request.param, rate_hz=RATE_HZ), request.param


def stamps():
    return [rb.DEFAULT_START_NS + i * 100_000_000 for i in range(N_FRAMES)]


# --- the rig bag ---------------------------------------------------------------------------------


def test_rig_bag_layout_in_both_storages(rig_bag):
    bag, storage = rig_bag
    suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    assert sorted(p.name for p in bag.iterdir()) == sorted(["metadata.yaml", f"rig{suffix}"])
    assert [p.name for p in bag.parent.iterdir()] == ["rig"]  # no temp folder left behind
    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == rb.RIG_TOPICS
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {t: 1 if t == rb.TF_STATIC else N_FRAMES for t in rb.RIG_TOPICS}
        tf_conn = next(c for c in reader.connections if c.topic == rb.TF_STATIC)
        assert tf_conn.ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
        # bag (receive) time equals each message's header stamp
        for conn, t_ns, raw in reader.messages():
            msg = rm.deserialize(raw, conn.msgtype)
            if conn.topic != rb.TF_STATIC:
                assert rm.stamp_to_ns(msg.header.stamp) == t_ns
            else:
                assert t_ns == rb.DEFAULT_START_NS


def test_rig_bag_images_and_camera_info(rig_bag, frames):
    bag, _ = rig_bag
    with rb.open_bag(bag) as reader:
        rb.require_topics(reader, rb.RIG_TOPICS)
        for topic, frame_id, key in [
            (rb.LEFT_IMAGE, rb.LEFT_FRAME, "left"),
            (rb.RIGHT_IMAGE, rb.RIGHT_FRAME, "right"),
        ]:
            got = list(rb.iter_topic(reader, topic))
            assert [t for t, _ in got] == stamps()
            for (_, msg), frame in zip(got, frames, strict=True):
                assert (msg.encoding, msg.header.frame_id, msg.height, msg.width) == ("rgb8", frame_id, H, W)
                np.testing.assert_array_equal(rm.msg_to_image(msg), getattr(frame, key))
        left = [rm.camera_info_to_calibration(m) for _, m in rb.iter_topic(reader, rb.LEFT_INFO)]
        right_msgs = [m for _, m in rb.iter_topic(reader, rb.RIGHT_INFO)]
        assert [m.header.frame_id for m in right_msgs] == [rb.RIGHT_FRAME] * N_FRAMES
        right = [rm.camera_info_to_calibration(m) for m in right_msgs]
        for cal_l, cal_r in zip(left, right, strict=True):
            np.testing.assert_array_equal(cal_l.K, K)
            np.testing.assert_array_equal(cal_r.K, K)
            assert cal_l.size == cal_r.size == (H, W)
            assert cal_l.P[0, 3] == 0.0
            assert cal_r.P[0, 3] == pytest.approx(-K[0, 0] * BASELINE)  # Tx = −fx·B
            assert cal_r.baseline == pytest.approx(BASELINE)


def test_rig_bag_depth_gt_is_rep118(rig_bag, frames):
    bag, _ = rig_bag
    with rb.open_bag(bag) as reader:
        got = list(rb.iter_topic(reader, rb.DEPTH_GT))
    assert [t for t, _ in got] == stamps()
    for (_, msg), frame in zip(got, frames, strict=True):
        assert (msg.encoding, msg.header.frame_id) == ("32FC1", rb.LEFT_FRAME)
        raw = rm.msg_to_image(msg)
        valid = frame.depth > 0
        assert 0 < valid.sum() < valid.size
        assert np.isnan(raw[~valid]).all()
        np.testing.assert_array_equal(raw[valid], frame.depth[valid])
        np.testing.assert_array_equal(rm.msg_to_depth(msg), frame.depth)


def test_lidar_points_reproject_to_lidar_depth(rig_bag, frames):
    """Only bag contents: camera_info + /tf_static + /lidar/points give back the LiDAR depth image."""
    bag, _ = rig_bag
    with rb.open_bag(bag) as reader:
        tfs = rb.read_static_transforms(reader)
        T_cam_from_lidar = rb.lookup_transform(tfs, rb.LEFT_FRAME, rb.LIDAR_FRAME)
        infos = [rm.camera_info_to_calibration(m) for _, m in rb.iter_topic(reader, rb.LEFT_INFO)]
        clouds = list(rb.iter_topic(reader, rb.LIDAR_POINTS))
    assert [t for t, _ in clouds] == stamps()
    for (_, msg), cal, frame in zip(clouds, infos, frames, strict=True):
        assert msg.header.frame_id == rb.LIDAR_FRAME
        pts = rm.pointcloud2_to_xyz(msg)
        assert len(pts) == np.count_nonzero(frame.lidar_depth)
        # the points really are in the LiDAR frame: x forward, so x ≈ camera depth + 0.1 m
        assert pts[:, 0].min() > 0.1
        depth = lidar_to_depth_image(pts, T_cam_from_lidar, cal.K, *cal.size)
        np.testing.assert_array_equal(depth > 0, frame.lidar_depth > 0)
        np.testing.assert_allclose(depth, frame.lidar_depth, rtol=1e-6, atol=0)


def test_static_transforms_and_documented_extrinsic(rig_bag):
    bag, _ = rig_bag
    with rb.open_bag(bag) as reader:
        tfs = rb.read_static_transforms(reader)
    assert set(tfs) == {(rb.LEFT_FRAME, rb.RIGHT_FRAME), (rb.LEFT_FRAME, rb.LIDAR_FRAME)}
    T_left_from_right = np.eye(4)
    T_left_from_right[0, 3] = BASELINE
    np.testing.assert_allclose(tfs[rb.LEFT_FRAME, rb.RIGHT_FRAME], T_left_from_right, atol=1e-12)
    T_cam_from_lidar = rb.lookup_transform(tfs, rb.LEFT_FRAME, rb.LIDAR_FRAME)
    # docs/ROSBAG.md: the LiDAR origin is 0.3 m above (−y) and 0.1 m behind (−z) the left camera ...
    np.testing.assert_allclose(T_cam_from_lidar[:3, 3], [0.0, -0.3, -0.1], atol=1e-12)
    # ... with x forward, y left, z up: the LiDAR's axes in camera coordinates are +z, −x, −y
    np.testing.assert_allclose(T_cam_from_lidar[:3, :3], [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)
    T_lidar_from_cam = rb.lookup_transform(tfs, rb.LIDAR_FRAME, rb.LEFT_FRAME)
    # a point 10 m ahead of the camera is 10.1 m ahead of and 0.3 m below the LiDAR
    np.testing.assert_allclose(T_lidar_from_cam @ [0, 0, 10, 1], [10.1, 0, -0.3, 1], atol=1e-12)
    # a chain through the left camera: a LiDAR point seen from the right camera
    T_right_from_lidar = rb.lookup_transform(tfs, rb.RIGHT_FRAME, rb.LIDAR_FRAME)
    np.testing.assert_allclose(T_right_from_lidar @ [10.1, 0, -0.3, 1], [-BASELINE, 0, 10, 1], atol=1e-12)
    np.testing.assert_array_equal(rb.lookup_transform(tfs, "lidar", "lidar"), np.eye(4))
    with pytest.raises(
        ValueError, match="no static transform chain from 'base_link' to 'lidar'.*camera_left"
    ):
        rb.lookup_transform(tfs, "lidar", "base_link")


def test_any_reader_reads_the_rig_bag(rig_bag, frames):
    bag, _ = rig_bag
    with AnyReader([bag], default_typestore=rm.TYPESTORE) as reader:
        assert {t: info.msgtype for t, info in reader.topics.items()} == rb.RIG_TOPICS
        got = list(rb.iter_topic(reader, rb.RIGHT_IMAGE))  # deserialised by AnyReader's typestore
        assert [t for t, _ in got] == stamps()
        for (_, msg), frame in zip(got, frames, strict=True):
            np.testing.assert_array_equal(rm.msg_to_image(msg), frame.right)
        assert set(rb.read_static_transforms(reader)) == {
            (rb.LEFT_FRAME, rb.RIGHT_FRAME),
            (rb.LEFT_FRAME, "lidar"),
        }


def test_write_rig_bag_leaves_inputs_untouched(tmp_path):
    frame = RIG.render(7)
    copies = {k: np.copy(v) for k, v in dataclasses.asdict(frame).items() if isinstance(v, np.ndarray)}
    rb.write_rig_bag(tmp_path / "b", [frame], start_ns=5_000)
    for key, before in copies.items():
        np.testing.assert_array_equal(getattr(frame, key), before)
    with rb.open_bag(tmp_path / "b") as reader:
        assert [t for t, _ in rb.iter_topic(reader, rb.LEFT_IMAGE)] == [5_000]


# --- writer errors and atomicity -----------------------------------------------------------------


def test_existing_destination_is_refused(tmp_path, frames):
    out = tmp_path / "bag"
    out.mkdir()
    with pytest.raises(FileExistsError, match=f"output bag already exists: {out}"):
        rb.write_rig_bag(out, frames)
    assert list(out.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path, frames):
    bad = dataclasses.replace(frames[1], lidar_depth=np.zeros((H, W + 1), np.float32))
    with pytest.raises(ValueError, match=r"rig frame 1: lidar_depth must be HxW = \(48, 160\)"):
        rb.write_rig_bag(tmp_path / "bag", [frames[0], bad])
    assert os.listdir(tmp_path) == []  # neither the bag nor its temp sibling
    other = dataclasses.replace(frames[1], baseline=0.3)
    with pytest.raises(ValueError, match="baseline 0.3 differs from frame 0's 0.54"):
        rb.write_rig_bag(tmp_path / "bag", [frames[0], other], storage="sqlite3")
    assert os.listdir(tmp_path) == []


def test_writer_argument_errors(tmp_path, frames):
    with pytest.raises(ValueError, match=r"storage must be one of \['mcap', 'sqlite3'\], got 'bag'"):
        rb.write_rig_bag(tmp_path / "a", frames, storage="bag")
    with pytest.raises(ValueError, match="rate_hz must be > 0"):
        rb.write_rig_bag(tmp_path / "a", frames, rate_hz=0)
    with pytest.raises(ValueError, match="no frames"):
        rb.write_rig_bag(tmp_path / "a", [])
    with pytest.raises(ValueError, match="rig frame 0: .*lidar_depth"):
        rb.write_rig_bag(tmp_path / "a", [object()])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_topics_bag_generic(tmp_path, storage):
    depth = np.full((4, 6), 2.5, np.float32)
    sigma = np.full((4, 6), 0.25, np.float32)
    msgs = []
    for i in range(3):
        t = 1_000 + i * 50
        msgs.append(("/depth", rm.IMAGE, t, rm.depth_image_msg(depth * (i + 1), t, "cam")))
        msgs.append(("/sigma", rm.IMAGE, t, rm.serialize(rm.depth_image_msg(sigma, t, "cam"))))  # raw CDR too
    out = rb.write_topics_bag(tmp_path / "out", iter(msgs), storage=storage)
    assert out == tmp_path / "out"
    with rb.open_bag(out) as reader:
        assert rb.bag_topics(reader) == {"/depth": rm.IMAGE, "/sigma": rm.IMAGE}
        got = list(rb.iter_topic(reader, "/depth"))
        assert [t for t, _ in got] == [1_000, 1_050, 1_100]
        for i, (_, msg) in enumerate(got):
            np.testing.assert_array_equal(rm.msg_to_image(msg), depth * (i + 1))
        np.testing.assert_array_equal(rm.msg_to_image(next(rb.iter_topic(reader, "/sigma"))[1]), sigma)


def test_write_topics_bag_type_errors(tmp_path):
    img = rm.image_to_msg(np.zeros((2, 2), np.uint8), "mono8", 0, "c")
    msg = "/a: message type 'sensor_msgs/msg/CameraInfo' differs from the topic's 'sensor_msgs/msg/Image'"
    with pytest.raises(ValueError, match=msg):
        rb.write_topics_bag(tmp_path / "x", [("/a", rm.IMAGE, 0, img), ("/a", rm.CAMERA_INFO, 1, img)])
    with pytest.raises(ValueError, match="/b: message is a sensor_msgs/msg/Image, declared as"):
        rb.write_topics_bag(tmp_path / "x", [("/b", rm.POINT_CLOUD2, 0, img)])
    with pytest.raises(ValueError, match="'my_msgs/msg/Foo' is not in the ROS 2 Jazzy typestore"):
        rb.write_topics_bag(tmp_path / "x", [("/c", "my_msgs/msg/Foo", 0, b"")])
    assert os.listdir(tmp_path) == []


# --- reader errors -------------------------------------------------------------------------------


def test_open_bag_missing_and_not_a_bag(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"rosbag not found: {tmp_path / 'nope'}"):
        with rb.open_bag(tmp_path / "nope"):
            pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'}: not a readable rosbag2 bag"):
        with rb.open_bag(tmp_path / "empty"):
            pass
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: not a readable rosbag2 bag"):
        with rb.open_bag(tmp_path / "notes.txt"):
            pass


@pytest.mark.parametrize("storage,suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_corrupt_bag_gives_a_clear_error(tmp_path, frames, storage, suffix):
    bag = rb.write_rig_bag(tmp_path / "bag", frames[:1], storage=storage)
    data_file = bag / f"bag{suffix}"
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])  # a truncated copy
    with pytest.raises(ValueError, match=f"{bag}: not a readable rosbag2 bag"):
        with rb.open_bag(bag):
            pass
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    with pytest.raises(ValueError, match="metadata.yaml"):
        with rb.open_bag(bag):
            pass


def test_malformed_message_gives_a_clear_error(tmp_path):
    good = rm.serialize(rm.image_to_msg(np.zeros((2, 2), np.uint8), "mono8", 0, "c"))
    bag = rb.write_topics_bag(tmp_path / "b", [("/img", rm.IMAGE, 0, good), ("/img", rm.IMAGE, 1, good[:9])])
    with rb.open_bag(bag) as reader:
        got = rb.iter_topic(reader, "/img")
        assert next(got)[0] == 0
        with pytest.raises(ValueError, match=f"{bag}: corrupt bag while reading /img: malformed sensor_msgs"):
            next(got)
    with AnyReader([bag]) as reader:
        got = rb.iter_topic(reader, "/img")
        next(got)
        with pytest.raises(ValueError, match="/img"):
            next(got)


def test_missing_topic_lists_the_bags_topics(tmp_path, frames):
    bag = rb.write_rig_bag(tmp_path / "bag", frames[:1])
    with rb.open_bag(bag) as reader:
        with pytest.raises(ValueError, match="missing topic\\(s\\) /camera/image_rect") as err:
            rb.require_topics(reader, ["/camera/left/image_raw", "/camera/image_rect"])
        for topic, msgtype in rb.RIG_TOPICS.items():
            assert f"{topic} [{msgtype}]" in str(err.value)
        with pytest.raises(ValueError, match="missing topic"):
            next(rb.iter_topic(reader, "/nope"))
        with pytest.raises(
            ValueError, match="/lidar/points is sensor_msgs/msg/PointCloud2, expected sensor_msgs/msg/Image"
        ):
            rb.require_topics(reader, {rb.LIDAR_POINTS: rm.IMAGE})
        rb.require_topics(reader, {rb.LIDAR_POINTS: rm.POINT_CLOUD2})
        assert rb.read_static_transforms(reader)


def test_bag_without_tf_static(tmp_path):
    bag = rb.write_topics_bag(
        tmp_path / "b", [("/x", rm.IMAGE, 0, rm.depth_image_msg(np.ones((2, 2)), 0, "c"))]
    )
    with rb.open_bag(bag) as reader:
        tfs = rb.read_static_transforms(reader)
    assert tfs == {}
    with pytest.raises(ValueError, match="frames on /tf_static: none"):
        rb.lookup_transform(tfs, "a", "b")


# --- stamp matching ------------------------------------------------------------------------------


def test_match_by_stamp_with_a_dropped_frame():
    a = [100, 200, 300, 400, 500]
    b = [100, 200, 400, 500]  # 300 dropped
    m = rb.match_by_stamp(a, b, tolerance_ns=0)
    assert m.pairs == [(0, 0), (1, 1), (3, 2), (4, 3)]
    assert (m.unmatched_a, m.unmatched_b) == (1, 0)
    # jittered stamps: exact matching finds nothing, a tolerance below half the period pairs them
    jittered = [t + d for t, d in zip(b, [3, -4, 2, -1])]
    assert rb.match_by_stamp(a, jittered, 0).pairs == []
    m = rb.match_by_stamp(a, jittered, tolerance_ns=10)
    assert m.pairs == [(0, 0), (1, 1), (3, 2), (4, 3)]
    assert (m.unmatched_a, m.unmatched_b) == (1, 0)


def test_match_by_stamp_uses_each_b_once_nearest_first():
    # both 100 and 108 are within tolerance of b=105; the nearer (108) gets it, 100 takes 96
    m = rb.match_by_stamp([100, 108], [105, 96], tolerance_ns=10)
    assert m.pairs == [(0, 1), (1, 0)]
    m = rb.match_by_stamp([100, 108], [105], tolerance_ns=10)
    assert m.pairs == [(1, 0)]
    assert (m.unmatched_a, m.unmatched_b) == (1, 0)
    m = rb.match_by_stamp([300, 100], [100, 300, 999], tolerance_ns=0)  # order-independent
    assert m.pairs == [(0, 1), (1, 0)]
    assert (m.unmatched_a, m.unmatched_b) == (0, 1)
    with pytest.raises(ValueError, match="tolerance_ns must be >= 0"):
        rb.match_by_stamp([1], [1], -1)


# --- LiDAR projection ----------------------------------------------------------------------------


def test_lidar_to_depth_image_nearest_wins_and_errors():
    T = rb.T_CAMERA_FROM_LIDAR
    # two returns on the camera's optical axis (pixel ≈ principal point), 5 m and 9 m ahead, one behind
    pts = np.array([[5.1, 0.0, -0.3], [9.1, 0.0, -0.3], [-5.0, 0.0, -0.3], [np.nan, 0.0, 0.0]])
    depth = lidar_to_depth_image(pts, T, K, H, W)
    assert depth.dtype == np.float32 and np.count_nonzero(depth) == 1
    v, u = np.argwhere(depth)[0]
    assert (u, v) == (round(K[0, 2]), round(K[1, 2])) and depth[v, u] == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"expected an \(N, 3\) array"):
        lidar_to_depth_image(np.zeros((3, 4)), T, K, H, W)
    with pytest.raises(ValueError, match="finite 4x4"):
        lidar_to_depth_image(pts, np.eye(3), K, H, W)


def test_paths_are_pathlike(tmp_path, frames):
    out = rb.write_rig_bag(str(tmp_path / "s"), frames[:1], storage="sqlite3")
    assert isinstance(out, Path) and out.is_dir()
