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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from adu_depth_core.config import parse_size
from adu_depth_core.data.transforms import StereoPipeline, make_sample
from adu_depth_core.geometry import KITTI_FX, KITTI_WIDTH
from adu_depth_core.vocab import SPLITS, check_split

KITTI_CX = 609.5593  # KITTI 2011_09_26 P_rect_02 principal point at 1242x375
KITTI_CY = 172.854
KITTI_HEIGHT = 375

SPLIT_BLOCK = 1_000_000  # seeds of split s are [s·BLOCK, (s+1)·BLOCK): disjoint by construction

_NEAR = 1e-3  # metres: clip plane for screen-space bounding rectangles
_T_EPS = 1e-3  # hits closer than this along the ray are ignored (self-intersection guard)

# object kinds (texture programs)
SKY, ROAD, GENERIC, FACADE, VEHICLE, SIDEWALK = 0, 1, 2, 3, 4, 5
# object shapes
_NONE, _PLANE, _BOX, _CYLINDER = 0, 1, 2, 3


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


# --------------------------------------------------------------------------------------------------
# scene sampling (seed -> world; never looks at image size or focal)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB in [0, 1] from hue in [0, 1), saturation, value."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: Any = None) -> Any:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size))


@dataclass
class Scene:
    """A sampled world. Object 0 is the sky, object 1 the road plane; every other object is a box
    (`boxes` rows) or a vertical cylinder (`poles` rows). Per-object appearance lives in `surf`."""

    camera_height: float
    pitch: float  # radians, positive looks down
    sun: np.ndarray  # unit vector towards the sun (world)
    ambient: float
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    waves: np.ndarray  # (3, 3) unit wave directions of the shared sinusoid texture
    boxes: list[dict[str, Any]]  # id, centre (3), half (3), yaw
    poles: list[dict[str, Any]]  # id, x, z, r, y_top, y_bottom
    surf: dict[str, np.ndarray]  # per-object tables indexed by object id
    road: dict[str, float]
    counts: dict[str, int]


def _surface_row(
    kind: int, col_a: np.ndarray, col_b: np.ndarray, scale: float, rng: np.random.Generator, **extra: Any
) -> dict[str, Any]:
    row = {
        "kind": kind,
        "col_a": col_a,
        "col_b": col_b,
        "scale": scale,
        "offset": rng.uniform(-500.0, 500.0, 3),
        "shape": _BOX,
    }
    row.update(extra)
    return row


