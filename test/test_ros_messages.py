"""ROS message conversions, checked through real CDR serialisation (what rosbag2 and DDS carry)."""

from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.geometry import quaternion_to_matrix, rigid_transform

H, W = 6, 10


def cdr(msg):
    """Serialise and deserialise, as a bag or a subscriber would see the message."""
    raw = rm.serialize(msg)
    return rm.deserialize(raw, msg.__msgtype__)


@pytest.fixture
def rgb():
    return np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)


# --- headers -------------------------------------------------------------------------------------


def test_header_stamp_round_trip():
    stamp = 1_600_000_123_456_789_012
    header = cdr(rm.image_to_msg(np.zeros((2, 2), np.uint8), "mono8", stamp, "cam")).header
    assert (header.stamp.sec, header.stamp.nanosec) == (1_600_000_123, 456_789_012)
    assert rm.stamp_to_ns(header.stamp) == stamp
    assert header.frame_id == "cam"
    with pytest.raises(ValueError, match="stamp must be >= 0"):
        rm.make_header(-1, "cam")


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_exactly(rgb, encoding):
    msg = cdr(rm.image_to_msg(rgb, encoding, 5, "cam"))
    assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, H, W, 0)
    assert msg.step == W * len(encoding.rstrip("8"))
    out = rm.msg_to_image(msg)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, rgb)


def test_bytes_are_stored_in_the_encodings_channel_order(rgb):
    r, g, b = (int(c) for c in rgb[0, 0])
    assert list(cdr(rm.image_to_msg(rgb, "rgb8", 0, "c")).data[:3]) == [r, g, b]
    assert list(cdr(rm.image_to_msg(rgb, "bgr8", 0, "c")).data[:3]) == [b, g, r]
    assert list(cdr(rm.image_to_msg(rgb, "bgra8", 0, "c")).data[:4]) == [b, g, r, 255]
    rgba = np.dstack([rgb, np.full((H, W), 7, np.uint8)])
    msg = cdr(rm.image_to_msg(rgba, "rgba8", 0, "c"))
    assert list(msg.data[:4]) == [r, g, b, 7]
    np.testing.assert_array_equal(rm.msg_to_image(msg), rgb)  # alpha dropped on the way in


def test_mono8_round_trip_and_rgb_input(rgb):
    gray = rgb[:, :, 1].copy()
    out = rm.msg_to_image(cdr(rm.image_to_msg(gray, "mono8", 0, "c")))
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    # an RGB array is converted to luma (ITU-R 601 weights)
    msg = rm.image_to_msg(rgb, "mono8", 0, "c")
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(msg.data.reshape(H, W).astype(np.float64) - luma).max() <= 1.0


@pytest.mark.parametrize("encoding,uv_index", [("yuv422", 0), ("yuv422_yuy2", 1)])
def test_yuv422_encodings(encoding, uv_index):
    rng = np.random.default_rng(2)
    # pairs of equal horizontal neighbours: 4:2:2 chroma subsampling then loses nothing but rounding
    rgb = np.repeat(rng.integers(0, 256, (H, W // 2, 3), dtype=np.uint8), 2, axis=1)
    msg = cdr(rm.image_to_msg(rgb, encoding, 0, "c"))
    assert (msg.step, msg.data.size) == (2 * W, 2 * W * H)
    out = rm.msg_to_image(msg)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 4
    # byte order: UYVY puts chroma at even bytes, YUY2 at odd bytes; grey has neutral chroma 128
    grey = rm.image_to_msg(np.full((2, 4, 3), 90, np.uint8), encoding, 0, "c")
    chroma = grey.data.reshape(2, 8)[:, uv_index::2]
    np.testing.assert_array_equal(chroma, 128)
    with pytest.raises(ValueError, match="width must be even"):
        rm.image_to_msg(np.zeros((2, 3, 3), np.uint8), encoding, 0, "c")


def test_32fc1_round_trip_keeps_nan_and_inf():
    depth = np.random.default_rng(3).uniform(0.5, 80, (H, W)).astype(np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, np.inf, -np.inf
    out = rm.msg_to_image(cdr(rm.image_to_msg(depth, "32FC1", 0, "c")))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, depth)  # NaN == NaN for assert_array_equal


def test_16uc1_is_read_as_metres_with_zero_kept():
    mm = np.array([[0, 1, 1500], [65535, 250, 0]], dtype=np.uint16)
    msg = cdr(rm.image_to_msg(mm, "16UC1", 0, "c"))
    out = rm.msg_to_image(msg)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.001, 1.5], [65.535, 0.25, 0]], rtol=1e-7)
    with pytest.raises(ValueError, match="uint16 millimetres"):
        rm.image_to_msg(mm.astype(np.float32), "16UC1", 0, "c")


