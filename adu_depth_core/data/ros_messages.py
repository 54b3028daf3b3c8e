"""ROS 2 message building and reading without rclpy, on `rosbags`' Jazzy typestore.

Builders return `rosbags` message objects (serialise with `serialize`, write into bags with
`rosbag_io`). Readers are duck-typed: they take those objects *or* live rclpy messages, whose
array fields are `array.array`/numpy/bytes, so the ROS node and the bag tools share one decoder.

Conventions (docs/ARCHITECTURE.md, REP 117/118):
- images at the boundary are RGB uint8 HxWx3; `image_to_msg` always takes RGB(A) and stores it in
  the encoding's byte order, `msg_to_image` always gives RGB back;
- depth is metres: 32FC1 in metres with NaN invalid, 16UC1 in millimetres with 0 invalid;
- a camera topic carries sensor_msgs/Image or, as image_transport's `compressed` transport publishes
  it on `<image topic>/compressed`, sensor_msgs/CompressedImage (JPEG or PNG); `msg_to_rgb` reads both;
- a transform matrix `T_parent_from_child` maps child-frame points into the parent frame, the
  meaning of a `geometry_msgs/TransformStamped` with `header.frame_id = parent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

from adu_depth_core.depth_traits import TRAITS, UINT16_MM
from adu_depth_core.geometry import (
    check_intrinsics,
    check_rigid_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
)

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)  # what a camera image topic may carry
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
TRANSFORM_STAMPED = "geometry_msgs/msg/TransformStamped"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"

_T = TYPESTORE.types
_POINT_FIELD = _T["sensor_msgs/msg/PointField"]

# encoding -> (bytes per pixel, numpy dtype of one channel, channels)
_LAYOUT: dict[str, tuple[int, str, int]] = {
    "rgb8": (3, "u1", 3),
    "bgr8": (3, "u1", 3),
    "rgba8": (4, "u1", 4),
    "bgra8": (4, "u1", 4),
    "mono8": (1, "u1", 1),
    "yuv422": (2, "u1", 2),  # UYVY byte order (sensor_msgs image_encodings / cv_bridge)
    "yuv422_yuy2": (2, "u1", 2),  # YUYV byte order
    "32FC1": (4, "f4", 1),
    "16UC1": (2, "u2", 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "yuv422_yuy2")
DEPTH_ENCODINGS = tuple(TRAITS)  # 32FC1 metres, 16UC1 millimetres (`depth_traits`)
SUPPORTED_ENCODINGS = COLOR_ENCODINGS + DEPTH_ENCODINGS

# RGB(A) array -> stored bytes, and stored bytes -> RGB (None = no conversion)
_TO_WIRE = {
    "bgr8": cv2.COLOR_RGB2BGR,
    "bgra8": cv2.COLOR_RGBA2BGRA,
    "yuv422": cv2.COLOR_RGB2YUV_UYVY,
    "yuv422_yuy2": cv2.COLOR_RGB2YUV_YUY2,
}
_FROM_WIRE = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}

_POINT_DTYPES = {
    1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8",
}  # fmt: skip


# --- headers and serialisation -------------------------------------------------------------------


def make_header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header for an integer nanosecond stamp."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {stamp_ns}")
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return _T["std_msgs/msg/Header"](
        stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=str(frame_id)
    )


def stamp_to_ns(header_stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (rosbags or rclpy message)."""
    return int(header_stamp.sec) * 1_000_000_000 + int(header_stamp.nanosec)


def serialize(msg: Any) -> bytes:
    """CDR bytes of a typestore message (as stored in rosbag2 and sent over DDS)."""
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def deserialize(raw: bytes | memoryview, msgtype: str) -> Any:
    """Typestore message from CDR bytes; ValueError for unknown types or malformed data."""
    if msgtype not in TYPESTORE.types:
        raise ValueError(f"message type {msgtype!r} is not in the ROS 2 Jazzy typestore")
    try:
        return TYPESTORE.deserialize_cdr(raw, msgtype)
    except Exception as exc:  # rosbags raises struct/index/assertion errors on malformed CDR
        raise ValueError(f"malformed {msgtype} message ({type(exc).__name__}: {exc})") from None


