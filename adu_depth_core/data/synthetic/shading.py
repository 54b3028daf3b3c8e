"""Appearance of a hit point, defined in 3-D so both views agree: world normals, world-space procedural
texture (three sinusoid layers and value noise, each faded out below ~2 pixels of wavelength so neither
view aliases), windows on facades and vehicles, lane markings on the road."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adu_depth_core.data.synthetic.scene import BOX, CYLINDER, FACADE, ROAD, VEHICLE, Scene

# base wavelengths (metres, times the surface's texture scale) and amplitudes of the texture layers
_WAVELENGTHS = np.array([0.9, 0.37, 0.16], np.float32)
_WAVE_AMPS = np.array([0.2, 0.12, 0.08], np.float32)
_NOISE_WAVELENGTH, _NOISE_AMP = 2.3, 0.3


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


def normals(
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
    box = np.flatnonzero(shape == BOX)
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
    cyl = np.flatnonzero(shape == CYLINDER)
    if cyl.size:
        ids = oid[cyl]
        ex, ez = px[cyl] - surf["centre"][ids, 0], pz[cyl] - surf["centre"][ids, 2]
        norm = np.maximum(np.hypot(ex, ez), 1e-6)
        nx[cyl], ny[cyl], nz[cyl] = ex / norm, 0.0, ez / norm
    return nx, ny, nz

def albedo(
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
        col[sel] = _road_marks(scene.road, px[sel], pz[sel], fp[sel], col[sel])
    return col

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
