"""Stereo-aware sample transforms shared by every dataset (KITTI, DrivingStereo, synthetic rig).

A *raw sample* is a dict of numpy arrays for one rectified stereo pair:

| key | value |
|---|---|
| `left`, `right` | float32 HxWx3 RGB in [0, 1] |
| `depth` | float32 HxW metres of the left view, 0 = no measurement |
| `depth_dense` | optional, float32 HxW dense depth of the left view |
| `depth_right`, `depth_dense_right` | optional, the same maps for the right view (used by the flip) |
| `K` | float64 3x3 intrinsics of both views; `baseline` float, metres (right view at +baseline along x) |
| `has_gt`, `has_right` | bool; `id` | str |

Geometric transforms act identically on both views and every depth map (bilinear for images, nearest
for depth) and keep K exact; they return new dicts and never modify their input's arrays. The order of
`StereoPipeline` follows NeWCRFs: KB crop -> rotation -> random crop -> flip -> colour jitter, with the
optional focal zoom (`random_focal_rescale`, off by default) taking the place of the random crop.
`to_tensors` turns a raw sample into the stereo-sample contract of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from adu_depth_core.depth_traits import valid_depth
from adu_depth_core.geometry import (
    KB_CROP_SIZE,
    check_intrinsics,
    crop_intrinsics,
    kb_crop_box,
    scale_intrinsics,
)

DEPTH_KEYS = ("depth", "depth_dense", "depth_right", "depth_dense_right")
RIGHT_OF = {"depth": "depth_right", "depth_dense": "depth_dense_right"}
IMAGE_KEYS = ("left", "right")
MODES = ("train", "eval")


def _as_float_image(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what}: expected an HxWx3 RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    return np.asarray(img, dtype=np.float32)


def make_sample(
    left: np.ndarray,
    right: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    baseline: float,
    *,
    depth_dense: np.ndarray | None = None,
    depth_right: np.ndarray | None = None,
    depth_dense_right: np.ndarray | None = None,
    has_gt: bool = True,
    has_right: bool = True,
    id: str = "",
) -> dict[str, Any]:
    """Build and check a raw sample; uint8 images become float32 in [0, 1]."""
    sample: dict[str, Any] = {
        "left": _as_float_image(left, f"{id}: left image"),
        "right": _as_float_image(right, f"{id}: right image"),
        "K": check_intrinsics(K, f"{id}: K"),
        "baseline": float(baseline),
        "has_gt": bool(has_gt),
        "has_right": bool(has_right),
        "id": str(id),
    }
    h, w = sample["left"].shape[:2]
    if sample["right"].shape[:2] != (h, w):
        raise ValueError(f"{id}: right image is {sample['right'].shape[:2]}, left image is {(h, w)}")
    if not math.isfinite(sample["baseline"]) or sample["baseline"] == 0:
        raise ValueError(f"{id}: baseline must be finite and non-zero, got {baseline}")
    maps = {
        "depth": depth,
        "depth_dense": depth_dense,
        "depth_right": depth_right,
        "depth_dense_right": depth_dense_right,
    }
    for key, value in maps.items():
        if value is None:
            continue
        value = np.asarray(value, dtype=np.float32)
        if value.shape != (h, w):
            raise ValueError(f"{id}: {key} is {value.shape}, the image is {(h, w)}")
        sample[key] = value
    return sample


def image_size(sample: dict[str, Any]) -> tuple[int, int]:
    h, w = sample["left"].shape[:2]
    return int(h), int(w)


def crop(sample: dict[str, Any], top: int, left: int, height: int, width: int) -> dict[str, Any]:
    """Crop both views and every depth map to rows [top, top+height), columns [left, left+width)."""
    h, w = image_size(sample)
    if top < 0 or left < 0 or top + height > h or left + width > w or height <= 0 or width <= 0:
        raise ValueError(
            f"{sample['id']}: crop {height}x{width} at ({top}, {left}) does not fit the {h}x{w} image"
        )
    out = dict(sample)
    for key in IMAGE_KEYS + DEPTH_KEYS:
        if key in sample:
            out[key] = sample[key][top : top + height, left : left + width]
    out["K"] = crop_intrinsics(sample["K"], top, left)
    return out


def is_kitti_sized(height: int, width: int) -> bool:
    """True for KITTI raw frame sizes (370..376 x 1224..1242, plus the 352x1216 benchmark crops)."""
    return KB_CROP_SIZE[0] <= height <= 384 and KB_CROP_SIZE[1] <= width <= 1248


def kb_crop(sample: dict[str, Any]) -> dict[str, Any]:
    """KITTI benchmark crop (bottom 352 rows, centred 1216 columns) when the image is KITTI-sized."""
    h, w = image_size(sample)
    if not is_kitti_sized(h, w) or (h, w) == KB_CROP_SIZE:
        return sample
    return crop(sample, *kb_crop_box(h, w))


def center_crop(sample: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    h, w = image_size(sample)
    ch, cw = size
    if (h, w) == (ch, cw):
        return sample
    if ch > h or cw > w:
        raise ValueError(f"{sample['id']}: crop size {ch}x{cw} is larger than the {h}x{w} image")
    return crop(sample, (h - ch) // 2, (w - cw) // 2, ch, cw)


def random_crop(sample: dict[str, Any], size: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    """The same random HxW window of both views and the depth maps (no-op when already that size)."""
    h, w = image_size(sample)
    ch, cw = size
    if (h, w) == (ch, cw):
        return sample
    if ch > h or cw > w:
        raise ValueError(f"{sample['id']}: crop size {ch}x{cw} is larger than the {h}x{w} image")
    return crop(sample, int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)


def rotate(sample: dict[str, Any], angle_deg: float) -> dict[str, Any]:
    """Rotate both views (bilinear) and the depth maps (nearest) by `angle_deg` about the principal point.

    A roll about the optical axis through the principal point keeps K and every depth value exact (depth
    is measured along the axis); pixels rotated in from outside are 0 (no depth).
    """
    if angle_deg == 0:
        return sample
    h, w = image_size(sample)
    K = sample["K"]
    M = cv2.getRotationMatrix2D((float(K[0, 2]), float(K[1, 2])), float(angle_deg), 1.0)
    out = dict(sample)
    for key in IMAGE_KEYS:
        out[key] = cv2.warpAffine(
            sample[key],
            M,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
    for key in DEPTH_KEYS:
        if key in sample:
            out[key] = cv2.warpAffine(
                sample[key], M, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
    return out


def check_focal_scale(value: Any, key: str = "focal_scale") -> tuple[float, float]:
    """A focal-zoom range (lo, hi) with 0 < lo <= hi, both finite, or a ValueError naming `key`."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a pair [lo, hi] of zoom factors, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"{key} must satisfy 0 < lo <= hi (finite zoom factors), got [{lo}, {hi}]")
    return lo, hi


