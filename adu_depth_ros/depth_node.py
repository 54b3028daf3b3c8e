"""`ros2 run adu_depth depth_node`: metric depth and per-pixel uncertainty from one camera.

Thin rclpy wiring around `adu_depth_ros.pipeline` (all logic lives there and is tested without ROS).
Topics are relative names that launch files remap (depth_image_proc style):

    subscribes  image (sensor_msgs/Image, any colour encoding), or with image_transport:=compressed
                image/compressed (sensor_msgs/CompressedImage, JPEG/PNG), named as image_transport names it
                camera_info (sensor_msgs/CameraInfo, when use_camera_info; paired with images by stamp)
    publishes   depth/image (32FC1 m, NaN invalid), depth/camera_info, depth/uncertainty (32FC1 sigma m),
                depth/confident (32FC1 m), depth/colorized, depth/uncertainty/colorized (bgr8), /diagnostics

Every output carries the input image's header. Inference runs on the newest frame only, in its own
thread; the camera is subscribed only while somebody subscribes to an output (publisher matched
events, `lazy_input`). SIGINT/SIGTERM end the node cleanly with status 0 (`shutdown`); misspelled
parameters stop it at start-up (`params.check_parameter_names`). docs/ROS.md has the full interface.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Callable
from typing import Any

import rclpy
from cv_bridge import CvBridge
from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import Updater
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from adu_depth_core.data.ros_messages import SUPPORTED_ENCODINGS, is_compressed, msg_to_rgb
from adu_depth_core.runtime.outputs import OUTPUTS

from .lazy_input import InputGate
from .params import NodeParams, check_parameter_names, defaults, descriptions, params_from_values
from .pipeline import (
    CAMERA_INFO_TOPIC,
    ERROR,
    IMAGE_TOPIC,
    OK,
    WARN,
    DepthPipeline,
    DepthResult,
    FrameError,
    HealthMonitor,
    InferenceWorker,
    LogThrottle,
    input_image_topic,
)
from .shutdown import SignalStop, run_cleanup, spin_until_stopped

try:  # Iron and later: publisher matched events drive the lazy camera subscription
    from rclpy.event_handler import PublisherEventCallbacks
except ImportError:  # older rclpy: the subscriber-count poll alone does
    PublisherEventCallbacks = None

NODE_NAME = "depth_node"
LOG_THROTTLE_S = 5.0
SUBSCRIBER_POLL_S = 1.0  # backs up the matched events (and is all there is without them)
# Every parameter override is declared at construction, so a misspelled one can be seen and reported.
NODE_OPTIONS: dict[str, Any] = {"automatically_declare_parameters_from_overrides": True}
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
    value, and return the validated dataclass (ValueError naming the parameter otherwise).

    The node is built with `NODE_OPTIONS`, so every override is already declared: a name that is no
    field of `cls` is a ValueError (misspelling); a known one is redeclared read-only with its value.
    """
    check_parameter_names(cls, node.get_parameters_by_prefix(""), node.get_name())
    docs = descriptions(cls)
    values: dict[str, Any] = {}
    for name, default in defaults(cls).items():
        if node.has_parameter(name):  # declared from an override, without our descriptor
            default = node.get_parameter(name).value
            node.undeclare_parameter(name)
        descriptor = ParameterDescriptor(description=docs[name], read_only=True, dynamic_typing=True)
        values[name] = node.declare_parameter(name, default, descriptor).value
        node.get_logger().info(f"parameter {name} = {values[name]!r}")
    return params_from_values(cls, values)


def load_estimator(params: NodeParams) -> Any:
    """The DepthEstimator for `params.model_path` (raises with a clear message when it cannot load)."""
    params.require_model()
    # heavy (torch / onnxruntime): imported only once the parameters are valid
    from adu_depth_core.runtime import DepthEstimator

    estimator = DepthEstimator.from_path(params.model_path, backend=params.backend, policy=params.policy)
    return estimator.require_monocular("the depth node")


