"""Camera geometry shared by data, runtime, evaluation and ROS: intrinsics under resize/crop,
LiDAR/depth projection and rigid transforms. numpy in, numpy out; K is a 3x3 pinhole matrix.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from adu_depth_core.depth_traits import valid_depth

KITTI_FX = 721.5377
KITTI_WIDTH = 1242
KB_CROP_SIZE = (352, 1216)  # KITTI benchmark crop: bottom 352 rows, centred 1216 columns


def check_intrinsics(K: np.ndarray, what: str = "camera matrix K") -> np.ndarray:
    """Return K as float64 3x3, or raise ValueError for an uncalibrated/degenerate matrix."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{what}: expected a 3x3 matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(
            f"{what}: fx and fy must be positive and finite (got fx={K[0, 0]}, fy={K[1, 1]}); "
            "an all-zero camera_info means the camera is not calibrated"
        )
    return K


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K for an image resized by (sx, sy) (pixel-corner convention: cx' = (cx + 0.5)·sx − 0.5)."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def crop_intrinsics(K: np.ndarray, top: int, left: int) -> np.ndarray:
    """K for an image cropped so that pixel (left, top) becomes the origin."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 2] -= left
    K[1, 2] -= top
    return K


def kb_crop_box(height: int, width: int, size: tuple[int, int] = KB_CROP_SIZE) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the KITTI benchmark crop: bottom `h` rows, horizontally centred `w` columns."""
    h, w = size
    if height < h or width < w:
        raise ValueError(f"image {height}x{width} is smaller than the KB crop: it needs at least {h}x{w}")
    return height - h, (width - w) // 2, h, w


def backproject_depth(depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-D points (N,3) in the camera frame for valid depth pixels (`valid_depth`), and their (N,2) uv."""
    K = check_intrinsics(K)
    v, u = np.nonzero(valid_depth(depth))
    z = depth[v, u].astype(np.float64)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1), np.stack([u, v], axis=1)


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (N,3) points."""
    T = np.asarray(T, dtype=np.float64)
    return points @ T[:3, :3].T + T[:3, 3]


def project_points(
    points_cam: np.ndarray, K: np.ndarray, height: int, width: int, min_depth: float = 1e-3
) -> np.ndarray:
    """Render camera-frame points (N,3) into an HxW depth image (metres, 0 = none), nearest point wins."""
    K = check_intrinsics(K)
    depth = np.zeros((height, width), dtype=np.float32)
    z = points_cam[:, 2]
    front = z > min_depth
    pts, z = points_cam[front], z[front]
    u = np.round(pts[:, 0] * K[0, 0] / z + K[0, 2]).astype(np.int64)
    v = np.round(pts[:, 1] * K[1, 1] / z + K[1, 2]).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, z = u[inside], v[inside], z[inside]
    order = np.argsort(-z)  # far first, so nearer points overwrite them
    depth[v[order], u[order]] = z[order]
    return depth


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation from a unit quaternion (ROS order x, y, z, w)."""
    q = np.array([x, y, z, w], dtype=np.float64)
    n = np.linalg.norm(q)
    if n == 0:
        raise ValueError("quaternion has zero norm")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w) of a 3x3 rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    w = np.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = np.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2
    y = np.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2
    z = np.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2
    x = np.copysign(x, R[2, 1] - R[1, 2])
    y = np.copysign(y, R[0, 2] - R[2, 0])
    z = np.copysign(z, R[1, 0] - R[0, 1])
    return float(x), float(y), float(z), float(w)


# |R·Rᵀ − I| allowed in a rotation block: calibration files and YAML extrinsics carry ~6 digits
ROTATION_ATOL = 1e-4
RIGID_RULE = "a finite 4x4 with an orthonormal 3x3 rotation of det +1 and last row 0 0 0 1"
ROTATION_RULE = "a finite orthonormal 3x3 with det +1"


def _rotation_problem(R: np.ndarray) -> str | None:
    """Why a finite 3x3 is not a proper rotation, or None."""
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    if err > ROTATION_ATOL:
        return f"not orthonormal (|R·Rᵀ − I| = {err:.3g} > {ROTATION_ATOL:g})"
    if np.linalg.det(R) < 0:
        return "det −1 (a reflection)"
    return None


def check_rotation(R: npt.ArrayLike, what: str) -> np.ndarray:
    """R as float64 3x3 when it is a proper rotation, else ValueError naming `what` and the rule."""
    R = np.asarray(R, dtype=np.float64)
    problem = (
        f"expected shape (3, 3), got {R.shape}" if R.shape != (3, 3)
        else "it has non-finite entries" if not np.all(np.isfinite(R))
        else _rotation_problem(R)
    )  # fmt: skip
    if problem:
        raise ValueError(f"{what}: not a rotation ({ROTATION_RULE}): {problem}; got {R.tolist()}")
    return R


def check_rigid_transform(T: npt.ArrayLike, what: str) -> np.ndarray:
    """T as float64 4x4 when it is a rigid transform (rotation + translation), else ValueError naming
    `what` and the rule. The one check of every extrinsic, tf and camera pose in the project."""
    T = np.asarray(T, dtype=np.float64)
    problem = (
        f"expected shape (4, 4), got {T.shape}" if T.shape != (4, 4)
        else "it has non-finite entries" if not np.all(np.isfinite(T))
        else f"the last row is {T[3].tolist()}, expected [0, 0, 0, 1]" if not np.allclose(T[3], [0, 0, 0, 1])
        else None
    )  # fmt: skip
    if problem is None and (rotation := _rotation_problem(T[:3, :3])):
        problem = f"the 3x3 block is not a rotation: {rotation}"
    if problem:
        raise ValueError(f"{what}: not a rigid transform ({RIGID_RULE}): {problem}; got {T.tolist()}")
    return T


def rigid_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T
