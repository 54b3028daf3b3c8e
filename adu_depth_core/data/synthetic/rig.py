"""The synthetic rig's settings (`RigConfig` and its presets), its camera (`rig_intrinsics`), the seeds of
the splits, and the frame it renders (`RigFrame`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adu_depth_core.config import parse_size
from adu_depth_core.geometry import KITTI_FX, KITTI_WIDTH
from adu_depth_core.vocab import SPLITS, check_split

KITTI_CX = 609.5593  # KITTI 2011_09_26 P_rect_02 principal point at 1242x375
KITTI_CY = 172.854
KITTI_HEIGHT = 375

SPLIT_BLOCK = 1_000_000  # seeds of split s are [s·BLOCK, (s+1)·BLOCK): disjoint by construction


def split_seed(split: str, index: int) -> int:
    """Seed of frame `index` of a split; train/val/test seed ranges never overlap."""
    check_split(split)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < SPLIT_BLOCK:
        raise ValueError(f"{split} frame index must be an integer in [0, {SPLIT_BLOCK}), got {index!r}")
    return SPLITS.index(split) * SPLIT_BLOCK + int(index)


def seed_split(seed: int) -> tuple[str, int]:
    """Inverse of `split_seed`: (split, index) of a seed."""
    if not 0 <= int(seed) < len(SPLITS) * SPLIT_BLOCK:
        raise ValueError(f"seed {seed} is outside the split ranges [0, {len(SPLITS) * SPLIT_BLOCK})")
    return SPLITS[int(seed) // SPLIT_BLOCK], int(seed) % SPLIT_BLOCK


def rig_intrinsics(size: tuple[int, int] | str, fx_scale: float = 1.0) -> np.ndarray:
    """KITTI-like 3x3 K for an HxW image: fx = fy = 721.5377·W/1242·fx_scale, KITTI's principal point
    scaled to the size (pixel-centre convention, as `geometry.scale_intrinsics`)."""
    h, w = parse_size(size)
    if not fx_scale > 0:
        raise ValueError(f"fx_scale must be > 0, got {fx_scale}")
    f = KITTI_FX * w / KITTI_WIDTH * fx_scale
    cx = (KITTI_CX + 0.5) * w / KITTI_WIDTH - 0.5
    cy = (KITTI_CY + 0.5) * h / KITTI_HEIGHT - 0.5
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


@dataclass
class RigConfig:
    """Settings of the synthetic rig. The defaults are the `vehicle` rig of docs/DATA.md: one camera
    mounting (1.65 m above the road, pitch within ±0.3°, as a car's suspension moves it), and scenes whose
    monocular cues are weak where they are weak in reality (half of the boxes lifted off the ground, object
    sizes and texture scales random, thin poles, sparse LiDAR-like labels), so a stereo teacher has something
    to teach that one view can still learn. `RigConfig.preset("varied_mount")` draws the camera height
    (1.0–2.6 m) and pitch (±4°) per frame, which makes metric scale unobservable from one view (a robustness
    study, not a distillation benchmark); `easy_mono` is the fixed-camera, grounded-boxes rig.

    Ranges are (low, high), drawn uniformly per frame (log-uniformly for sizes and texture scales).
    Camera fields (`baseline`, `fx_scale`, `max_depth`, `image_noise`, `lidar_*`) only change how a scene
    is rendered and measured; the scene itself depends on the seed and the remaining fields.
    """

    baseline: float = 0.54  # metres, right camera at +baseline along x
    fx_scale: float = 1.0  # multiplier on the KITTI-like focal 721.5377·W/1242
    max_depth: float = 80.0  # dense/sparse depth beyond this is 0 (KITTI's evaluation cap)
    image_noise: float = 1.0  # std of Gaussian sensor noise, grey levels (0-255), independent per view
    camera_height: tuple[float, float] = (1.65, 1.65)  # metres above the road (KITTI's mounting)
    pitch_deg: tuple[float, float] = (-0.3, 0.3)  # positive looks down; suspension-like jitter
    road_half_width: tuple[float, float] = (3.0, 8.0)  # each side of the camera, metres
    sidewalk_width: tuple[float, float] = (1.5, 5.0)
    kerb_height: tuple[float, float] = (0.1, 0.2)
    buildings: bool = True
    building_height: tuple[float, float] = (3.0, 25.0)
    num_boxes: tuple[int, int] = (3, 10)  # vehicles + free boxes per frame (inclusive)
    box_distance: tuple[float, float] = (4.0, 70.0)  # forward distance of box centres, metres
    vehicle_fraction: float = 0.5  # share of boxes with car proportions (1.8 x 1.5 x 4.5 m x scale)
    vehicle_scale: tuple[float, float] = (0.5, 1.6)  # so a car's image size does not fix its distance
    box_size: tuple[float, float] = (0.3, 4.0)  # free boxes: each edge log-uniform in this range
    lifted_fraction: float = 0.5  # share of boxes floating off the ground
    lift_height: tuple[float, float] = (0.3, 2.5)
    num_poles: tuple[int, int] = (2, 10)
    texture_scale: tuple[float, float] = (0.25, 4.0)  # per-surface multiplier on texture wavelengths
    lidar_beams: int = 64  # HDL-64-like scan lines, evenly spaced in elevation
    lidar_elevation_deg: tuple[float, float] = (-24.8, 2.0)  # lowest, highest beam (level, world frame)
    lidar_density: float = 0.05  # target share of image pixels on the subsampled scan lines

    PRESETS = ("vehicle", "varied_mount", "easy_mono")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RigConfig:
        """`vehicle` (the defaults), `varied_mount` (camera height 1.0–2.6 m and pitch ±4° drawn per frame)
        or `easy_mono` (zero pitch, every box on the ground, fixed vehicle and texture scale: the
        monocular-friendly rig)."""
        if name == "vehicle":
            cfg = cls()
        elif name == "varied_mount":
            cfg = cls(camera_height=(1.0, 2.6), pitch_deg=(-4.0, 4.0))
        elif name == "easy_mono":
            cfg = cls(
                camera_height=(1.65, 1.65),
                pitch_deg=(0.0, 0.0),
                lifted_fraction=0.0,
                vehicle_scale=(1.0, 1.0),
                box_size=(1.0, 2.5),
                texture_scale=(1.0, 1.0),
            )
        else:
            raise ValueError(f"rig preset must be one of {list(cls.PRESETS)}, got {name!r}")
        cfg = dataclasses.replace(cfg, **overrides)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""

        def positive(name: str) -> None:
            if not getattr(self, name) > 0:
                raise ValueError(f"rig.{name} must be > 0, got {getattr(self, name)}")

        def span(name: str, lo_min: float = 0.0, hi_max: float = math.inf) -> None:
            lo, hi = getattr(self, name)
            if not (lo_min <= lo <= hi <= hi_max):
                raise ValueError(
                    f"rig.{name} must be (low, high) with {lo_min} <= low <= high <= {hi_max}, got {(lo, hi)}"
                )

        for name in ("baseline", "fx_scale", "max_depth", "lidar_density"):
            positive(name)
        if self.image_noise < 0:
            raise ValueError(f"rig.image_noise must be >= 0, got {self.image_noise}")
        for name in ("vehicle_fraction", "lifted_fraction", "lidar_density"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"rig.{name} must be in [0, 1], got {getattr(self, name)}")
        span("camera_height", 0.2, 20.0)
        span("pitch_deg", -30.0, 30.0)
        for name in (
            "road_half_width",
            "sidewalk_width",
            "kerb_height",
            "building_height",
            "box_distance",
            "vehicle_scale",
            "box_size",
            "lift_height",
            "texture_scale",
        ):
            span(name, 1e-3)
        span("num_boxes", 0, 200)
        span("num_poles", 0, 200)
        span("lidar_elevation_deg", -89.0, 89.0)
        if self.lidar_beams < 1:
            raise ValueError(f"rig.lidar_beams must be >= 1, got {self.lidar_beams}")


@dataclass
class RigFrame:
    """One rendered stereo frame. Depths are metres along the optical axis, 0 = no value."""

    left: np.ndarray  # uint8 HxWx3 RGB, left camera
    right: np.ndarray  # uint8 HxWx3 RGB, right camera (+baseline along x)
    depth: np.ndarray  # float32 HxW dense depth of the left view (0 = sky / beyond max_depth)
    lidar_depth: np.ndarray  # float32 HxW sparse LiDAR-like depth of the left view (subset of `depth`)
    K: np.ndarray  # float64 3x3, shared by both rectified views
    baseline: float  # metres
    seed: int
    right_depth: np.ndarray | None = None  # float32 HxW dense depth of the right view
    meta: dict[str, Any] = field(default_factory=dict)  # camera_height, pitch_deg, object counts