def _zoom_window(zoomed: float, out: int, rng: np.random.Generator | None) -> int:
    """Offset of an `out`-pixel window in a zoomed axis of `zoomed` pixels: random (rng) or centred when
    it fits, centred (negative, i.e. zero padding on both sides) when it does not."""
    room = zoomed - out
    if room >= 0:
        last = int(math.floor(room + 1e-9))
        return int(rng.integers(0, last + 1)) if rng is not None else last // 2
    return -int(round(-room / 2))


def focal_zoom(
    sample: dict[str, Any],
    scale: float,
    out_size: tuple[int, int] | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Zoom both views and every depth map by `scale` (a lens with `scale` times the focal length at the
    same camera position), then cut an `out_size` window (default: the input size).

    Images are resampled bilinearly, depth maps with nearest neighbour; depth *values* are unchanged (a
    longer lens does not move the scene). K becomes `scale_intrinsics(K, s, s)` followed by the window's
    `crop_intrinsics`, so fx and fy scale by exactly s. The baseline is unchanged, so disparity (fx·B/Z)
    scales by s as well and the pair stays geometrically consistent. Where the zoomed image is larger
    than the window (s > 1, or a larger source image) the window is random with `rng` and centred
    without; where it is smaller (s < 1) the content is centred and the border is zero (black image,
    depth 0 = no measurement, so no loss is computed there).
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{sample['id']}: zoom factor must be finite and > 0, got {scale}")
    h, w = image_size(sample)
    oh, ow = out_size if out_size is not None else (h, w)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{sample['id']}: zoom output size must be positive, got {oh}x{ow}")
    s = float(scale)
    top = _zoom_window(h * s, oh, rng)
    left = _zoom_window(w * s, ow, rng)
    # source pixel x -> zoomed (x + 0.5)·s − 0.5 (pixel-centre convention, as scale_intrinsics) -> − left
    M = np.array([[s, 0.0, 0.5 * s - 0.5 - left], [0.0, s, 0.5 * s - 0.5 - top]])
    # output pixels whose source lies on the image (everything else is padding: 0)
    src_u = (np.arange(ow) + left + 0.5) / s - 0.5
    src_v = (np.arange(oh) + top + 0.5) / s - 0.5
    inside = ((src_v >= -0.5) & (src_v <= h - 0.5))[:, None] & ((src_u >= -0.5) & (src_u <= w - 0.5))[None, :]
    out = dict(sample)
    for key in IMAGE_KEYS:
        img = cv2.warpAffine(
            sample[key], M, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        out[key] = np.where(inside[..., None], img, np.float32(0.0)).astype(np.float32)
    for key in DEPTH_KEYS:
        if key in sample:
            d = cv2.warpAffine(
                sample[key],
                M,
                (ow, oh),
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            out[key] = np.where(inside, d, np.float32(0.0)).astype(np.float32)
    out["K"] = crop_intrinsics(scale_intrinsics(sample["K"], s, s), top, left)
    return out


def random_focal_rescale(
    sample: dict[str, Any],
    rng: np.random.Generator,
    scale_range: tuple[float, float],
    out_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Focal augmentation: `focal_zoom` by s drawn log-uniformly from `scale_range` (zooms compose by
    multiplication, so 0.5x and 2x are equally likely around 1x), window `out_size` at a random place.

    The returned K (and so the sample's `focal`) is the zoomed one; the trainer records the mean focal
    it saw as `focal_px` for the runtime's focal rescaling.
    """
    lo, hi = check_focal_scale(scale_range, "scale_range")
    s = lo if lo == hi else float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return focal_zoom(sample, s, out_size, rng)


def warp_depth_to_right(depth: np.ndarray, fx: float, baseline: float) -> np.ndarray:
    """Forward-warp a left-view depth map into the right view of a rectified pair.

    A left pixel (u, v) at depth Z is seen by the right camera at (u − fx·B/Z, v) with the same depth;
    where several land on one pixel the nearest wins; disoccluded pixels stay 0. This is how a LiDAR
    point projects into the other camera, so the sparse GT of the right view is exact up to rounding.
    """
    depth = np.asarray(depth, dtype=np.float32)
    out = np.zeros_like(depth)
    v, u = np.nonzero(valid_depth(depth))
    z = depth[v, u]
    ur = np.rint(u - fx * baseline / z).astype(np.int64)
    inside = (ur >= 0) & (ur < depth.shape[1])
    v, ur, z = v[inside], ur[inside], z[inside]
    order = np.argsort(-z, kind="stable")  # far first, so nearer points overwrite them
    out[v[order], ur[order]] = z[order]
    return out


def hflip_stereo(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror a stereo pair. The mirrored left image is the *right* view of the mirrored scene, so the
    views swap: new left = mirror(right), new right = mirror(left). The depth must then describe the new
    left view: the right view's depth, taken from `depth_right` / `depth_dense_right` when present and
    otherwise forward-warped from the left depth (disoccluded pixels become 0). K's cx is mirrored
    (cx' = W − 1 − cx); the baseline is unchanged. Applying it twice gives back the original sample when
    the right-view depths are present.
    """
    if not sample.get("has_right", True):
        raise ValueError(f"{sample['id']}: cannot flip a stereo sample without a right image")
    h, w = image_size(sample)
    K = sample["K"]
    out = dict(sample)
    out["left"] = np.ascontiguousarray(sample["right"][:, ::-1])
    out["right"] = np.ascontiguousarray(sample["left"][:, ::-1])
    for key, right_key in RIGHT_OF.items():
        if key not in sample:
            continue
        right_map = sample.get(right_key)
        if right_map is None:
            right_map = warp_depth_to_right(sample[key], K[0, 0], sample["baseline"])
        out[key] = np.ascontiguousarray(right_map[:, ::-1])
        out[right_key] = np.ascontiguousarray(sample[key][:, ::-1])
    K2 = K.copy()
    K2[0, 2] = (w - 1) - K[0, 2]
    out["K"] = K2
    return out


def color_jitter(sample: dict[str, Any], gamma: float, brightness: float, colour: Any) -> dict[str, Any]:
    """NeWCRFs colour augmentation, identical for both views: img**gamma · brightness · colour[c], clipped."""
    scale = np.float32(brightness) * np.asarray(colour, dtype=np.float32).reshape(1, 1, 3)
    out = dict(sample)
    for key in IMAGE_KEYS:
        out[key] = np.clip(np.power(sample[key], np.float32(gamma)) * scale, 0.0, 1.0)
    return out


def to_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """The stereo-sample contract: left/right (3,H,W), depth (1,H,W), optional depth_dense, K (3,3),
    baseline and focal (scalars, float32), has_gt (bool), id (str)."""
    K = torch.from_numpy(np.asarray(sample["K"], dtype=np.float32).copy())
    out: dict[str, Any] = {
        "left": torch.from_numpy(np.ascontiguousarray(sample["left"].transpose(2, 0, 1), dtype=np.float32)),
        "right": torch.from_numpy(np.ascontiguousarray(sample["right"].transpose(2, 0, 1), dtype=np.float32)),
        "depth": torch.from_numpy(np.ascontiguousarray(sample["depth"][None], dtype=np.float32)),
        "K": K,
        "baseline": torch.tensor(sample["baseline"], dtype=torch.float32),
        "focal": K[0, 0].clone(),
        "has_gt": bool(sample["has_gt"]),
        "id": sample["id"],
    }
    if "depth_dense" in sample:
        out["depth_dense"] = torch.from_numpy(
            np.ascontiguousarray(sample["depth_dense"][None], dtype=np.float32)
        )
    return out


@dataclass
class StereoPipeline:
    """Raw sample -> contract tensors, with NeWCRFs' training augmentations.

    Eval mode: KB crop (KITTI-sized images only), then a centre crop to `crop_size` if given.
    Train mode: KB crop, rotation by U(−rotation_deg, rotation_deg), random crop to `crop_size` (skipped
    when the image already has that size), stereo flip with `flip_prob`, and with `color_prob` a colour
    jitter (gamma, brightness, per-channel colour factors drawn from the given ranges).
    With `focal_scale` = (lo, hi) (off by default) training samples are zoomed by a random factor in
    that range instead of plainly cropped (`random_focal_rescale`; K and `focal` follow the zoom).
    Randomness comes from `np.random.default_rng([seed, epoch, index])`: reproducible, and different
    per epoch once the trainer calls the dataset's `set_epoch`.
    """

    train: bool = False
    kb_crop: bool = True
    crop_size: tuple[int, int] | None = None
    rotation_deg: float = 0.0
    flip_prob: float = 0.0
    color_prob: float = 0.0
    gamma: tuple[float, float] = (0.9, 1.1)
    brightness: tuple[float, float] = (0.9, 1.1)
    colour: tuple[float, float] = (0.9, 1.1)
    focal_scale: tuple[float, float] | None = None
    seed: int = 0
    epoch: int = 0

    @classmethod
    def build(
        cls,
        *,
        mode: str = "eval",
        kb_crop: bool = True,
        crop_size: tuple[int, int] | None = None,
        augment: bool | None = None,
        rotation_deg: float = 1.0,
        flip_prob: float = 0.5,
        color_prob: float = 0.5,
        seed: int = 0,
        focal_scale: tuple[float, float] | None = None,
    ) -> StereoPipeline:
        """Datasets' keyword arguments -> pipeline; `augment` defaults to `mode == "train"`."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if crop_size is not None:
            if len(crop_size) != 2 or min(int(crop_size[0]), int(crop_size[1])) <= 0:
                raise ValueError(f"crop_size must be (H, W) with positive values, got {crop_size!r}")
            crop_size = (int(crop_size[0]), int(crop_size[1]))
        if not 0 <= rotation_deg <= 180:
            raise ValueError(f"rotation_deg must be in [0, 180], got {rotation_deg}")
        for name, p in (("flip_prob", flip_prob), ("color_prob", color_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if focal_scale is not None:
            focal_scale = check_focal_scale(focal_scale, "focal_scale")
        train = mode == "train"
        aug = train if augment is None else bool(augment)
        if aug and not train:
            raise ValueError("augment=True needs mode='train' (evaluation is never augmented)")
        return cls(
            train=train,
            kb_crop=kb_crop,
            crop_size=crop_size,
            rotation_deg=rotation_deg if aug else 0.0,
            flip_prob=flip_prob if aug else 0.0,
            color_prob=color_prob if aug else 0.0,
            focal_scale=focal_scale if aug else None,
            seed=int(seed),
        )

    def raw(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        """Apply the crops and augmentations, returning a raw sample (numpy)."""
        if self.kb_crop:
            sample = kb_crop(sample)
        if not self.train:
            return center_crop(sample, self.crop_size) if self.crop_size else sample
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        if self.rotation_deg > 0:
            sample = rotate(sample, float(rng.uniform(-self.rotation_deg, self.rotation_deg)))
        if self.focal_scale is not None:  # zoom + window to the crop size (replaces the random crop)
            sample = random_focal_rescale(sample, rng, self.focal_scale, self.crop_size)
        elif self.crop_size:
            sample = random_crop(sample, self.crop_size, rng)
        if rng.random() < self.flip_prob and sample.get("has_right", True):
            sample = hflip_stereo(sample)
        if rng.random() < self.color_prob:
            sample = color_jitter(
                sample,
                rng.uniform(*self.gamma),
                rng.uniform(*self.brightness),
                rng.uniform(*self.colour, size=3),
            )
        return sample

    def __call__(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        return to_tensors(self.raw(sample, index))
