"""rosbag2 files (MCAP or sqlite3) through `rosbags`, without ROS: the synthetic rig's bag, a generic
writer for bag-eval's output, and reading helpers with clear errors. Topics, frames and the rig
extrinsic are documented in docs/ROSBAG.md.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from rosbags.highlevel import AnyReaderError
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.geometry import backproject_depth, rigid_transform, transform_points
from adu_depth_core.paths import naming

# --- the rig's topics and frames ----------------------------------------------------------------

LEFT_IMAGE = "/camera/left/image_raw"
LEFT_INFO = "/camera/left/camera_info"
RIGHT_IMAGE = "/camera/right/image_raw"
RIGHT_INFO = "/camera/right/camera_info"
DEPTH_GT = "/camera/left/depth_gt"
LIDAR_POINTS = "/lidar/points"
TF_STATIC = "/tf_static"

LEFT_FRAME = "camera_left_optical_frame"
RIGHT_FRAME = "camera_right_optical_frame"
LIDAR_FRAME = "lidar"

RIG_TOPICS: dict[str, str] = {
    TF_STATIC: rm.TF_MESSAGE,
    LEFT_IMAGE: rm.IMAGE,
    LEFT_INFO: rm.CAMERA_INFO,
    RIGHT_IMAGE: rm.IMAGE,
    RIGHT_INFO: rm.CAMERA_INFO,
    DEPTH_GT: rm.IMAGE,
    LIDAR_POINTS: rm.POINT_CLOUD2,
}

# Rig extrinsic: the LiDAR sits 0.3 m above and 0.1 m behind the left camera, level, with REP 103
# axes (x forward, y left, z up); the camera optical frame has x right, y down, z forward.
# Rows of R are the LiDAR axes written in camera coordinates.
_R_LIDAR_FROM_CAMERA = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_LIDAR_ORIGIN_IN_CAMERA = np.array([0.0, -0.3, -0.1])  # y down, so "above" is −y; "behind" is −z
T_LIDAR_FROM_CAMERA = rigid_transform(_R_LIDAR_FROM_CAMERA, -_R_LIDAR_FROM_CAMERA @ _LIDAR_ORIGIN_IN_CAMERA)
T_CAMERA_FROM_LIDAR = rigid_transform(_R_LIDAR_FROM_CAMERA.T, _LIDAR_ORIGIN_IN_CAMERA)

DEFAULT_START_NS = 1_600_000_000_000_000_000
# what rosbags' storage layers raise on damaged files (its sqlite3 backend is apsw, a rosbags dependency)
_STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    ReaderError,
    AnyReaderError,
    sqlite3.Error,
    struct.error,
    EOFError,
)
try:
    import apsw

    _STORAGE_ERRORS += (apsw.Error,)
except ImportError:  # pragma: no cover - older rosbags used the stdlib sqlite3
    pass
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

_INFINITE = QosTime(2147483647, 4294967295)
# What `ros2 bag record` stores for a latched (static) publisher, so `ros2 bag play` re-offers
# /tf_static as transient-local and late subscribers still receive the rig's transforms.
LATCHED_QOS = Qos(
    QosHistory.UNKNOWN,
    0,
    QosReliability.RELIABLE,
    QosDurability.TRANSIENT_LOCAL,
    _INFINITE,
    _INFINITE,
    QosLiveliness.AUTOMATIC,
    _INFINITE,
    avoid_ros_namespace_conventions=False,
)
LATCHED_TOPICS = (TF_STATIC,)


# --- writing ------------------------------------------------------------------------------------


@contextmanager
def _atomic_bag_path(out_dir: str | Path) -> Iterator[Path]:
    """Yield a not-yet-existing bag path in a temp sibling folder; rename it to `out_dir` on success."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(
            f"output bag already exists: {out} (choose a new path; bags are never overwritten)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        # the bag keeps its final name inside the temp folder: rosbag2 names its storage file after it
        bag = tmp_root / out.name
        with naming(out, always=True):  # a full disk names the output bag, not the temp folder
            try:
                yield bag
            except sqlite3.OperationalError as exc:  # sqlite reports a full disk as its own error
                raise ValueError(f"{out}: writing the sqlite3 bag failed: {exc}") from None
        if out.exists():
            raise FileExistsError(f"output bag appeared while writing: {out}")
        os.rename(bag, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def _storage_plugin(storage: str) -> StoragePlugin:
    if storage not in STORAGES:
        raise ValueError(f"bag storage must be one of {sorted(STORAGES)}, got {storage!r}")
    return STORAGES[storage]


def write_topics_bag(
    out_dir: str | Path, messages: Iterable[tuple[str, str, int, Any]], storage: str = "mcap"
) -> Path:
    """Write (topic, msgtype, stamp_ns, msg) tuples to a new rosbag2 folder and return its path.

    `msg` is a typestore message (see ros_messages) or its CDR bytes; `stamp_ns` becomes the bag's
    receive time. /tf_static is written with transient-local QoS. The bag appears at `out_dir` only
    when complete (written into a temp sibling and renamed); `out_dir` must not exist.
    """
    plugin = _storage_plugin(storage)
    with _atomic_bag_path(out_dir) as bag:
        with Writer(bag, version=9, storage_plugin=plugin) as writer:
            connections: dict[str, Any] = {}
            for topic, msgtype, stamp_ns, msg in messages:
                conn = connections.get(topic)
                if conn is None:
                    if msgtype not in rm.TYPESTORE.types:
                        raise ValueError(
                            f"{topic}: message type {msgtype!r} is not in the ROS 2 Jazzy typestore"
                        )
                    qos = [LATCHED_QOS] if topic in LATCHED_TOPICS else []
                    conn = writer.add_connection(
                        topic, msgtype, typestore=rm.TYPESTORE, offered_qos_profiles=qos
                    )
                    connections[topic] = conn
                elif conn.msgtype != msgtype:
                    raise ValueError(
                        f"{topic}: message type {msgtype!r} differs from the topic's {conn.msgtype!r}"
                    )
                if isinstance(msg, (bytes, bytearray, memoryview)):
                    raw = bytes(msg)
                else:
                    if getattr(msg, "__msgtype__", msgtype) != msgtype:
                        raise ValueError(f"{topic}: message is a {msg.__msgtype__}, declared as {msgtype}")
                    raw = rm.serialize(msg)
                if int(stamp_ns) < 0:
                    raise ValueError(f"{topic}: stamp must be >= 0 ns, got {stamp_ns}")
                writer.write(conn, int(stamp_ns), raw)
    return Path(out_dir)


def _frame_arrays(frame: Any, index: int) -> dict[str, Any]:
    """The rig frame's fields, checked, as a dict (frames are `synthetic.RigFrame`-like objects)."""
    try:
        f = {k: getattr(frame, k) for k in ("left", "right", "depth", "lidar_depth", "K", "baseline")}
    except AttributeError as exc:
        raise ValueError(
            f"rig frame {index}: {exc} (expected left, right, depth, lidar_depth, K, baseline)"
        ) from None
    left, right = np.asarray(f["left"]), np.asarray(f["right"])
    if left.dtype != np.uint8 or left.ndim != 3 or left.shape[2] != 3 or right.shape != left.shape:
        raise ValueError(
            f"rig frame {index}: left/right must be uint8 HxWx3 of one shape, got {left.shape} {left.dtype} "
            f"and {right.shape}"
        )
    for key in ("depth", "lidar_depth"):
        if np.shape(f[key]) != left.shape[:2]:
            raise ValueError(
                f"rig frame {index}: {key} must be HxW = {left.shape[:2]}, got {np.shape(f[key])}"
            )
    if not float(f["baseline"]) > 0:
        raise ValueError(f"rig frame {index}: baseline must be > 0 m, got {f['baseline']}")
    return {**f, "left": left, "right": right, "baseline": float(f["baseline"])}


def rig_static_transforms(baseline: float, stamp_ns: int) -> Any:
    """TFMessage for the rig: left camera -> right camera (+B along x) and left camera -> LiDAR."""
    T_left_from_right = np.eye(4)
    T_left_from_right[0, 3] = baseline
    return rm.tf_message(
        [
            rm.transform_stamped_msg(LEFT_FRAME, RIGHT_FRAME, T_left_from_right, stamp_ns),
            rm.transform_stamped_msg(LEFT_FRAME, LIDAR_FRAME, T_CAMERA_FROM_LIDAR, stamp_ns),
        ]
    )


def _rig_messages(
    frames: Iterable[Any], rate_hz: float, start_ns: int
) -> Iterator[tuple[str, str, int, Any]]:
    baseline = None
    for i, frame in enumerate(frames):
        f = _frame_arrays(frame, i)
        t = start_ns + round(i * 1e9 / rate_hz)
        if baseline is None:
            baseline = f["baseline"]
            yield TF_STATIC, rm.TF_MESSAGE, start_ns, rig_static_transforms(baseline, start_ns)
        elif not np.isclose(f["baseline"], baseline, rtol=0, atol=1e-9):
            raise ValueError(
                f"rig frame {i}: baseline {f['baseline']} differs from frame 0's {baseline} (/tf_static)"
            )
        K = np.asarray(f["K"], dtype=np.float64)
        h, w = f["left"].shape[:2]
        P_right = np.hstack([K, np.zeros((3, 1))])
        P_right[0, 3] = -K[0, 0] * baseline  # ROS stereo convention: Tx = −fx·B
        points_cam, _ = backproject_depth(np.asarray(f["lidar_depth"], dtype=np.float32), K)
        yield LEFT_IMAGE, rm.IMAGE, t, rm.image_to_msg(f["left"], "rgb8", t, LEFT_FRAME)
        yield LEFT_INFO, rm.CAMERA_INFO, t, rm.camera_info_msg(K, h, w, t, LEFT_FRAME)
        yield RIGHT_IMAGE, rm.IMAGE, t, rm.image_to_msg(f["right"], "rgb8", t, RIGHT_FRAME)
        yield RIGHT_INFO, rm.CAMERA_INFO, t, rm.camera_info_msg(K, h, w, t, RIGHT_FRAME, P=P_right)
        yield DEPTH_GT, rm.IMAGE, t, rm.depth_image_msg(f["depth"], t, LEFT_FRAME)
        points_lidar = transform_points(T_LIDAR_FROM_CAMERA, points_cam)
        yield LIDAR_POINTS, rm.POINT_CLOUD2, t, rm.depth_to_pointcloud2(points_lidar, t, LIDAR_FRAME)
    if baseline is None:
        raise ValueError("write_rig_bag: no frames given")


def write_rig_bag(
    out_dir: str | Path,
    frames: Iterable[Any],
    storage: str = "mcap",
    rate_hz: float = 10.0,
    start_ns: int = DEFAULT_START_NS,
) -> Path:
    """Write stereo rig frames (`synthetic.RigFrame`-like: left, right, depth, lidar_depth, K, baseline)
    as a rosbag2 with the topics of docs/ROSBAG.md, frame i stamped start_ns + i/rate_hz seconds."""
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    if int(start_ns) < 0:
        raise ValueError(f"start_ns must be >= 0, got {start_ns}")
    return write_topics_bag(out_dir, _rig_messages(frames, float(rate_hz), int(start_ns)), storage)


# --- reading ------------------------------------------------------------------------------------


@contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """Open a rosbag2 folder (or a single .mcap/.db3 file) as a `rosbags` Reader, with clear errors:
    FileNotFoundError for a missing path, ValueError naming the path for anything that is not a
    readable bag."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"rosbag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except (*_STORAGE_ERRORS, OSError) as exc:
        raise ValueError(
            f"{path}: not a readable rosbag2 bag (expected a folder with metadata.yaml and .mcap/.db3 "
            f"files): {exc}"
        ) from None
    try:
        yield reader
    finally:
        reader.close()


def _bag_name(reader: Any) -> str:
    """The path(s) of a Reader (one) or an AnyReader (several) for error messages."""
    if getattr(reader, "path", None) is not None:
        return str(reader.path)
    return ", ".join(str(p) for p in getattr(reader, "paths", ["?"]))


def bag_topics(reader: Any) -> dict[str, str]:
    """topic -> msgtype of an open Reader or AnyReader."""
    return {c.topic: c.msgtype for c in reader.connections}


def require_topics(reader: Any, topics: Iterable[str] | Mapping[str, str]) -> None:
    """ValueError listing the bag's topics when one is missing (or, for a mapping topic -> msgtype,
    has another type)."""
    have = bag_topics(reader)
    listing = ", ".join(f"{t} [{m}]" for t, m in sorted(have.items())) or "none"
    missing = [t for t in topics if t not in have]
    if missing:
        raise ValueError(
            f"{_bag_name(reader)}: missing topic(s) {', '.join(missing)}; the bag has: {listing}"
        )
    if isinstance(topics, Mapping):
        wrong = [f"{t} is {have[t]}, expected {m}" for t, m in topics.items() if have[t] != m]
        if wrong:
            raise ValueError(f"{_bag_name(reader)}: {'; '.join(wrong)}")


def iter_topic(reader: Any, topic: str) -> Iterator[tuple[int, Any]]:
    """(stamp_ns, message) of one topic in bag order; the stamp is the header stamp (the bag's
    receive time for header-less messages such as TFMessage)."""
    for _, stamp, msg in iter_topics(reader, [topic]):
        yield stamp, msg


def iter_topics(reader: Any, topics: Iterable[str]) -> Iterator[tuple[str, int, Any]]:
    """(topic, stamp_ns, message) of several topics in one pass, in bag order (stamps as `iter_topic`)."""
    topics = list(topics)
    require_topics(reader, topics)
    conns = [c for c in reader.connections if c.topic in topics]
    names = " / ".join(topics)
    deser = getattr(reader, "deserialize", None)  # AnyReader carries the bag's own typestore
    messages = reader.messages(connections=conns)
    while True:
        try:
            conn, t_ns, raw = next(messages)
            msg = deser(raw, conn.msgtype) if deser else rm.deserialize(raw, conn.msgtype)
        except StopIteration:
            return
        except (*_STORAGE_ERRORS, ValueError) as exc:
            raise ValueError(f"{_bag_name(reader)}: corrupt bag while reading {names}: {exc}") from None
        except Exception as exc:  # AnyReader's own deserialiser on a malformed message
            raise ValueError(f"{_bag_name(reader)}: malformed message on {names}: {exc}") from None
        header = getattr(msg, "header", None)
        yield conn.topic, (rm.stamp_to_ns(header.stamp) if header is not None else int(t_ns)), msg


def read_static_transforms(reader: Any) -> dict[tuple[str, str], np.ndarray]:
    """{(parent, child): 4x4 T_parent_from_child} from /tf_static (empty when the bag has none)."""
    tfs: dict[tuple[str, str], np.ndarray] = {}
    if TF_STATIC not in bag_topics(reader):
        return tfs
    for _, msg in iter_topic(reader, TF_STATIC):
        for tf in msg.transforms:
            key = (str(tf.header.frame_id).lstrip("/"), str(tf.child_frame_id).lstrip("/"))
            tfs[key] = rm.transform_to_matrix(tf)
    return tfs


def lookup_transform(tfs: Mapping[tuple[str, str], np.ndarray], target: str, source: str) -> np.ndarray:
    """4x4 T_target_from_source (maps `source`-frame points into `target`), chaining static
    transforms in either direction like tf2's lookupTransform(target, source)."""
    edges: dict[str, list[tuple[str, np.ndarray]]] = {}
    for (parent, child), T in tfs.items():
        T = np.asarray(T, dtype=np.float64)
        edges.setdefault(child, []).append((parent, T))
        edges.setdefault(parent, []).append((child, np.linalg.inv(T)))
    seen = {source}
    queue: deque[tuple[str, np.ndarray]] = deque([(source, np.eye(4))])
    while queue:  # breadth first: the shortest chain
        frame, T_frame_from_source = queue.popleft()
        if frame == target:
            return T_frame_from_source
        for nbr, T_nbr_from_frame in edges.get(frame, []):
            if nbr not in seen:
                seen.add(nbr)
                queue.append((nbr, T_nbr_from_frame @ T_frame_from_source))
    frames = sorted(edges) or ["none"]
    raise ValueError(
        f"no static transform chain from {source!r} to {target!r}; frames on /tf_static: {', '.join(frames)}"
    )


