"""depth_node in a live ROS graph (launch_testing): image in → depth/image out with the same header.

Runs where ROS 2 is installed and the package is built (`colcon test`, docker/README.md); skips
cleanly elsewhere. The model is `$ADU_DEPTH_TEST_MODEL` (an .onnx file) when set, else a randomly
initialised nano student exported to ONNX here (the numbers do not matter, the wiring does). Messages
are built without cv_bridge (`ros_helpers`), so the test does not depend on cv2's type codes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ros_helpers, also under `launch_test`
import ros_helpers as rh

# No module-level pytest.skip: launch_testing's pytest plugin imports every test module while collecting,
# and a Skipped raised there would skip the whole test directory.
try:
    import launch
    import launch.actions
    import launch_ros.actions
    import launch_testing.actions
    import launch_testing.asserts
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
except ImportError as exc:  # no ROS 2 here, not sourced, or only rclpy-intellisense's stub: the classes skip
    ROS_MISSING = f"ROS 2 launch_testing environment not available ({exc})"
else:
    ROS_MISSING = ""

NAMESPACE = "adu_depth_test"
H, W = 48, 80
STAMP = (1_700_000_123, 456_000_000)
FRAME_ID = "test_camera_optical"
TIMEOUT_S = rh.TIMEOUT_S


def _generate_test_description():
    node = launch_ros.actions.Node(
        package="adu_depth",
        executable="depth_node",
        name="depth_node",
        namespace=NAMESPACE,
        parameters=[{"model_path": rh.model_path(), "backend": "onnxruntime", "use_camera_info": True}],
        remappings=[
            ("image", f"/{NAMESPACE}/camera/image"),
            ("camera_info", f"/{NAMESPACE}/camera/camera_info"),
        ],
        output="screen",
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"depth_node": node}


if not ROS_MISSING:
    generate_test_description = pytest.mark.launch_test(_generate_test_description)


@unittest.skipIf(bool(ROS_MISSING), ROS_MISSING)
class TestDepthNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("adu_depth_test_client", namespace=NAMESPACE)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _camera_info(self, header):
        return rh.camera_info(header, H, W)

    def _exchange(self, image_msg, want_camera_info=True):
        """Publish `image_msg` (+ camera_info) until depth/image (and depth/camera_info) come back."""
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        received: dict[str, object] = {}
        subs = [
            self.node.create_subscription(
                Image, "depth/image", lambda m: received.setdefault("depth", m), qos
            ),
            self.node.create_subscription(
                CameraInfo, "depth/camera_info", lambda m: received.setdefault("info", m), qos
            ),
        ]
        pub_image = self.node.create_publisher(Image, "camera/image", qos)
        pub_info = self.node.create_publisher(CameraInfo, "camera/camera_info", qos)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            wanted = {"depth", "info"} if want_camera_info else {"depth"}
            while time.monotonic() < deadline and not wanted <= received.keys():
                pub_info.publish(self._camera_info(image_msg.header))
                pub_image.publish(image_msg)
                end = time.monotonic() + 0.5
                while time.monotonic() < end and not wanted <= received.keys():
                    rclpy.spin_once(self.node, timeout_sec=0.05)
        finally:
            for sub in subs:
                self.node.destroy_subscription(sub)
            self.node.destroy_publisher(pub_image)
            self.node.destroy_publisher(pub_info)
        return received

    def _image(self, encoding="bgr8"):
        rng = np.random.default_rng(0)
        bgr = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        return rh.image_msg(bgr, encoding, rh.header(STAMP, FRAME_ID))

    def test_depth_arrives_with_the_input_header_and_32fc1(self):
        received = self._exchange(self._image())
        self.assertIn("depth", received, "no depth/image within the timeout")
        depth = received["depth"]
        self.assertEqual((depth.header.stamp.sec, depth.header.stamp.nanosec), STAMP)
        self.assertEqual(depth.header.frame_id, FRAME_ID)
        self.assertEqual(depth.encoding, "32FC1")
        self.assertEqual((depth.height, depth.width), (H, W))
        values = rh.pixels(depth)
        self.assertTrue(np.isfinite(values).any())
        self.assertTrue((values[np.isfinite(values)] > 0).all())
        info = received["info"]
        self.assertEqual((info.header.stamp.sec, info.header.stamp.nanosec), STAMP)
        self.assertEqual(info.header.frame_id, FRAME_ID)
        self.assertEqual((info.height, info.width), (H, W))

    def test_a_bad_frame_does_not_stop_the_node(self):
        bad = rh.image_msg(np.ones((H, W), np.uint16), "16UC1", rh.header((1, 0), FRAME_ID))
        pub = self.node.create_publisher(Image, "camera/image", 10)
        for _ in range(3):
            pub.publish(bad)
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.node.destroy_publisher(pub)
        received = self._exchange(self._image("rgb8"))
        self.assertIn("depth", received, "the node stopped publishing after a bad frame")


@unittest.skipIf(bool(ROS_MISSING), ROS_MISSING)
class TestStartupErrors(unittest.TestCase):
    def test_missing_model_refuses_to_start(self):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "adu_depth_ros.depth_node",
                "--ros-args",
                "-p",
                "model_path:=/nonexistent/x.onnx",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(run.returncode, 1, run.stdout + run.stderr)
        self.assertIn("cannot start", run.stdout + run.stderr)
        self.assertIn("/nonexistent/x.onnx", run.stdout + run.stderr)


if not ROS_MISSING:

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        def test_exit_code(self, proc_info):
            # launch_testing ends the node with SIGINT: a clean exit, status 0 (no -2 since issue 16)
            launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
