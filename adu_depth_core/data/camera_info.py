"""CameraInfo geometry as image_geometry defines it (REP 104): the camera matrix of the published image
(P for rectified images, ROI and binning applied), CameraInfo for a resized image, and a recorded camera_info
topic by stamp (`CameraInfos`, for the bag frame source). Duck-typed: works
on rclpy and `rosbags` messages alike.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from adu_depth_core.data.ros_messages import Calibration, camera_info_to_calibration


def _image_transform(info: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """(A, (h, w)): A maps full-resolution calibrated pixels to the pixels of the published image
    (ROI crop, then binning, as image_geometry does), and (h, w) is that image's size (REP 104)."""
    full_h, full_w = int(info.height), int(info.width)
    bx, by = max(1, int(getattr(info, "binning_x", 0))), max(1, int(getattr(info, "binning_y", 0)))
    roi = getattr(info, "roi", None)
    x0 = y0 = 0
    h, w = full_h, full_w
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0:
        x0, y0, h, w = int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width)
    A = np.array([[1.0 / bx, 0.0, -x0 / bx], [0.0, 1.0 / by, -y0 / by], [0.0, 0.0, 1.0]])
    return A, (h // by, w // bx)


def _has_binning_or_roi(info: Any) -> bool:
    roi = getattr(info, "roi", None)
    return (
        int(getattr(info, "binning_x", 0)) > 1
        or int(getattr(info, "binning_y", 0)) > 1
        or (roi is not None and int(roi.width) > 0 and int(roi.height) > 0)
    )


def camera_info_geometry(info: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """(K, (h, w)) of the image a CameraInfo describes: the 3x3 camera matrix the network should use
    and the image size, with ROI and binning applied.

    K is the left 3x3 of the projection matrix P — the matrix of the *rectified* image, which is what
    image_geometry and depth_image_proc use — or the intrinsic matrix K when P is all zeros.
    Raises ValueError for an uncalibrated or malformed CameraInfo.
    """
    try:
        calib = camera_info_to_calibration(info)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"unusable camera_info: {exc}") from None
    P = calib.P[:, :3]
    M = P if P[0, 0] > 0 and P[1, 1] > 0 else calib.K
    A, size = _image_transform(info)
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"camera_info ROI/binning leave an empty image ({size[0]}x{size[1]})")
    return A @ M, size


def published_calibration(info: Any) -> Calibration:
    """The calibration of the image a CameraInfo describes: K and P with ROI and binning applied (as
    `camera_info_geometry`), the published size; D and R unchanged. Without ROI or binning this is
    `camera_info_to_calibration(info)`. Undistortion maps built from it are exact for the cropped/binned
    image: both only move pixel coordinates by an affine map that K and P absorb."""
    calib = camera_info_to_calibration(info)
    if not _has_binning_or_roi(info):
        return calib
    A, size = _image_transform(info)
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"camera_info ROI/binning leave an empty image ({size[0]}x{size[1]})")
    return calib._replace(K=A @ calib.K, P=A @ calib.P, size=size)


def _resize_matrix(src_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Pixel map of a resize src → out (pixel-corner convention, as `geometry.scale_intrinsics`)."""
    sx, sy = out_hw[1] / src_hw[1], out_hw[0] / src_hw[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def scale_camera_info(info: Any, out_hw: tuple[int, int]) -> Any:
    """A copy of CameraInfo `info` describing its image resized to `out_hw` (H, W).

    K and P are scaled (Tx = -fx·B scales with fx); D and R are unchanged. When `info` uses ROI or
    binning, the copy describes the resized image directly (binning 0, empty ROI). With the same size
    and no ROI/binning the copy equals `info`. Works on rclpy and rosbags messages alike.
    """
    out_h, out_w = (int(v) for v in out_hw)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {out_h}x{out_w}")
    A, src_hw = _image_transform(info)
    if src_hw[0] <= 0 or src_hw[1] <= 0:
        raise ValueError(f"camera_info describes an empty image ({src_hw[0]}x{src_hw[1]})")
    M = _resize_matrix(src_hw, (out_h, out_w)) @ A
    out = copy.copy(info)
    K = M @ np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    P = M @ np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    out.k = K.reshape(-1).astype(np.float64)
    out.p = P.reshape(-1).astype(np.float64)
    out.height, out.width = out_h, out_w
    if _has_binning_or_roi(info):
        out.binning_x, out.binning_y = 0, 0
        roi = copy.copy(info.roi)
        roi.x_offset, roi.y_offset, roi.height, roi.width = 0, 0, 0, 0
        out.roi = roi
    return out


def default_info_topic(image_topic: str) -> str:
    """camera_info beside the image's base topic (as image_transport names them:
    `/cam/image_raw` and `/cam/image_raw/compressed` both -> `/cam/camera_info`)."""
    base = image_topic.removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


def _calibration_key(msg: Any) -> tuple[Any, ...]:
    return (*(np.asarray(getattr(msg, k), np.float64).tobytes() for k in "kdrp"), int(msg.height),
            int(msg.width), str(msg.distortion_model), int(getattr(msg, "binning_x", 0)),
            int(getattr(msg, "binning_y", 0)), str(getattr(msg, "roi", "")))


class CameraInfos:
    """A camera_info topic's messages by header stamp: the one with a frame's stamp, else the nearest."""

    def __init__(self, messages: list[tuple[int, Any]], topic: str, where: str):
        if not messages:
            raise ValueError(f"{where}{topic} has no messages (the camera_info gives K and the baseline)")
        self.topic, self.where = topic, where
        messages = sorted(messages, key=lambda m: m[0])  # header stamps need not follow bag order
        self.stamps = np.array([t for t, _ in messages], dtype=np.int64)
        self.msgs = [m for _, m in messages]
        self.keys = [_calibration_key(m) for m in self.msgs]
        self._cals: dict[tuple[Any, ...], Calibration] = {}

    def nearest(self, stamp: int) -> int:
        k = int(np.searchsorted(self.stamps, stamp))
        candidates = [c for c in (k - 1, k) if 0 <= c < len(self.stamps)]
        return min(candidates, key=lambda c: abs(int(self.stamps[c]) - stamp))

    def calibration(self, index: int) -> Calibration:
        key = self.keys[index]
        if key not in self._cals:
            try:
                self._cals[key] = published_calibration(self.msgs[index])
            except ValueError as exc:
                raise ValueError(f"{self.where}{self.topic}: {exc}") from None
        return self._cals[key]

    def frame_id(self, index: int) -> str:
        return str(self.msgs[index].header.frame_id).lstrip("/")

    def model(self, index: int) -> str:
        return str(self.msgs[index].distortion_model)