def sample_scene(seed: int, cfg: RigConfig) -> Scene:
    """Draw the world of frame `seed` (deterministic; independent of image size and focal)."""
    rng = np.random.default_rng([0x5CE7E, int(seed)])
    h = float(rng.uniform(*cfg.camera_height))
    pitch = math.radians(rng.uniform(*cfg.pitch_deg))
    elev, azim = math.radians(rng.uniform(20, 65)), rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elev) * math.sin(azim), -math.sin(elev), math.cos(elev) * math.cos(azim)])
    waves = rng.normal(size=(3, 3))
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)

    def tex_scale() -> float:
        return float(_log_uniform(rng, *cfg.texture_scale))

    rows: list[dict[str, Any]] = [
        {
            "kind": SKY,
            "col_a": np.zeros(3),
            "col_b": np.zeros(3),
            "scale": 1.0,
            "offset": np.zeros(3),
            "shape": _NONE,
        },
    ]
    grey = rng.uniform(0.2, 0.4)
    rows.append(
        _surface_row(
            ROAD, np.full(3, grey) * [1.0, 1.0, 1.04], np.full(3, grey * 1.35), tex_scale(), rng, shape=_PLANE
        )
    )
    road_left, road_right = -rng.uniform(*cfg.road_half_width), rng.uniform(*cfg.road_half_width)
    lane = rng.uniform(2.8, 4.0)
    road = {
        "left": road_left,
        "right": road_right,
        "lane": lane,
        "first_line": road_left + lane * rng.uniform(0.8, 1.2),
        "dash_period": rng.uniform(6.0, 12.0),
        "dash_duty": rng.uniform(0.3, 0.6),
        "dash_offset": rng.uniform(0.0, 12.0),
        "line_width": rng.uniform(0.1, 0.2),
    }
    boxes: list[dict[str, Any]] = []
    poles: list[dict[str, Any]] = []

    def add_box(centre: Any, half: Any, yaw: float, row: dict[str, Any]) -> None:
        row.setdefault("yaw", yaw)
        rows.append(row)
        boxes.append(
            {
                "id": len(rows) - 1,
                "centre": np.asarray(centre, float),
                "half": np.asarray(half, float),
                "yaw": float(yaw),
            }
        )

    z_near, z_far = -15.0, 220.0
    outer = {}
    for side, edge in ((-1, road_left), (1, road_right)):
        # raised sidewalk: its road-facing face is the kerb
        width, kerb = rng.uniform(*cfg.sidewalk_width), rng.uniform(*cfg.kerb_height)
        x0, x1 = sorted((edge, edge + side * width))
        g = rng.uniform(0.45, 0.65)
        add_box(
            [(x0 + x1) / 2, h - kerb / 2, (z_near + z_far) / 2],
            [(x1 - x0) / 2, kerb / 2, (z_far - z_near) / 2],
            0.0,
            _surface_row(
                SIDEWALK,
                np.full(3, g),
                np.full(3, g) * [1.1, 1.05, 0.95],
                tex_scale(),
                rng,
                y_top=h - kerb,
                height=kerb,
            ),
        )
        outer[side] = edge + side * width
    n_buildings = 0
    if cfg.buildings:
        for side in (-1, 1):
            z = z_near + rng.uniform(0.0, 10.0)
            while z < 160.0:
                length = rng.uniform(6.0, 30.0)
                if rng.random() > 0.2:  # otherwise a gap: sky and farther facades show through
                    setback, depth_x = rng.uniform(0.0, 6.0), rng.uniform(6.0, 15.0)
                    height = float(rng.uniform(*cfg.building_height))
                    xa = outer[side] + side * setback
                    x0, x1 = sorted((xa, xa + side * depth_x))
                    col = _hsv(rng.random(), rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.85))
                    add_box(
                        [(x0 + x1) / 2, h - height / 2, z + length / 2],
                        [(x1 - x0) / 2, height / 2, length / 2],
                        0.0,
                        _surface_row(
                            FACADE,
                            col,
                            col * rng.uniform(0.7, 0.9),
                            tex_scale(),
                            rng,
                            y_top=h - height,
                            height=height,
                            win_period=rng.uniform([2.0, 2.6], [5.0, 4.0]),
                            win_frac=rng.uniform([0.3, 0.35], [0.7, 0.6]),
                            win_col=_hsv(
                                rng.uniform(0.5, 0.7), rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.35)
                            ),
                        ),
                    )
                    n_buildings += 1
                z += length + rng.uniform(0.0, 4.0)
    n_boxes = int(rng.integers(cfg.num_boxes[0], cfg.num_boxes[1] + 1))
    n_lifted = n_vehicles = 0
    for _ in range(n_boxes):
        vehicle = rng.random() < cfg.vehicle_fraction
        if vehicle:
            half = np.array([0.9, 0.75, 2.25]) * rng.uniform(*cfg.vehicle_scale) * rng.uniform(0.9, 1.1, 3)
            yaw = rng.normal(0.0, 0.12) + (math.pi / 2 if rng.random() < 0.15 else 0.0)
            x = rng.uniform(road_left + half[0], max(road_left + half[0], road_right - half[0]))
        else:
            half = _log_uniform(rng, *cfg.box_size, size=3) / 2
            yaw = rng.uniform(-math.pi, math.pi)
            x = rng.uniform(outer[-1], outer[1])
        reach = float(np.hypot(half[0], half[2]))
        z = max(rng.uniform(*cfg.box_distance), reach + 1.5)  # never around the camera
        lifted = rng.random() < cfg.lifted_fraction
        bottom = h - (rng.uniform(*cfg.lift_height) if lifted else 0.0)
        n_lifted += lifted
        n_vehicles += vehicle
        if vehicle:
            col = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
            row = _surface_row(
                VEHICLE, col, col * 0.8, tex_scale(), rng, y_top=bottom - 2 * half[1], height=2 * half[1]
            )
        else:
            col = _hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.2, 0.95))
            row = _surface_row(
                GENERIC,
                col,
                _hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.2, 0.95)),
                tex_scale(),
                rng,
            )
        add_box([x, bottom - half[1], z], half, yaw, row)
    n_poles = int(rng.integers(cfg.num_poles[0], cfg.num_poles[1] + 1))
    for _ in range(n_poles):
        side = -1 if rng.random() < 0.5 else 1
        edge = road_left if side < 0 else road_right
        height = max(rng.uniform(3.0, 9.0), h + 0.5)  # top above the camera: its cap is never visible
        g = rng.uniform(0.25, 0.7)
        rows.append(
            _surface_row(GENERIC, np.full(3, g), np.full(3, g * 0.8), tex_scale(), rng, shape=_CYLINDER)
        )
        poles.append(
            {
                "id": len(rows) - 1,
                "x": edge + side * rng.uniform(0.3, 1.0),
                "z": rng.uniform(3.0, 80.0),
                "r": rng.uniform(0.06, 0.25),
                "y_top": h - height,
                "y_bottom": h,
            }
        )
    surf: dict[str, np.ndarray] = {
        "kind": np.array([r["kind"] for r in rows], np.int8),
        "shape": np.array([r["shape"] for r in rows], np.int8),
        "col_a": np.array([r["col_a"] for r in rows], np.float32),
        "col_b": np.array([r["col_b"] for r in rows], np.float32),
        "scale": np.array([r["scale"] for r in rows], np.float32),
        "offset": np.array([r["offset"] for r in rows], np.float32),
        "yaw": np.array([r.get("yaw", 0.0) for r in rows], np.float32),
        "y_top": np.array([r.get("y_top", 0.0) for r in rows], np.float32),
        "height": np.array([r.get("height", 1.0) for r in rows], np.float32),
        "win_period": np.array([r.get("win_period", (1.0, 1.0)) for r in rows], np.float32),
        "win_frac": np.array([r.get("win_frac", (0.0, 0.0)) for r in rows], np.float32),
        "win_col": np.array([r.get("win_col", np.zeros(3)) for r in rows], np.float32),
        "centre": np.zeros((len(rows), 3), np.float32),
        "half": np.ones((len(rows), 3), np.float32),
    }
    surf["cos_yaw"], surf["sin_yaw"] = np.cos(surf["yaw"]), np.sin(surf["yaw"])
    for b in boxes:
        surf["centre"][b["id"]] = b["centre"]
        surf["half"][b["id"]] = b["half"]
    for p in poles:
        surf["centre"][p["id"]] = (p["x"], 0.0, p["z"])
        surf["half"][p["id"]] = (p["r"], 1.0, p["r"])
    return Scene(
        camera_height=h,
        pitch=pitch,
        sun=sun,
        ambient=float(rng.uniform(0.3, 0.5)),
        sky_horizon=np.array([0.78, 0.84, 0.9]) * rng.uniform(0.85, 1.05),
        sky_zenith=_hsv(rng.uniform(0.55, 0.62), rng.uniform(0.3, 0.6), rng.uniform(0.6, 0.9)),
        waves=waves,
        boxes=boxes,
        poles=poles,
        surf=surf,
        road=road,
        counts={
            "boxes": n_boxes,
            "vehicles": n_vehicles,
            "lifted": n_lifted,
            "poles": n_poles,
            "buildings": n_buildings,
        },
    )