def _as_bytes(data: Any) -> np.ndarray:
    """uint8 view of a message's data field (numpy array, bytes, array.array or list)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "buffer_info"):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)


# --- sensor_msgs/Image ---------------------------------------------------------------------------


def _check_encoding(encoding: str) -> None:
    if encoding not in _LAYOUT:
        raise ValueError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )


def _wire_array(array: np.ndarray, encoding: str) -> np.ndarray:
    """The HxW[xC] array as it is laid out in the message for `encoding` (input in RGB(A) order)."""
    a = np.asarray(array)
    if a.ndim < 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image for {encoding}: expected a non-empty HxW[xC] array, got shape {a.shape}")
    if encoding in DEPTH_ENCODINGS:
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim != 2:
            raise ValueError(f"{encoding} image: expected an HxW array, got shape {a.shape}")
        if encoding == "16UC1" and a.dtype != np.uint16:
            raise ValueError(f"16UC1 image: expected uint16 millimetres, got {a.dtype} (see depth_image_msg)")
        return a.astype("<" + _LAYOUT[encoding][1], copy=False)
    if a.dtype != np.uint8:
        raise ValueError(f"{encoding} image: expected uint8, got {a.dtype}")
    if encoding == "mono8":
        if a.ndim == 3 and a.shape[2] == 3:
            a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
        elif a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim != 2:
            raise ValueError(f"mono8 image: expected HxW gray or HxWx3 RGB, got shape {a.shape}")
        return a
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(
            f"{encoding} image: expected an RGB HxWx3 (or RGBA HxWx4) array, got shape {a.shape}"
        )
    a = np.ascontiguousarray(a)
    if encoding in ("rgba8", "bgra8") and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2RGBA)  # opaque alpha
    elif encoding in ("rgb8", "bgr8", "yuv422", "yuv422_yuy2") and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2RGB)
    if encoding.startswith("yuv422") and a.shape[1] % 2:
        raise ValueError(f"{encoding} image: width must be even (two pixels share chroma), got {a.shape[1]}")
    return cv2.cvtColor(a, _TO_WIRE[encoding]) if encoding in _TO_WIRE else a


def image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """height, width, encoding, is_bigendian, step and data (uint8) of an Image for `array`.

    Colour encodings take RGB (HxWx3) or RGBA (HxWx4) uint8 and reorder to the encoding's bytes;
    mono8 takes HxW gray (or RGB, converted); 32FC1 takes metres; 16UC1 takes uint16 millimetres.
    Use these fields to fill an rclpy Image in the node.
    """
    _check_encoding(encoding)
    wire = np.ascontiguousarray(_wire_array(array, encoding))
    height, width = wire.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(width * _LAYOUT[encoding][0]),
        "data": wire.reshape(-1).view(np.uint8).copy(),
    }


def image_to_msg(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an RGB(A)/gray/depth array (see `image_fields` for what each encoding takes)."""
    return _T[IMAGE](header=make_header(stamp_ns, frame_id), **image_fields(array, encoding))


def depth_image_msg(depth_m: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "32FC1") -> Any:
    """REP 118 depth image from metres (0 = invalid): 32FC1 with NaN invalid, or 16UC1 millimetres with 0."""
    if encoding not in TRAITS:
        raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")
    wire = TRAITS[encoding].from_metres(np.asarray(depth_m, dtype=np.float32))  # 16UC1: > 65.535 m invalid
    return image_to_msg(wire, encoding, stamp_ns, frame_id)


