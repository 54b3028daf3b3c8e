"""The ROS-free logic behind the nodes' behaviour under a real graph (issue 16), tested with fakes:
clean exit on SIGINT/SIGTERM (also a second signal during cleanup), misspelled parameters, the lazy
camera subscription, camera_info paired by stamp, and the output messages built without cv_bridge."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.evaluation.visualize import colorize_depth
from adu_depth_core.runtime.outputs import OutputSettings, compose_outputs
from adu_depth_ros.camera_info_sync import EXACT, LATEST, NEAREST, NONE, CameraInfoBuffer
from adu_depth_ros.lazy_input import InputGate
from adu_depth_ros.params import EvalParams, NodeParams, check_parameter_names, params_from_values
from adu_depth_ros.pipeline import (
    OK,
    WARN,
    DepthPipeline,
    HealthMonitor,
    PipelineStats,
    input_image_topic,
)
from adu_depth_ros.shutdown import SignalStop, run_cleanup, spin_until_stopped

STAMP = 1_700_000_000_000_000_000


# --- SIGINT / SIGTERM ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_requests_the_stop_and_never_raises(sig):
    before = signal.getsignal(sig)
    spins = []

    def spin_once(timeout):
        spins.append(timeout)
        if len(spins) == 3:
            os.kill(os.getpid(), sig)  # what the terminal / launch sends; handled before kill returns

    with SignalStop() as stop:
        assert stop.installed and not stop.requested
        spin_until_stopped(spin_once, lambda: True, stop, period_s=0.05)
        assert stop.requested and stop.reason == signal.Signals(sig).name
        assert spins == [0.05, 0.05, 0.05]
    assert signal.getsignal(sig) is before  # handlers restored on exit


def test_double_sigint_during_cleanup_runs_every_step_without_a_traceback():
    """ros2 launch in a terminal: SIGINT from the process group, another from launch during cleanup."""
    done, reports = [], []

    def destroy_node():
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C lands in destroy_node
        done.append("destroy_node")

    with SignalStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        failed = run_cleanup(
            [("on_exit", lambda: done.append("on_exit")), ("destroy_node", destroy_node),
             ("rclpy shutdown", lambda: done.append("rclpy shutdown"))],
            reports.append,
        )  # fmt: skip
    assert stop.received == ["SIGINT", "SIGINT"]
    assert failed == [] and reports == []
    assert done == ["on_exit", "destroy_node", "rclpy shutdown"]  # the final report logs first


def test_cleanup_survives_a_keyboard_interrupt_and_errors_in_a_step():
    """Where no handler could be installed, a KeyboardInterrupt in destroy_node still lets rclpy shut down."""
    done, reports = [], []

    def interrupted():
        raise KeyboardInterrupt

    def broken():
        raise RuntimeError("publisher's context is invalid")

    failed = run_cleanup(
        [("destroy_node", interrupted), ("on_exit", broken), ("rclpy shutdown", lambda: done.append(1))],
        reports.append,
    )
    assert failed == ["destroy_node", "on_exit"] and done == [1]
    assert reports == ["destroy_node failed: KeyboardInterrupt: ",
                       "on_exit failed: RuntimeError: publisher's context is invalid"]  # fmt: skip


def test_spin_ends_when_the_context_ends_and_off_the_main_thread_nothing_is_installed():
    calls = []
    stop = SignalStop()
    spin_until_stopped(calls.append, lambda: len(calls) < 2, stop)
    assert calls == [0.1, 0.1] and not stop.requested

    seen = {}

    def in_thread():
        with SignalStop() as s:
            seen["installed"] = s.installed

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == {"installed": False}
    stop.request("test")
    assert stop.requested and stop.reason == "test"


# --- parameter names -------------------------------------------------------------------------------


def test_a_misspelled_parameter_is_named_with_a_suggestion():
    given = {"model_path", "sigma_treshold", "use_sim_time", "start_type_description_service"}
    with pytest.raises(ValueError) as info:
        check_parameter_names(NodeParams, given, "depth_node")
    message = str(info.value)
    assert message.startswith("unknown parameter(s) for depth_node: 'sigma_treshold' (did you mean "
                              "'sigma_threshold'?); depth_node has model_path, backend,")  # fmt: skip
    assert "use_sim_time" not in message.split(";")[0]
    with pytest.raises(ValueError, match=r"'zzz'; eval_node has min_depth"):  # nothing close: no suggestion
        check_parameter_names(EvalParams, ["zzz"], "eval_node")
    check_parameter_names(NodeParams, ["model_path", "use_sim_time", "image_transport"], "depth_node")


def test_new_parameters_are_validated():
    base = {"model_path": "m.onnx"}
    compressed = params_from_values(NodeParams, {**base, "image_transport": "compressed"})
    assert compressed.image_transport == "compressed"
    with pytest.raises(ValueError, match=r"image_transport'?: expected one of \['raw', 'compressed'\]"):
        params_from_values(NodeParams, {**base, "image_transport": "theora"})
    with pytest.raises(ValueError, match="'camera_info_tolerance': expected a finite number >= 0"):
        params_from_values(NodeParams, {**base, "camera_info_tolerance": -0.01})


def test_input_topic_names_follow_image_transport():
    assert input_image_topic("/front/image_raw", "raw") == "/front/image_raw"
    assert input_image_topic("/front/image_raw", "compressed") == "/front/image_raw/compressed"
    with pytest.raises(ValueError, match="'raw' or 'compressed'"):
        input_image_topic("/front/image_raw", "theora")


# --- lazy camera subscription ------------------------------------------------------------------------


def test_input_is_subscribed_only_while_an_output_has_subscribers():
    events = []
    gate = InputGate(
        ["depth", "camera_info", "uncertainty"],
        lambda: events.append("subscribe"),
        lambda: events.append("unsubscribe"),
        lambda subscribed, counts: events.append(("changed", subscribed, counts["depth"])),
    )
    assert gate.update({"depth": 0, "camera_info": 0, "uncertainty": 0}) is False
    assert events == []  # idle node: no camera subscription at all
    assert gate.set_count("depth", 1) is True  # matched event: RViz subscribes
    assert gate.set_count("uncertainty", 2) is True
    assert gate.set_count("depth", 0) is True  # another output still listened to
    assert events == ["subscribe", ("changed", True, 1)]
    assert gate.set_count("uncertainty", 0) is False  # the last subscriber left
    assert gate.update({"depth": 3}) is True  # a later poll finds a new subscriber: resubscribed
    assert events[2:] == ["unsubscribe", ("changed", False, 0), "subscribe", ("changed", True, 3)]
    assert (gate.opened, gate.closed, gate.is_open) == (2, 1, True)
    with pytest.raises(ValueError, match="unknown output"):
        gate.set_count("depth/image", 1)


def test_a_failing_subscribe_leaves_the_gate_closed_to_retry():
    calls = []

    def subscribe():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("context invalid")

    gate = InputGate(["depth"], subscribe, lambda: None)
    with pytest.raises(RuntimeError):
        gate.set_count("depth", 1)
    assert not gate.is_open
    assert gate.update({"depth": 1}) is True and len(calls) == 2


def test_idle_health_is_ok_without_input():
    snap = PipelineStats(clock=lambda: 10.0).snapshot()
    assert HealthMonitor().evaluate(snap, True, subscribed=False) == (
        OK, "idle: nobody subscribes to the depth outputs (camera not subscribed)")  # fmt: skip
    assert HealthMonitor().evaluate(snap, True, subscribed=True)[0] == WARN  # subscribed, nothing arrives


# --- camera_info by stamp ---------------------------------------------------------------------------


def info_at(stamp, fx=100.0, frame_id="cam"):
    K = np.array([[fx, 0, 3.5], [0, fx, 2.5], [0, 0, 1]])
    return rm.camera_info_msg(K, 6, 8, stamp, frame_id)


def test_pairing_exact_nearest_latest_and_none():
    buf = CameraInfoBuffer(tolerance_ns=2_000_000, capacity=3)
    assert buf.pair(STAMP) == (None, NONE, 0)
    for i in range(5):
        buf.add(info_at(STAMP + i * 100_000_000, fx=100.0 + i))
    # only the newest 3 are kept: stamps +200, +300, +400 ms
    pairing = buf.pair(STAMP + 300_000_000)
    assert pairing.kind == EXACT and pairing.info.k[0] == 103.0
    pairing = buf.pair(STAMP + 301_500_000)
    assert (pairing.kind, pairing.offset_ns, pairing.info.k[0]) == (NEAREST, 1_500_000, 103.0)
    pairing = buf.pair(STAMP + 350_000_000)  # 50 ms from both neighbours: not this frame's
    assert (pairing.kind, pairing.offset_ns, pairing.info.k[0]) == (LATEST, 50_000_000, 104.0)
    pairing = buf.pair(STAMP)  # evicted
    assert pairing.kind == LATEST and pairing.info.k[0] == 104.0
    assert buf.latest.k[0] == 104.0
    with pytest.raises(ValueError, match=">= 0"):
        CameraInfoBuffer(tolerance_ns=-1)


class KRecorder:
    def __init__(self):
        self.Ks = []

    def estimate(self, rgb, K=None):
        self.Ks.append(None if K is None else float(K[0, 0]))
        return np.ones(rgb.shape[:2], np.float32), np.ones(rgb.shape[:2], np.float32)


def frame_msg(stamp):
    return rm.deserialize(rm.serialize(rm.image_to_msg(np.zeros((6, 8, 3), np.uint8), "rgb8", stamp, "cam")),
                          rm.IMAGE)  # fmt: skip


def test_pipeline_uses_each_frames_own_camera_info_even_when_it_arrives_after_the_image():
    """A zooming camera: each frame must get its own K, not the newest one."""
    est = KRecorder()
    pipeline = DepthPipeline(est, NodeParams(model_path="m.onnx"))
    pipeline.set_camera_info(info_at(STAMP + 1, fx=200.0))
    pipeline.submit(frame_msg(STAMP))  # its camera_info is not here yet
    pipeline.set_camera_info(info_at(STAMP, fx=150.0))  # ... and arrives before the frame is processed
    pipeline.set_camera_info(info_at(STAMP + 2, fx=300.0))  # newer ones must not be used instead
    result = pipeline.process(pipeline.slot.take(0))
    assert est.Ks == [150.0] and result.warnings == []
    assert rm.stamp_to_ns(result.camera_info.header.stamp) == STAMP and result.camera_info.k[0] == 150.0


def test_without_its_own_camera_info_a_frame_gets_the_latest_with_a_warning():
    est = KRecorder()
    pipeline = DepthPipeline(est, NodeParams(model_path="m.onnx", camera_info_tolerance=0.001))
    pipeline.set_camera_info(info_at(STAMP - 10_000_000, fx=120.0))
    pipeline.set_camera_info(info_at(STAMP - 5_000_000, fx=130.0))
    pipeline.submit(frame_msg(STAMP))
    result = pipeline.process(pipeline.slot.take(0))
    assert est.Ks == [130.0]
    assert [k for k, _ in result.warnings] == ["camera_info_stamp"]
    text = result.warnings[0][1]
    assert "nearest 5.000 ms away" in text and "camera_info_tolerance 0.001 s" in text
    assert rm.stamp_to_ns(result.camera_info.header.stamp) == STAMP  # republished with the image's header


# --- output messages without cv_bridge ---------------------------------------------------------------


def test_composed_messages_are_exact_for_depth_and_bgr8():
    """What the node copies into rclpy Images (and bag-eval writes): REP 118 float32 bytes, and the BGR
    bytes of the RGB colour map in a bgr8 image."""
    depth = np.array([[1.5, np.nan], [2.0, 80.0]], np.float32)
    sigma = np.array([[0.5, 0.1], [3.0, np.inf]], np.float32)
    header = rm.make_header(STAMP, "c")
    msgs = compose_outputs(depth, sigma, header, None, OutputSettings(max_depth=80.0, sigma_threshold=1.0))
    assert list(msgs) == ["depth", "uncertainty", "confident", "depth_colorized", "uncertainty_colorized"]
    out = msgs["depth"]
    assert (out.height, out.width, out.step, out.is_bigendian, out.encoding) == (2, 2, 8, 0, "32FC1")
    assert bytes(out.data) == depth.astype("<f4").tobytes()
    assert rm.stamp_to_ns(out.header.stamp) == STAMP and out.header.frame_id == "c"
    np.testing.assert_array_equal(rm.msg_to_image(msgs["uncertainty"]), [[0.5, np.nan], [3.0, np.nan]])
    np.testing.assert_array_equal(rm.msg_to_image(msgs["confident"]), [[1.5, np.nan], [np.nan, np.nan]])
    colour = msgs["depth_colorized"]
    assert (colour.step, colour.encoding) == (6, "bgr8")
    assert bytes(colour.data) == colorize_depth(depth, max_depth=80.0)[:, :, ::-1].tobytes()

    info = rm.camera_info_msg(np.eye(3), 2, 2, 0, "c")
    teacher = compose_outputs(depth, None, header, info, OutputSettings())
    assert list(teacher) == ["depth", "camera_info", "depth_colorized"]  # no σ: no σ outputs
    assert teacher["camera_info"].header is header
    with pytest.raises(ValueError, match="maps of one size"):
        compose_outputs(depth, sigma[:1], header, None, OutputSettings())
    with pytest.raises(ValueError, match=r"unknown output\(s\) \['depth/image'\]"):
        OutputSettings(outputs=("depth/image",))
    with pytest.raises(ValueError, match="sigma threshold must be a finite number > 0"):
        OutputSettings(sigma_threshold=0.0)