# --------------------------------------------------------------------------------------------------
# rendering (world -> pixels)

# the 12 edges of a box whose corners are indexed by bits (x, y, z)
_EDGES = np.array([(a, a | bit) for bit in (1, 2, 4) for a in range(8) if not a & bit])
_CORNER_SIGNS = np.array(
    [[1 if i & 1 else -1, 1 if i & 2 else -1, 1 if i & 4 else -1] for i in range(8)], float
)

# base wavelengths (metres, times the surface's texture scale) and amplitudes of the texture layers
_WAVELENGTHS = np.array([0.9, 0.37, 0.16], np.float32)
_WAVE_AMPS = np.array([0.2, 0.12, 0.08], np.float32)
_NOISE_WAVELENGTH, _NOISE_AMP = 2.3, 0.3


def _box_corners(centre: np.ndarray, half: np.ndarray, yaw: float) -> np.ndarray:
    local = _CORNER_SIGNS * half
    c, s = math.cos(yaw), math.sin(yaw)
    world = local.copy()
    world[:, 0] = c * local[:, 0] + s * local[:, 2]
    world[:, 2] = -s * local[:, 0] + c * local[:, 2]
    return world + centre


def _fade(wavelength_px: np.ndarray) -> np.ndarray:
    """Amplitude of a texture layer whose wavelength spans `wavelength_px` pixels: 1 above 4 px, 0 below
    2 px (a cheap mip-map: keeps both views alias-free, hence photo-consistent)."""
    return np.clip((wavelength_px - 2.0) * 0.5, 0.0, 1.0)


