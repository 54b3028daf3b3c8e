"""`ros2 run adu_depth eval_node`: live depth metrics while a bag with ground truth is replayed.

Pairs `depth/image` (depth_node's output) with a GT depth image on `gt/depth/image` (32FC1 m or
16UC1 mm, 0/NaN = no measurement) by approximate time, scores each pair with the project's metrics
module (`adu_depth_ros.live_eval`, tested without ROS) and every `report_period` seconds logs a line
and publishes the JSON report on `depth/metrics` (std_msgs/String). docs/ROS.md has the interface.
"""

from __future__ import annotations

import sys
from typing import Any

import message_filters
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from .depth_node import NODE_OPTIONS, declare_params, make_qos, spin_node
from .live_eval import GT_TOPIC, METRICS_TOPIC, PREDICTION_TOPIC, LiveEvaluator, PairError, format_report
from .params import EvalParams
from .pipeline import LogThrottle

NODE_NAME = "eval_node"


class EvalNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **{**NODE_OPTIONS, **kwargs})
        self.params: EvalParams = declare_params(self, EvalParams)
        self.evaluator = LiveEvaluator(self.params)
        self._throttle = LogThrottle(5.0)
        self._last_reported = -1

        qos = make_qos(self.params.qos_reliability, self.params.qos_depth)
        # message_filters subscribers default to reliable QoS: pass it, or best-effort publishers never match
        self._pred_sub = message_filters.Subscriber(self, Image, PREDICTION_TOPIC, qos_profile=qos)
        self._gt_sub = message_filters.Subscriber(self, Image, GT_TOPIC, qos_profile=qos)
        self._sync = message_filters.ApproximateTimeSynchronizer(
            [self._pred_sub, self._gt_sub], self.params.queue_size, self.params.slop
        )
        self._sync.registerCallback(self._on_pair)
        self._pub = self.create_publisher(String, METRICS_TOPIC, 10)
        self._timer = self.create_timer(self.params.report_period, self._report)
        self.get_logger().info(
            f"evaluating {self.resolve_topic_name(PREDICTION_TOPIC)} "
            f"against {self.resolve_topic_name(GT_TOPIC)}; "
            f"reports on {self.resolve_topic_name(METRICS_TOPIC)} every {self.params.report_period:g} s"
        )

    def _on_pair(self, pred_msg: Any, gt_msg: Any) -> None:
        try:
            self.evaluator.add_messages(pred_msg, gt_msg)
        except PairError as exc:
            suppressed = self._throttle.check("pair")
            if suppressed is not None:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                self.get_logger().warning(f"pair skipped: {exc}{more}")

    def _report(self) -> None:
        report = self.evaluator.report()
        if report["pairs"] == self._last_reported:
            if report["pairs"] == 0 and self._throttle.check("no_pairs") is not None:
                self.get_logger().warning(
                    f"no synchronised pairs yet: check that {self.resolve_topic_name(PREDICTION_TOPIC)} and "
                    f"{self.resolve_topic_name(GT_TOPIC)} are published with stamps within slop "
                    f"{self.params.slop:g} s"
                )
            return
        self._last_reported = report["pairs"]
        msg = String()
        msg.data = self.evaluator.report_json()
        self._pub.publish(msg)
        self.get_logger().info(format_report(report))


def _final_report(node: Node) -> None:
    node.get_logger().info(f"final: {format_report(node.evaluator.report())}")  # type: ignore[attr-defined]


def main(args: list[str] | None = None) -> int:
    return spin_node(EvalNode, NODE_NAME, _final_report, args)


if __name__ == "__main__":
    sys.exit(main())
