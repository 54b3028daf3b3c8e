"""What a valid depth value is, and depth units: depth_image_proc's `DepthTraits<T>`, in one place.

Depth crosses the project's boundaries in three stored forms (REP 117/118, KITTI's devkit):

| traits         | dtype   | one unit  | valid           | an invalid pixel is written as |
|----------------|---------|-----------|-----------------|--------------------------------|
| `FLOAT_M`      | float32 | 1 m       | finite and > 0  | NaN (32FC1, REP 117)           |
| `UINT16_MM`    | uint16  | 1 mm      | > 0             | 0 (16UC1)                      |
| `uint16_png()` | uint16  | 1/scale m | > 0             | 0 (KITTI / DrivingStereo PNGs) |

Inside the project depth is float32 metres with 0 for "no value" (tensors, datasets, ground truth,
`to_metres`); the published ROS images carry NaN instead (`FLOAT_M.from_metres`). The uncertainty σ is
metres too, valid when finite and >= 0 (σ = 0 is a certain pixel, not a missing one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """Boolean mask of valid depth values: finite and > 0 (NaN, ±inf, 0 and negatives are invalid).

    The same rule serves float metres and integer units (an integer is always finite)."""
    d = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0)


def valid_sigma(sigma: np.ndarray) -> np.ndarray:
    """Boolean mask of valid uncertainty values σ (m): finite and >= 0."""
    s = np.asarray(sigma)
    with np.errstate(invalid="ignore"):
        return np.isfinite(s) & (s >= 0)


@dataclass(frozen=True)
class DepthTraits:
    """One stored form of depth: its dtype, how many stored units make a metre, and what an invalid
    pixel holds when written (NaN for floats, 0 for integers)."""

    name: str
    dtype: type[np.generic]
    per_metre: float

    @property
    def is_integer(self) -> bool:
        return bool(np.issubdtype(self.dtype, np.integer))

    @property
    def invalid(self) -> float:
        return 0.0 if self.is_integer else float("nan")

    def valid(self, stored: np.ndarray) -> np.ndarray:
        """Mask of valid stored values (`valid_depth`)."""
        return valid_depth(stored)

    def to_metres(self, stored: np.ndarray) -> np.ndarray:
        """float32 metres of stored values, 0 wherever a value is invalid (the project's convention)."""
        a = np.asarray(stored)
        metres = a.astype(np.float32) / np.float32(self.per_metre)
        return np.where(valid_depth(a), metres, np.float32(0.0)).astype(np.float32)

    def from_metres(self, metres: np.ndarray) -> np.ndarray:
        """Stored values (C-contiguous `dtype`) of depth in metres; invalid depth, and for integer forms
        depth beyond the largest storable value, becomes `invalid`."""
        if self.is_integer:
            m = np.asarray(metres, dtype=np.float64)
            units = np.rint(np.where(valid_depth(m), m, 0.0) * self.per_metre)
            top = np.iinfo(self.dtype).max
            return np.ascontiguousarray(np.where(units > top, 0, units).astype(self.dtype))
        m = np.asarray(metres, dtype=self.dtype)
        return np.ascontiguousarray(np.where(valid_depth(m), m, self.dtype(np.nan)), dtype=self.dtype)


FLOAT_M = DepthTraits("32FC1", np.float32, 1.0)
UINT16_MM = DepthTraits("16UC1", np.uint16, 1000.0)
TRAITS: dict[str, DepthTraits] = {t.name: t for t in (FLOAT_M, UINT16_MM)}  # by sensor_msgs encoding


def uint16_png(scale: float) -> DepthTraits:
    """The traits of a uint16 depth PNG holding metres · `scale` (KITTI and DrivingStereo: 256)."""
    return DepthTraits(f"uint16 PNG (metres x {scale:g})", np.uint16, float(scale))
