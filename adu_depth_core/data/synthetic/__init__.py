"""Synthetic stereo rig: procedurally generated driving-like scenes, ray cast for a rectified stereo pair.

The *scene* depends only on the seed and the scene fields of `RigConfig`: a road plane with lane
markings, raised sidewalks with kerbs, building facades with windows, vehicles and free boxes of random
size at random distance (half of them lifted off the ground, so apparent size and ground contact do not
give the distance away), poles and sky, and the camera's mounting (`RigConfig.camera_height`,
`pitch_deg`). Appearance is defined in 3-D (world-space procedural texture whose scale is drawn per
surface, Lambert shading under a per-frame sun, nothing view-dependent), so the left and right views are
photo-consistent. The camera is mounted once per rig, as on a vehicle (fixed height, pitch jittering by
suspension-like fractions of a degree); `RigConfig.preset("varied_mount")` draws a new height and pitch
per frame for robustness studies.

The *rendering* depends on the image size and focal only: every pixel of both views is ray cast with
vectorised numpy, giving the RGB pair, a dense depth (0 = sky or beyond `max_depth`) and a LiDAR-like
sparse depth (64 scan lines at KITTI's HDL-64 elevations, subsampled along the line to ~5 % of pixels).

Frames: world X right, Y down (gravity), Z forward, origin at the left camera centre; the ground is the
plane Y = camera_height. Camera frame: OpenCV (x right, y down, z forward), rotated from the world by the
pitch about X (positive pitch looks down); the right camera sits at +baseline along x. Rays are
K⁻¹[u, v, 1] (camera z = 1), so the ray parameter t of a hit *is* its depth along the optical axis.

The package's parts, in the order a frame is made: `rig` (settings, presets, camera, split seeds,
`RigFrame`), `scene` (seed -> world), `shading` (appearance of a hit point), `render` (`SyntheticRig`:
ray casting, depth, LiDAR pattern), `dataset` (`SyntheticStereoDataset`, `frames_for_split`).
"""

from __future__ import annotations

from adu_depth_core.data.synthetic.dataset import RigLabels, SyntheticStereoDataset, frames_for_split
from adu_depth_core.data.synthetic.render import SyntheticRig
from adu_depth_core.data.synthetic.rig import (
    SPLIT_BLOCK,
    RigConfig,
    RigFrame,
    rig_intrinsics,
    seed_split,
    split_seed,
)
from adu_depth_core.data.synthetic.scene import Scene, sample_scene

__all__ = [
    "RigConfig",
    "RigFrame",
    "Scene",
    "SyntheticRig",
    "RigLabels",
    "SyntheticStereoDataset",
    "frames_for_split",
    "rig_intrinsics",
    "sample_scene",
    "seed_split",
    "split_seed",
    "SPLIT_BLOCK",
]
