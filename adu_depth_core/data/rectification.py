"""Rectification of recorded camera views from their camera_info (REP 104), the one geometry of the bag frame
source (`data.bag_frames`) behind both the rosbag dataset and bag-eval.

Frames (every depth returned is along the *rectified* left optical axis):

    camera_left_optical_frame  C     the physical left camera: raw left image, the left camera_info's K and D,
                                     and the frame /tf_static (or an explicit extrinsic) places the LiDAR in
    rectified left frame       Rect  X_rect = R_left · X_C + t, R_left the left camera_info's R and
                                     t = K_rect⁻¹ · P_left[:, 3] (zero for the usual left camera)

    K_rect   = P_left[:3, :3] (K when P is all zero: a monocular driver that publishes no P)
    baseline = (P_left[0, 3] − P_right[0, 3]) / fx  (= −P_right[0,3]/P_right[0,0], ROS: Tx = −fx·B)

`rectify` (`RECTIFY_MODES`):
    auto    rectify when a view is raw: non-zero D or a non-identity R in a camera_info (of either view of a
            stereo pair, which is then rectified as a pair);
    always  rectify (identity maps for views that are already rectified);
    never   use the images as recorded and take them to be rectified. A camera_info cannot tell: image_proc
            republishes the raw camera's camera_info (D, R) beside `image_rect`, so `never` is how such
            topics are read; the LiDAR is still rotated by R_left, because /tf_static describes the
            physical camera. `bag_frames` warns when `never` is asked of a topic named `image_raw` whose
            camera_info carries distortion.

Raw views are rectified with `cv2.initUndistortRectifyMap(K, D, R, K_rect)` + `cv2.remap` (bilinear for
images). A depth image is taken as registered to the raw left camera: each rectified pixel takes the depth of
its nearest raw pixel, converted from the raw to the rectified optical axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.geometry import check_intrinsics, check_rotation

RECTIFY_MODES = ("auto", "always", "never")
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


@dataclass(frozen=True)
class ViewRectification:
    """How one recorded view becomes its rectified image.

    `maps` is the (map_x, map_y) pair for `cv2.remap`, or None when the view is used as recorded.
    `depth_scale` / `depth_offset` turn a raw depth z (sampled at the nearest raw pixel) into depth along the
    rectified axis: z_rect = (z + depth_offset) · depth_scale.
    """

    K: np.ndarray  # 3x3 rectified intrinsics
    size: tuple[int, int]  # (H, W)
    T_rect_from_cam: np.ndarray  # 4x4: physical camera frame -> rectified frame
    maps: tuple[np.ndarray, np.ndarray] | None = None
    depth_scale: np.ndarray | None = None
    depth_offset: float = 0.0

    @property
    def rectifies(self) -> bool:
        return self.maps is not None

    def image(self, image: np.ndarray) -> np.ndarray:
        """Rectified RGB uint8 image (bilinear; outside the raw image: 0)."""
        if self.maps is None:
            return image
        mx, my = self.maps
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """Rectified depth (metres, 0 = none) of a depth image registered to the raw camera."""
        if self.maps is None or self.depth_scale is None:
            return depth
        near = cv2.remap(depth, self.maps[0], self.maps[1], cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = np.where(near > 0, (near + np.float32(self.depth_offset)) * self.depth_scale, 0.0)
        return np.where(out > 0, out, 0.0).astype(np.float32)


@dataclass(frozen=True)
class StereoRectification:
    """A stereo pair's two view rectifications, sharing K, and its baseline."""

    left: ViewRectification
    right: ViewRectification
    baseline: float  # metres, right camera at +baseline along the rectified x axis

    @property
    def K(self) -> np.ndarray:
        return self.left.K

    @property
    def size(self) -> tuple[int, int]:
        return self.left.size

    @property
    def T_rect_from_cam(self) -> np.ndarray:
        return self.left.T_rect_from_cam

    @property
    def rectifies(self) -> bool:
        return self.left.rectifies

    @property
    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(left map_x, left map_y, right map_x, right map_y), or None when the views are used as recorded."""
        if self.left.maps is None or self.right.maps is None:
            return None
        return (*self.left.maps, *self.right.maps)

    def image(self, image: np.ndarray, view: str) -> np.ndarray:
        """Rectified RGB uint8 image of the `left` or `right` view."""
        return (self.left if view == "left" else self.right).image(image)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """Rectified left depth of a depth image registered to the raw left camera."""
        return self.left.depth(depth)


def camera_rotation(R: np.ndarray, what: str) -> np.ndarray:
    """R of a camera_info; an all-zero R (drivers of uncalibrated/monocular cameras) means identity."""
    R = np.asarray(R, dtype=np.float64)
    return np.eye(3) if not np.any(R) else check_rotation(R, f"{what}: the rectification matrix R")


def is_raw(cal: rm.Calibration, where: str) -> bool:
    """Whether a camera_info describes a raw view: non-zero D or a non-identity R."""
    return bool(np.any(cal.D != 0) or not np.allclose(camera_rotation(cal.R, where), np.eye(3), atol=1e-9))


def check_rectify(rectify: str) -> str:
    if rectify not in RECTIFY_MODES:
        raise ValueError(f"rectify must be one of {list(RECTIFY_MODES)}, got {rectify!r}")
    return rectify


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


def _projection(cal: rm.Calibration) -> np.ndarray:
    """P of a camera_info, or [K | 0] when P is all zero."""
    return cal.P if np.any(cal.P) else np.hstack([cal.K, np.zeros((3, 1))])


def view_rectification(cal: rm.Calibration, *, rectify: bool, distortion_model: str = "plumb_bob",
                       K_rect: np.ndarray | None = None, where: str = "camera_info") -> ViewRectification:
    """One view's rectification (see the module docstring); `K_rect` defaults to its own P[:3,:3]."""
    P = _projection(cal)
    K_rect = check_intrinsics(P[:, :3] if K_rect is None else K_rect, f"{where} P[:3,:3]")
    R = camera_rotation(cal.R, where)
    t = np.linalg.solve(K_rect, P[:, 3])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    if not rectify:
        return ViewRectification(K=K_rect, size=cal.size, T_rect_from_cam=T)
    maps = _undistort_maps(cal, distortion_model, R, K_rect, where)
    # z of a raw point seen along rectified pixel ray d = K_rect⁻¹(u, v, 1): z_raw = R[:,2]·(z_rect·d − t)
    h, w = cal.size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    d = np.linalg.solve(K_rect, np.stack([u.ravel(), v.ravel(), np.ones(h * w)]))  # 3, H*W
    axis = R[:, 2]
    scale = (1.0 / (axis @ d)).reshape(h, w).astype(np.float32)
    return ViewRectification(K=K_rect, size=cal.size, T_rect_from_cam=T, maps=(maps[0], maps[1]),
                             depth_scale=scale, depth_offset=float(axis @ t))