class StampMatch(NamedTuple):
    """Result of `match_by_stamp`: (i, j) index pairs sorted by i, and how many of a and b went unpaired."""

    pairs: list[tuple[int, int]]
    unmatched_a: int
    unmatched_b: int


def match_by_stamp(stamps_a: Iterable[int], stamps_b: Iterable[int], tolerance_ns: int = 0) -> StampMatch:
    """Pair stamps of two streams: exact with tolerance 0, else nearest within `tolerance_ns`.

    Each stamp is used at most once; candidate pairs are taken closest first, so a dropped frame
    in one stream leaves its neighbours paired with their own partners.
    """
    a = np.asarray(list(stamps_a), dtype=np.int64)
    b = np.asarray(list(stamps_b), dtype=np.int64)
    if tolerance_ns < 0:
        raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
    order = np.argsort(b, kind="stable")
    sorted_b = b[order]
    lo = np.searchsorted(sorted_b, a - tolerance_ns, side="left")
    hi = np.searchsorted(sorted_b, a + tolerance_ns, side="right")
    candidates = [
        (abs(int(sorted_b[k]) - int(a[i])), i, int(order[k]))
        for i in range(len(a))
        for k in range(lo[i], hi[i])
    ]
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    return StampMatch(pairs, len(a) - len(pairs), len(b) - len(pairs))
