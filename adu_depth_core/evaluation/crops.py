"""Evaluation crops of the KITTI Eigen protocol, as boolean masks over the GT image.

Two families, selected by name so every table can say which one it used:

* ``"garg"`` / ``"eigen"`` -- the BTS protocol: the fractions below are applied to the array you
  evaluate on, which should be the *full-size* GT image (e.g. 375x1242).
* ``"garg_kb"`` / ``"eigen_kb"`` -- the NeWCRFs variant: the same fractions are applied to the
  Kitti-Benchmark (KB) crop, the bottom 352 rows and centred 1216 columns of the image. The array you
  evaluate on may be the full-size image (the mask then lies inside the KB box) or the 352x1216 KB crop
  itself (the KB box of a 352x1216 image is the whole image). Both give the same pixels. The KB box is
  `geometry.kb_crop_box`, the same box the data readers and the `kb_crop` input policy cut.
* ``None`` / ``"none"`` -- every pixel.

Row and column bounds are ``int(fraction * size)`` (truncation), start inclusive, end exclusive, which
is how BTS and NeWCRFs index their arrays.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from adu_depth_core.geometry import kb_crop_box

# (row_start, row_end, col_start, col_end) as fractions of the image the crop is applied to.
CROP_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
CropName = Literal["none", "garg", "eigen", "garg_kb", "eigen_kb"]  # the one list of crop names
CROPS: tuple[str, ...] = get_args(CropName)


def crop_box(height: int, width: int, kind: str | None) -> tuple[int, int, int, int]:
    """(row_start, row_end, col_start, col_end) of crop `kind` (module docstring) in an HxW image."""
    name = normalize_crop_name(kind)
    if height <= 0 or width <= 0:
        raise ValueError(f"crop needs a positive image size, got {height}x{width}")
    if name == "none":
        return 0, height, 0, width
    base, on_kb = (name[:-3], True) if name.endswith("_kb") else (name, False)
    top, left, h, w = kb_crop_box(height, width) if on_kb else (0, 0, height, width)
    r0, r1, c0, c1 = CROP_FRACTIONS[base]
    return top + int(r0 * h), top + int(r1 * h), left + int(c0 * w), left + int(c1 * w)


def crop_mask(height: int, width: int, kind: str | None) -> np.ndarray:
    """Boolean height x width mask, True inside crop `kind` (one of `CROPS`, or None for no crop)."""
    r0, r1, c0, c1 = crop_box(height, width, kind)
    mask = np.zeros((height, width), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def normalize_crop_name(kind: str | None) -> str:
    """The canonical crop name (``None`` -> ``"none"``); ValueError listing `CROPS` for anything else."""
    name = "none" if kind is None else str(kind).lower()
    if name not in CROPS:
        raise ValueError(f"unknown evaluation crop {kind!r}; expected one of {CROPS} or None")
    return name