def _stripes(coord: np.ndarray, period: Any, width: Any, footprint: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of periodic stripes [k·period, k·period + width) along `coord`, box-filtered
    over a pixel footprint (metres); fades to the mean duty cycle when the period spans < 4 pixels."""
    r = np.mod(coord, period)
    dist = np.abs(r - width * 0.5)
    dist = np.minimum(dist, period - dist)
    cover = np.clip((width * 0.5 - dist) / footprint + 0.5, 0.0, 1.0)
    f = _fade(period / footprint)
    return f * cover + (1.0 - f) * (width / period)


def _mix01(h: np.ndarray) -> np.ndarray:
    """Scramble uint32 lattice keys into floats in [0, 1]."""
    h = h ^ (h >> np.uint32(13))
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFF)).astype(np.float32) * np.float32(1.0 / 65535.0)


def _value_noise(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smooth 3-D value noise in [0, 1] with unit lattice spacing (hashed lattice, trilinear, smoothstep)."""
    fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
    # per-axis lattice keys, premultiplied by the hash primes (uint32 arithmetic wraps on purpose)
    kx = fx.astype(np.int64).astype(np.uint32) * np.uint32(73856093)
    ky = fy.astype(np.int64).astype(np.uint32) * np.uint32(19349663)
    kz = fz.astype(np.int64).astype(np.uint32) * np.uint32(83492791)
    keys = {
        "x": (kx, kx + np.uint32(73856093)),
        "y": (ky, ky + np.uint32(19349663)),
        "z": (kz, kz + np.uint32(83492791)),
    }
    tx, ty, tz = x - fx, y - fy, z - fz
    tx, ty, tz = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty), tz * tz * (3 - 2 * tz)
    out = np.zeros_like(x)
    for dz in (0, 1):
        wz = tz if dz else 1 - tz
        for dy in (0, 1):
            wyz = wz * (ty if dy else 1 - ty)
            kyz = keys["y"][dy] ^ keys["z"][dz]
            for dx in (0, 1):
                out += wyz * (tx if dx else 1 - tx) * _mix01(keys["x"][dx] ^ kyz)
    return out


