"""Helpers of the launch tests (test_depth_node_launch.py, test_depth_node_graph.py); ROS imports stay inside
the functions, so importing this module never needs ROS. Messages are built without cv_bridge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

TIMEOUT_S = 180.0


def model_path() -> str:
    """$ADU_DEPTH_TEST_MODEL, or a randomly initialised nano student exported to a temporary ONNX file
    (the numbers do not matter, the wiring does)."""
    path = os.environ.get("ADU_DEPTH_TEST_MODEL")
    if path:
        return path
    from adu_depth_core.models import ModelConfig, build_student
    from adu_depth_core.runtime import export_onnx

    out = os.path.join(tempfile.mkdtemp(prefix="adu_depth_launch_test_"), "student.onnx")
    model = build_student(ModelConfig(preset="nano", input_size=(64, 96)))
    export_onnx(model, out, size=(64, 96), focal_px=100.0)
    return out


def header(stamp: tuple[int, int], frame_id: str):
    from std_msgs.msg import Header

    h = Header()
    h.stamp.sec, h.stamp.nanosec = stamp
    h.frame_id = frame_id
    return h


def image_msg(array: np.ndarray, encoding: str, hdr):
    """sensor_msgs/Image holding `array` as laid out (bgr8 in BGR order, 16UC1 uint16, ...)."""
    import array as pyarray

    from sensor_msgs.msg import Image

    a = np.ascontiguousarray(array)
    msg = Image()
    msg.header = hdr
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = encoding, 0, int(a.strides[0])
    msg.data = pyarray.array("B", a.tobytes())
    return msg


def compressed_msg(rgb: np.ndarray, fmt: str, hdr):
    """sensor_msgs/CompressedImage as image_transport's compressed publisher writes it."""
    import array as pyarray

    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    msg = CompressedImage()
    msg.header = hdr
    msg.format = f"bgr8; {fmt} compressed bgr8"
    msg.data = pyarray.array("B", buf.tobytes())
    return msg


def camera_info(hdr, height: int, width: int, fx: float = 120.0):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.header = hdr
    info.height, info.width = height, width
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    cx, cy = (width - 1) / 2, (height - 1) / 2
    info.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def pixels(msg) -> np.ndarray:
    """The pixel array of a received 32FC1 / bgr8 Image (row padding removed)."""
    dtype, channels = {"32FC1": (np.float32, 1), "bgr8": (np.uint8, 3)}[msg.encoding]
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    out = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype)
    shape = (msg.height, msg.width, channels) if channels > 1 else (msg.height, msg.width)
    return out.reshape(shape)


def spin_until(node, done, timeout_s: float = TIMEOUT_S, step=None, period_s: float = 0.5) -> bool:
    """Spin `node` until `done()`, calling `step()` (e.g. publish a frame again) every `period_s`."""
    import rclpy

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step is not None:
            step()
        end = time.monotonic() + period_s
        while time.monotonic() < end:
            if done():
                return True
            rclpy.spin_once(node, timeout_sec=0.05)
    return done()


class NodeProcess:
    """A node in a subprocess with its output collected, for signal and start-up tests."""

    def __init__(self, module: str, *ros_args: str) -> None:
        cmd = [sys.executable, "-m", module, "--ros-args", *ros_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            if text in self.output:
                return True
            time.sleep(0.05)
        return text in self.output

    def signal(self, sig: int, times: int = 1, gap_s: float = 0.05) -> None:
        for _ in range(times):
            self.proc.send_signal(sig)
            time.sleep(gap_s)

    def finish(self, timeout_s: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            rc = self.proc.wait()
        self._reader.join(5)
        return rc
