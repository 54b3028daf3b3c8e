"""What a depth estimator publishes: the one composer behind the ROS node and `bag-eval`'s output bag.

    settings = OutputSettings(sigma_threshold=2.0)
    messages = compose_outputs(depth, sigma, image_msg.header, camera_info_msg, settings)
    # {"depth": Image, "camera_info": CameraInfo, "uncertainty": Image, ...} in `OUTPUTS` order

Conventions (REP 117/118, depth_image_proc):
- depth is 32FC1 metres with NaN wherever it is invalid (`depth_traits`); σ is 32FC1 metres with NaN
  where the depth is invalid; the "confident" depth is the depth with NaN where σ exceeds a threshold;
- every output carries the input image's stamp and frame_id; depth/camera_info is the input camera_info
  with the image's header (rescaled if the depth has another size), so `point_cloud_xyz` pairs them;
- colour (bgr8): depth near = bright, far = dark, linear from 0 to `max_depth` (0: the frame's largest
  valid depth); σ high = bright, linear from 0 to the frame's 95th percentile; invalid is black
  (`evaluation.visualize`). The colour maps are RGB, as every image inside the project; the one
  RGB -> BGR reorder happens where the message is built (`ros_messages.image_fields`).

Images come back as `ros_messages` (rosbags) messages, ready for a bag; the node copies their fields into
rclpy messages. camera_info comes back as a copy of the message given (rclpy or rosbags alike).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data.camera_info import camera_info_geometry, scale_camera_info
from adu_depth_core.depth_traits import FLOAT_M, valid_depth, valid_sigma
from adu_depth_core.evaluation.visualize import colorize_depth, colorize_uncertainty


class OutputSpec(NamedTuple):
    topic: str
    encoding: str | None  # None: a CameraInfo, not an Image


# Output name -> relative topic and encoding. Relative names: launch files remap them (depth_image_proc).
OUTPUTS: dict[str, OutputSpec] = {
    "depth": OutputSpec("depth/image", "32FC1"),
    "camera_info": OutputSpec("depth/camera_info", None),
    "uncertainty": OutputSpec("depth/uncertainty", "32FC1"),
    "confident": OutputSpec("depth/confident", "32FC1"),
    "depth_colorized": OutputSpec("depth/colorized", "bgr8"),
    "uncertainty_colorized": OutputSpec("depth/uncertainty/colorized", "bgr8"),
}
IMAGE_OUTPUTS = tuple(name for name, spec in OUTPUTS.items() if spec.encoding is not None)


def check_outputs(names: Collection[str]) -> tuple[str, ...]:
    """`names` in `OUTPUTS` order; ValueError naming unknown ones."""
    unknown = set(names) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown output(s) {sorted(unknown)}; known: {list(OUTPUTS)}")
    return tuple(name for name in OUTPUTS if name in names)


@dataclass(frozen=True)
class OutputSettings:
    """Which outputs to build and how.

    Args:
        outputs: names from `OUTPUTS` (default: all of them).
        sigma_threshold: depth/confident keeps the pixels whose σ is at most this (m), > 0.
        max_depth: depth (m) at the dark end of depth/colorized's scale; 0 = the frame's largest valid depth.
    """

    outputs: tuple[str, ...] = tuple(OUTPUTS)
    sigma_threshold: float = 2.0
    max_depth: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", check_outputs(self.outputs))
        if not (self.sigma_threshold > 0 and math.isfinite(self.sigma_threshold)):
            raise ValueError(f"sigma threshold must be a finite number > 0 (m), got {self.sigma_threshold!r}")
        if not (self.max_depth >= 0 and math.isfinite(self.max_depth)):
            raise ValueError(f"colour max_depth must be a finite number >= 0 (m), got {self.max_depth!r}")


def to_rep118_depth(depth: np.ndarray) -> np.ndarray:
    """REP 117/118 depth: float32, C-contiguous, NaN wherever depth is invalid (`depth_traits`)."""
    return FLOAT_M.from_metres(depth)


def clean_sigma(sigma: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """sigma as float32 with NaN where depth is invalid or sigma is not a finite number >= 0."""
    s = np.asarray(sigma, dtype=np.float32)
    valid = valid_sigma(s) & valid_depth(depth)
    return np.ascontiguousarray(np.where(valid, s, np.float32(np.nan)), dtype=np.float32)


def confident_depth(depth: np.ndarray, sigma: np.ndarray, threshold: float) -> np.ndarray:
    """depth with NaN where sigma > threshold (m) or sigma is NaN."""
    with np.errstate(invalid="ignore"):
        keep = sigma <= np.float32(threshold)
    return np.ascontiguousarray(np.where(keep, depth, np.float32(np.nan)), dtype=np.float32)


def output_camera_info(camera_info: Any, header: Any, depth_hw: tuple[int, int]) -> Any:
    """A copy of `camera_info` with `header`, describing an image of `depth_hw` (H, W)."""
    out = copy.copy(camera_info)
    out.header = header
    _, info_hw = camera_info_geometry(camera_info)
    if info_hw != tuple(depth_hw):  # only if an estimator returns another size than the camera's
        out = scale_camera_info(out, depth_hw)
    return out


def compose_outputs(
    depth: np.ndarray,
    sigma: np.ndarray | None,
    header: Any,
    camera_info: Any | None,
    settings: OutputSettings,
) -> dict[str, Any]:
    """The output messages of one frame, by output name, in `OUTPUTS` order.

    Args:
        depth: HxW depth (m) as the estimator returned it; anything not finite and > 0 is invalid.
        sigma: HxW σ (m), or None for a model without uncertainty (a stereo teacher): then uncertainty,
            confident and uncertainty_colorized are not built.
        header: the input image's std_msgs/Header (rclpy or rosbags); its stamp and frame_id go on
            every output, the header itself on depth/camera_info.
        camera_info: the input image's CameraInfo, or None: then depth/camera_info is not built.
        settings: which outputs, the σ threshold and the colour range.

    Raises ValueError for a depth/σ pair that is not two equal HxW maps or a malformed camera_info.
    """
    depth = to_rep118_depth(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty HxW map, got shape {depth.shape}")
    if sigma is not None:
        if np.shape(sigma) != depth.shape:
            raise ValueError(f"sigma {np.shape(sigma)} and depth {depth.shape} must be maps of one size")
        sigma = clean_sigma(sigma, depth)
    wanted = set(settings.outputs)
    stamp_ns, frame_id = rm.stamp_to_ns(header.stamp), str(header.frame_id)

    def image(array: np.ndarray, encoding: str) -> Any:
        return rm.image_to_msg(array, encoding, stamp_ns, frame_id)

    out: dict[str, Any] = {}
    if "depth" in wanted:
        out["depth"] = image(depth, "32FC1")
    if "camera_info" in wanted and camera_info is not None:
        out["camera_info"] = output_camera_info(camera_info, header, depth.shape)
    if sigma is not None:
        if "uncertainty" in wanted:
            out["uncertainty"] = image(sigma, "32FC1")
        if "confident" in wanted:
            out["confident"] = image(confident_depth(depth, sigma, settings.sigma_threshold), "32FC1")
    if "depth_colorized" in wanted:
        out["depth_colorized"] = image(colorize_depth(depth, max_depth=settings.max_depth or None), "bgr8")
    if sigma is not None and "uncertainty_colorized" in wanted:
        out["uncertainty_colorized"] = image(colorize_uncertainty(sigma), "bgr8")
    return out
