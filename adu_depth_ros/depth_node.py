"""`ros2 run adu_depth depth_node`: metric depth and per-pixel uncertainty from one camera.

Thin rclpy wiring around `adu_depth_ros.pipeline` (all logic lives there and is tested without ROS).
Topics are relative names that launch files remap (depth_image_proc style):

    subscribes  image (sensor_msgs/Image, any encoding cv_bridge turns into rgb8)
                camera_info (sensor_msgs/CameraInfo, when use_camera_info)
    publishes   depth/image (32FC1 m, NaN invalid), depth/camera_info, depth/uncertainty (32FC1 sigma m),
                depth/confident (32FC1 m), depth/colorized, depth/uncertainty/colorized (bgr8), /diagnostics

Every output carries the input image's header. Inference runs on the newest frame only, in its own
thread, and only while somebody subscribes to an output. docs/ROS.md has the full interface.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import rclpy
from cv_bridge import CvBridge
from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import Updater
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from .params import NodeParams, defaults, descriptions, params_from_values
from .pipeline import (
    CAMERA_INFO_TOPIC,
    ERROR,
    IMAGE_TOPIC,
    OK,
    OUTPUTS,
    WARN,
    DepthPipeline,
    DepthResult,
    FrameError,
    HealthMonitor,
    InferenceWorker,
    LogThrottle,
)

NODE_NAME = "depth_node"
LOG_THROTTLE_S = 5.0
_LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """KEEP_LAST(depth), volatile, best-effort (sensor data) or reliable."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT
        if reliability == "best_effort"
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def declare_params(node: Node, cls: type) -> Any:
    """Declare every field of params dataclass `cls` once (default, description; read-only), log each
    value, and return the validated dataclass (ValueError naming the parameter otherwise)."""
    docs = descriptions(cls)
    values: dict[str, Any] = {}
    for name, default in defaults(cls).items():
        descriptor = ParameterDescriptor(description=docs[name], read_only=True, dynamic_typing=True)
        values[name] = node.declare_parameter(name, default, descriptor).value
        node.get_logger().info(f"parameter {name} = {values[name]!r}")
    return params_from_values(cls, values)


def load_estimator(params: NodeParams) -> Any:
    """The DepthEstimator for `params.model_path` (raises with a clear message when it cannot load)."""
    params.require_model()
    # heavy (torch / onnxruntime): imported only once the parameters are valid
    from adu_depth_core.runtime import DepthEstimator

    return DepthEstimator.from_path(params.model_path, backend=params.backend, policy=params.policy)


class DepthNode(Node):
    """Camera in, depth + uncertainty out. Construction raises on a startup error (bad parameter,
    model that cannot load); `main` logs it as fatal and exits non-zero."""

    def __init__(self, *, estimator: Any = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params: NodeParams = declare_params(self, NodeParams)
        if estimator is None:
            estimator = load_estimator(self.params)
        self.estimator = estimator
        self.get_logger().info(f"model loaded: {getattr(estimator, 'info', self.params.model_path)}")
        self._sigma_trained = bool(getattr(getattr(estimator, "info", None), "sigma_trained", True))
        if not self._sigma_trained:
            self.get_logger().warning(
                "this model's uncertainty branch was never trained (imported weights): depth/uncertainty "
                "is a placeholder and depth/confident does not mean confident"
            )

        self._bridge = CvBridge()
        self._throttle = LogThrottle(LOG_THROTTLE_S)
        self._health = HealthMonitor()
        self.pipeline = DepthPipeline(estimator, self.params, decode=self._to_rgb)

        out_qos = make_qos("reliable", self.params.qos_depth)
        self._pubs: dict[str, Publisher] = {}
        for name in self.params.enabled_outputs():
            spec = OUTPUTS[name]
            msg_type = CameraInfo if spec.encoding is None else Image
            self._pubs[name] = self.create_publisher(msg_type, spec.topic, out_qos)

        in_qos = make_qos(self.params.qos_reliability, self.params.qos_depth)
        self._image_sub = self.create_subscription(Image, IMAGE_TOPIC, self._on_image, in_qos)
        self._info_sub = None
        if self.params.use_camera_info:
            self._info_sub = self.create_subscription(
                CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info, in_qos
            )

        self._diagnostics = Updater(self)
        self._diagnostics.setHardwareID(
            f"adu_depth {getattr(estimator, 'backend_name', self.params.backend)}"
        )
        self._diagnostics.add("depth estimation", self._diagnose)

        self._worker = InferenceWorker(
            self.pipeline, self._wanted, self._publish, self._log_frame_error, rate_hz=self.params.target_rate
        )
        self._worker.start()
        self.get_logger().info(
            f"listening on {self.resolve_topic_name(IMAGE_TOPIC)}"
            + (f" and {self.resolve_topic_name(CAMERA_INFO_TOPIC)}" if self._info_sub is not None else "")
            + f"; publishing {', '.join(self.resolve_topic_name(OUTPUTS[n].topic) for n in self._pubs)}"
        )

    # -- executor thread: cheap callbacks --

    def _on_image(self, msg: Any) -> None:
        self.pipeline.submit(msg)

    def _on_camera_info(self, msg: Any) -> None:
        self.pipeline.set_camera_info(msg)

    def _diagnose(self, stat: Any) -> Any:
        snap = self.pipeline.stats.snapshot()
        level, message = self._health.evaluate(snap, self._worker.alive, bool(self._wanted()))
        stat.summary(_LEVELS[level], message)
        for key, value in snap.as_key_values():
            stat.add(key, value)
        stat.add("sigma_trained", str(self._sigma_trained).lower())
        return stat

    # -- inference thread --

    def _to_rgb(self, msg: Any) -> Any:
        return self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")

    def _wanted(self) -> frozenset[str]:
        counts = {name: pub.get_subscription_count() for name, pub in self._pubs.items()}
        return self.pipeline.active_outputs(counts)

    def _publish(self, result: DepthResult) -> None:
        if result.camera_info is not None and "camera_info" in self._pubs:
            self._pubs["camera_info"].publish(result.camera_info)
        for name, (array, encoding) in result.images.items():
            msg = self._bridge.cv2_to_imgmsg(array, encoding=encoding, header=result.header)
            self._pubs[name].publish(msg)
        for key, text in result.warnings:
            self._warn_throttled(key, text)

    def _warn_throttled(self, key: str, text: str) -> None:
        suppressed = self._throttle.check(key)
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().warning(text + more)

    def _log_frame_error(self, err: FrameError) -> None:
        self._warn_throttled(f"error:{err.kind}", f"frame skipped: {err}")

    def shutdown(self) -> None:
        self._worker.stop()


def spin_node(
    make: Callable[[], Node], name: str, on_exit: Callable[[Node], None], args: list[str] | None
) -> int:
    """Init rclpy, build the node (a startup error → one fatal line, exit 1), spin until shutdown."""
    rclpy.init(args=args)
    try:
        node = make()
    except Exception as exc:  # startup errors: refuse to start, one clear line
        get_logger(name).fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    return spin_node(DepthNode, NODE_NAME, lambda node: node.shutdown(), args)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