class DepthNode(Node):
    """Camera in, depth + uncertainty out. Construction raises on a startup error (bad parameter,
    model that cannot load); `main` logs it as fatal and exits non-zero."""

    def __init__(self, *, estimator: Any = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **{**NODE_OPTIONS, **kwargs})
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

        # camera input: subscribed only while an output has subscribers (self._gate)
        self._in_qos = make_qos(self.params.qos_reliability, self.params.qos_depth)
        compressed = self.params.image_transport == "compressed"
        self._image_type = CompressedImage if compressed else Image
        self._image_topic = input_image_topic(
            self.resolve_topic_name(IMAGE_TOPIC), self.params.image_transport
        )
        self._image_sub: Any = None
        self._info_sub: Any = None
        self._gate = InputGate(
            self.params.enabled_outputs(), self._subscribe_input, self._unsubscribe_input, self._log_gate
        )

        out_qos = make_qos("reliable", self.params.qos_depth)
        self._pubs: dict[str, Publisher] = {}
        for name in self.params.enabled_outputs():
            spec = OUTPUTS[name]
            msg_type = CameraInfo if spec.encoding is None else Image
            self._pubs[name] = self._create_output(msg_type, spec.topic, out_qos, name)
        self._poll_timer = self.create_timer(SUBSCRIBER_POLL_S, self._poll_subscribers)

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
            f"input {self._image_topic} [{self._image_type.__name__}]"
            + (f" and {self.resolve_topic_name(CAMERA_INFO_TOPIC)}" if self.params.use_camera_info else "")
            + " (subscribed while an output has subscribers)"
            + f"; publishing {', '.join(self.resolve_topic_name(OUTPUTS[n].topic) for n in self._pubs)}"
        )
        self._poll_subscribers()

    # -- lazy input (executor thread) --

    def _create_output(self, msg_type: Any, topic: str, qos: QoSProfile, name: str) -> Publisher:
        """A publisher whose matched events (subscriber appears / leaves) update the input gate."""
        if PublisherEventCallbacks is not None:
            try:
                events = PublisherEventCallbacks(
                    matched=lambda info, name=name: self._gate.set_count(name, info.current_count)
                )
                return self.create_publisher(msg_type, topic, qos, event_callbacks=events)
            except Exception as exc:  # no matched event in this rclpy (TypeError) or middleware
                self.get_logger().debug(f"no matched events for {topic} ({exc}); polling subscriber counts")
        return self.create_publisher(msg_type, topic, qos)

    def _poll_subscribers(self) -> None:
        self._gate.update({name: pub.get_subscription_count() for name, pub in self._pubs.items()})

    def _subscribe_input(self) -> None:
        self._image_sub = self.create_subscription(
            self._image_type, self._image_topic, self._on_image, self._in_qos
        )
        if self.params.use_camera_info:
            self._info_sub = self.create_subscription(
                CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info, self._in_qos
            )

    def _unsubscribe_input(self) -> None:
        for sub in (self._image_sub, self._info_sub):
            if sub is not None:
                self.destroy_subscription(sub)
        self._image_sub = self._info_sub = None

    def _log_gate(self, subscribed: bool, counts: dict[str, int]) -> None:
        if subscribed:
            listening = ", ".join(f"{OUTPUTS[n].topic} ({c})" for n, c in counts.items() if c)
            self.get_logger().info(
                f"subscribed to {self._image_topic}: outputs have subscribers: {listening}"
            )
        else:
            self.get_logger().info(f"unsubscribed from {self._image_topic}: no output has a subscriber")

    # -- executor thread: cheap callbacks --

    def _on_image(self, msg: Any) -> None:
        self.pipeline.submit(msg)

    def _on_camera_info(self, msg: Any) -> None:
        self.pipeline.set_camera_info(msg)

    def _diagnose(self, stat: Any) -> Any:
        snap = self.pipeline.stats.snapshot()
        level, message = self._health.evaluate(snap, self._worker.alive, self._gate.is_open)
        stat.summary(_LEVELS[level], message)
        for key, value in snap.as_key_values():
            stat.add(key, value)
        stat.add("sigma_trained", str(self._sigma_trained).lower())
        return stat

    # -- inference thread --

    def _to_rgb(self, msg: Any) -> Any:
        # the project's own decoder where it can (CompressedImage, the common encodings; independent of
        # the OpenCV version), cv_bridge for the rest (bayer_*, 16-bit colour, ...)
        if is_compressed(msg) or str(msg.encoding) in SUPPORTED_ENCODINGS:
            return msg_to_rgb(msg)
        return self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")

    def _wanted(self) -> frozenset[str]:
        counts = {name: pub.get_subscription_count() for name, pub in self._pubs.items()}
        return self.pipeline.active_outputs(counts)

    def _publish(self, result: DepthResult) -> None:
        for name, msg in result.messages.items():
            if OUTPUTS[name].encoding is not None:  # an Image; camera_info is already an rclpy message
                msg = _image_msg(msg, result.header)
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


def _image_msg(out: Any, header: Any) -> Any:
    """rclpy sensor_msgs/Image with the fields of a composed (rosbags) output Image and `header` (the
    input header, unchanged), without cv_bridge."""
    msg = Image()
    msg.header = header
    msg.height, msg.width, msg.step = int(out.height), int(out.width), int(out.step)
    msg.encoding, msg.is_bigendian = str(out.encoding), int(out.is_bigendian)
    msg.data = array.array("B", out.data.tobytes())  # an array.array is taken as is (no per-byte check)
    return msg


def spin_node(
    make: Callable[[], Node], name: str, on_exit: Callable[[Node], None], args: list[str] | None
) -> int:
    """Init rclpy, build the node (a startup error → one fatal line, exit 1), spin until SIGINT/SIGTERM
    or an external shutdown, then clean up in order and exit 0 — with no traceback, however many
    signals arrive (`shutdown`). rclpy's own signal handlers are not installed, so the context is still
    valid while `on_exit` logs its last lines."""
    with SignalStop() as stop:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = make()
        except Exception as exc:  # startup errors: refuse to start, one clear line
            get_logger(name).fatal(f"cannot start: {type(exc).__name__}: {exc}")
            rclpy.try_shutdown()
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            spin_until_stopped(lambda timeout: executor.spin_once(timeout_sec=timeout), rclpy.ok, stop)
        except ExternalShutdownException:
            pass
        if stop.requested:
            node.get_logger().info(f"{stop.reason} received: shutting down")
        run_cleanup(
            [
                ("on_exit", lambda: on_exit(node)),
                ("executor shutdown", executor.shutdown),
                ("destroy_node", node.destroy_node),
                ("rclpy shutdown", rclpy.try_shutdown),
            ],
            get_logger(name).error,
        )
    return 0


def main(args: list[str] | None = None) -> int:
    return spin_node(DepthNode, NODE_NAME, lambda node: node.shutdown(), args)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