def test_depth_image_msg_follows_rep118():
    depth = np.array([[0.0, 1.2344, np.nan], [70.0, -1.0, 3.0]], dtype=np.float32)
    msg32 = cdr(rm.depth_image_msg(depth, 0, "c"))
    assert msg32.encoding == "32FC1"
    out = rm.msg_to_image(msg32)
    assert np.isnan(out[[0, 0, 1], [0, 2, 1]]).all()  # 0, NaN and negative -> NaN
    np.testing.assert_array_equal(out[[0, 1, 1], [1, 0, 2]], depth[[0, 1, 1], [1, 0, 2]])
    msg16 = cdr(rm.depth_image_msg(depth, 0, "c", encoding="16UC1"))
    np.testing.assert_array_equal(msg16.data.view("<u2").reshape(2, 3), [[0, 1234, 0], [0, 0, 3000]])
    # the project's convention on the way back: metres, 0 = invalid
    np.testing.assert_array_equal(rm.msg_to_depth(msg32), np.nan_to_num(np.where(depth > 0, depth, 0)))
    with pytest.raises(ValueError, match="depth image: expected encoding"):
        rm.msg_to_depth(rm.image_to_msg(np.zeros((2, 2), np.uint8), "mono8", 0, "c"))


def _padded(msg, pad):
    """The same image with `pad` junk bytes after every row, as some drivers publish."""
    rows = msg.data.reshape(msg.height, msg.step)
    junk = np.full((msg.height, pad), 0xAB, np.uint8)
    return rm.TYPESTORE.types[rm.IMAGE](
        header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding,
        is_bigendian=msg.is_bigendian, step=msg.step + pad, data=np.hstack([rows, junk]).reshape(-1),
    )  # fmt: skip


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8", "yuv422"])
def test_row_padding_is_skipped_for_colour(rgb, encoding):
    plain = rm.image_to_msg(rgb, encoding, 0, "c")
    padded = cdr(_padded(plain, 6))
    np.testing.assert_array_equal(rm.msg_to_image(padded), rm.msg_to_image(plain))


def test_row_padding_and_big_endian_depth():
    depth = np.random.default_rng(4).uniform(0.5, 80, (H, W)).astype(np.float32)
    msg = _padded(rm.image_to_msg(depth, "32FC1", 0, "c"), 8)
    np.testing.assert_array_equal(rm.msg_to_image(cdr(msg)), depth)
    big = rm.image_to_msg(depth, "32FC1", 0, "c")
    big.data = depth.astype(">f4").reshape(-1).view(np.uint8).copy()
    big.is_bigendian = 1
    np.testing.assert_array_equal(rm.msg_to_image(cdr(big)), depth)
    mm = np.array([[1, 258], [4000, 0]], dtype=np.uint16)
    big16 = rm.image_to_msg(mm, "16UC1", 0, "c")
    big16.data, big16.is_bigendian = mm.astype(">u2").reshape(-1).view(np.uint8).copy(), 1
    np.testing.assert_allclose(rm.msg_to_image(cdr(big16)), mm / 1000.0, rtol=1e-7)


def test_rclpy_style_messages_decode_the_same(rgb):
    """rclpy gives uint8[] fields as array.array; the node feeds those to the same decoder."""
    msg = rm.image_to_msg(rgb, "bgr8", 0, "c")
    fake = SimpleNamespace(
        height=msg.height, width=msg.width, encoding="bgr8", is_bigendian=0, step=msg.step,
        data=array.array("B", msg.data.tobytes()),
    )  # fmt: skip
    np.testing.assert_array_equal(rm.msg_to_image(fake), rgb)
    fake.data = msg.data.tobytes()
    np.testing.assert_array_equal(rm.msg_to_image(fake), rgb)


