"""Camera image → network input and network output → camera image, for every backend.

Two explicit policies map a camera frame of any size onto the fixed network input (H_net, W_net):

- ``resize``: the whole frame is resized (bilinear) to the network size; outputs are resized back,
  so every camera pixel gets a value. The focal the network sees is fx·W_net/W_img.
- ``kb_crop``: the KITTI-benchmark crop — the bottom H_net rows and the horizontally centred W_net
  columns are fed unscaled; camera pixels outside the crop are NaN. The focal is fx, unchanged.

Both are described by one `InputMapping` (a box in the camera image that is resized to the network
size), so intrinsics (`network_intrinsics`) and the focal correction (`focal_scale_factor`) follow
from the same numbers the pixels went through. Pixel-corner convention throughout, matching
`cv2.resize`, `F.interpolate(align_corners=False)` and `geometry.scale_intrinsics`.

The numpy path (cv2) serves the CPU backends; the torch path runs the same steps on the backend's
CUDA device (TensorRT, torch on GPU). None of this lives inside an `nn.Module`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from adu_depth_core.geometry import check_intrinsics, crop_intrinsics, kb_crop_box, scale_intrinsics
from adu_depth_core.vocab import POLICIES

_INV255 = np.float32(1.0 / 255.0)


@dataclass(frozen=True)
class InputMapping:
    """How a camera frame reaches the network: its `box` (top, left, h, w) is resized to `net_hw`."""

    image_hw: tuple[int, int]
    net_hw: tuple[int, int]
    policy: str
    box: tuple[int, int, int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Network pixels per camera pixel, horizontally and vertically."""
        _, _, h, w = self.box
        return self.net_hw[1] / w, self.net_hw[0] / h

    @property
    def full_frame(self) -> bool:
        """True when the network sees every camera pixel (no NaN border in the outputs)."""
        return self.box == (0, 0, *self.image_hw)

    @property
    def identity(self) -> bool:
        """True when the network input is the camera frame itself (no resize, no crop)."""
        return self.full_frame and self.image_hw == self.net_hw

    def network_intrinsics(self, K: np.ndarray) -> np.ndarray:
        """The camera matrix of the image the network sees (crop first, then resize)."""
        K = check_intrinsics(K)
        top, left, _, _ = self.box
        sx, sy = self.scale_xy
        return scale_intrinsics(crop_intrinsics(K, top, left), sx, sy)


def plan_input(image_hw: tuple[int, int], net_hw: tuple[int, int], policy: str) -> InputMapping:
    """The `InputMapping` of a frame of `image_hw` under `policy` (ValueError for unknown policies or a
    frame smaller than the KB crop)."""
    h, w = (int(v) for v in image_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    net_hw = (int(net_hw[0]), int(net_hw[1]))
    if policy == "resize":
        box = (0, 0, h, w)
    elif policy == "kb_crop":
        if h < net_hw[0] or w < net_hw[1]:
            raise ValueError(
                f"policy 'kb_crop' needs a frame at least as large as the network input "
                f"{net_hw[0]}x{net_hw[1]}, got {h}x{w}; use policy 'resize' for smaller cameras"
            )
        box = kb_crop_box(h, w, net_hw)
    else:
        raise ValueError(f"unknown resize/crop policy {policy!r}; expected one of {list(POLICIES)}")
    return InputMapping((h, w), net_hw, policy, box)


MIN_FRAME_SIDE = 32  # one cell of the network's coarsest (stride-32) features
MAX_UPSCALE = 4.0  # network pixels per camera pixel beyond which the input is mostly interpolation
MAX_STRETCH = 2.0  # ratio of the horizontal and vertical resize factors beyond which shapes are distorted


def check_frame_size(image_hw: tuple[int, int], what: str = "image") -> None:
    """ValueError for a frame too small to estimate depth from (either side below `MIN_FRAME_SIDE`)."""
    h, w = (int(v) for v in image_hw)
    if min(h, w) < MIN_FRAME_SIDE:
        raise ValueError(
            f"{what}: a {h}x{w} image is too small to estimate depth from (expected at least "
            f"{MIN_FRAME_SIDE} px on each side)"
        )


def frame_warning(mapping: InputMapping) -> str | None:
    """Why depth from this frame is questionable (heavy upscaling, a stretched aspect ratio), or None."""
    sx, sy = mapping.scale_xy
    net = f"{mapping.net_hw[0]}x{mapping.net_hw[1]}"
    size = f"{mapping.image_hw[0]}x{mapping.image_hw[1]}"
    if max(sx, sy) > MAX_UPSCALE:
        return (
            f"the {size} frame is upscaled {max(sx, sy):.1f}x to the network's {net} input: depth comes "
            "from interpolated pixels"
        )
    if max(sx / sy, sy / sx) > MAX_STRETCH:
        return (
            f"the {size} frame is stretched {max(sx / sy, sy / sx):.1f}x in one direction to fit the "
            f"network's {net} input: shapes and depth are distorted"
        )
    return None


def focal_scale_factor(
    K: np.ndarray, image_hw: tuple[int, int], net_hw: tuple[int, int], policy: str, f_train: float
) -> float:
    """f_eff / f_train: the factor that turns the network's depth (and σ) into metric depth for this camera.

    f_eff is the horizontal focal (pixels) of the image the network actually sees: fx·W_net/W_img for
    `resize`, fx for `kb_crop`. A net trained at focal f_train that reads an image with focal f_eff
    sees objects as if they were at Z·f_train/f_eff, so its output is multiplied by f_eff/f_train
    (docs/CAMERAS.md). `K` with zero/non-finite focals raises ValueError ('not calibrated').
    """
    if f_train is None or not math.isfinite(float(f_train)) or float(f_train) <= 0:
        raise ValueError(f"training focal f_train must be a positive number of pixels, got {f_train!r}")
    K_net = plan_input(image_hw, net_hw, policy).network_intrinsics(K)
    return float(K_net[0, 0] / float(f_train))


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate a camera frame: uint8 HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), non-empty."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what}: expected a numpy uint8 array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{what}: expected HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{what}: empty image (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{what}: expected dtype uint8 (0..255), got {image.dtype}; convert e.g. with "
            "np.clip(img * 255, 0, 255).astype(np.uint8)"
        )
    return image


