"""Rendering: world -> pixels. `SyntheticRig` ray casts every pixel of both views with vectorised numpy
(boxes by the slab method, poles as vertical cylinders, z-buffered within each primitive's screen
rectangle), shades the hits (`shading.py`), and measures dense and LiDAR-like depth."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adu_depth_core.config import parse_size
from adu_depth_core.data.synthetic import shading
from adu_depth_core.data.synthetic.rig import RigConfig, RigFrame, rig_intrinsics
from adu_depth_core.data.synthetic.scene import Scene, sample_scene

_NEAR = 1e-3  # metres: clip plane for screen-space bounding rectangles
_T_EPS = 1e-3  # hits closer than this along the ray are ignored (self-intersection guard)

# the 12 edges of a box whose corners are indexed by bits (x, y, z)
_EDGES = np.array([(a, a | bit) for bit in (1, 2, 4) for a in range(8) if not a & bit])
_CORNER_SIGNS = np.array(
    [[1 if i & 1 else -1, 1 if i & 2 else -1, 1 if i & 4 else -1] for i in range(8)], float
)



def _box_corners(centre: np.ndarray, half: np.ndarray, yaw: float) -> np.ndarray:
    local = _CORNER_SIGNS * half
    c, s = math.cos(yaw), math.sin(yaw)
    world = local.copy()
    world[:, 0] = c * local[:, 0] + s * local[:, 2]
    world[:, 2] = -s * local[:, 0] + c * local[:, 2]
    return world + centre


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
        n = shading.normals(scene, ids, *p)
        ray_len = np.sqrt(hx * hx + hy * hy + hz * hz)
        cos_inc = np.abs(n[0] * hx + n[1] * hy + n[2] * hz) / ray_len
        # metres covered by one pixel on the surface (grows at grazing angles)
        fp = (th * ray_len / np.float32(self.K[0, 0]) / np.maximum(cos_inc, 0.2)).astype(np.float32)
        albedo = shading.albedo(scene, ids, p, n, fp)
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