def test_image_errors_are_clear(rgb):
    with pytest.raises(ValueError, match=r"unsupported image encoding 'bayer_rggb8'; supported: rgb8, bgr8"):
        rm.image_to_msg(rgb, "bayer_rggb8", 0, "c")
    msg = rm.image_to_msg(rgb, "rgb8", 0, "c")
    msg.encoding = "8UC3"
    with pytest.raises(ValueError, match="unsupported image encoding '8UC3'.*32FC1, 16UC1"):
        rm.msg_to_image(msg)
    msg = rm.image_to_msg(rgb, "rgb8", 0, "c")
    msg.data = msg.data[:-1]
    n = H * W * 3
    with pytest.raises(ValueError, match=f"data has {n - 1} bytes, expected height\\*step = {n}"):
        rm.msg_to_image(cdr(msg))
    msg = rm.image_to_msg(rgb, "rgb8", 0, "c")
    msg.step = W * 3 - 1
    with pytest.raises(ValueError, match="step 29 is smaller than width"):
        rm.msg_to_image(msg)
    msg = rm.image_to_msg(rgb, "rgb8", 0, "c")
    msg.height, msg.data = 0, msg.data[:0]
    with pytest.raises(ValueError, match="zero size"):
        rm.msg_to_image(cdr(msg))
    with pytest.raises(ValueError, match="non-empty"):
        rm.image_to_msg(np.zeros((0, 4, 3), np.uint8), "rgb8", 0, "c")
    with pytest.raises(ValueError, match="expected uint8"):
        rm.image_to_msg(rgb.astype(np.float32), "rgb8", 0, "c")
    with pytest.raises(ValueError, match="RGB HxWx3"):
        rm.image_to_msg(rgb[:, :, 0], "bgr8", 0, "c")


def test_image_to_msg_does_not_modify_input(rgb):
    before = rgb.copy()
    msg = rm.image_to_msg(rgb, "rgb8", 0, "c")
    msg.data[:] = 0  # the message owns its bytes
    np.testing.assert_array_equal(rgb, before)


# --- camera_info ---------------------------------------------------------------------------------

K = np.array([[721.5, 0.0, 609.6], [0.0, 720.0, 172.9], [0.0, 0.0, 1.0]])


def test_camera_info_round_trip():
    D = [0.1, -0.2, 0.001, 0.002, 0.03]
    R = quaternion_to_matrix(0.01, -0.02, 0.005, 1.0)
    P = np.hstack([K, [[-721.5 * 0.54], [0.0], [0.0]]])
    msg = cdr(rm.camera_info_msg(K, 375, 1242, 7, "cam_r", D=D, R=R, P=P))
    assert (msg.height, msg.width, msg.distortion_model) == (375, 1242, "plumb_bob")
    assert msg.header.frame_id == "cam_r"
    cal = rm.camera_info_to_calibration(msg)
    np.testing.assert_array_equal(cal.K, K)
    np.testing.assert_array_equal(cal.D, D)
    np.testing.assert_array_equal(cal.R, R)
    np.testing.assert_array_equal(cal.P, P)
    assert cal.size == (375, 1242)
    assert cal.baseline == pytest.approx(0.54)
    K_, D_, R_, P_, size = cal  # also unpacks as a tuple
    assert size == (375, 1242)


def test_camera_info_defaults_describe_a_rectified_camera():
    cal = rm.camera_info_to_calibration(cdr(rm.camera_info_msg(K, 48, 160, 0, "cam")))
    np.testing.assert_array_equal(cal.D, np.zeros(5))
    np.testing.assert_array_equal(cal.R, np.eye(3))
    np.testing.assert_array_equal(cal.P, np.hstack([K, np.zeros((3, 1))]))
    assert cal.baseline == 0.0


def test_uncalibrated_camera_info_is_rejected():
    msg = rm.camera_info_msg(K, 48, 160, 0, "cam_left")
    msg.k[:] = 0.0  # what an uncalibrated driver publishes
    with pytest.raises(ValueError, match="not calibrated") as err:
        rm.camera_info_to_calibration(cdr(msg))
    assert "cam_left" in str(err.value)
    with pytest.raises(ValueError, match="fx and fy must be positive"):
        rm.camera_info_msg(np.zeros((3, 3)), 48, 160, 0, "cam")
    with pytest.raises(ValueError, match="projection matrix P: expected 12 values"):
        rm.camera_info_msg(K, 48, 160, 0, "cam", P=np.eye(3))


# --- PointCloud2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("point_step", [12, 16])
def test_pointcloud2_round_trip(point_step):
    pts = np.random.default_rng(5).normal(0, 10, (50, 3)).astype(np.float32)
    msg = cdr(rm.depth_to_pointcloud2(pts, 3, "lidar", point_step=point_step))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 50, point_step, 50 * point_step)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
    ]
    assert msg.is_dense and msg.header.frame_id == "lidar"
    np.testing.assert_array_equal(rm.pointcloud2_to_xyz(msg), pts)


def test_pointcloud2_skips_nan_points():
    pts = np.arange(12, dtype=np.float32).reshape(4, 3)
    pts[1, 2] = np.nan
    msg = cdr(rm.depth_to_pointcloud2(pts, 0, "lidar"))
    assert not msg.is_dense
    np.testing.assert_array_equal(rm.pointcloud2_to_xyz(msg), pts[[0, 2, 3]])