def _region(image: np.ndarray, mapping: InputMapping) -> np.ndarray:
    """The part of `image` the network sees, at network size (a view when no resize is needed)."""
    top, left, h, w = mapping.box
    region = image if mapping.full_frame else image[top : top + h, left : left + w]
    if (h, w) == mapping.net_hw:
        return region
    if any(stride < 0 for stride in region.strides):  # a flipped view: cv2 needs positive steps
        region = np.ascontiguousarray(region)
    if region.ndim == 3 and region.shape[2] == 1:
        region = region[:, :, 0]
    return cv2.resize(region, (mapping.net_hw[1], mapping.net_hw[0]), interpolation=cv2.INTER_LINEAR)


def _write_chw(src: np.ndarray, out: np.ndarray) -> None:
    """uint8 HxW / HxWxC (C=1,3,4) → float32 3xHxW in [0, 1], in one pass into `out`."""
    if src.ndim == 2:
        np.multiply(src[None], _INV255, out=out)  # grey broadcast to the three channels
    elif src.shape[2] == 1:
        np.multiply(src[None, :, :, 0], _INV255, out=out)
    else:
        np.multiply(src[:, :, :3].transpose(2, 0, 1), _INV255, out=out)  # RGBA: alpha dropped


def prepare_batch(images: Sequence[np.ndarray], mappings: Sequence[InputMapping]) -> np.ndarray:
    """Float32 (B, 3, H_net, W_net) RGB in [0, 1] for the numpy backends."""
    h, w = mappings[0].net_hw
    batch = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, (image, mapping) in enumerate(zip(images, mappings)):
        _write_chw(_region(image, mapping), batch[i])
    return batch


def restore(net_map: np.ndarray, mapping: InputMapping, factor: float = 1.0) -> np.ndarray:
    """A float32 (H_net, W_net) network output at camera resolution; NaN where the network saw nothing.

    `net_map` may be scaled in place by `factor` (callers hand over buffers they own).
    """
    if factor != 1.0:
        net_map *= np.float32(factor)
    top, left, h, w = mapping.box
    if (h, w) != mapping.net_hw:
        net_map = cv2.resize(net_map, (w, h), interpolation=cv2.INTER_LINEAR)
    if mapping.full_frame:
        return np.ascontiguousarray(net_map, dtype=np.float32)
    full = np.full(mapping.image_hw, np.nan, dtype=np.float32)
    full[top : top + h, left : left + w] = net_map
    return full


# ---- the same steps as torch ops on the backend's device -------------------------------------------


def prepare_batch_torch(
    images: Sequence[np.ndarray], mappings: Sequence[InputMapping], device: torch.device
) -> torch.Tensor:
    """Float32 (B, 3, H_net, W_net) on `device`: uint8 frames go up as they are, crop/resize happen there."""
    h, w = mappings[0].net_hw
    batch = torch.empty((len(images), 3, h, w), dtype=torch.float32, device=device)
    for i, (image, mapping) in enumerate(zip(images, mappings)):
        top, left, bh, bw = mapping.box
        region = image if mapping.full_frame else image[top : top + bh, left : left + bw]
        t = torch.from_numpy(np.ascontiguousarray(region)).to(device, non_blocking=True)
        t = t[None] if t.ndim == 2 else t[:, :, :3].permute(2, 0, 1)  # 1|3 x h x w
        t = t.float().mul_(1.0 / 255.0)
        if (bh, bw) != (h, w):
            t = F.interpolate(t[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        batch[i].copy_(t.expand(3, h, w))
    return batch


def restore_torch(
    depth: torch.Tensor,
    sigma: torch.Tensor | None,
    mappings: Sequence[InputMapping],
    factors: Sequence[float],
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(B,1,H_net,W_net) device outputs → per frame (depth, sigma) float32 numpy at camera resolution
    (sigma None when the model has none: the stereo teacher)."""
    # B, 2, h, w (B, 1 without sigma): one resize and one copy per frame
    maps = (depth if sigma is None else torch.cat([depth, sigma], dim=1)).float()
    results = []
    for i, (mapping, factor) in enumerate(zip(mappings, factors)):
        top, left, h, w = mapping.box
        m = maps[i : i + 1]
        if factor != 1.0:
            m = m * factor
        if (h, w) != mapping.net_hw:
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        if not mapping.full_frame:
            full = torch.full((1, m.shape[1], *mapping.image_hw), float("nan"), device=m.device)
            full[:, :, top : top + h, left : left + w] = m
            m = full
        host = m[0].cpu().numpy()
        results.append((host[0], None if sigma is None else host[1]))
    return results
