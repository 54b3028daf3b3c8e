"""LiDAR point clouds -> sparse depth images in a camera (the one projection bag-eval and the rosbag
dataset share, so both score against the same ground truth), and extrinsic files (`read_extrinsic`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adu_depth_core.config import load_yaml_file
from adu_depth_core.geometry import check_intrinsics, check_rigid_transform, project_points, transform_points


def lidar_to_depth_image(
    points_lidar: np.ndarray, T_cam_from_lidar: np.ndarray, K: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Sparse HxW float32 depth (metres along the optical axis, 0 = no return) of LiDAR points.

    Args:
        points_lidar: (N, 3) points in the LiDAR frame (non-finite rows are ignored).
        T_cam_from_lidar: 4x4 transform mapping LiDAR-frame points into the camera optical frame
            (`rosbag_io.lookup_transform(tfs, camera_frame, lidar_frame)`).
        K: 3x3 camera intrinsics of the image the depth is rendered for.
        height, width: image size in pixels.

    Points behind the camera or outside the image are dropped; where several points land on one
    pixel the nearest wins.
    """
    pts = np.asarray(points_lidar, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"LiDAR points: expected an (N, 3) array, got shape {pts.shape}")
    T = check_rigid_transform(T_cam_from_lidar, "T_cam_from_lidar")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"depth image size must be positive, got {height}x{width}")
    K = check_intrinsics(K)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    return project_points(transform_points(T, pts), K, int(height), int(width))


def read_extrinsic(path: str | Path) -> np.ndarray:
    """4x4 T_camera_from_lidar from a YAML/JSON file: a 4x4 (or 16-number) matrix, or a mapping with
    `T_camera_from_lidar` or `T_lidar_from_camera` (inverted); the matrix must be rigid."""
    path = Path(path)
    data = load_yaml_file(path, "extrinsic")
    invert = False
    if isinstance(data, dict):
        if "T_camera_from_lidar" in data:
            data = data["T_camera_from_lidar"]
        elif "T_lidar_from_camera" in data:
            data, invert = data["T_lidar_from_camera"], True
        else:
            raise ValueError(f"{path}: expected a 4x4 matrix or a mapping with 'T_camera_from_lidar' or "
                             f"'T_lidar_from_camera', got keys {sorted(data)}")
    try:
        T = np.asarray(data, dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: the extrinsic must be 16 numbers (a 4x4 matrix), got {data!r}") from None
    T = check_rigid_transform(T, str(path))
    return np.linalg.inv(T) if invert else T