def test_pointcloud2_reads_foreign_layouts():
    """A driver-style cloud: organised 2x3, intensity first, z/y/x in float64, big-endian, row padding."""
    rng = np.random.default_rng(6)
    xyz = rng.normal(0, 5, (2, 3, 3))
    names = ["intensity", "pad", "z", "y", "x", "ring"]
    dt = np.dtype(list(zip(names, [">f4", "V4", ">f8", ">f8", ">f8", ">u2"])))
    rec = np.zeros((2, 3), dt)
    rec["x"], rec["y"], rec["z"], rec["intensity"] = xyz[..., 0], xyz[..., 1], xyz[..., 2], 9.0
    row_step = 3 * dt.itemsize + 5
    data = np.zeros((2, row_step), np.uint8)
    data[:, : 3 * dt.itemsize] = rec.view(np.uint8).reshape(2, -1)
    PF = rm.TYPESTORE.types["sensor_msgs/msg/PointField"]
    offsets = {n: dt.fields[n][1] for n in dt.names}
    fields = [PF(name="intensity", offset=0, datatype=7, count=1)] + [
        PF(name=n, offset=offsets[n], datatype=8, count=1) for n in ("z", "y", "x")
    ]
    msg = rm.TYPESTORE.types[rm.POINT_CLOUD2](
        header=rm.make_header(0, "velodyne"), height=2, width=3, fields=fields, is_bigendian=True,
        point_step=dt.itemsize, row_step=row_step, data=data.reshape(-1), is_dense=True,
    )  # fmt: skip
    np.testing.assert_allclose(rm.pointcloud2_to_xyz(cdr(msg)), xyz.reshape(-1, 3).astype(np.float32))
    msg.fields = fields[:2]
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['x', 'y'\]; it has \['intensity', 'z'\]"):
        rm.pointcloud2_to_xyz(msg)


def test_pointcloud2_errors():
    with pytest.raises(ValueError, match=r"expected an \(N, 3\) array"):
        rm.depth_to_pointcloud2(np.zeros((4, 2)), 0, "lidar")
    with pytest.raises(ValueError, match="point_step must be 12 or 16"):
        rm.depth_to_pointcloud2(np.zeros((4, 3)), 0, "lidar", point_step=20)
    msg = rm.depth_to_pointcloud2(np.zeros((4, 3)), 0, "lidar")
    msg.data = msg.data[:-4]
    with pytest.raises(ValueError, match="data has 60 bytes, expected height\\*row_step = 64"):
        rm.pointcloud2_to_xyz(msg)


# --- transforms ----------------------------------------------------------------------------------


def test_transform_round_trip_through_tf_message():
    T = rigid_transform(quaternion_to_matrix(0.1, -0.3, 0.2, 0.9), [0.5, -1.0, 2.0])
    tfs = [
        rm.transform_stamped_msg("base", "lidar", T, 42),
        rm.transform_stamped_msg("base", "cam", np.eye(4), 42),
    ]
    tfm = cdr(rm.tf_message(tfs))
    first = tfm.transforms[0]
    assert (first.header.frame_id, first.child_frame_id) == ("base", "lidar")
    assert rm.stamp_to_ns(first.header.stamp) == 42
    np.testing.assert_allclose(rm.transform_to_matrix(first), T, atol=1e-12)
    np.testing.assert_allclose(rm.transform_to_matrix(first.transform), T, atol=1e-12)
    np.testing.assert_array_equal(rm.transform_to_matrix(tfm.transforms[1]), np.eye(4))


def test_transform_rejects_non_rotation():
    T = np.eye(4)
    T[0, 0] = 2.0
    with pytest.raises(ValueError, match="not a rotation"):
        rm.transform_stamped_msg("a", "b", T, 0)
    T = np.diag([1.0, 1.0, -1.0, 1.0])  # a reflection
    with pytest.raises(ValueError, match="not a rotation"):
        rm.transform_stamped_msg("a", "b", T, 0)


# --- sensor_msgs/CompressedImage -------------------------------------------------------------------


