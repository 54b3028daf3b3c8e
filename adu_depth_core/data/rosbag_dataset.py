"""rosbag2 recordings of a stereo rig as a training and evaluation dataset (`RosbagStereoDataset`).

A bag gives left and right images with their camera_info, and ground truth from either a depth image
topic (32FC1 metres with NaN invalid, or 16UC1 millimetres) or a LiDAR PointCloud2 projected into the left
camera. Samples follow the stereo-sample contract of docs/ARCHITECTURE.md; the walk-through from recording
to deployment is docs/OWN_RIG.md.

Frames (every depth the dataset returns is along the *rectified* left optical axis):

    camera_left_optical_frame  C     the physical left camera: raw left image, the left camera_info's K and D,
                                     and the frame /tf_static (or `T_cam_from_lidar`) places the LiDAR in
    rectified left frame       Rect  X_rect = R_left · X_C + t, R_left the left camera_info's R and
                                     t = K_rect⁻¹ · P_left[:, 3] (zero for the usual left camera)
    lidar                      L     the cloud's header.frame_id

    K_rect   = P_left[:3, :3]                       (the K of both returned views)
    baseline = (P_left[0, 3] − P_right[0, 3]) / fx  (= −P_right[0,3]/P_right[0,0], ROS: Tx = −fx·B)
    LiDAR GT = lidar_to_depth_image(points_L, T_rect_from_C · T_C_from_L, K_rect, H, W)

Raw views (non-zero D or a non-identity R in either camera_info) are rectified with
`cv2.initUndistortRectifyMap(K, D, R, P[:3,:3])` + `cv2.remap` (bilinear for images). A depth-image GT is
taken as registered to the raw left camera (its camera_info is the left one): each rectified pixel takes the
depth of its nearest raw pixel, converted from the raw to the rectified optical axis. With
`rectify="never"` the images (and a depth GT) are used as recorded (e.g. `image_rect` topics, whose
camera_info still carries the raw D and R); LiDAR points are still rotated by R_left, because /tf_static
describes the physical camera. `image_scale` then resizes the rectified frames (area averaging for
images, nearest pixel for a depth image, K scaled with them; LiDAR is projected with the scaled K).

The first construction decodes and rectifies every frame of a bag into an on-disk cache (one memory-mapped
`.npy` per array: left, right, depth; measured against per-frame `.npz` in docs/benchmarks/rosbag_dataset.md),
keyed by the bag's identity (path, file sizes and mtimes, metadata.yaml) and the settings that change
decoding (topics, tolerances, extrinsic, rectification, scale), written into a temp folder and renamed
into place when complete. Splits, crops and augmentation are applied on top
of the cached frames, so train and validation datasets of one bag share one cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data import rosbag_io as rb
from adu_depth_core.data.lidar import lidar_to_depth_image
from adu_depth_core.data.transforms import StereoPipeline, make_sample
from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.geometry import check_intrinsics, scale_intrinsics

log = logging.getLogger(__name__)

CACHE_FORMAT = "adu_depth/rosbag_cache/1"  # bump when the decoded content or layout changes
BAG_SPLITS = ("train", "val", "all")  # frames of a bag: the train part, the rest, or every frame
SPLIT_MODES = ("time", "bag")
RECTIFY_MODES = ("auto", "always", "never")
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
ARRAYS = ("left", "right", "depth")

# --- rectification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StereoRectification:
    """How one rig's recorded views become the rectified pair the dataset returns.

    `maps` holds the (map_x, map_y) pairs of the left and right view for `cv2.remap`, or None when the
    views are used as recorded. `depth_scale` / `depth_offset` turn a raw left depth z (sampled at the
    nearest raw pixel) into depth along the rectified axis: z_rect = (z + depth_offset) · depth_scale.
    """

    K: np.ndarray  # 3x3 rectified intrinsics of both views
    baseline: float  # metres, right camera at +baseline along the rectified x axis
    size: tuple[int, int]  # (H, W)
    T_rect_from_cam: np.ndarray  # 4x4: physical left camera frame -> rectified left frame
    maps: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
    depth_scale: np.ndarray | None = None
    depth_offset: float = 0.0

    @property
    def rectifies(self) -> bool:
        return self.maps is not None

    def image(self, image: np.ndarray, view: str) -> np.ndarray:
        """Rectified RGB uint8 image of the `left` or `right` view (bilinear; outside the raw image: 0)."""
        if self.maps is None:
            return image
        mx, my = self.maps[:2] if view == "left" else self.maps[2:]
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """Rectified left depth (metres, 0 = none) of a depth image registered to the raw left camera."""
        if self.maps is None:
            return depth
        near = cv2.remap(depth, self.maps[0], self.maps[1], cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = np.where(near > 0, (near + np.float32(self.depth_offset)) * self.depth_scale, 0.0)
        return np.where(out > 0, out, 0.0).astype(np.float32)


def _is_raw(cal: rm.Calibration, where: str) -> bool:
    return bool(np.any(cal.D != 0) or not np.allclose(_rotation(cal.R, where), np.eye(3), atol=1e-9))


def _rotation(R: np.ndarray, what: str) -> np.ndarray:
    """R of a camera_info; an all-zero R (drivers of uncalibrated/monocular cameras) means identity."""
    R = np.asarray(R, dtype=np.float64)
    if not np.any(R):
        return np.eye(3)
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise ValueError(f"{what}: the rectification matrix R is not a rotation: {R.tolist()}")
    return R


def _undistort_maps(cal: rm.Calibration, model: str, R: np.ndarray, K_rect: np.ndarray,
                    where: str) -> tuple[np.ndarray, np.ndarray]:
    h, w = cal.size
    D = cal.D
    if model == "equidistant":
        if D.size != 4:
            raise ValueError(f"{where}: equidistant (fisheye) distortion needs 4 coefficients, got {D.size}")
        return cv2.fisheye.initUndistortRectifyMap(cal.K, D, R, K_rect, (w, h), cv2.CV_32FC1)
    if np.any(D) and model not in DISTORTION_MODELS:
        raise ValueError(f"{where}: unsupported distortion_model {model!r}; supported: "
                         f"{', '.join(DISTORTION_MODELS)}")
    if D.size not in (0, 4, 5, 8, 12, 14):
        raise ValueError(f"{where}: {D.size} distortion coefficients (expected 5 for plumb_bob, 8 for "
                         "rational_polynomial)")
    return cv2.initUndistortRectifyMap(cal.K, D if D.size else None, R, K_rect, (w, h), cv2.CV_32FC1)


def stereo_rectification(left: rm.Calibration, right: rm.Calibration, *, rectify: str = "auto",
                         distortion_models: tuple[str, str] = ("plumb_bob", "plumb_bob"),
                         where: str = "stereo camera_info") -> StereoRectification:
    """The rectification of a stereo pair from its two camera_info calibrations (see the module docstring).

    Args:
        left, right: `ros_messages.camera_info_to_calibration` of the left and right camera_info.
        rectify: "auto" (rectify when D is non-zero or R is not the identity in either camera_info),
            "always", or "never" (the images are already rectified).
        distortion_models: the camera_infos' distortion_model strings.
        where: prefix of error messages (bag and topics).
    """
    if rectify not in RECTIFY_MODES:
        raise ValueError(f"rectify must be one of {list(RECTIFY_MODES)}, got {rectify!r}")
    if left.size != right.size:
        raise ValueError(f"{where}: left camera_info is {left.size[0]}x{left.size[1]}, right is "
                         f"{right.size[0]}x{right.size[1]}; a stereo pair needs one image size")
    raw = rectify == "always" or (rectify == "auto" and (_is_raw(left, f"{where}: left camera_info")
                                                       or _is_raw(right, f"{where}: right camera_info")))
    if not np.any(right.P):
        raise ValueError(f"{where}: the right camera_info has an all-zero projection matrix P; the baseline "
                         "comes from P[0,3] = -fx*B: calibrate the pair with camera_calibration's stereo "
                         "calibrator (docs/OWN_RIG.md)")
    P_left = left.P if np.any(left.P) else np.hstack([left.K, np.zeros((3, 1))])
    K_rect = check_intrinsics(P_left[:, :3], f"{where}: left P[:3,:3]")
    if not np.allclose(right.P[:, :3], K_rect, rtol=1e-6, atol=1e-6):
        raise ValueError(f"{where}: left and right P differ in their 3x3 part ({K_rect.tolist()} vs "
                         f"{right.P[:, :3].tolist()}); not a rectified stereo calibration")
    baseline = float((P_left[0, 3] - right.P[0, 3]) / K_rect[0, 0])
    if not baseline > 0:
        raise ValueError(f"{where}: baseline (P_left[0,3] - P_right[0,3]) / fx = {baseline:.4g} m must be "
                         "> 0 (ROS stereo convention: right P[0,3] = -fx*B); are left and right swapped?")
    R_left = _rotation(left.R, f"{where}: left camera_info")
    t = np.linalg.solve(K_rect, P_left[:, 3])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_left, t
    if not raw:
        return StereoRectification(K=K_rect, baseline=baseline, size=left.size, T_rect_from_cam=T, maps=None)
    ml = _undistort_maps(left, distortion_models[0], R_left, K_rect, f"{where}: left camera_info")
    R_right = _rotation(right.R, f"{where}: right camera_info")
    mr = _undistort_maps(right, distortion_models[1], R_right, K_rect, f"{where}: right camera_info")
    # z of a raw point seen along rectified pixel ray d = K_rect⁻¹(u, v, 1): z_raw = R[:,2]·(z_rect·d − t)
    h, w = left.size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    d = np.linalg.solve(K_rect, np.stack([u.ravel(), v.ravel(), np.ones(h * w)]))  # 3, H*W
    axis = R_left[:, 2]
    scale = (1.0 / (axis @ d)).reshape(h, w).astype(np.float32)
    return StereoRectification(K=K_rect, baseline=baseline, size=left.size, T_rect_from_cam=T,
                               maps=(ml[0], ml[1], mr[0], mr[1]), depth_scale=scale,
                               depth_offset=float(axis @ t))


# --- what is decoded ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeSpec:
    """Every setting that changes the decoded frames (and so the cache key)."""

    left_topic: str
    right_topic: str
    left_info_topic: str
    right_info_topic: str
    gt_topic: str | None
    lidar_topic: str | None
    stereo_tolerance_ns: int
    gt_tolerance_ns: int
    T_cam_from_lidar: tuple[tuple[float, ...], ...] | None
    rectify: str
    require_gt: bool
    image_scale: float = 1.0

    @property
    def gt_source(self) -> str | None:
        return self.gt_topic or self.lidar_topic

    def topic_types(self, compressed: frozenset[str] = frozenset()) -> dict[str, str]:
        """topic -> msgtype the bag must have; image topics in `compressed` carry CompressedImage."""
        def camera(topic: str) -> str:
            return rm.COMPRESSED_IMAGE if topic in compressed else rm.IMAGE

        topics = {self.left_topic: camera(self.left_topic), self.right_topic: camera(self.right_topic),
                  self.left_info_topic: rm.CAMERA_INFO, self.right_info_topic: rm.CAMERA_INFO}
        if self.gt_topic:
            topics[self.gt_topic] = rm.IMAGE
        if self.lidar_topic:
            topics[self.lidar_topic] = rm.POINT_CLOUD2
        return topics


def bag_identity(path: Path) -> dict[str, Any]:
    """What identifies a bag's content for the cache: resolved path, each file's name, size and mtime,
    and the sha256 of metadata.yaml."""
    path = path.resolve()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    ident: dict[str, Any] = {"path": str(path), "files": []}
    for f in files:
        st = f.stat()
        ident["files"].append([f.name, st.st_size, st.st_mtime_ns])
    meta = path / "metadata.yaml"
    if meta.is_file():
        ident["metadata_sha256"] = hashlib.sha256(meta.read_bytes()).hexdigest()
    return ident


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_key(path: Path, spec: DecodeSpec) -> str:
    """The cache entry's key: sha256 of the cache format, the bag's identity and the decode settings."""
    return _sha256_json({"format": CACHE_FORMAT, "bag": bag_identity(path), "decode": asdict(spec)})


# --- decoding one bag -----------------------------------------------------------------------------


def _nearest_offset_ms(a: Sequence[int], b: Sequence[int]) -> float:
    """Smallest |a_i − b_j| in milliseconds (for 'nothing paired' errors)."""
    if not len(a) or not len(b):
        return math.inf
    sb = np.sort(np.asarray(b, dtype=np.int64))
    aa = np.asarray(a, dtype=np.int64)
    k = np.searchsorted(sb, aa)
    lo, hi = sb[np.clip(k - 1, 0, len(sb) - 1)], sb[np.clip(k, 0, len(sb) - 1)]
    return float(np.minimum(np.abs(aa - lo), np.abs(aa - hi)).min()) / 1e6


def _read_calibration(reader: Any, topic: str, where: str) -> tuple[rm.Calibration, str, str]:
    """(calibration, distortion_model, frame_id) of a camera_info topic; it must not change in the bag."""
    first = None
    for i, (_, msg) in enumerate(rb.iter_topic(reader, topic)):
        if first is None:
            try:
                cal = rm.camera_info_to_calibration(msg)
            except ValueError as exc:
                raise ValueError(f"{where}: {topic}: {exc}") from None
            first = (cal, str(msg.distortion_model), str(msg.header.frame_id).lstrip("/"))
            ref = [np.asarray(getattr(msg, k), np.float64) for k in "kdrp"]
        elif not all(np.array_equal(np.asarray(getattr(msg, k), np.float64), r) for k, r in zip("kdrp", ref)):
            raise ValueError(f"{where}: {topic}: calibration changes at message {i}; record one calibration "
                             "per bag")
    if first is None:
        raise ValueError(f"{where}: {topic} has no messages (the camera_info gives K and the baseline)")
    return first


@dataclass
class _TopicIndex:
    stamps: list[int]
    frame_id: str
    size: tuple[int, int] | None  # images only
    ordinals: list[int] | None = None  # bag order of each stamp's message when some were skipped
    corrupt: int = 0  # CompressedImage payloads that did not decode (skipped)

    def ordinal(self, i: int) -> int:
        return i if self.ordinals is None else self.ordinals[i]


def _index_compressed(reader: Any, topic: str, where: str, size: tuple[int, int]) -> _TopicIndex:
    """Header stamps of a CompressedImage topic. The size is only known by decoding, so every payload is
    decoded here once; corrupt ones are skipped (counted, with a warning), never paired."""
    stamps: list[int] = []
    ordinals: list[int] = []
    frame_id = ""
    corrupt: list[str] = []
    for ordinal, (stamp, msg) in enumerate(rb.iter_topic(reader, topic)):
        if not frame_id:
            frame_id = str(msg.header.frame_id).lstrip("/")
        try:
            hw = rm.msg_to_rgb(msg).shape[:2]
        except rm.CorruptImageError as exc:
            corrupt.append(f"{stamp} ns: {exc}")
            continue
        except ValueError as exc:
            raise ValueError(f"{where}: {topic} message at {stamp} ns: {exc}") from None
        if hw != size:
            raise ValueError(f"{where}: {topic} message at {stamp} ns is {hw[0]}x{hw[1]}, the "
                             f"camera_info says {size[0]}x{size[1]}")
        stamps.append(int(stamp))
        ordinals.append(ordinal)
    if corrupt:
        log.warning("%s: %s: %d corrupt compressed image(s) skipped (first: %s)", where, topic, len(corrupt),
                    corrupt[0])
    if not stamps:
        raise ValueError(f"{where}: {topic} has no decodable messages"
                         + (f" ({len(corrupt)} corrupt, first: {corrupt[0]})" if corrupt else ""))
    return _TopicIndex(stamps, frame_id, size, ordinals, len(corrupt))


def _index_topic(reader: Any, topic: str, where: str, kind: str, size: tuple[int, int] | None) -> _TopicIndex:
    """Header stamps of a topic; image sizes and encodings are checked here, before anything is decoded."""
    stamps: list[int] = []
    frame_id = ""
    allowed = {"colour": rm.COLOR_ENCODINGS, "depth": rm.DEPTH_ENCODINGS}.get(kind)
    for stamp, msg in rb.iter_topic(reader, topic):
        if not stamps:
            frame_id = str(msg.header.frame_id).lstrip("/")
        if allowed is not None:
            if str(msg.encoding) not in allowed:
                raise ValueError(f"{where}: {topic} message at {stamp} ns has encoding {msg.encoding!r}; "
                                 f"expected a {kind} image ({', '.join(allowed)})")
            hw = (int(msg.height), int(msg.width))
            if size is not None and hw != size:
                raise ValueError(f"{where}: {topic} message at {stamp} ns is {hw[0]}x{hw[1]}, the "
                                 f"camera_info says {size[0]}x{size[1]}")
        stamps.append(int(stamp))
    if not stamps:
        raise ValueError(f"{where}: {topic} has no messages")
    return _TopicIndex(stamps, frame_id, size)


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


def _decode_bag(path: Path, spec: DecodeSpec, allocate: Any) -> dict[str, Any]:
    """Index, pair and decode one bag; arrays come from `allocate(name, shape, dtype)`. Returns the meta
    dict (stamps, has_gt, K, baseline, size, counts) with the filled arrays under "arrays"."""
    where = str(path)
    with rb.open_bag(path) as reader:
        have = rb.bag_topics(reader)
        compressed = frozenset(t for t in (spec.left_topic, spec.right_topic)
                               if have.get(t) == rm.COMPRESSED_IMAGE)
        rb.require_topics(reader, spec.topic_types(compressed))
        # pass 1: calibration and stamps (messages are deserialised as views, images are not decoded)
        left_cal, left_model, left_frame = _read_calibration(reader, spec.left_info_topic, where)
        right_cal, right_model, _ = _read_calibration(reader, spec.right_info_topic, where)
        rect = stereo_rectification(left_cal, right_cal, rectify=spec.rectify,
                                    distortion_models=(left_model, right_model),
                                    where=f"{where}: {spec.left_info_topic} / {spec.right_info_topic}")
        h, w = rect.size
        left, right = (_index_compressed(reader, t, where, (h, w)) if t in compressed
                       else _index_topic(reader, t, where, "colour", (h, w))
                       for t in (spec.left_topic, spec.right_topic))
        gt = None
        if spec.gt_topic:
            gt = _index_topic(reader, spec.gt_topic, where, "depth", (h, w))
        elif spec.lidar_topic:
            gt = _index_topic(reader, spec.lidar_topic, where, "cloud", None)
        T_lidar = None
        if spec.lidar_topic:
            if spec.T_cam_from_lidar is not None:
                T_cam_from_lidar = np.asarray(spec.T_cam_from_lidar, dtype=np.float64)
            else:
                if rb.TF_STATIC not in rb.bag_topics(reader):
                    raise ValueError(f"{where}: no {rb.TF_STATIC} topic for the LiDAR extrinsic; record it "
                                     "(docs/OWN_RIG.md) or pass T_cam_from_lidar (4x4, LiDAR -> left camera)")
                if not left_frame or not gt.frame_id:
                    raise ValueError(f"{where}: {spec.left_info_topic} or {spec.lidar_topic} has an empty "
                                     "header.frame_id; pass T_cam_from_lidar")
                try:
                    T_cam_from_lidar = rb.lookup_transform(rb.read_static_transforms(reader), left_frame,
                                                           gt.frame_id)
                except ValueError as exc:
                    raise ValueError(f"{where}: LiDAR extrinsic {left_frame} <- {gt.frame_id}: {exc} "
                                     "(record /tf_static or pass T_cam_from_lidar)") from None
            T_lidar = rect.T_rect_from_cam @ T_cam_from_lidar

        # pairing: left <-> right, then the left image of each pair <-> GT
        stereo = rb.match_by_stamp(left.stamps, right.stamps, spec.stereo_tolerance_ns)
        if not stereo.pairs:
            raise ValueError(f"{where}: no left/right image pair within stereo_tolerance_ns="
                             f"{spec.stereo_tolerance_ns} (nearest stamps are "
                             f"{_nearest_offset_ms(left.stamps, right.stamps):.3f} ms apart)")
        pair_stamps = [left.stamps[i] for i, _ in stereo.pairs]
        gt_of: dict[int, int] = {}
        unused_gt = 0
        if gt is not None:
            m = rb.match_by_stamp(pair_stamps, gt.stamps, spec.gt_tolerance_ns)
            gt_of, unused_gt = dict(m.pairs), m.unmatched_b
            if not gt_of and spec.require_gt:
                raise ValueError(f"{where}: no {spec.gt_source} message within gt_tolerance_ns="
                                 f"{spec.gt_tolerance_ns} of a left image (nearest stamps are "
                                 f"{_nearest_offset_ms(pair_stamps, gt.stamps):.3f} ms apart)")
        rows = [(pair_stamps[k], li, ri, gt_of.get(k, -1)) for k, (li, ri) in enumerate(stereo.pairs)
                if gt_of.get(k, -1) >= 0 or not spec.require_gt]
        rows.sort()
        counts = {"left": len(left.stamps), "right": len(right.stamps),
                  "gt": len(gt.stamps) if gt is not None else 0, "stereo_pairs": len(stereo.pairs),
                  "unmatched_left": stereo.unmatched_a, "unmatched_right": stereo.unmatched_b,
                  "no_gt": len(stereo.pairs) - len(gt_of) if gt is not None else 0, "unused_gt": unused_gt,
                  "frames": len(rows)}
        if compressed:
            counts.update(corrupt_left=left.corrupt, corrupt_right=right.corrupt)

        # pass 2: decode, rectify, scale, write row by row
        scale = _Scale(rect.K, (h, w), spec.image_scale)
        oh, ow = scale.size
        n = len(rows)
        arrays = {"left": allocate("left", (n, oh, ow, 3), np.uint8),
                  "right": allocate("right", (n, oh, ow, 3), np.uint8),
                  "depth": allocate("depth", (n, oh, ow), np.float32)}
        arrays["depth"][...] = 0
        wanted = {spec.left_topic: {left.ordinal(r[1]): k for k, r in enumerate(rows)},
                  spec.right_topic: {right.ordinal(r[2]): k for k, r in enumerate(rows)}}
        if gt is not None:
            wanted[spec.gt_source] = {r[3]: k for k, r in enumerate(rows) if r[3] >= 0}
        log.info("%s: decoding %d stereo frames (%dx%d -> %dx%d, %s)", where, n, h, w, oh, ow,
                 "rectifying raw views" if rect.rectifies else "already rectified")
        for topic, row_of in wanted.items():
            for ordinal, (stamp, msg) in enumerate(rb.iter_topic(reader, topic)):
                k = row_of.get(ordinal)
                if k is None:
                    continue
                try:
                    if topic == spec.left_topic:
                        arrays["left"][k] = scale.image(rect.image(rm.msg_to_rgb(msg), "left"))
                    elif topic == spec.right_topic:
                        arrays["right"][k] = scale.image(rect.image(rm.msg_to_rgb(msg), "right"))
                    elif topic == spec.gt_topic:
                        arrays["depth"][k] = scale.depth(rect.depth(rm.msg_to_depth(msg)))
                    else:
                        arrays["depth"][k] = lidar_to_depth_image(rm.pointcloud2_to_xyz(msg), T_lidar,
                                                                  scale.K, oh, ow)
                except ValueError as exc:
                    raise ValueError(f"{where}: {topic} message at {stamp} ns: {exc}") from None
    return {"stamps": [r[0] for r in rows], "has_gt": [r[3] >= 0 for r in rows], "K": scale.K.tolist(),
            "baseline": rect.baseline, "size": [oh, ow], "rectified_from_raw": rect.rectifies,
            "counts": counts, "arrays": arrays}


# --- cache ------------------------------------------------------------------------------------------


class _BagFrames:
    """The decoded frames of one bag: arrays in memory or memory-mapped from its cache entry."""

    def __init__(self, path: Path, name: str, meta: dict[str, Any], source: str,
                 arrays: dict[str, np.ndarray] | None = None, cache_path: Path | None = None):
        self.path, self.name, self.source, self.cache_path = path, name, source, cache_path
        self.stamps = np.asarray(meta["stamps"], dtype=np.int64)
        self.has_gt = np.asarray(meta["has_gt"], dtype=bool)
        self.K = np.asarray(meta["K"], dtype=np.float64)
        self.baseline = float(meta["baseline"])
        self.size = (int(meta["size"][0]), int(meta["size"][1]))
        self.counts = dict(meta["counts"])
        self.rectified_from_raw = bool(meta["rectified_from_raw"])
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self.stamps)

    def array(self, key: str) -> np.ndarray:
        if self._arrays is None:  # opened lazily, once per process (DataLoader workers included)
            self._arrays = {k: np.load(self.cache_path / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
        return self._arrays[key]

    def check(self) -> None:
        """ValueError when the cache entry's arrays do not fit its meta.json."""
        n, (h, w) = len(self), self.size
        expect = {"left": (n, h, w, 3), "right": (n, h, w, 3), "depth": (n, h, w)}
        for key, shape in expect.items():
            if tuple(self.array(key).shape) != shape:
                raise ValueError(f"{self.cache_path}/{key}.npy has shape {self.array(key).shape}, "
                                 f"expected {shape}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.cache_path is not None:
            state["_arrays"] = None  # re-map in the receiving process instead of pickling the data
        return state


def _remove_tree(path: Path) -> None:
    """Move a folder aside (atomically) and delete it, so no reader ever sees it half-removed."""
    if not path.exists():
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def _load_cached(entry: Path, key: str, bag: Path, name: str) -> _BagFrames | None:
    meta_file = entry / "meta.json"
    if not entry.is_dir():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            raise ValueError(f"{meta_file}: format/key mismatch")
        frames = _BagFrames(bag, name, meta, "hit", cache_path=entry)
        frames.check()
        return frames
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("rosbag cache entry %s is unreadable (%s); rebuilding it", entry, exc)
        _remove_tree(entry)
        return None


def _build_cached(entry: Path, key: str, bag: Path, name: str, spec: DecodeSpec) -> _BagFrames:
    """Decode into a temp folder beside `entry` and rename it into place when complete."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        def allocate(array: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.lib.format.open_memmap(tmp / f"{array}.npy", mode="w+", dtype=dtype, shape=shape)

        meta = _decode_bag(bag, spec, allocate)
        arrays = meta.pop("arrays")
        for a in arrays.values():
            a.flush()
        del arrays, a  # close the maps
        for array in ARRAYS:  # on disk before the entry becomes visible
            fd = os.open(tmp / f"{array}.npy", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        meta.update(format=CACHE_FORMAT, key=key, bag=str(bag.resolve()),
                    decode_sha256=_sha256_json(asdict(spec)))
        # written last (and synced): marks the entry complete
        atomic_write_bytes(tmp / "meta.json", (json.dumps(meta) + "\n").encode())
        try:
            os.rename(tmp, entry)
        except OSError:  # another process (DDP rank) finished the same entry first: use theirs
            if not (entry / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((entry / "meta.json").read_text())
    frames = _BagFrames(bag, name, meta, "built", cache_path=entry)
    frames.check()
    _prune_stale(entry, meta)
    return frames


def _prune_stale(entry: Path, meta: dict[str, Any]) -> None:
    """Remove entries of the same bag path and decode settings but an older bag identity (the bag was
    re-recorded or changed); entries for other settings stay, another config may still use them."""
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for other in entry.parent.iterdir():
        if other == entry or not other.name.startswith(prefix) or not other.is_dir():
            continue
        try:
            m = json.loads((other / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if m.get("bag") == meta["bag"] and m.get("decode_sha256") == meta["decode_sha256"]:
            log.info("removing stale rosbag cache entry %s (the bag changed)", other)
            _remove_tree(other)


def load_bag_frames(bag: Path, name: str, spec: DecodeSpec, cache_dir: Path | None) -> _BagFrames:
    """One bag's decoded frames: from its cache entry, by decoding into a new entry, or into memory."""
    if cache_dir is None:
        def allocate(array: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.empty(shape, dtype=dtype)

        meta = _decode_bag(bag, spec, allocate)
        return _BagFrames(bag, name, meta, "memory", arrays=meta.pop("arrays"))
    key = cache_key(bag, spec)
    entry = cache_dir / f"{name}-{key[:16]}"
    frames = _load_cached(entry, key, bag, name)
    return frames if frames is not None else _build_cached(entry, key, bag, name, spec)


# --- the dataset --------------------------------------------------------------------------------------


def _bag_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


class RosbagStereoDataset(torch.utils.data.Dataset):
    """Stereo samples (contract: docs/ARCHITECTURE.md) from rosbag2 recordings of a stereo rig.

    Args:
        bags: rosbag2 folders (or single .mcap/.db3 files); names must be unique (they prefix sample ids,
            `<bagname>@<left stamp ns>`).
        left_topic, right_topic: the two cameras' sensor_msgs/Image topics (colour or mono8), or
            sensor_msgs/CompressedImage (JPEG/PNG, image_transport's `.../compressed`); a corrupt
            compressed payload skips that message (counted as `corrupt_left`/`corrupt_right`).
        left_info_topic, right_info_topic: their sensor_msgs/CameraInfo (stereo calibration: K, D, R, P).
        gt_topic: depth image topic (32FC1 metres or 16UC1 mm) registered to the left camera; or
        lidar_topic: PointCloud2 topic projected into the rectified left camera. Give at most one; with
            neither, `require_gt` must be False (samples have has_gt False, e.g. for distillation).
        stereo_tolerance_ns: left/right pairing, 0 = identical header stamps (hardware-synced rigs), else
            nearest within the tolerance.
        gt_tolerance_ns: GT-to-left-image pairing (nearest within the tolerance; 0 = identical stamps).
        T_cam_from_lidar: 4x4 mapping LiDAR points into the (physical) left camera optical frame; default:
            looked up on /tf_static from the left camera_info's frame_id to the cloud's frame_id.
        rectify: "auto", "always" or "never" (see the module docstring).
        require_gt: drop stereo pairs without a GT message within the tolerance (counted in `report`).
        image_scale: resize the rectified frames by this factor (<= 1; e.g. 0.5 for a 1920x1200 camera);
            K is scaled with them, the baseline is not.
        split: "train", "val" or "all".
        split_mode: "time" (the first `train_fraction` of each bag's frames train, the rest validate) or
            "bag" (the first `train_fraction` of the bags, in the given order, train).
        train_fraction: share of frames (time) or bags (bag) in the training split.
        split_gap_s: time split only: validation frames closer than this to the bag's last training frame
            are dropped, so neighbouring frames do not leak across the split.
        input_size: (H, W) crop (random for split "train", centred otherwise); None = whole images.
        augment, rotation_deg, flip_prob, color_prob, seed: see `transforms.StereoPipeline`; `augment`
            defaults to `split == "train"`.
        cache_dir: folder for decoded frames (one entry per bag and decode settings); None = decode into
            memory at construction (small bags, tests).
    """

    def __init__(self, bags: str | Path | Sequence[str | Path], *, left_topic: str = rb.LEFT_IMAGE,
                 right_topic: str = rb.RIGHT_IMAGE, left_info_topic: str = rb.LEFT_INFO,
                 right_info_topic: str = rb.RIGHT_INFO, gt_topic: str | None = None,
                 lidar_topic: str | None = None, stereo_tolerance_ns: int = 0, gt_tolerance_ns: int = 0,
                 T_cam_from_lidar: np.ndarray | Sequence[Sequence[float]] | None = None,
                 rectify: str = "auto", require_gt: bool = True, image_scale: float = 1.0,
                 split: str = "all", split_mode: str = "time",
                 train_fraction: float = 0.8, split_gap_s: float = 0.0,
                 input_size: tuple[int, int] | None = None, augment: bool | None = None,
                 rotation_deg: float = 1.0, flip_prob: float = 0.5, color_prob: float = 0.5, seed: int = 0,
                 focal_scale: tuple[float, float] | None = None, cache_dir: str | Path | None = None):
        paths = [Path(bags)] if isinstance(bags, (str, Path)) else [Path(b) for b in bags]
        if not paths:
            raise ValueError("bags: give at least one rosbag2 folder or .mcap/.db3 file")
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"rosbag not found: {p}")
        names = [_bag_name(p) for p in paths]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"bags: names must be unique (they prefix sample ids), {dupes} appear twice: "
                             f"{[str(p) for p in paths]}")
        if split not in BAG_SPLITS:
            raise ValueError(f"split must be one of {list(BAG_SPLITS)}, got {split!r}")
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode must be one of {list(SPLIT_MODES)}, got {split_mode!r}")
        if not 0.0 <= train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in [0, 1], got {train_fraction}")
        if split_gap_s < 0:
            raise ValueError(f"split_gap_s must be >= 0, got {split_gap_s}")
        if split_mode == "bag" and split != "all" and len(paths) < 2:
            raise ValueError(f"split_mode='bag' needs at least two bags, got {len(paths)}; "
                             "use split_mode='time'")
        if gt_topic and lidar_topic:
            raise ValueError(f"give gt_topic (depth image) or lidar_topic (PointCloud2), not both: "
                             f"{gt_topic!r}, {lidar_topic!r}")
        if not (gt_topic or lidar_topic) and require_gt:
            raise ValueError("no GT source: give gt_topic (depth image) or lidar_topic (PointCloud2), or "
                             "require_gt=False for samples without GT")
        if T_cam_from_lidar is not None and not lidar_topic:
            raise ValueError("T_cam_from_lidar is only used with lidar_topic")
        for name, tol in (("stereo_tolerance_ns", stereo_tolerance_ns), ("gt_tolerance_ns", gt_tolerance_ns)):
            if isinstance(tol, bool) or not isinstance(tol, (int, np.integer)) or tol < 0:
                raise ValueError(f"{name} must be an integer >= 0 (nanoseconds), got {tol!r}")
        if rectify not in RECTIFY_MODES:
            raise ValueError(f"rectify must be one of {list(RECTIFY_MODES)}, got {rectify!r}")
        if not 0.0 < image_scale <= 1.0:
            raise ValueError(f"image_scale must be in (0, 1] (downscaling only), got {image_scale}")
        T = None
        if T_cam_from_lidar is not None:
            T = np.asarray(T_cam_from_lidar, dtype=np.float64)
            if T.shape != (4, 4) or not np.all(np.isfinite(T)) or not np.allclose(T[3], [0, 0, 0, 1]):
                raise ValueError(f"T_cam_from_lidar must be a finite 4x4 rigid transform, got {T.tolist()}")
            T = tuple(tuple(float(v) for v in row) for row in T)
        if augment and split != "train":
            raise ValueError(f"augment=True is only for split='train' (got split={split!r})")
        self.split = split
        self.spec = DecodeSpec(left_topic=left_topic, right_topic=right_topic,
                               left_info_topic=left_info_topic, right_info_topic=right_info_topic,
                               gt_topic=gt_topic or None, lidar_topic=lidar_topic or None,
                               stereo_tolerance_ns=int(stereo_tolerance_ns),
                               gt_tolerance_ns=int(gt_tolerance_ns), T_cam_from_lidar=T, rectify=rectify,
                               require_gt=bool(require_gt), image_scale=float(image_scale))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._bags = [load_bag_frames(p, n, self.spec, self.cache_dir) for p, n in zip(paths, names)]

        gap_ns = int(round(split_gap_s * 1e9))
        self.items, gap_dropped = self._select(split, split_mode, train_fraction, gap_ns)
        if not self.items and split == "train":
            raise ValueError(f"split 'train' is empty (train_fraction={train_fraction}, "
                             f"split_mode={split_mode!r}, {len(paths)} bag(s))")
        self.ids = [f"{self._bags[b].name}@{self._bags[b].stamps[r]}" for b, r in self.items]
        if input_size is not None:
            input_size = (int(input_size[0]), int(input_size[1]))
            for bag in self._bags:
                if input_size[0] > bag.size[0] or input_size[1] > bag.size[1]:
                    raise ValueError(f"{bag.path}: images are {bag.size[0]}x{bag.size[1]}, smaller than "
                                     f"input_size {input_size[0]}x{input_size[1]}")
        self.pipeline = StereoPipeline.build(mode="train" if split == "train" else "eval", kb_crop=False,
                                             crop_size=input_size, augment=augment, rotation_deg=rotation_deg,
                                             flip_prob=flip_prob, color_prob=color_prob, seed=seed,
                                             focal_scale=focal_scale)
        self.report = self._make_report(gap_dropped)
        self._log_report()

    # -- splits and reporting ----------------------------------------------------------------------

    def _select(self, split: str, mode: str, fraction: float,
                gap_ns: int) -> tuple[list[tuple[int, int]], int]:
        items: list[tuple[int, int]] = []
        dropped = 0
        n_train_bags = int(round(fraction * len(self._bags)))
        for b, bag in enumerate(self._bags):
            n = len(bag)
            if split == "all":
                rows = range(n)
            elif mode == "bag":
                rows = range(n) if (b < n_train_bags) == (split == "train") else range(0)
            else:
                n_train = int(round(fraction * n))
                if split == "train":
                    rows = range(n_train)
                else:
                    start = n_train
                    if n_train > 0 and gap_ns > 0:
                        limit = bag.stamps[n_train - 1] + gap_ns
                        while start < n and bag.stamps[start] < limit:
                            start += 1
                    dropped += start - n_train
                    rows = range(start, n)
            items.extend((b, r) for r in rows)
        return items, dropped

    def _make_report(self, gap_dropped: int) -> dict[str, Any]:
        per_bag = {bag.name: {**bag.counts, "cache": bag.source, "rectified_from_raw": bag.rectified_from_raw}
                   for bag in self._bags}
        keys = list(dict.fromkeys(k for bag in self._bags for k in bag.counts))  # corrupt_*: compressed only
        total = {k: sum(bag.counts.get(k, 0) for bag in self._bags) for k in keys}
        return {"bags": per_bag, "total": total, "split": self.split, "samples": len(self.items),
                "split_gap_dropped": gap_dropped}

    def _log_report(self) -> None:
        t = self.report["total"]
        sources = [bag.source for bag in self._bags]
        cache = ", ".join(f"{sources.count(s)} {s}" for s in ("hit", "built", "memory") if s in sources)
        corrupt = t.get("corrupt_left", 0) + t.get("corrupt_right", 0)
        unmatched = t["unmatched_left"] + t["unmatched_right"] + t["no_gt"] + t["unused_gt"] + corrupt
        level = logging.WARNING if unmatched else logging.INFO
        log.log(level, "rosbag dataset: %d bag(s), split %r: %d of %d frames; left %d, right %d -> %d stereo "
                "pairs (unmatched: %d left, %d right); GT %s: %d messages, %d pairs without GT, "
                "%d GT unused; %d corrupt compressed images skipped; cache: %s",
                len(self._bags), self.split, len(self.items), t["frames"], t["left"], t["right"],
                t["stereo_pairs"], t["unmatched_left"], t["unmatched_right"], self.spec.gt_source or "none",
                t["gt"], t["no_gt"], t["unused_gt"], corrupt, cache)

    # -- Dataset -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for an epoch (same epoch + index -> same augmentation)."""
        self.pipeline.epoch = int(epoch)

    def load_raw(self, index: int) -> dict[str, Any]:
        """The rectified frame as a raw sample (numpy, before crops and augmentation)."""
        b, r = self.items[index]
        bag = self._bags[b]
        return make_sample(bag.array("left")[r], bag.array("right")[r], np.array(bag.array("depth")[r]),
                           bag.K, bag.baseline, has_gt=bool(bag.has_gt[r]), id=self.ids[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        index %= len(self)
        return self.pipeline(self.load_raw(index), index)
