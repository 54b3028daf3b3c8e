"""The one bag frame source: rosbag2 frames of a camera (or stereo rig) with their geometry and ground truth,
read the same way for training (`rosbag_dataset.RosbagStereoDataset`) and evaluation (`eval_bag`).

    spec = FrameSpec(image_topic="/camera/left/image_raw", info_topic="/camera/left/camera_info",
                     lidar_topic="/lidar/points")
    with BagFrameSource(bag, spec) as source:       # pass 1: topics, stamps, pairing, camera_info, tf
        for frame in source.frames():               # pass 2: one forward read of the bag
            rgb, depth, K = source.left(frame), source.depth(frame), source.K(frame)

It owns:
- pairing by header stamp (`rosbag_io.match_by_stamp`): left <-> right image (`stereo_tolerance_ns`), then
  each (paired) left image <-> ground truth (`gt_tolerance_ns`);
- calibration from camera_info, per frame (the message with the frame's stamp, else the nearest), so a
  calibration that changes mid-bag is followed;
- rectification (`data.rectification`, `rectify` auto | always | never) and an optional `image_scale`;
- ground truth: a depth image registered to the left camera (rectified with it), or a LiDAR PointCloud2
  projected into the rectified left camera (`data.lidar`) with the extrinsic from /tf_static (or given).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data import rosbag_io as rb
from adu_depth_core.data.camera_info import CameraInfos, default_info_topic
from adu_depth_core.data.lidar import lidar_to_depth_image
from adu_depth_core.data.rectification import (
    ViewRectification,
    check_rectify,
    is_raw,
    stereo_rectification,
    view_rectification,
)
from adu_depth_core.geometry import check_rigid_transform, scale_intrinsics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameSpec:
    """What a frame source reads and how. At most one of `gt_topic` (depth image, 32FC1 m / 16UC1 mm) and
    `lidar_topic` (PointCloud2); `info_topic` None: no calibration (K unknown, images as recorded)."""

    image_topic: str
    info_topic: str | None
    right_topic: str | None = None
    right_info_topic: str | None = None
    gt_topic: str | None = None
    lidar_topic: str | None = None
    stereo_tolerance_ns: int = 0
    gt_tolerance_ns: int = 0
    T_cam_from_lidar: np.ndarray | None = None  # 4x4 LiDAR -> physical left camera; None: /tf_static
    rectify: str = "auto"
    image_scale: float = 1.0
    # stereo: always rectify as a calibrated pair (the dataset); else the right view is rectified only when
    # the pair is raw (a stereo teacher in bag-eval)
    stereo: bool = False
    # pass 1 checks every image's encoding and size and decodes compressed ones, dropping corrupt payloads
    # before pairing, so the frame count is final before decoding (the dataset allocates its arrays first)
    index_images: bool = False
    extrinsic_hint: str = "pass T_cam_from_lidar (4x4, LiDAR -> left camera)"

    @property
    def gt_source(self) -> str | None:
        return self.gt_topic or self.lidar_topic


def _seconds(stamp: int) -> str:
    return f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}"


# --- pass 1: topic indexes -----------------------------------------------------------------------


@dataclass
class _TopicIndex:
    stamps: list[int]
    ordinals: list[int] | None = None  # bag order of each stamp's message when some were skipped
    corrupt: int = 0  # CompressedImage payloads that did not decode (skipped)

    def ordinal(self, i: int) -> int:
        return i if self.ordinals is None else self.ordinals[i]


def _index_compressed(reader: Any, topic: str, where: str, size: tuple[int, int]) -> _TopicIndex:
    """Header stamps of a CompressedImage topic. The size is only known by decoding, so every payload is
    decoded here once; corrupt ones are skipped (counted, with a warning), never paired."""
    stamps: list[int] = []
    ordinals: list[int] = []
    corrupt: list[str] = []
    for ordinal, (stamp, msg) in enumerate(rb.iter_topic(reader, topic)):
        try:
            hw = rm.msg_to_rgb(msg).shape[:2]
        except rm.CorruptImageError as exc:
            corrupt.append(f"{stamp} ns: {exc}")
            continue
        except ValueError as exc:
            raise ValueError(f"{where}{topic} message at {stamp} ns: {exc}") from None
        if hw != size:
            raise ValueError(f"{where}{topic} message at {stamp} ns is {hw[0]}x{hw[1]}, the "
                             f"camera_info says {size[0]}x{size[1]}")
        stamps.append(int(stamp))
        ordinals.append(ordinal)
    if corrupt:
        log.warning("%s%s: %d corrupt compressed image(s) skipped (first: %s)", where, topic, len(corrupt),
                    corrupt[0])
    if not stamps:
        raise ValueError(f"{where}{topic} has no decodable messages"
                         + (f" ({len(corrupt)} corrupt, first: {corrupt[0]})" if corrupt else ""))
    return _TopicIndex(stamps, ordinals, len(corrupt))


def _index_topic(reader: Any, topic: str, where: str, kind: str | None,
                 size: tuple[int, int] | None) -> _TopicIndex:
    """Header stamps of a topic; with `kind` ("colour" / "depth") image encodings and sizes are checked here,
    before anything is decoded."""
    stamps: list[int] = []
    allowed = {"colour": rm.COLOR_ENCODINGS, "depth": rm.DEPTH_ENCODINGS}.get(kind or "")
    for stamp, msg in rb.iter_topic(reader, topic):
        if allowed is not None:
            if str(msg.encoding) not in allowed:
                raise ValueError(f"{where}{topic} message at {stamp} ns has encoding {msg.encoding!r}; "
                                 f"expected a {kind} image ({', '.join(allowed)})")
            hw = (int(msg.height), int(msg.width))
            if size is not None and hw != size:
                raise ValueError(f"{where}{topic} message at {stamp} ns is {hw[0]}x{hw[1]}, the "
                                 f"camera_info says {size[0]}x{size[1]}")
        stamps.append(int(stamp))
    if not stamps:
        raise ValueError(f"{where}{topic} has no messages")
    return _TopicIndex(stamps)


class _Scale:
    """Resizing the rectified frames by `image_scale`: images with area averaging, a depth image by the
    nearest source pixel (depth is never interpolated), K by `geometry.scale_intrinsics` (pixel centres
    aligned, as cv2.resize); LiDAR GT is projected with the scaled K directly."""

    def __init__(self, K: np.ndarray, size: tuple[int, int], scale: float):
        h, w = size
        self.identity = scale == 1.0
        self.size = (h, w) if self.identity else (max(1, round(h * scale)), max(1, round(w * scale)))
        sy, sx = self.size[0] / h, self.size[1] / w
        self.K = K if self.identity else scale_intrinsics(K, sx, sy)
        # the source pixel nearest to each output pixel centre: floor((i + 0.5) / s)
        self._rows = np.minimum(((np.arange(self.size[0]) + 0.5) / sy).astype(np.int64), h - 1)
        self._cols = np.minimum(((np.arange(self.size[1]) + 0.5) / sx).astype(np.int64), w - 1)

    def image(self, image: np.ndarray) -> np.ndarray:
        if self.identity:
            return image
        return cv2.resize(image, self.size[::-1], interpolation=cv2.INTER_AREA)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        return depth if self.identity else depth[self._rows][:, self._cols]


@dataclass(frozen=True)
class FrameGeometry:
    """One frame's geometry: how each view is rectified, then scaled; K and size are the output's."""

    left: ViewRectification
    right: ViewRectification | None  # None: the right view is used as recorded
    baseline: float | None  # metres; known for a calibrated stereo pair
    scale: _Scale
    info_index: int  # the left camera_info message it came from

    @property
    def K(self) -> np.ndarray:
        return self.scale.K

    @property
    def size(self) -> tuple[int, int]:
        return self.scale.size

    @property
    def rectifies(self) -> bool:
        return self.left.rectifies


@dataclass
class BagFrame:
    """One left image message of pass 2 and the messages paired with it (None: not paired)."""

    index: int  # position in the left topic's index (`BagFrameSource.stamps`)
    stamp: int
    msg: Any
    right_msg: Any | None
    gt_msg: Any | None
    paired_right: bool  # a right message is paired (always True without a right topic)

    @property
    def seconds(self) -> str:
        return _seconds(self.stamp)


# --- the source -----------------------------------------------------------------------------------


class BagFrameSource:
    """Frames of one bag (see the module docstring). Pass 1 runs at construction with the bag open; use it
    as a context manager (`with BagFrameSource(...) as source`) so pass 2 reads the same open bag.

    Attributes after pass 1: `stamps` / `right_stamps` / `gt_stamps` (header stamps, indexed), `stereo`
    (StampMatch left <-> right or None), `gt_match` (StampMatch (paired) left <-> GT or None), `gt_of` (left
    index -> GT ordinal), `right_of` (left index -> right ordinal),
    `counts` (messages per topic, pairs, unmatched), `infos` (left CameraInfos or None), `tf_messages`
    (/tf_static messages as recorded), `compressed` (image topics carrying CompressedImage).

    Args:
        bag: rosbag2 folder or .mcap/.db3 file.
        spec: `FrameSpec`.
        where: prefix of error messages ("" or the bag path).
    """

    def __init__(self, bag: str | Path, spec: FrameSpec, *, where: str = ""):
        self.bag, self.spec = Path(bag), spec
        self.where = f"{where}: " if where else ""
        check_rectify(spec.rectify)
        if spec.T_cam_from_lidar is not None:
            check_rigid_transform(spec.T_cam_from_lidar, "T_cam_from_lidar")
        self._geometries: dict[tuple[Any, ...], FrameGeometry] = {}
        self._T_cache: dict[tuple[str, str], np.ndarray] = {}
        self._warned_never = False
        self._open: Any = rb.open_bag(self.bag)
        self._reader = self._open.__enter__()
        try:
            self._pass_one(self._reader)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> BagFrameSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None

    # -- pass 1 --

    def _pass_one(self, reader: Any) -> None:
        s, where = self.spec, self.where
        have = rb.bag_topics(reader)
        views = [t for t in (s.image_topic, s.right_topic) if t]
        self.compressed = frozenset(t for t in views if have.get(t) == rm.COMPRESSED_IMAGE)
        required = {t: rm.COMPRESSED_IMAGE if t in self.compressed else rm.IMAGE for t in views}
        for topic in (s.info_topic, s.right_info_topic):
            if topic:
                required[topic] = rm.CAMERA_INFO
        if s.gt_topic:
            required[s.gt_topic] = rm.IMAGE
        if s.lidar_topic:
            required[s.lidar_topic] = rm.POINT_CLOUD2
        rb.require_topics(reader, required)

        # camera_info by stamp, and /tf_static (messages are deserialised as views, images are not decoded)
        self.infos = self._camera_infos(reader, s.info_topic)
        self.right_infos = self._camera_infos(reader, s.right_info_topic)
        if s.stereo and (self.infos is None or self.right_infos is None):
            raise ValueError(f"{where}a stereo frame source needs both camera_info topics")
        self.tf_messages = list(rb.iter_topic(reader, rb.TF_STATIC)) if rb.TF_STATIC in have else []
        self.tfs = rb.read_static_transforms(reader) if s.lidar_topic and s.T_cam_from_lidar is None else {}
        if s.lidar_topic and s.T_cam_from_lidar is None and rb.TF_STATIC not in have:
            raise ValueError(f"{where}no {rb.TF_STATIC} topic for the LiDAR extrinsic; record it "
                             f"(docs/OWN_RIG.md) or {s.extrinsic_hint}")

        # a stereo pair's calibration is checked before any image; its recorded size is every image's
        first = self.geometry(None) if s.stereo else None
        size = first.left.size if first is not None and s.index_images else None
        left = self._index_view(reader, s.image_topic, size)
        right = self._index_view(reader, s.right_topic, size) if s.right_topic else None
        gt = None
        if s.gt_source:
            kind = ("depth" if s.gt_topic else None) if s.index_images else None
            gt = _index_topic(reader, s.gt_source, where, kind, size)
        self.stamps, self._left = left.stamps, left
        self.right_stamps = right.stamps if right else []
        self.gt_stamps = gt.stamps if gt else []

        # pairing: left <-> right, then the left image of each pair <-> GT
        self.stereo = None
        base = list(range(len(left.stamps)))
        if right is not None:
            self.stereo = rb.match_by_stamp(left.stamps, right.stamps, s.stereo_tolerance_ns)
            base = [i for i, _ in self.stereo.pairs]
        self.right_of = {i: right.ordinal(j) for i, j in self.stereo.pairs} if right and self.stereo else {}
        self.gt_match = None
        self.gt_of: dict[int, int] = {}
        if gt is not None:
            self.gt_match = rb.match_by_stamp([left.stamps[i] for i in base], gt.stamps, s.gt_tolerance_ns)
            self.gt_of = {base[k]: j for k, j in self.gt_match.pairs}
        self.counts = {"left": len(left.stamps), "right": len(right.stamps) if right else 0,
                       "gt": len(gt.stamps) if gt else 0,
                       "stereo_pairs": len(self.stereo.pairs) if self.stereo else 0,
                       "unmatched_left": self.stereo.unmatched_a if self.stereo else 0,
                       "unmatched_right": self.stereo.unmatched_b if self.stereo else 0,
                       "no_gt": len(base) - len(self.gt_of) if gt else 0,
                       "unused_gt": self.gt_match.unmatched_b if self.gt_match else 0}
        if self.compressed and s.index_images:
            self.counts.update(corrupt_left=left.corrupt, corrupt_right=right.corrupt if right else 0)

    def _camera_infos(self, reader: Any, topic: str | None) -> CameraInfos | None:
        return None if topic is None else CameraInfos(list(rb.iter_topic(reader, topic)), topic, self.where)

    def _index_view(self, reader: Any, topic: str, size: tuple[int, int] | None) -> _TopicIndex:
        if not self.spec.index_images:
            return _index_topic(reader, topic, self.where, None, None)
        if topic in self.compressed:
            assert size is not None
            return _index_compressed(reader, topic, self.where, size)
        return _index_topic(reader, topic, self.where, "colour", size)

    # -- geometry --

    def calibration_changes(self) -> str | None:
        """None when every camera_info message carries one calibration, else where it first changes."""
        for infos in (self.infos, self.right_infos):
            if infos is not None:
                for i, key in enumerate(infos.keys):
                    if key != infos.keys[0]:
                        return f"{infos.topic}: calibration changes at message {i}"
        return None

    def geometry(self, stamp: int | None) -> FrameGeometry | None:
        """The geometry of the frame at `stamp` (None: the first camera_info), or None without calibration."""
        if self.infos is None:
            return None
        li = 0 if stamp is None else self.infos.nearest(stamp)
        ri = None
        if self.right_infos is not None:
            ri = 0 if stamp is None else self.right_infos.nearest(stamp)
        key = (self.infos.keys[li], None if ri is None else self.right_infos.keys[ri])  # type: ignore[union-attr]
        if key not in self._geometries:
            self._geometries[key] = self._make_geometry(li, ri)
        geometry = self._geometries[key]
        if geometry.info_index != li:  # same calibration, another message: report the frame's own
            geometry = FrameGeometry(geometry.left, geometry.right, geometry.baseline, geometry.scale, li)
        return geometry

    def _make_geometry(self, li: int, ri: int | None) -> FrameGeometry:
        s, infos = self.spec, self.infos
        assert infos is not None
        left = infos.calibration(li)
        where = f"{self.where}{s.info_topic}"
        right = self.right_infos.calibration(ri) if self.right_infos is not None and ri is not None else None
        raw = s.rectify == "always" or (s.rectify == "auto" and (
            is_raw(left, where) or (right is not None and s.right_topic is not None
                                    and is_raw(right, f"{self.where}{s.right_info_topic}"))))
        if s.rectify == "never":
            self._warn_never(left, where)
        if s.stereo or (raw and s.right_topic):
            if right is None:
                raise ValueError(f"{where} describes raw views (distortion D or rotation R) and rectifying "
                                 f"the right view {s.right_topic} needs its camera_info "
                                 f"{default_info_topic(s.right_topic or '')}; record it, or read images "
                                 "that are already rectified with rectify 'never'")
            assert self.right_infos is not None and ri is not None
            pair = stereo_rectification(left, right, rectify=s.rectify,
                                        distortion_models=(infos.model(li), self.right_infos.model(ri)),
                                        where=f"{self.where}{s.info_topic} / {s.right_info_topic}")
            view, right_view, baseline = pair.left, (pair.right if pair.rectifies else None), pair.baseline
        else:
            view = view_rectification(left, rectify=raw, distortion_model=infos.model(li), where=where)
            right_view, baseline = None, None
        return FrameGeometry(view, right_view, baseline, _Scale(view.K, view.size, s.image_scale), li)

    def _warn_never(self, cal: rm.Calibration, where: str) -> None:
        topic = self.spec.image_topic.removesuffix("/compressed")
        if not self._warned_never and topic.endswith("/image_raw") and is_raw(cal, where):
            log.warning("%s: rectify 'never' takes %s as rectified, but it is named image_raw and its "
                        "camera_info has distortion or a rectifying rotation; use rectify 'auto' for raw "
                        "images", where, self.spec.image_topic)
            self._warned_never = True

    def _T_cam_from_lidar(self, camera_frame: str, lidar_frame: str) -> np.ndarray:
        s = self.spec
        if s.T_cam_from_lidar is not None:
            return np.asarray(s.T_cam_from_lidar, dtype=np.float64)
        key = (camera_frame.lstrip("/"), lidar_frame.lstrip("/"))
        if key not in self._T_cache:
            if not key[0] or not key[1]:
                raise ValueError(f"{self.where}{s.info_topic} or {s.lidar_topic} has an empty "
                                 f"header.frame_id; {s.extrinsic_hint}")
            if not self.tfs:
                raise ValueError(f"{self.where}no {rb.TF_STATIC} to place {key[1]!r} in {key[0]!r}; "
                                 f"{s.extrinsic_hint}")
            try:
                self._T_cache[key] = rb.lookup_transform(self.tfs, key[0], key[1])
            except ValueError as exc:
                raise ValueError(f"{self.where}LiDAR extrinsic {key[0]} <- {key[1]}: {exc}; "
                                 f"{s.extrinsic_hint}") from None
        return self._T_cache[key]

    # -- pass 2 --

    def frames(self, indices: list[int] | None = None) -> Iterator[BagFrame]:
        """The frames at left `indices` (default: every left image), in bag order, with their paired
        right and GT messages; one forward read of the bag, buffering only what is still to be paired."""
        s = self.spec
        wanted = sorted(range(len(self.stamps)) if indices is None else set(indices))
        want_left = {self._left.ordinal(i): i for i in wanted}
        want = {s.image_topic: want_left}
        if s.right_topic:
            want[s.right_topic] = {self.right_of[i]: i for i in wanted if i in self.right_of}
        if s.gt_source:
            want[s.gt_source] = {self.gt_of[i]: i for i in wanted if i in self.gt_of}
        got: dict[str, dict[int, Any]] = {t: {} for t in want}
        ordinal = dict.fromkeys(want, 0)
        pending = sorted(want_left)  # left ordinals in bag order
        head = 0

        def ready(i: int) -> bool:
            return all(i in got[t] or i not in want[t].values() for t in want)

        for topic, _, msg in rb.iter_topics(self._reader, list(want)):
            i = want[topic].get(ordinal[topic])
            ordinal[topic] += 1
            if i is not None:
                got[topic][i] = msg
            while head < len(pending) and ready(want_left[pending[head]]):
                yield self._frame(want_left[pending[head]], got)
                head += 1
        if head < len(pending):
            raise ValueError(f"{self.where}messages vanished between the two passes over {self.bag}")

    def _frame(self, i: int, got: dict[str, dict[int, Any]]) -> BagFrame:
        s = self.spec
        msg = got[s.image_topic].pop(i)
        right = got[s.right_topic].pop(i, None) if s.right_topic else None
        gt = got[s.gt_source].pop(i, None) if s.gt_source else None
        paired = not s.right_topic or i in self.right_of
        return BagFrame(i, self.stamps[i], msg, right, gt, paired_right=paired)

    def info_msg(self, frame: BagFrame) -> Any | None:
        """The camera_info message of the frame (nearest stamp), or None without calibration."""
        return None if self.infos is None else self.infos.msgs[self.infos.nearest(frame.stamp)]

    def K(self, frame: BagFrame) -> np.ndarray | None:
        geometry = self.geometry(frame.stamp)
        return None if geometry is None else geometry.K

    def _decode(self, topic: str, frame: BagFrame, decode: Any) -> Any:
        try:
            return decode()
        except rm.CorruptImageError:
            raise
        except ValueError as exc:
            raise ValueError(f"{self.where}{topic} at {frame.seconds} s: {exc}") from None

    def left(self, frame: BagFrame) -> np.ndarray:
        """The left RGB uint8 image, rectified and scaled (rm.CorruptImageError for a damaged payload)."""
        return self._view(frame, frame.msg, self.spec.image_topic, "left")

    def right(self, frame: BagFrame) -> np.ndarray | None:
        """The paired right RGB uint8 image, rectified and scaled; None when none is paired."""
        if frame.right_msg is None:
            return None
        assert self.spec.right_topic is not None
        return self._view(frame, frame.right_msg, self.spec.right_topic, "right")

    def _view(self, frame: BagFrame, msg: Any, topic: str, side: str) -> np.ndarray:
        rgb = self._decode(topic, frame, lambda: rm.msg_to_rgb(msg))
        geometry = self.geometry(frame.stamp)
        if geometry is None:
            return rgb
        view = geometry.left if side == "left" else geometry.right
        if rgb.shape[:2] != geometry.left.size:
            info = self.spec.info_topic if side == "left" else self.spec.right_info_topic
            (h, w) = geometry.left.size
            raise ValueError(f"{self.where}{info} describes a {h}x{w} image but {topic} at {frame.seconds} s "
                             f"is {rgb.shape[0]}x{rgb.shape[1]}")
        return geometry.scale.image(rgb if view is None else view.image(rgb))

    def depth(self, frame: BagFrame, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """Ground truth in the rectified, scaled left camera (metres, 0 = none), or None when no GT message is
        paired. `size` is the image size when the bag has no calibration (a depth image is then as
        recorded)."""
        s = self.spec
        if frame.gt_msg is None:
            return None
        assert s.gt_source is not None
        geometry = self.geometry(frame.stamp)
        msg = frame.gt_msg
        if s.gt_topic:
            def depth_image() -> np.ndarray:
                gt = rm.msg_to_depth(msg)
                hw = geometry.left.size if geometry is not None else size
                if hw is not None and gt.shape != hw:
                    raise ValueError(f"depth image is {gt.shape[0]}x{gt.shape[1]}, the camera image is "
                                     f"{hw[0]}x{hw[1]}")
                return gt if geometry is None else geometry.scale.depth(geometry.left.depth(gt))

            return self._decode(s.gt_topic, frame, depth_image)
        if geometry is None:
            raise ValueError(f"{self.where}LiDAR ground truth needs the camera's calibration (camera_info)")
        camera_frame = str(frame.msg.header.frame_id) or self.infos.frame_id(geometry.info_index)  # type: ignore[union-attr]
        T = geometry.left.T_rect_from_cam @ self._T_cam_from_lidar(camera_frame, str(msg.header.frame_id))

        def project() -> np.ndarray:
            return lidar_to_depth_image(rm.pointcloud2_to_xyz(msg), T, geometry.K, *geometry.size)

        return self._decode(s.lidar_topic or "", frame, project)