def smooth_rgb(h: int = 32, w: int = 48) -> np.ndarray:
    """A smooth colour image (JPEG keeps it within a few levels; channels differ, so a BGR/RGB swap shows)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 60)], axis=2).astype(np.uint8)


def test_png_round_trip_is_exact_and_rgb_ordered(rgb):
    msg = cdr(rm.compressed_image_msg(rgb, "png", 1_600_000_000_000_000_007, "cam"))
    assert msg.__msgtype__ == rm.COMPRESSED_IMAGE and msg.format == "rgb8; png compressed bgr8"
    assert rm.is_compressed(msg) and rm.compressed_format(msg) == "png"
    np.testing.assert_array_equal(rm.compressed_to_image(msg), rgb)
    np.testing.assert_array_equal(rm.msg_to_rgb(msg), rgb)
    assert rm.stamp_to_ns(msg.header.stamp) == 1_600_000_000_000_000_007


def test_jpeg_round_trip_is_close_and_rgb_ordered():
    image = smooth_rgb()
    msg = cdr(rm.compressed_image_msg(image, "jpeg", 5, "cam", jpeg_quality=95))
    out = rm.msg_to_rgb(msg)
    assert out.shape == image.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - image.astype(int))
    assert err.mean() < 2.0 and err.max() <= 16
    swapped = np.abs(out[..., ::-1].astype(int) - image.astype(int)).mean()
    assert swapped > 30  # channels are in RGB order, not BGR


@pytest.mark.parametrize(
    ("fmt_field", "expected"),
    [("jpeg", "jpeg"), ("bgr8; jpeg compressed bgr8", "jpeg"), ("JPG", "jpeg"), ("png", "png"),
     ("mono8; png compressed mono8", "png"), ("", "png")],
)  # fmt: skip
def test_format_field_variants(rgb, fmt_field, expected):
    msg = rm.compressed_image_msg(rgb, expected, 1, "cam")
    msg.format = fmt_field
    assert rm.compressed_format(msg) == expected
    assert rm.msg_to_rgb(cdr(msg)).shape == rgb.shape


def test_gray_png_becomes_rgb():
    import cv2

    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    ok, buf = cv2.imencode(".png", gray)
    msg = rm.TYPESTORE.types[rm.COMPRESSED_IMAGE](header=rm.make_header(1, "cam"), format="png", data=buf)
    out = rm.msg_to_rgb(cdr(msg))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def corrupt_payloads() -> dict[str, tuple[str, bytes, str]]:
    jpeg = bytes(rm.compressed_image_msg(smooth_rgb(), "jpeg", 1, "c").data)
    png = bytes(rm.compressed_image_msg(smooth_rgb(), "png", 1, "c").data)
    return {
        "truncated jpeg": ("jpeg", jpeg[: len(jpeg) // 2], "truncated"),
        "jpeg without its last byte": ("jpeg", jpeg[:-1], "truncated"),
        "truncated png": ("png", png[: len(png) - 20], "truncated"),
        "damaged png": ("png", png[:40] + bytes(200) + png[240:], "does not decode"),
        "empty": ("jpeg", b"", "no data"),
        "png labelled jpeg": ("jpeg", png, "does not start like one"),
        "garbage, no format": ("", b"not an image at all", "neither JPEG nor PNG"),
    }


@pytest.mark.parametrize("case", list(corrupt_payloads()))
def test_corrupt_payloads_are_corrupt_image_errors(case):
    fmt, data, message = corrupt_payloads()[case]
    msg = rm.TYPESTORE.types[rm.COMPRESSED_IMAGE](
        header=rm.make_header(1, "cam"), format=fmt, data=np.frombuffer(data, np.uint8).copy()
    )
    with pytest.raises(rm.CorruptImageError, match=message):
        rm.msg_to_rgb(cdr(msg))


def test_depth_and_unknown_compressed_formats_are_wrong_topics_not_corrupt_frames(rgb):
    msg = rm.compressed_image_msg(rgb, "png", 1, "cam")
    msg.format = "16UC1; compressedDepth png"
    with pytest.raises(ValueError, match="compressed_depth_image_transport") as info:
        rm.msg_to_rgb(msg)
    assert not isinstance(info.value, rm.CorruptImageError)
    msg.format = "theora"
    with pytest.raises(ValueError, match="unsupported CompressedImage format 'theora'"):
        rm.msg_to_rgb(msg)
    with pytest.raises(ValueError, match="compressed format must be one of"):
        rm.compressed_image_msg(rgb, "webp", 1, "cam")


def test_msg_to_rgb_rejects_depth_images_and_reads_colour_images(rgb):
    np.testing.assert_array_equal(rm.msg_to_rgb(cdr(rm.image_to_msg(rgb, "bgr8", 1, "cam"))), rgb)
    depth = rm.depth_image_msg(np.ones((H, W), np.float32), 1, "cam")
    with pytest.raises(ValueError, match="expected a camera image .* got encoding '32FC1'"):
        rm.msg_to_rgb(depth)