def _image_pixels(msg: Any) -> np.ndarray:
    """The HxW[xC] pixel array of an Image as stored (native byte order, row padding removed)."""
    encoding = str(msg.encoding)
    _check_encoding(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(f"{encoding} image has zero size ({height}x{width})")
    bpp, channel_dtype, channels = _LAYOUT[encoding]
    if step < width * bpp:
        raise ValueError(f"{encoding} image: step {step} is smaller than width*{bpp} = {width * bpp}")
    data = _as_bytes(msg.data)
    if data.size != height * step:
        raise ValueError(
            f"{encoding} image {height}x{width}: data has {data.size} bytes, "
            f"expected height*step = {height * step}"
        )
    rows = data.reshape(height, step)[:, : width * bpp]  # drop row padding
    dtype = np.dtype(channel_dtype).newbyteorder(">" if msg.is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="))
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def msg_to_image(msg: Any) -> np.ndarray:
    """Decode an Image: RGB uint8 HxWx3 for colour encodings (mono8 replicated), float32 HxW for 32FC1
    (as stored, NaN kept), float32 metres for 16UC1 (millimetres / 1000, 0 kept)."""
    pixels = _image_pixels(msg)
    encoding = str(msg.encoding)
    if encoding == "32FC1":
        return pixels.astype(np.float32, copy=False)
    if encoding == "16UC1":
        return UINT16_MM.to_metres(pixels)
    if encoding in _FROM_WIRE:
        return cv2.cvtColor(pixels, _FROM_WIRE[encoding])
    return pixels  # rgb8


def msg_to_rgb(msg: Any) -> np.ndarray:
    """Decode a camera message to RGB uint8 HxWx3: an Image in a colour encoding, or a CompressedImage
    (JPEG/PNG, `compressed_to_image`). ValueError naming the encoding for a depth or other non-colour
    Image (a 32FC1 depth topic given as the camera topic); `CorruptImageError` for a payload that does
    not decode."""
    if is_compressed(msg):
        return compressed_to_image(msg)
    if str(msg.encoding) not in COLOR_ENCODINGS:
        raise ValueError(
            f"expected a camera image (encoding {', '.join(COLOR_ENCODINGS)}), got encoding "
            f"{msg.encoding!r} ({msg.height}x{msg.width})"
        )
    return msg_to_image(msg)


def msg_to_depth(msg: Any) -> np.ndarray:
    """Depth in metres (float32 HxW) with the project's invalid convention: 0 for NaN, ±Inf and <= 0."""
    if str(msg.encoding) not in DEPTH_ENCODINGS:
        raise ValueError(
            f"depth image: expected encoding {' or '.join(DEPTH_ENCODINGS)}, got {msg.encoding!r}"
        )
    return TRAITS[str(msg.encoding)].to_metres(_image_pixels(msg))


# --- sensor_msgs/CompressedImage ------------------------------------------------------------------

COMPRESSED_FORMATS = ("jpeg", "png")
_MAGIC = {"jpeg": b"\xff\xd8", "png": b"\x89PNG\r\n\x1a\n"}
_EXTENSION = {"jpeg": ".jpg", "png": ".png"}


class CorruptImageError(ValueError):
    """A CompressedImage whose payload does not decode (truncated, damaged, empty): a per-frame error,
    so readers skip and count the frame instead of stopping."""


def is_compressed(msg: Any) -> bool:
    """True for a sensor_msgs/CompressedImage (it has `format` and no `encoding`)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def compressed_image_msg(
    rgb: np.ndarray, fmt: str, stamp_ns: int, frame_id: str, *, jpeg_quality: int = 95
) -> Any:
    """sensor_msgs/CompressedImage of an RGB uint8 HxWx3 array, as image_transport's compressed
    publisher writes it: the image is encoded from bgr8 and `format` reads "rgb8; jpeg compressed bgr8"
    (or "... png compressed bgr8")."""
    if fmt not in COMPRESSED_FORMATS:
        raise ValueError(f"compressed format must be one of {list(COMPRESSED_FORMATS)}, got {fmt!r}")
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"compressed image: expected a non-empty RGB uint8 HxWx3 array, got {a.dtype} {a.shape}"
        )
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(_EXTENSION[fmt], cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {a.shape[1]}x{a.shape[0]} image as {fmt}")
    return _T[COMPRESSED_IMAGE](
        header=make_header(stamp_ns, frame_id),
        format=f"rgb8; {fmt} compressed bgr8",
        data=np.asarray(buf, dtype=np.uint8).reshape(-1).copy(),
    )


def compressed_format(msg: Any) -> str:
    """ "jpeg" or "png" from a CompressedImage's `format` field ("bgr8; jpeg compressed bgr8", "jpeg",
    "png", ...; empty: from the payload's magic bytes). ValueError for compressedDepth or other formats."""
    text = str(msg.format).strip().lower()
    if "compresseddepth" in text:
        raise ValueError(
            f"CompressedImage format {msg.format!r} is compressed_depth_image_transport's depth format, not "
            "a camera image; subscribe to the colour camera's image/compressed topic"
        )
    found = [f for f in COMPRESSED_FORMATS if f in text or (f == "jpeg" and "jpg" in text)]
    if len(found) == 1:
        return found[0]
    if not text:
        head = bytes(_as_bytes(msg.data)[:8])
        for fmt, magic in _MAGIC.items():
            if head.startswith(magic):
                return fmt
        raise CorruptImageError(
            "CompressedImage with an empty format field and a payload that is neither JPEG nor PNG"
        )
    raise ValueError(
        f"unsupported CompressedImage format {msg.format!r}; supported: {', '.join(COMPRESSED_FORMATS)}"
    )


def compressed_to_image(msg: Any) -> np.ndarray:
    """Decode a CompressedImage (JPEG or PNG, colour or gray) to RGB uint8 HxWx3 with OpenCV.

    `CorruptImageError` when the payload is empty, is not of its declared format, is truncated (a JPEG
    without its end-of-image marker, a PNG without IEND) or does not decode; ValueError (not corrupt,
    a wrong topic) for compressedDepth and unknown formats.
    """
    fmt = compressed_format(msg)
    data = _as_bytes(msg.data)
    if data.size == 0:
        raise CorruptImageError(f"{fmt} CompressedImage has no data")
    raw = data.tobytes()
    if not raw.startswith(_MAGIC[fmt]):
        raise CorruptImageError(
            f"CompressedImage says {fmt} but the payload does not start like one "
            f"(first bytes {raw[:4].hex()})"
        )
    # OpenCV decodes some truncated files partially (grey bottom rows), so check the end markers first
    if fmt == "jpeg" and not raw.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise CorruptImageError(
            f"jpeg CompressedImage of {data.size} bytes is truncated (no end-of-image marker)"
        )
    if fmt == "png" and b"IEND" not in raw[-16:]:
        raise CorruptImageError(f"png CompressedImage of {data.size} bytes is truncated (no IEND chunk)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.size == 0:
        raise CorruptImageError(f"{fmt} CompressedImage of {data.size} bytes does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- sensor_msgs/CameraInfo ----------------------------------------------------------------------


class Calibration(NamedTuple):
    """Camera calibration from a CameraInfo: K 3x3, D (n,), R 3x3, P 3x4 (float64), size (H, W)."""

    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    P: np.ndarray
    size: tuple[int, int]

    @property
    def baseline(self) -> float:
        """Stereo baseline in metres from P (Tx = −fx·B for the right camera of a rectified pair)."""
        return float(-self.P[0, 3] / self.P[0, 0])


def _matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.size != int(np.prod(shape)):
        raise ValueError(f"{what}: expected {int(np.prod(shape))} values for shape {shape}, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: values must be finite")
    return a.reshape(shape)


def camera_info_msg(
    K: np.ndarray,
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str,
    D: Sequence[float] | np.ndarray | None = None,
    R: np.ndarray | None = None,
    P: np.ndarray | None = None,
    distortion_model: str = "plumb_bob",
) -> Any:
    """sensor_msgs/CameraInfo; the defaults describe a rectified camera: D = 0 (5 terms), R = I, P = [K|0]."""
    K = check_intrinsics(K)
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"camera_info size must be positive, got {height}x{width}")
    D = np.zeros(5) if D is None else np.asarray(D, dtype=np.float64).reshape(-1)
    R = np.eye(3) if R is None else _matrix(R, (3, 3), "rectification matrix R")
    P = np.hstack([K, np.zeros((3, 1))]) if P is None else _matrix(P, (3, 4), "projection matrix P")
    return _T[CAMERA_INFO](
        header=make_header(stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        distortion_model=distortion_model,
        d=D.copy(),
        k=K.reshape(-1).copy(),
        r=R.reshape(-1).copy(),
        p=P.reshape(-1).copy(),
        binning_x=0,
        binning_y=0,
        roi=_T["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def camera_info_to_calibration(msg: Any) -> Calibration:
    """K, D, R, P and (H, W) of a CameraInfo; ValueError for an uncalibrated (all-zero K) camera."""
    frame = getattr(getattr(msg, "header", None), "frame_id", "?")
    K = check_intrinsics(
        _matrix(msg.k, (3, 3), f"camera_info K ({frame})"), f"camera_info K of frame {frame!r}"
    )
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise ValueError(f"camera_info of frame {frame!r} has zero size ({height}x{width})")
    return Calibration(
        K=K,
        D=np.asarray(msg.d, dtype=np.float64).reshape(-1).copy(),
        R=_matrix(msg.r, (3, 3), f"camera_info R ({frame})"),
        P=_matrix(msg.p, (3, 4), f"camera_info P ({frame})"),
        size=(height, width),
    )


# --- sensor_msgs/PointCloud2 ---------------------------------------------------------------------


def depth_to_pointcloud2(points_xyz: np.ndarray, stamp_ns: int, frame_id: str, point_step: int = 16) -> Any:
    """Unorganised PointCloud2 (height 1) with float32 x, y, z; point_step 16 pads like PCL's PointXYZ."""
    pts = np.asarray(points_xyz, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points: expected an (N, 3) array, got shape {pts.shape}")
    if point_step not in (12, 16):
        raise ValueError(f"point_step must be 12 or 16, got {point_step}")
    buf = np.zeros((len(pts), point_step // 4), dtype="<f4")
    buf[:, :3] = pts
    fields = [
        _POINT_FIELD(name=n, offset=4 * i, datatype=_POINT_FIELD.FLOAT32, count=1)
        for i, n in enumerate("xyz")
    ]
    return _T[POINT_CLOUD2](
        header=make_header(stamp_ns, frame_id),
        height=1,
        width=len(pts),
        fields=fields,
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * len(pts),
        data=buf.reshape(-1).view(np.uint8).copy(),
        is_dense=bool(np.all(np.isfinite(pts))),
    )


def pointcloud2_to_xyz(msg: Any) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 read by field offsets (any point_step, row padding,
    organised or not, either byte order); points with a non-finite coordinate are skipped."""
    fields = {str(f.name): f for f in msg.fields}
    missing = [n for n in "xyz" if n not in fields]
    if missing:
        raise ValueError(f"PointCloud2 lacks field(s) {missing}; it has {sorted(fields)}")
    height, width = int(msg.height), int(msg.width)
    step, row_step = int(msg.point_step), int(msg.row_step)
    if height * width == 0:
        return np.zeros((0, 3), dtype=np.float32)
    if row_step < width * step:
        raise ValueError(f"PointCloud2: row_step {row_step} < width*point_step = {width * step}")
    data = _as_bytes(msg.data)
    if data.size != height * row_step:
        raise ValueError(
            f"PointCloud2: data has {data.size} bytes, expected height*row_step = {height * row_step}"
        )
    points = data.reshape(height, row_step)[:, : width * step].reshape(height * width, step)
    order = ">" if msg.is_bigendian else "<"
    cols = []
    for name in "xyz":
        f = fields[name]
        if int(f.datatype) not in _POINT_DTYPES:
            raise ValueError(f"PointCloud2 field {name!r} has unknown datatype {f.datatype}")
        dtype = np.dtype(order + _POINT_DTYPES[int(f.datatype)])
        start = int(f.offset)
        if start + dtype.itemsize > step:
            raise ValueError(f"PointCloud2 field {name!r} at offset {start} overruns point_step {step}")
        cols.append(np.ascontiguousarray(points[:, start : start + dtype.itemsize]).view(dtype)[:, 0])
    xyz = np.stack(cols, axis=1).astype(np.float32)
    return xyz[np.all(np.isfinite(xyz), axis=1)]


# --- geometry_msgs/TransformStamped, tf2_msgs/TFMessage -------------------------------------------


def transform_stamped_msg(parent: str, child: str, T: np.ndarray, stamp_ns: int) -> Any:
    """TransformStamped parent -> child for T_parent_from_child (maps child-frame points into parent)."""
    what = f"transform {parent} -> {child}"
    T = check_rigid_transform(_matrix(T, (4, 4), what), what)
    qx, qy, qz, qw = matrix_to_quaternion(T[:3, :3])
    tx, ty, tz = (float(v) for v in T[:3, 3])
    return _T[TRANSFORM_STAMPED](
        header=make_header(stamp_ns, parent),
        child_frame_id=str(child),
        transform=_T["geometry_msgs/msg/Transform"](
            translation=_T["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=_T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
    )


def tf_message(transforms: Sequence[Any]) -> Any:
    """tf2_msgs/TFMessage holding TransformStamped messages (the payload of /tf and /tf_static)."""
    return _T[TF_MESSAGE](transforms=list(transforms))


def transform_to_matrix(transform_msg: Any) -> np.ndarray:
    """4x4 T_parent_from_child of a TransformStamped (or a bare geometry_msgs/Transform)."""
    tf = getattr(transform_msg, "transform", transform_msg)
    q, t = tf.rotation, tf.translation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(q.x, q.y, q.z, q.w)
    T[:3, 3] = (t.x, t.y, t.z)
    return T