class SyntheticRig:
    """Renders `RigFrame`s of size HxW for seeds; the scene depends only on the seed.

    Args:
        config: rig settings (defaults: the "stereo matters" rig).
        size: (H, W) or "HxW".
    """

    def __init__(self, config: RigConfig | None = None, size: tuple[int, int] | str = (128, 416)):
        self.config = config if config is not None else RigConfig()
        self.config.validate()
        self.size = parse_size(size)
        self.K = rig_intrinsics(self.size, self.config.fx_scale)
        h, w = self.size
        # camera-frame ray (x, y, 1) of every pixel centre, separable: x depends on u only, y on v only
        self._x = ((np.arange(w) - self.K[0, 2]) / self.K[0, 0]).astype(np.float32)[None, :]
        self._y = ((np.arange(h) - self.K[1, 2]) / self.K[1, 1]).astype(np.float32)[:, None]

    # -- public -----------------------------------------------------------------------------------

    def render(self, seed: int) -> RigFrame:
        """Render frame `seed`: stereo RGB, dense and LiDAR-like depth, K and baseline."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        cfg = self.config
        scene = sample_scene(int(seed), cfg)
        c, s = math.cos(scene.pitch), math.sin(scene.pitch)
        # world ray directions: d = R·(x, y, 1) with R the pitch about X (broadcastable (1,W) / (H,1))
        dirs = (self._x, (c * self._y + s).astype(np.float32), (c - s * self._y).astype(np.float32))
        rgb_l, t_l = self._render_view(scene, dirs, 0.0, np.random.default_rng([int(seed), 1]))
        rgb_r, t_r = self._render_view(scene, dirs, cfg.baseline, np.random.default_rng([int(seed), 2]))
        depth = self._depth(t_l)
        right_depth = self._depth(t_r)
        lidar = self._lidar(depth, scene, np.random.default_rng([int(seed), 3]))
        meta = {"camera_height": scene.camera_height, "pitch_deg": math.degrees(scene.pitch), **scene.counts}
        return RigFrame(
            left=rgb_l,
            right=rgb_r,
            depth=depth,
            lidar_depth=lidar,
            K=self.K.copy(),
            baseline=float(cfg.baseline),
            seed=int(seed),
            right_depth=right_depth,
            meta=meta,
        )

    # -- geometry -----------------------------------------------------------------------------------

    def _depth(self, t: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(t) & (t <= self.config.max_depth), t, 0.0).astype(np.float32)

    def _rect(self, corners: np.ndarray, ox: float, pitch: float) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (v0, v1, u0, u1) bounding the part of a box in front of the camera at x=ox."""
        c, s = math.cos(pitch), math.sin(pitch)
        x = corners[:, 0] - ox
        y = c * corners[:, 1] - s * corners[:, 2]
        z = s * corners[:, 1] + c * corners[:, 2]
        front = z > _NEAR
        if not front.any():
            return None
        pts = np.stack([x, y, z], axis=1)
        keep = [pts[front]]
        if not front.all():  # add where edges cross the near plane: the clipped box's extra vertices
            a, b = _EDGES[:, 0], _EDGES[:, 1]
            cross = front[a] != front[b]
            pa, pb = pts[a[cross]], pts[b[cross]]
            f = (_NEAR - pa[:, 2]) / (pb[:, 2] - pa[:, 2])
            keep.append(pa + f[:, None] * (pb - pa))
        p = np.concatenate(keep)
        K = self.K
        u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
        v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
        h, w = self.size
        u0, u1 = max(0, math.floor(u.min())), min(w, math.floor(u.max()) + 2)
        v0, v1 = max(0, math.floor(v.min())), min(h, math.floor(v.max()) + 2)
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1

    @staticmethod
    def _hit_box(
        box: dict[str, Any], ox: float, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray
    ) -> np.ndarray:
        """Ray parameter of the first hit with a (yawed) box, inf where missed (slab method)."""
        (cx, cy, cz), (hx, hy, hz), yaw = box["centre"], box["half"], box["yaw"]
        ex, ey, ez = ox - cx, -cy, -cz
        if yaw:
            c, s = math.cos(yaw), math.sin(yaw)
            ex, ez = c * ex - s * ez, s * ex + c * ez
            dx, dz = c * dx - s * dz, s * dx + c * dz
        with np.errstate(divide="ignore", invalid="ignore"):
            ix, iy, iz = 1.0 / dx, 1.0 / dy, 1.0 / dz
            a, b = (-hx - ex) * ix, (hx - ex) * ix
            tn, tf = np.minimum(a, b), np.maximum(a, b)
            a, b = (-hy - ey) * iy, (hy - ey) * iy
            tn, tf = np.maximum(tn, np.minimum(a, b)), np.minimum(tf, np.maximum(a, b))
            a, b = (-hz - ez) * iz, (hz - ez) * iz
            tn, tf = np.maximum(tn, np.minimum(a, b)), np.minimum(tf, np.maximum(a, b))
        return np.where((tn <= tf) & (tn > _T_EPS), tn, np.inf)

    @staticmethod
    def _hit_pole(
        pole: dict[str, Any], ox: float, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray
    ) -> np.ndarray:
        """Ray parameter of the first hit with a vertical cylinder's side, inf where missed."""
        ex, ez, r = ox - pole["x"], -pole["z"], pole["r"]
        a = dx * dx + dz * dz
        b = 2.0 * (ex * dx + ez * dz)
        c = ex * ex + ez * ez - r * r
        disc = b * b - 4.0 * a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / (2.0 * a)
        y = t * dy
        ok = (disc >= 0) & (t > _T_EPS) & (y >= pole["y_top"]) & (y <= pole["y_bottom"])
        return np.where(ok, t, np.inf)

    def _cast(self, scene: Scene, dirs: tuple[np.ndarray, ...], ox: float) -> tuple[np.ndarray, np.ndarray]:
        """z-buffered ray cast of one view: hit parameter t (HxW, inf = sky) and object id (HxW)."""
        dx, dy, dz = dirs
        h, w = self.size
        with np.errstate(divide="ignore"):
            t_ground = np.where(dy > 1e-6, scene.camera_height / dy, np.inf).astype(np.float32)
        t = np.broadcast_to(t_ground, (h, w)).copy()
        oid = np.where(np.isfinite(t), 1, 0).astype(np.int16)
        prims: list[tuple[dict[str, Any], np.ndarray, Any]] = [
            (b, _box_corners(b["centre"], b["half"], b["yaw"]), self._hit_box) for b in scene.boxes
        ]
        for p in scene.poles:
            centre = np.array([p["x"], (p["y_top"] + p["y_bottom"]) / 2, p["z"]])
            half = np.array([p["r"], (p["y_bottom"] - p["y_top"]) / 2, p["r"]])
            prims.append((p, _box_corners(centre, half, 0.0), self._hit_pole))
        for prim, corners, hit in prims:
            rect = self._rect(corners, ox, scene.pitch)
            if rect is None:
                continue
            v0, v1, u0, u1 = rect
            th = hit(prim, ox, dx[:, u0:u1], dy[v0:v1], dz[v0:v1])
            tb, ob = t[v0:v1, u0:u1], oid[v0:v1, u0:u1]
            closer = th < tb
            np.copyto(tb, th, where=closer)
            ob[closer] = prim["id"]
        return t, oid

    # -- appearance ---------------------------------------------------------------------------------

    def _normals(
        self,
        scene: Scene,
        oid: np.ndarray,
        px: np.ndarray,
        py: np.ndarray,
        pz: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World normals at hit points (flat arrays): ground up, box faces from the dominant local axis,
        cylinders radial."""
        surf = scene.surf
        shape = surf["shape"][oid]
        nx, ny, nz = np.zeros_like(px), np.full_like(px, -1.0), np.zeros_like(px)
        box = np.flatnonzero(shape == _BOX)
        if box.size:
            ids = oid[box]
            cen, half = surf["centre"][ids], surf["half"][ids]
            c, s = surf["cos_yaw"][ids], surf["sin_yaw"][ids]
            ex, ey, ez = px[box] - cen[:, 0], py[box] - cen[:, 1], pz[box] - cen[:, 2]
            lx, lz = c * ex - s * ez, s * ex + c * ez
            # the face hit is the one whose slab the point is closest to leaving
            rx, ry, rz = np.abs(lx) / half[:, 0], np.abs(ey) / half[:, 1], np.abs(lz) / half[:, 2]
            on_x = (rx >= ry) & (rx >= rz)
            on_z = ~on_x & (rz >= ry)
            sx = np.where(on_x, np.sign(lx), 0.0)
            sz = np.where(on_z, np.sign(lz), 0.0)
            nx[box] = c * sx + s * sz  # local -> world (inverse yaw)
            nz[box] = -s * sx + c * sz
            ny[box] = np.where(on_x | on_z, 0.0, np.sign(ey))
        cyl = np.flatnonzero(shape == _CYLINDER)
        if cyl.size:
            ids = oid[cyl]
            ex, ez = px[cyl] - surf["centre"][ids, 0], pz[cyl] - surf["centre"][ids, 2]
            norm = np.maximum(np.hypot(ex, ez), 1e-6)
            nx[cyl], ny[cyl], nz[cyl] = ex / norm, 0.0, ez / norm
        return nx, ny, nz

    def _albedo(
        self,
        scene: Scene,
        oid: np.ndarray,
        p: tuple[np.ndarray, ...],
        n: tuple[np.ndarray, ...],
        fp: np.ndarray,
    ) -> np.ndarray:
        """Per-hit RGB albedo (N, 3): world-space texture (scale per surface, so texture frequency says
        nothing about distance), windows on facades and vehicles, lane markings on the road."""
        surf = scene.surf
        px, py, pz = p
        scale = surf["scale"][oid]
        off = surf["offset"][oid]
        qx, qy, qz = px / scale + off[:, 0], py / scale + off[:, 1], pz / scale + off[:, 2]
        inv_fp = scale / fp  # texture units per pixel, inverted
        # three sinusoid layers in one matmul: phases (N, 3), one column per wave direction
        waves = (scene.waves.T * (2 * math.pi / _WAVELENGTHS)).astype(np.float32)
        layers = np.sin(np.stack([qx, qy, qz], axis=1) @ waves)
        layers *= _fade(inv_fp[:, None] * _WAVELENGTHS) * _WAVE_AMPS
        tex = 0.5 + layers.sum(axis=1)
        lam = np.float32(_NOISE_WAVELENGTH)
        noise = _value_noise(qx / lam, qy / lam, qz / lam)
        tex += np.float32(2 * _NOISE_AMP) * _fade(lam * inv_fp) * (noise - 0.5)
        tex = np.clip(tex, 0.0, 1.0)[:, None]
        col = surf["col_a"][oid] * (1.0 - tex) + surf["col_b"][oid] * tex
        kind = surf["kind"][oid]
        nx, ny, _ = n
        vertical = np.abs(ny) < 0.5
        sel = np.flatnonzero((kind == FACADE) & vertical)
        if sel.size:  # window grid: along the facade (z or x) times down from the roof
            ids = oid[sel]
            along = np.where(np.abs(nx[sel]) > 0.7, pz[sel], px[sel])
            per, frac = surf["win_period"][ids], surf["win_frac"][ids]
            cover = _stripes(along, per[:, 0], per[:, 0] * frac[:, 0], fp[sel]) * _stripes(
                py[sel] - surf["y_top"][ids] - 0.8, per[:, 1], per[:, 1] * frac[:, 1], fp[sel]
            )
            col[sel] += cover[:, None] * (surf["win_col"][ids] - col[sel])
        sel = np.flatnonzero((kind == VEHICLE) & vertical)
        if sel.size:  # dark glass band over the upper 40 % of the body
            ids = oid[sel]
            down = py[sel] - surf["y_top"][ids]
            band = np.clip((0.4 * surf["height"][ids] - down) / fp[sel] + 0.5, 0.0, 1.0)
            col[sel] += band[:, None] * (np.array([0.08, 0.1, 0.13], np.float32) - col[sel])
        sel = np.flatnonzero(kind == ROAD)
        if sel.size:
            col[sel] = self._road_marks(scene.road, px[sel], pz[sel], fp[sel], col[sel])
        return col

    @staticmethod
    def _road_marks(
        road: dict[str, float],
        x: np.ndarray,
        z: np.ndarray,
        fp: np.ndarray,
        col: np.ndarray,
    ) -> np.ndarray:
        lw = road["line_width"]

        def line(centre: Any) -> np.ndarray:  # anti-aliased solid line at x = centre (per pixel)
            return np.clip((lw / 2 - np.abs(x - centre)) / fp + 0.5, 0.0, 1.0) * np.minimum(1.0, lw / fp)

        # solid edge lines 0.3 m inside the kerbs; dashed lane lines at first_line + k·lane (nearest one)
        left, right = road["left"] + 0.3, road["right"] - 0.3
        cover = line(np.where(np.abs(x - left) < np.abs(x - right), left, right))
        n_lanes = max(1, math.ceil((road["right"] - 1.0 - road["first_line"]) / road["lane"]))
        k = np.clip(np.rint((x - road["first_line"]) / road["lane"]), 0, n_lanes - 1)
        if road["first_line"] < road["right"] - 1.0:
            dashes = _stripes(
                z + road["dash_offset"], road["dash_period"], road["dash_period"] * road["dash_duty"], fp
            )
            cover += line(road["first_line"] + k * road["lane"]) * dashes
        cover = np.clip(cover, 0.0, 1.0)[:, None]
        return col + cover * (np.float32(0.85) - col)

    def _render_view(
        self,
        scene: Scene,
        dirs: tuple[np.ndarray, ...],
        ox: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 HxWx3 and hit parameter t (HxW, inf = sky) of the camera at x = ox."""
        h, w = self.size
        t, oid = self._cast(scene, dirs, ox)
        dx, dy, dz = dirs[0][0], dirs[1][:, 0], dirs[2][:, 0]  # (W,), (H,), (H,)
        img = np.empty((h * w, 3), np.float32)
        hit = np.flatnonzero(oid.ravel() > 0)
        ids = oid.ravel()[hit]
        rows, cols = np.divmod(hit, w)
        th, hx, hy, hz = t.ravel()[hit], dx[cols], dy[rows], dz[rows]
        p = (ox + th * hx, th * hy, th * hz)
        n = self._normals(scene, ids, *p)
        ray_len = np.sqrt(hx * hx + hy * hy + hz * hz)
        cos_inc = np.abs(n[0] * hx + n[1] * hy + n[2] * hz) / ray_len
        # metres covered by one pixel on the surface (grows at grazing angles)
        fp = (th * ray_len / np.float32(self.K[0, 0]) / np.maximum(cos_inc, 0.2)).astype(np.float32)
        albedo = self._albedo(scene, ids, p, n, fp)
        sun = scene.sun.astype(np.float32)
        lambert = np.maximum(n[0] * sun[0] + n[1] * sun[1] + n[2] * sun[2], 0.0)
        img[hit] = albedo * (scene.ambient + (1.0 - scene.ambient) * lambert)[:, None]
        sky = np.flatnonzero(oid.ravel() == 0)
        if sky.size:  # depends on direction only: identical in both views (infinitely far)
            rows, cols = np.divmod(sky, w)
            sx, sy, sz = dx[cols], dy[rows], dz[rows]
            up = -sy / np.sqrt(sx * sx + sy * sy + sz * sz)
            mix = np.clip(up * 2.5, 0.0, 1.0)[:, None]
            cloud = np.clip(np.sin(sx * 3.1 + sz * 0.7) * np.sin(sx * 1.3 - up * 9.0 + 1.0) - 0.2, 0.0, 1.0)
            img[sky] = scene.sky_horizon * (1 - mix) + scene.sky_zenith * mix
            img[sky] += (0.25 * cloud * np.clip(up * 8.0, 0.0, 1.0))[:, None]
        if self.config.image_noise > 0:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(
                self.config.image_noise / 255.0
            )
        rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(h, w, 3)
        return rgb, t

    # -- LiDAR-like ground truth ------------------------------------------------------------------

    def lidar_mask(self, pitch_rad: float, rng: np.random.Generator) -> np.ndarray:
        """HxW bool mask of the LiDAR-like sample pattern for a camera pitched by `pitch_rad`.

        Beams are level in the world, evenly spaced over `lidar_elevation_deg`; a beam's scan line is
        the row whose ray has the beam's elevation, found per column in closed form. Along the lines the
        points are thinned with a random phase per row so that they cover ~`lidar_density` of the image.
        """
        cfg = self.config
        h, w = self.size
        c, s = math.cos(pitch_rad), math.sin(pitch_rad)
        x = self._x[0].astype(np.float64)
        a = np.sin(
            np.radians(np.linspace(cfg.lidar_elevation_deg[1], cfg.lidar_elevation_deg[0], cfg.lidar_beams))
        )[:, None]
        # elevation ε of camera ray (x, y, 1): sin ε = −(c·y + s)/|(x, y, 1)|; solve for y per beam/column
        qa = c * c - a * a
        qb = 2 * c * s
        qc = s * s - a * a * (x * x + 1)
        root = np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            y1, y2 = (-qb + root) / (2 * qa), (-qb - root) / (2 * qa)
        y = np.where((c * y1 + s) * -a >= 0, y1, y2)  # the root on the right side of the horizon
        v = self.K[1, 2] + self.K[1, 1] * y
        inside = (qa > 1e-9) & np.isfinite(v) & (v > -0.5) & (v < h - 0.5)  # qa <= 0: beam never in view
        rows = np.rint(np.where(inside, v, 0.0)).astype(np.int64)
        cols = np.broadcast_to(np.arange(w), rows.shape)
        mask = np.zeros((h, w), bool)
        mask[rows[inside], cols[inside]] = True
        step = mask.sum() / (cfg.lidar_density * h * w)
        if step > 1:
            phase = rng.uniform(0.0, step, (h, 1))
            u = np.arange(w)[None, :]
            mask &= np.floor((u + phase) / step) != np.floor((u - 1 + phase) / step)
        return mask

    def _lidar(self, depth: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
        return np.where(self.lidar_mask(scene.pitch, rng), depth, 0.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# dataset view (renders on the fly)


class SyntheticStereoDataset(torch.utils.data.Dataset):
    """Rig frames rendered on the fly, as stereo samples (docs/ARCHITECTURE.md): `depth` is the sparse
    LiDAR-like GT, `depth_dense` the dense depth; `id` is `seed-XXXXXXX`.

    Args:
        num_frames: length; frame i has seed `split_seed(split, first_index + i)`.
        size: (H, W) rendered size.
        split: "train", "val" or "test" (disjoint seed ranges).
        first_index: index of frame 0 within the split.
        rig: rig settings (default: `RigConfig()`).
        mode, crop_size, augment, rotation_deg, flip_prob, color_prob, seed: see `transforms.StereoPipeline`
            (no KB crop: rig frames are never KITTI-sized by accident; `crop_size` None = no crop).
    """

    def __init__(
        self,
        num_frames: int,
        size: tuple[int, int] | str = (128, 416),
        split: str = "train",
        *,
        first_index: int = 0,
        rig: RigConfig | None = None,
        mode: str = "eval",
        crop_size: tuple[int, int] | None = None,
        augment: bool | None = None,
        rotation_deg: float = 1.0,
        flip_prob: float = 0.5,
        color_prob: float = 0.5,
        focal_scale: tuple[float, float] | None = None,
        seed: int = 0,
    ):
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        split_seed(split, first_index)
        split_seed(split, first_index + num_frames - 1)
        self.rig = SyntheticRig(rig, size)
        self.split, self.first_index, self.num_frames = split, first_index, num_frames
        self.pipeline = StereoPipeline.build(
            mode=mode,
            kb_crop=False,
            crop_size=crop_size,
            augment=augment,
            rotation_deg=rotation_deg,
            flip_prob=flip_prob,
            color_prob=color_prob,
            focal_scale=focal_scale,
            seed=seed,
        )

    def __len__(self) -> int:
        return self.num_frames

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for an epoch (same epoch + index -> same augmentation)."""
        self.pipeline.epoch = int(epoch)

    def seed_of(self, index: int) -> int:
        return split_seed(self.split, self.first_index + index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"index {index} out of range for {self.num_frames} frames")
        index %= self.num_frames
        frame = self.rig.render(self.seed_of(index))
        sample = make_sample(
            frame.left,
            frame.right,
            frame.lidar_depth,
            frame.K,
            frame.baseline,
            depth_dense=frame.depth,
            depth_dense_right=frame.right_depth,
            id=f"seed-{frame.seed:07d}",
        )
        return self.pipeline(sample, index)


def frames_for_split(rig: SyntheticRig, split: str, num_frames: int, first_index: int = 0):
    """Yield `num_frames` rendered frames of a split (seeds `split_seed(split, first_index + i)`)."""
    split_seed(split, first_index)
    split_seed(split, first_index + max(num_frames, 1) - 1)
    for i in range(num_frames):
        yield rig.render(split_seed(split, first_index + i))


__all__ = [
    "RigConfig",
    "RigFrame",
    "Scene",
    "SyntheticRig",
    "SyntheticStereoDataset",
    "frames_for_split",
    "rig_intrinsics",
    "sample_scene",
    "seed_split",
    "split_seed",
    "SPLIT_BLOCK",
]
