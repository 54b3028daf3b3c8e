"""depth_node and eval_node under a real ROS 2 graph (launch_testing): the cases of issue 16.

Launched: camera A through the package's own `depth.launch.py` (parameters from config/depth_node.yaml,
remapping, namespace `cam_a`, best-effort input); camera B as a second depth_node in namespace `cam_b` at
the same time, with `image_transport: compressed` and reliable input; an eval_node in namespace `eval`.
Signal and start-up cases run the nodes as subprocesses. Runs where ROS 2 is installed and the package is
built (`colcon test`, docs/ROS.md); skips cleanly elsewhere, also when only rclpy-intellisense's stub rclpy
is importable. Messages are built without cv_bridge (`ros_helpers`).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import unittest

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ros_helpers, also under `launch_test`
import ros_helpers as rh

# No module-level pytest.skip: launch_testing's pytest plugin imports every test module while collecting.
try:
    import launch
    import launch.actions
    import launch.launch_description_sources
    import launch_ros.actions
    import launch_testing.actions
    import launch_testing.asserts
    import rclpy
    from ament_index_python.packages import get_package_share_directory
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import String
except ImportError as exc:  # no ROS 2 here, not sourced, or only rclpy-intellisense's stub: the classes skip
    ROS_MISSING = f"ROS 2 launch_testing environment not available ({exc})"
else:
    ROS_MISSING = ""

H, W = 48, 80
FRAME_ID = "graph_test_optical"
OUTPUT_TOPICS = {  # relative output topic -> encoding (None: CameraInfo)
    "depth/image": "32FC1",
    "depth/camera_info": None,
    "depth/uncertainty": "32FC1",
    "depth/confident": "32FC1",
    "depth/colorized": "bgr8",
    "depth/uncertainty/colorized": "bgr8",
}


@functools.cache
def _model() -> str:
    return rh.model_path()


def _generate_test_description():
    share = get_package_share_directory("adu_depth")
    cam_a = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(
            os.path.join(share, "launch", "depth.launch.py")
        ),
        launch_arguments={
            "model": _model(),
            "backend": "onnxruntime",
            "namespace": "cam_a",
            "image": "/cam_a/camera/image",
            "camera_info": "/cam_a/camera/camera_info",
        }.items(),
    )
    cam_b = launch_ros.actions.Node(
        package="adu_depth",
        executable="depth_node",
        name="depth_node",
        namespace="cam_b",
        parameters=[
            {
                "model_path": _model(),
                "backend": "onnxruntime",
                "image_transport": "compressed",
                "qos_reliability": "reliable",
            }
        ],
        remappings=[("image", "/cam_b/camera/image"), ("camera_info", "/cam_b/camera/camera_info")],
        output="screen",
    )
    evaluator = launch_ros.actions.Node(
        package="adu_depth",
        executable="eval_node",
        name="eval_node",
        namespace="eval",
        parameters=[{"report_period": 0.5, "qos_reliability": "reliable"}],
        remappings=[("gt/depth/image", "/eval/gt")],
        output="screen",
    )
    description = launch.LaunchDescription([cam_a, cam_b, evaluator, launch_testing.actions.ReadyToTest()])
    return description, {"cam_b": cam_b, "eval_node": evaluator}


if not ROS_MISSING:
    generate_test_description = pytest.mark.launch_test(_generate_test_description)


def _qos(reliability: str, depth: int = 10):
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=policy)


def _rgb(seed: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 3, y * 5, np.full_like(x, 40 + seed)], axis=2)
    return (base % 256).astype(np.uint8)


@unittest.skipIf(bool(ROS_MISSING), ROS_MISSING)
class TestGraph(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("adu_depth_graph_test")
        cls.stamp_sec = 1_700_000_000

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _next_stamp(self):
        type(self).stamp_sec += 1
        return (self.stamp_sec, 250_000_000)

    def _feed(self, ns, subscribe, *, camera_qos="reliable", compressed=False, frame=None):
        """Subscribe to `subscribe` {topic: QoS reliability} under `ns`, publish one camera frame (again and
        again) until each topic delivered a message with the frame's stamp; returns {topic: message}."""
        stamp = self._next_stamp()
        hdr = rh.header(stamp, FRAME_ID)
        if frame is None:
            frame = (
                rh.compressed_msg(_rgb(stamp[0] % 50), "jpeg", hdr)
                if compressed
                else rh.image_msg(_rgb(stamp[0] % 50)[:, :, ::-1], "bgr8", hdr)
            )
        got: dict[str, object] = {}

        def keep(topic):
            def on_msg(msg):
                if (msg.header.stamp.sec, msg.header.stamp.nanosec) == stamp:
                    got.setdefault(topic, msg)

            return on_msg

        subs = []
        for topic, reliability in subscribe.items():
            name = topic.split("#")[0]
            msg_type = CameraInfo if name.endswith("camera_info") else Image
            subs.append(
                self.node.create_subscription(msg_type, f"/{ns}/{name}", keep(topic), _qos(reliability))
            )
        image_topic = f"/{ns}/camera/image" + ("/compressed" if compressed else "")
        pub = self.node.create_publisher(
            CompressedImage if compressed else Image, image_topic, _qos(camera_qos)
        )
        pub_info = self.node.create_publisher(CameraInfo, f"/{ns}/camera/camera_info", _qos(camera_qos))

        def step():
            pub_info.publish(rh.camera_info(hdr, H, W))
            pub.publish(frame)

        try:
            rh.spin_until(self.node, lambda: set(subscribe) <= set(got), step=step)
        finally:
            for sub in subs:
                self.node.destroy_subscription(sub)
            self.node.destroy_publisher(pub)
            self.node.destroy_publisher(pub_info)
        return got, stamp

    # -- outputs -------------------------------------------------------------------------------------

    def test_every_output_with_encoding_size_header_and_values(self):
        got, stamp = self._feed("cam_a", dict.fromkeys(OUTPUT_TOPICS, "reliable"))
        self.assertEqual(set(got), set(OUTPUT_TOPICS), "some outputs never arrived")
        for topic, encoding in OUTPUT_TOPICS.items():
            msg = got[topic]
            self.assertEqual((msg.header.stamp.sec, msg.header.stamp.nanosec), stamp, topic)
            self.assertEqual(msg.header.frame_id, FRAME_ID, topic)
            self.assertEqual((msg.height, msg.width), (H, W), topic)
            if encoding is not None:
                self.assertEqual(msg.encoding, encoding, topic)
        depth = rh.pixels(got["depth/image"])
        sigma = rh.pixels(got["depth/uncertainty"])
        confident = rh.pixels(got["depth/confident"])
        valid = np.isfinite(depth)
        self.assertTrue(valid.any())
        self.assertTrue((depth[valid] > 0).all())  # REP 117: NaN invalid, never 0
        np.testing.assert_array_equal(np.isnan(sigma), ~valid)
        self.assertTrue((sigma[valid] > 0).all())
        keep = np.isfinite(confident)
        np.testing.assert_array_equal(confident[keep], depth[keep])
        np.testing.assert_array_equal(keep, valid & (sigma <= 2.0))  # sigma_threshold of the config file
        self.assertEqual(rh.pixels(got["depth/colorized"]).shape, (H, W, 3))
        info = got["depth/camera_info"]
        self.assertAlmostEqual(info.k[0], 120.0)

    def test_qos_matrix_best_effort_and_reliable_cameras_and_subscribers(self):
        for camera_qos in ("best_effort", "reliable"):
            with self.subTest(camera=camera_qos):
                got, _ = self._feed(
                    "cam_a",
                    {"depth/image": "reliable", "depth/image#be": "best_effort"},
                    camera_qos=camera_qos,
                )
                self.assertEqual(set(got), {"depth/image", "depth/image#be"})

    def test_compressed_input_in_a_second_namespace_at_the_same_time(self):
        got_b, stamp_b = self._feed("cam_b", {"depth/image": "reliable"}, compressed=True)
        got_a, stamp_a = self._feed("cam_a", {"depth/image": "reliable"})
        self.assertEqual((got_b["depth/image"].height, got_b["depth/image"].width), (H, W))
        self.assertNotEqual(stamp_a, stamp_b)  # each namespace answered its own camera

    # -- bad frames and diagnostics -----------------------------------------------------------------------

    def _diagnostics(self, wanted):
        seen = []
        sub = self.node.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)
        try:

            def done():
                return any(wanted(s) for arr in seen for s in arr.status)

            rh.spin_until(self.node, done, timeout_s=30.0)
        finally:
            self.node.destroy_subscription(sub)
        return [s for arr in seen for s in arr.status if wanted(s)]

    def _publish_for(self, seconds, frames, infos=()):
        """Publish `frames` (and camera_infos) to cam_a for a while, with a depth/image subscriber so the
        lazy node holds its camera subscription; returns the stamps (sec) of the depth images returned."""
        got = []
        sub = self.node.create_subscription(
            Image, "/cam_a/depth/image", lambda m: got.append(m.header.stamp.sec), _qos("reliable")
        )
        pub = self.node.create_publisher(Image, "/cam_a/camera/image", _qos("reliable"))
        pub_info = self.node.create_publisher(CameraInfo, "/cam_a/camera/camera_info", _qos("reliable"))

        def step():
            for info in infos:
                pub_info.publish(info)
            for frame in frames:
                pub.publish(frame)

        try:
            rh.spin_until(self.node, lambda: False, timeout_s=seconds, step=step)
        finally:
            self.node.destroy_subscription(sub)
            self.node.destroy_publisher(pub)
            self.node.destroy_publisher(pub_info)
        return got

    def test_bad_frames_are_skipped_and_counted_while_good_frames_keep_flowing(self):
        stamp = self._next_stamp()
        hdr = rh.header(stamp, FRAME_ID)
        wrong_encoding = rh.image_msg(np.ones((H, W), np.uint16), "16UC1", hdr)
        truncated = rh.image_msg(_rgb(1), "rgb8", hdr)
        truncated.data = truncated.data[:-7]
        got = self._publish_for(5.0, [wrong_encoding, truncated])
        self.assertNotIn(stamp[0], got)
        got, _ = self._feed("cam_a", {"depth/image": "reliable"})  # good frames flow again
        self.assertIn("depth/image", got)

        def counted(status):
            values = {v.key: v.value for v in status.values}
            return (
                status.name.endswith("depth estimation")
                and int(values.get("errors: decode", 0)) >= 2
                and int(values.get("frames out", 0)) >= 1
            )

        statuses = self._diagnostics(counted)
        self.assertTrue(statuses, "no /diagnostics status counting the decode errors")
        values = {v.key: v.value for v in statuses[-1].values}
        self.assertIn("adu_depth onnxruntime", statuses[-1].hardware_id)
        self.assertIn("latency p50 (ms)", values)

    def test_camera_info_of_another_size_skips_the_frame_and_is_counted(self):
        stamp = self._next_stamp()
        hdr = rh.header(stamp, FRAME_ID)
        got = self._publish_for(
            5.0, [rh.image_msg(_rgb(3), "rgb8", hdr)], [rh.camera_info(hdr, H // 2, W // 2)]
        )
        self.assertNotIn(stamp[0], got)

        def counted(status):
            values = {v.key: v.value for v in status.values}
            return status.name.endswith("depth estimation") and int(values.get("errors: camera_info", 0)) >= 1

        self.assertTrue(self._diagnostics(counted))

    # -- lazy input ------------------------------------------------------------------------------------

    def test_an_idle_node_holds_no_camera_subscription_and_resubscribes(self):
        camera = "/cam_a/camera/image"

        def count():
            return self.node.count_subscribers(camera)

        self.assertTrue(
            rh.spin_until(self.node, lambda: count() == 0, timeout_s=30.0), "idle node subscribed"
        )
        sub = self.node.create_subscription(Image, "/cam_a/depth/image", lambda m: None, _qos("reliable"))
        try:
            self.assertTrue(rh.spin_until(self.node, lambda: count() == 1, timeout_s=30.0))
        finally:
            self.node.destroy_subscription(sub)
        self.assertTrue(rh.spin_until(self.node, lambda: count() == 0, timeout_s=30.0), "no unsubscribe")

    # -- parameters from the launch file ------------------------------------------------------------------

    def test_parameters_come_from_config_file_through_the_launch_file(self):
        run = subprocess.run(
            ["ros2", "param", "get", "/cam_a/depth_node", "sigma_threshold"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("2.0", run.stdout)
        run = subprocess.run(
            ["ros2", "param", "get", "/cam_b/depth_node", "image_transport"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertIn("compressed", run.stdout)

    # -- eval_node -------------------------------------------------------------------------------------

    def test_eval_node_scores_prediction_against_gt(self):
        reports = []
        sub = self.node.create_subscription(
            String, "/eval/depth/metrics", lambda m: reports.append(json.loads(m.data)), 10
        )
        pub_pred = self.node.create_publisher(Image, "/eval/depth/image", _qos("reliable"))
        pub_gt = self.node.create_publisher(Image, "/eval/gt", _qos("reliable"))
        gt = np.linspace(2.0, 40.0, H * W, dtype=np.float32).reshape(H, W)

        def step():
            hdr = rh.header(self._next_stamp(), FRAME_ID)
            pub_pred.publish(rh.image_msg((gt * np.float32(1.1)).astype(np.float32), "32FC1", hdr))
            pub_gt.publish(rh.image_msg(gt, "32FC1", hdr))

        try:
            rh.spin_until(self.node, lambda: any(r["pairs"] >= 3 for r in reports), step=step, period_s=0.2)
        finally:
            self.node.destroy_subscription(sub)
            self.node.destroy_publisher(pub_pred)
            self.node.destroy_publisher(pub_gt)
        self.assertTrue(reports, "no depth/metrics report")
        self.assertAlmostEqual(reports[-1]["cumulative"]["abs_rel"], 0.1, places=4)


@unittest.skipIf(bool(ROS_MISSING), ROS_MISSING)
class TestProcesses(unittest.TestCase):
    """Signals and start-up errors of nodes run as subprocesses (their own namespace, off the graph above)."""

    def _depth_node(self, *extra):
        return rh.NodeProcess(
            "adu_depth_ros.depth_node", "-r", "__ns:=/sigtest", "-p", f"model_path:={_model()}",
            "-p", "backend:=onnxruntime", *extra,
        )  # fmt: skip

    def _assert_clean_exit(self, node, rc):
        self.assertEqual(rc, 0, node.output)
        self.assertNotIn("Traceback", node.output)
        self.assertNotIn("KeyboardInterrupt", node.output)

    def test_sigint_twice_like_a_terminal_ctrl_c_exits_0_without_traceback(self):
        node = self._depth_node()
        self.assertTrue(node.wait_for("input /sigtest/image"), node.output)
        node.signal(signal.SIGINT, times=2)  # the terminal's process group and ros2 launch
        self._assert_clean_exit(node, node.finish())
        self.assertIn("SIGINT received: shutting down", node.output)

    def test_sigterm_exits_0_without_traceback(self):
        node = self._depth_node()
        self.assertTrue(node.wait_for("input /sigtest/image"), node.output)
        node.signal(signal.SIGTERM)
        self._assert_clean_exit(node, node.finish())

    def test_eval_node_final_report_reaches_rosout_on_sigint(self):
        node = rh.NodeProcess("adu_depth_ros.eval_node", "-r", "__ns:=/sigtest")
        self.assertTrue(node.wait_for("evaluating"), node.output)
        node.signal(signal.SIGINT, times=2)
        self._assert_clean_exit(node, node.finish())
        self.assertIn("final:", node.output)
        self.assertNotIn("Failed to publish log message to rosout", node.output)

    def test_startup_errors_exit_1_with_one_cannot_start_line(self):
        cases = {
            "misspelled": (("-p", "sigma_treshold:=0.5"), "did you mean 'sigma_threshold'?"),
            "bad value": (("-p", "policy:=foo"), "policy"),
            "missing model": (("-p", "model_path:=/nonexistent/x.onnx"), "/nonexistent/x.onnx"),
        }
        for name, (args, text) in cases.items():
            with self.subTest(name):
                node = self._depth_node(*args)
                rc = node.finish(120.0)
                self.assertEqual(rc, 1, node.output)
                lines = [line for line in node.output.splitlines() if "cannot start:" in line]
                self.assertEqual(len(lines), 1, node.output)
                self.assertIn(text, lines[0])
                self.assertNotIn("Traceback", node.output)


if not ROS_MISSING:

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        def test_every_node_exits_0_without_traceback(self, proc_info, proc_output):
            launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
            for process in proc_info.process_names():
                for event in proc_output[process]:
                    self.assertNotIn(b"Traceback", event.text, process)
