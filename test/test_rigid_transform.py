"""`geometry.check_rigid_transform` / `check_rotation`: the one rule every extrinsic, tf and camera_info R
is checked by (extrinsic files, T_cam_from_lidar, LiDAR projection, TransformStamped, camera_info R)."""

from __future__ import annotations

import numpy as np
import pytest

from adu_depth_core.geometry import (
    check_rigid_transform,
    check_rotation,
    quaternion_to_matrix,
    rigid_transform,
)

RULE = (r"not a rigid transform \(a finite 4x4 with an orthonormal 3x3 rotation of det \+1 and last row "
        r"0 0 0 1\)")


def _proper() -> np.ndarray:
    return rigid_transform(quaternion_to_matrix(0.1, -0.2, 0.3, 0.9), [0.5, -1.0, 2.0])


def test_a_proper_transform_is_returned_as_float64():
    T = _proper()
    out = check_rigid_transform(T.tolist(), "extrinsic.yaml")
    assert out.dtype == np.float64 and out.shape == (4, 4)
    np.testing.assert_array_equal(out, T)
    near = T.copy()
    near[:3, :3] += 2e-5  # six printed digits: within the tolerance
    check_rigid_transform(near, "extrinsic.yaml")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (np.eye(3), r"expected shape \(4, 4\), got \(3, 3\)"),
        (np.full((4, 4), np.nan), "it has non-finite entries"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), r"the 3x3 block is not a rotation: det −1 \(a reflection\)"),
        (np.diag([2.0, 1.0, 1.0, 1.0]),
         r"the 3x3 block is not a rotation: not orthonormal \(\|R·Rᵀ − I\| = 3 > 0.0001\)"),
        (np.vstack([np.eye(4)[:3], [0.0, 0.0, 1.0, 1.0]]),
         r"the last row is \[0.0, 0.0, 1.0, 1.0\], expected \[0, 0, 0, 1\]"),
    ],
    ids=["shape", "non-finite", "reflection", "not-orthonormal", "last-row"],
)
def test_each_broken_rule_is_named_with_the_source(bad, reason):
    with pytest.raises(ValueError, match=f"^T_cam_from_lidar: {RULE}: {reason}; got "):
        check_rigid_transform(bad, "T_cam_from_lidar")


def test_rotation_rule_is_the_same():
    R = _proper()[:3, :3]
    np.testing.assert_array_equal(check_rotation(R, "camera_info R"), R)
    rule = r"^camera_info R: not a rotation \(a finite orthonormal 3x3 with det \+1\)"
    with pytest.raises(ValueError, match=rule + r": det −1 \(a reflection\); got "):
        check_rotation(np.diag([1.0, -1.0, 1.0]), "camera_info R")
    with pytest.raises(ValueError, match=r"camera_info R: not a rotation .*: not orthonormal"):
        check_rotation(R * 1.01, "camera_info R")
    with pytest.raises(ValueError, match=r"expected shape \(3, 3\), got \(4, 4\)"):
        check_rotation(np.eye(4), "camera_info R")