def stereo_rectification(left: rm.Calibration, right: rm.Calibration, *, rectify: str = "auto",
                         distortion_models: tuple[str, str] = ("plumb_bob", "plumb_bob"),
                         where: str = "stereo camera_info") -> StereoRectification:
    """The rectification of a stereo pair from its two camera_info calibrations (see the module docstring).

    Args:
        left, right: `ros_messages.camera_info_to_calibration` of the left and right camera_info.
        rectify: one of `RECTIFY_MODES`.
        distortion_models: the camera_infos' distortion_model strings.
        where: prefix of error messages (bag and topics).
    """
    check_rectify(rectify)
    if left.size != right.size:
        raise ValueError(f"{where}: left camera_info is {left.size[0]}x{left.size[1]}, right is "
                         f"{right.size[0]}x{right.size[1]}; a stereo pair needs one image size")
    raw = rectify == "always" or (rectify == "auto" and (is_raw(left, f"{where}: left camera_info")
                                                       or is_raw(right, f"{where}: right camera_info")))
    if not np.any(right.P):
        raise ValueError(f"{where}: the right camera_info has an all-zero projection matrix P; the baseline "
                         "comes from P[0,3] = -fx*B: calibrate the pair with camera_calibration's stereo "
                         "calibrator (docs/OWN_RIG.md)")
    P_left = _projection(left)
    K_rect = check_intrinsics(P_left[:, :3], f"{where}: left P[:3,:3]")
    if not np.allclose(right.P[:, :3], K_rect, rtol=1e-6, atol=1e-6):
        raise ValueError(f"{where}: left and right P differ in their 3x3 part ({K_rect.tolist()} vs "
                         f"{right.P[:, :3].tolist()}); not a rectified stereo calibration")
    baseline = float((P_left[0, 3] - right.P[0, 3]) / K_rect[0, 0])
    if not baseline > 0:
        raise ValueError(f"{where}: baseline (P_left[0,3] - P_right[0,3]) / fx = {baseline:.4g} m must be "
                         "> 0 (ROS stereo convention: right P[0,3] = -fx*B); are left and right swapped?")
    left_view, right_view = (view_rectification(cal, rectify=raw, distortion_model=model, K_rect=K_rect,
                                                where=f"{where}: {side} camera_info")
                             for cal, model, side in ((left, distortion_models[0], "left"),
                                                      (right, distortion_models[1], "right")))
    return StereoRectification(left=left_view, right=right_view, baseline=baseline)
