"""Parameters of the ROS nodes as plain, validated dataclasses (no rclpy).

Each node declares every field of its dataclass as a ROS parameter with the field's default and
its `doc` as description, reads the values back and builds the dataclass with
`adu_depth_core.config.from_dict`, so types, allowed values and unknown keys are checked in one
place — here — and the same checks run in the ROS-free tests (config/*.yaml must match exactly).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from adu_depth_core.config import from_dict
from adu_depth_core.evaluation.crops import CROPS
from adu_depth_core.vocab import BACKENDS, POLICIES, Backend, Policy

RELIABILITIES = ("best_effort", "reliable")
TRANSPORTS = ("raw", "compressed")
# parameters every rclpy node has besides its own (rclpy declares them; launch files set use_sim_time)
BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})

Reliability = Literal["best_effort", "reliable"]
Transport = Literal["raw", "compressed"]


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"parameter {name!r}: expected one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True)
class NodeParams:
    """Parameters of `depth_node` (names are the ROS parameter names)."""

    model_path: str = field(
        default="",
        metadata=_doc("student checkpoint (.pt), ONNX file (.onnx) or TensorRT engine (.engine); required"),
    )
    backend: Backend = field(default="auto", metadata=_doc(f"inference backend, one of {list(BACKENDS)}"))
    policy: Policy = field(
        default="resize",
        metadata=_doc(
            "how a camera image is fitted to the network input: 'resize' or 'kb_crop' (KITTI crop)"
        ),
    )
    image_transport: Transport = field(
        default="raw",
        metadata=_doc(
            "camera transport: 'raw' subscribes to image (sensor_msgs/Image), 'compressed' to "
            "image/compressed (sensor_msgs/CompressedImage, JPEG/PNG), as image_transport names them"
        ),
    )
    use_camera_info: bool = field(
        default=True,
        metadata=_doc(
            "subscribe to camera_info, pass its intrinsics to the estimator (focal-aware depth) "
            "and republish it on depth/camera_info"
        ),
    )
    camera_info_tolerance: float = field(
        default=0.0,
        metadata=_doc(
            "largest stamp difference (s) of an image and its camera_info; 0 = exact stamps. Without a "
            "match the latest camera_info is used, with a throttled warning"
        ),
    )
    max_depth: float = field(
        default=0.0,
        metadata=_doc("depth (m) at the top of the depth/colorized colour scale; 0 = per-frame range"),
    )
    sigma_threshold: float = field(
        default=2.0, metadata=_doc("depth/confident keeps pixels whose uncertainty sigma (m) is at most this")
    )
    publish_uncertainty: bool = field(
        default=True, metadata=_doc("publish depth/uncertainty (sigma, 32FC1 m)")
    )
    publish_confident: bool = field(default=True, metadata=_doc("publish depth/confident (32FC1 m)"))
    publish_colorized: bool = field(
        default=True, metadata=_doc("publish depth/colorized and depth/uncertainty/colorized (bgr8)")
    )
    qos_reliability: Reliability = field(
        default="best_effort",
        metadata=_doc(
            "reliability of the image/camera_info subscriptions: 'best_effort' (sensor data) or 'reliable'"
        ),
    )
    qos_depth: int = field(default=1, metadata=_doc("history depth of subscriptions and publishers"))
    target_rate: float = field(
        default=0.0, metadata=_doc("maximum inference rate in Hz; 0 = as fast as frames and the model allow")
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("policy", self.policy, POLICIES)
        _check_choice("qos_reliability", self.qos_reliability, RELIABILITIES)
        _check_choice("image_transport", self.image_transport, TRANSPORTS)
        if not isinstance(self.qos_depth, int) or isinstance(self.qos_depth, bool) or self.qos_depth < 1:
            raise ValueError(f"parameter 'qos_depth': expected an integer >= 1, got {self.qos_depth!r}")
        for name in ("max_depth", "target_rate", "camera_info_tolerance"):
            value = getattr(self, name)
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"parameter {name!r}: expected a finite number >= 0, got {value!r}")
        if not self.sigma_threshold > 0 or self.sigma_threshold == float("inf"):
            raise ValueError(
                f"parameter 'sigma_threshold': expected a finite number > 0 (m), got {self.sigma_threshold!r}"
            )

    def require_model(self) -> None:
        """Startup check the node runs before loading: a model path must be given."""
        if not self.model_path.strip():
            raise ValueError(
                "parameter 'model_path' is empty: set it to a student checkpoint, .onnx or .engine file "
                "(e.g. `--ros-args -p model_path:=/models/student.onnx` or the launch argument model:=...)"
            )

    def enabled_outputs(self) -> tuple[str, ...]:
        """Output names (keys of `runtime.outputs.OUTPUTS`) this configuration publishes."""
        names = ["depth"]
        if self.use_camera_info:
            names.append("camera_info")
        if self.publish_uncertainty:
            names.append("uncertainty")
        if self.publish_confident:
            names.append("confident")
        if self.publish_colorized:
            names += ["depth_colorized", "uncertainty_colorized"]
        return tuple(names)


@dataclass(frozen=True)
class EvalParams:
    """Parameters of `eval_node` (live evaluation of depth/image against a ground-truth depth topic)."""

    min_depth: float = field(default=1e-3, metadata=_doc("GT pixels nearer than this (m) are not evaluated"))
    max_depth: float = field(default=80.0, metadata=_doc("GT pixels farther than this (m) are not evaluated"))
    crop: str = field(
        default="none",
        metadata=_doc(f"evaluation crop: {', '.join(CROPS[:-1])} or {CROPS[-1]} (docs/EVALUATION.md)"),
    )
    ignore_invalid_prediction: bool = field(
        default=True,
        metadata=_doc(
            "leave out pixels where depth/image is NaN (not seen by the network); false scores them as "
            "min_depth, as the offline protocol does"
        ),
    )
    slop: float = field(
        default=0.05, metadata=_doc("approximate-time sync: largest stamp difference (s) of a depth/GT pair")
    )
    queue_size: int = field(default=10, metadata=_doc("approximate-time sync queue per topic"))
    report_period: float = field(
        default=5.0, metadata=_doc("seconds between metric reports (log + depth/metrics)")
    )
    window: int = field(
        default=100, metadata=_doc("frames in the 'recent' metrics window (cumulative is kept too)")
    )
    qos_reliability: Reliability = field(
        default="best_effort", metadata=_doc("reliability of both subscriptions: 'best_effort' or 'reliable'")
    )
    qos_depth: int = field(default=5, metadata=_doc("history depth of both subscriptions"))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check_choice("qos_reliability", self.qos_reliability, RELIABILITIES)
        _check_choice("crop", self.crop, CROPS)
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(
                f"parameters 'min_depth'/'max_depth': expected 0 < min_depth < max_depth, "
                f"got {self.min_depth!r} / {self.max_depth!r}"
            )
        if not self.slop > 0:
            raise ValueError(f"parameter 'slop': expected seconds > 0, got {self.slop!r}")
        if not self.report_period > 0:
            raise ValueError(f"parameter 'report_period': expected seconds > 0, got {self.report_period!r}")
        for name in ("queue_size", "window", "qos_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"parameter {name!r}: expected an integer >= 1, got {value!r}")


def defaults(cls: type) -> dict[str, Any]:
    """{parameter name: default} of a params dataclass, in declaration order."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def descriptions(cls: type) -> dict[str, str]:
    """{parameter name: description} of a params dataclass."""
    return {f.name: str(f.metadata.get("doc", "")) for f in dataclasses.fields(cls)}


def params_from_values(cls: type, values: dict[str, Any]) -> Any:
    """Build and validate `cls` from {name: value} (ROS parameter values or a YAML mapping).

    ValueError names the parameter: unknown names, wrong types and values outside the allowed set.
    ROS integers given for float parameters are accepted (80 for 80.0).
    """
    return from_dict(cls, dict(values))


def check_parameter_names(cls: type, given: Iterable[str], node: str) -> None:
    """ValueError for parameters set on a node that it does not have (a misspelling would otherwise
    be ignored silently): names them, suggests the nearest known name and lists the known ones.

    `given` are the names of the node's parameter overrides (`-p`, `--params-file`, launch
    `parameters=`); rclpy's own parameters (`BUILTIN_PARAMETERS`) are allowed.
    """
    known = list(defaults(cls))
    unknown = sorted(set(given) - set(known) - BUILTIN_PARAMETERS)
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"unknown parameter(s) for {node}: {', '.join(parts)}; {node} has {', '.join(known)}")
