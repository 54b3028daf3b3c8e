"""Scene sampling: seed -> world (never looks at image size or focal).

`sample_scene` draws, in a fixed order from one generator, the camera mounting and light, the road, the
sidewalks, the building facades, the boxes (vehicles and free boxes), the poles and the sky. Each part is
a method of `_SceneBuilder`; the order of the calls is the order of the draws, so it must not change (the
rendered frames of a seed are pinned by `test_synthetic_rig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from adu_depth_core.data.synthetic.rig import RigConfig

# object kinds (texture programs)
SKY, ROAD, GENERIC, FACADE, VEHICLE, SIDEWALK = 0, 1, 2, 3, 4, 5
# object shapes
NONE, PLANE, BOX, CYLINDER = 0, 1, 2, 3

_Z_NEAR, _Z_FAR = -15.0, 220.0  # metres: extent of sidewalks along the road
_BUILDINGS_END = 160.0  # metres: no facade starts beyond this


def hsv(h: float, s: float, v: float) -> np.ndarray:
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
        "shape": BOX,
    }
    row.update(extra)
    return row


def sample_scene(seed: int, cfg: RigConfig) -> Scene:
    """Draw the world of frame `seed` (deterministic; independent of image size and focal)."""
    b = _SceneBuilder(np.random.default_rng([0x5CE7E, int(seed)]), cfg)
    b.add_road()
    b.add_sidewalks()
    n_buildings = b.add_buildings() if cfg.buildings else 0
    n_boxes, n_vehicles, n_lifted = b.add_boxes()
    n_poles = b.add_poles()
    counts = {"boxes": n_boxes, "vehicles": n_vehicles, "lifted": n_lifted, "poles": n_poles,
              "buildings": n_buildings}  # fmt: skip
    return b.finish(counts)


class _SceneBuilder:
    """The world of one seed, drawn part by part from `rng`; `finish` makes the `Scene`."""

    def __init__(self, rng: np.random.Generator, cfg: RigConfig):
        self.rng, self.cfg = rng, cfg
        # camera mounting and light
        self.h = float(rng.uniform(*cfg.camera_height))
        self.pitch = math.radians(rng.uniform(*cfg.pitch_deg))
        elev, azim = math.radians(rng.uniform(20, 65)), rng.uniform(-math.pi, math.pi)
        ce = math.cos(elev)
        self.sun = np.array([ce * math.sin(azim), -math.sin(elev), ce * math.cos(azim)])
        waves = rng.normal(size=(3, 3))
        self.waves = waves / np.linalg.norm(waves, axis=1, keepdims=True)
        sky = {"kind": SKY, "col_a": np.zeros(3), "col_b": np.zeros(3), "scale": 1.0, "offset": np.zeros(3),
               "shape": NONE}  # fmt: skip
        self.rows: list[dict[str, Any]] = [sky]
        self.boxes: list[dict[str, Any]] = []
        self.poles: list[dict[str, Any]] = []
        self.road: dict[str, float] = {}
        self.outer: dict[int, float] = {}  # outer edge of the sidewalk, per side (-1 left, 1 right)

    def tex_scale(self) -> float:
        return float(_log_uniform(self.rng, *self.cfg.texture_scale))

    def add_box(self, centre: Any, half: Any, yaw: float, row: dict[str, Any]) -> None:
        row.setdefault("yaw", yaw)
        self.rows.append(row)
        self.boxes.append(
            {
                "id": len(self.rows) - 1,
                "centre": np.asarray(centre, float),
                "half": np.asarray(half, float),
                "yaw": float(yaw),
            }
        )

    def add_road(self) -> None:
        """The road plane (object 1) and its lane markings."""
        rng, cfg = self.rng, self.cfg
        grey = rng.uniform(0.2, 0.4)
        self.rows.append(
            _surface_row(
                ROAD, np.full(3, grey) * [1.0, 1.0, 1.04], np.full(3, grey * 1.35), self.tex_scale(), rng,
                shape=PLANE,
            )  # fmt: skip
        )
        road_left, road_right = -rng.uniform(*cfg.road_half_width), rng.uniform(*cfg.road_half_width)
        lane = rng.uniform(2.8, 4.0)
        self.road = {
            "left": road_left,
            "right": road_right,
            "lane": lane,
            "first_line": road_left + lane * rng.uniform(0.8, 1.2),
            "dash_period": rng.uniform(6.0, 12.0),
            "dash_duty": rng.uniform(0.3, 0.6),
            "dash_offset": rng.uniform(0.0, 12.0),
            "line_width": rng.uniform(0.1, 0.2),
        }

    def add_sidewalks(self) -> None:
        """A raised sidewalk each side of the road; its road-facing face is the kerb."""
        rng, cfg, h = self.rng, self.cfg, self.h
        for side, edge in ((-1, self.road["left"]), (1, self.road["right"])):
            width, kerb = rng.uniform(*cfg.sidewalk_width), rng.uniform(*cfg.kerb_height)
            x0, x1 = sorted((edge, edge + side * width))
            g = rng.uniform(0.45, 0.65)
            self.add_box(
                [(x0 + x1) / 2, h - kerb / 2, (_Z_NEAR + _Z_FAR) / 2],
                [(x1 - x0) / 2, kerb / 2, (_Z_FAR - _Z_NEAR) / 2],
                0.0,
                _surface_row(
                    SIDEWALK,
                    np.full(3, g),
                    np.full(3, g) * [1.1, 1.05, 0.95],
                    self.tex_scale(),
                    rng,
                    y_top=h - kerb,
                    height=kerb,
                ),
            )
            self.outer[side] = edge + side * width

    def add_buildings(self) -> int:
        """Facades with windows behind each sidewalk, with gaps; returns how many."""
        rng, cfg, h = self.rng, self.cfg, self.h
        n = 0
        for side in (-1, 1):
            z = _Z_NEAR + rng.uniform(0.0, 10.0)
            while z < _BUILDINGS_END:
                length = rng.uniform(6.0, 30.0)
                if rng.random() > 0.2:  # otherwise a gap: sky and farther facades show through
                    setback, depth_x = rng.uniform(0.0, 6.0), rng.uniform(6.0, 15.0)
                    height = float(rng.uniform(*cfg.building_height))
                    xa = self.outer[side] + side * setback
                    x0, x1 = sorted((xa, xa + side * depth_x))
                    col = hsv(rng.random(), rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.85))
                    self.add_box(
                        [(x0 + x1) / 2, h - height / 2, z + length / 2],
                        [(x1 - x0) / 2, height / 2, length / 2],
                        0.0,
                        _surface_row(
                            FACADE,
                            col,
                            col * rng.uniform(0.7, 0.9),
                            self.tex_scale(),
                            rng,
                            y_top=h - height,
                            height=height,
                            win_period=rng.uniform([2.0, 2.6], [5.0, 4.0]),
                            win_frac=rng.uniform([0.3, 0.35], [0.7, 0.6]),
                            win_col=hsv(
                                rng.uniform(0.5, 0.7), rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.35)
                            ),
                        ),
                    )
                    n += 1
                z += length + rng.uniform(0.0, 4.0)
        return n

    def add_boxes(self) -> tuple[int, int, int]:
        """Vehicles on the road and free boxes anywhere between the sidewalks' outer edges, some lifted
        off the ground; returns (boxes, vehicles, lifted)."""
        rng, cfg, h = self.rng, self.cfg, self.h
        road_left, road_right = self.road["left"], self.road["right"]
        n_boxes = int(rng.integers(cfg.num_boxes[0], cfg.num_boxes[1] + 1))
        n_lifted = n_vehicles = 0
        for _ in range(n_boxes):
            vehicle = rng.random() < cfg.vehicle_fraction
            if vehicle:
                scale = rng.uniform(*cfg.vehicle_scale)
                half = np.array([0.9, 0.75, 2.25]) * scale * rng.uniform(0.9, 1.1, 3)
                yaw = rng.normal(0.0, 0.12) + (math.pi / 2 if rng.random() < 0.15 else 0.0)
                x = rng.uniform(road_left + half[0], max(road_left + half[0], road_right - half[0]))
            else:
                half = _log_uniform(rng, *cfg.box_size, size=3) / 2
                yaw = rng.uniform(-math.pi, math.pi)
                x = rng.uniform(self.outer[-1], self.outer[1])
            reach = float(np.hypot(half[0], half[2]))
            z = max(rng.uniform(*cfg.box_distance), reach + 1.5)  # never around the camera
            lifted = rng.random() < cfg.lifted_fraction
            bottom = h - (rng.uniform(*cfg.lift_height) if lifted else 0.0)
            n_lifted += lifted
            n_vehicles += vehicle
            if vehicle:
                col = hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
                row = _surface_row(
                    VEHICLE, col, col * 0.8, self.tex_scale(), rng,
                    y_top=bottom - 2 * half[1], height=2 * half[1],
                )
            else:
                col = hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.2, 0.95))
                row = _surface_row(
                    GENERIC,
                    col,
                    hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.2, 0.95)),
                    self.tex_scale(),
                    rng,
                )
            self.add_box([x, bottom - half[1], z], half, yaw, row)
        return n_boxes, n_vehicles, n_lifted

    def add_poles(self) -> int:
        """Thin vertical cylinders just off the kerbs; returns how many."""
        rng, cfg, h = self.rng, self.cfg, self.h
        n_poles = int(rng.integers(cfg.num_poles[0], cfg.num_poles[1] + 1))
        for _ in range(n_poles):
            side = -1 if rng.random() < 0.5 else 1
            edge = self.road["left"] if side < 0 else self.road["right"]
            height = max(rng.uniform(3.0, 9.0), h + 0.5)  # top above the camera: its cap is never visible
            g = rng.uniform(0.25, 0.7)
            self.rows.append(
                _surface_row(
                    GENERIC, np.full(3, g), np.full(3, g * 0.8), self.tex_scale(), rng, shape=CYLINDER
                )
            )
            self.poles.append(
                {
                    "id": len(self.rows) - 1,
                    "x": edge + side * rng.uniform(0.3, 1.0),
                    "z": rng.uniform(3.0, 80.0),
                    "r": rng.uniform(0.06, 0.25),
                    "y_top": h - height,
                    "y_bottom": h,
                }
            )
        return n_poles

    def surface_tables(self) -> dict[str, np.ndarray]:
        """The per-object rows as arrays indexed by object id (what the renderer looks up per pixel)."""
        rows = self.rows
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
        for b in self.boxes:
            surf["centre"][b["id"]] = b["centre"]
            surf["half"][b["id"]] = b["half"]
        for p in self.poles:
            surf["centre"][p["id"]] = (p["x"], 0.0, p["z"])
            surf["half"][p["id"]] = (p["r"], 1.0, p["r"])
        return surf

    def finish(self, counts: dict[str, int]) -> Scene:
        """The `Scene`, with the sky and ambient light drawn last."""
        rng = self.rng
        return Scene(
            camera_height=self.h,
            pitch=self.pitch,
            sun=self.sun,
            ambient=float(rng.uniform(0.3, 0.5)),
            sky_horizon=np.array([0.78, 0.84, 0.9]) * rng.uniform(0.85, 1.05),
            sky_zenith=hsv(rng.uniform(0.55, 0.62), rng.uniform(0.3, 0.6), rng.uniform(0.6, 0.9)),
            waves=self.waves,
            boxes=self.boxes,
            poles=self.poles,
            surf=self.surface_tables(),
            road=self.road,
            counts=counts,
        )
