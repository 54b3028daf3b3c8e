"""depth_node's frame pipeline without ROS: real sensor_msgs through CDR, a stand-in estimator.

The stand-in estimator's depth is a known function of the pixels it receives (and of the K it is
given), so the tests check decoding, byte order, header propagation, camera_info handling and the
outputs numerically. Threads are synchronised with events; nothing asserts a wall-clock time.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data.camera_info import scale_camera_info
from adu_depth_core.evaluation.visualize import colorize_depth, colorize_uncertainty
from adu_depth_core.runtime.outputs import IMAGE_OUTPUTS, OUTPUTS, confident_depth
from adu_depth_ros.params import NodeParams, params_from_values
from adu_depth_ros.pipeline import (
    ERROR,
    OK,
    WARN,
    DepthPipeline,
    FrameError,
    HealthMonitor,
    InferenceWorker,
    LatestFrameSlot,
    LogThrottle,
    PipelineStats,
    RateLimiter,
    camera_info_geometry,
)

H, W = 6, 8
STAMP = 1_700_000_123_456_789_012
T = rm.TYPESTORE.types


def cdr(msg):
    """Serialise and deserialise, as a subscriber (or a bag) sees the message."""
    return rm.deserialize(rm.serialize(msg), msg.__msgtype__)


def expected_depth(rgb: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
    """The stand-in's depth: channel-order sensitive, and scaled by fx / 100 when K is given."""
    rgb = rgb.astype(np.float32)
    depth = 1.0 + rgb[..., 0] / 10 + rgb[..., 1] / 20 + rgb[..., 2] / 40
    if K is not None:
        depth = depth * np.float32(K[0, 0] / 100.0)
    return depth.astype(np.float32)


class StandIn:
    """A tiny estimator: depth = expected_depth(rgb, K), sigma = 0.1 * depth; records its inputs."""

    def __init__(self):
        self.calls: list[tuple[np.ndarray, np.ndarray | None]] = []

    def estimate(self, rgb, K=None):
        self.calls.append((rgb.copy(), None if K is None else np.array(K)))
        depth = expected_depth(rgb, K)
        return depth, np.float32(0.1) * depth


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def params(**kw) -> NodeParams:
    return NodeParams(model_path="model.onnx", **kw)


@pytest.fixture
def rgb():
    return np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)


def camera_info(K, height=H, width=W, stamp=STAMP, frame_id="cam", **kw):
    return cdr(rm.camera_info_msg(np.asarray(K, float), height, width, stamp, frame_id, **kw))


K_CAM = np.array([[200.0, 0, 3.5], [0, 210.0, 2.5], [0, 0, 1]])


def pixels(result, name: str) -> np.ndarray:
    """The pixels of output `name` as a subscriber decodes them (32FC1 metres; bgr8 back to RGB)."""
    return rm.msg_to_image(cdr(result.messages[name]))


def run_one(pipeline: DepthPipeline, msg, outputs=None):
    pipeline.submit(msg)
    frame = pipeline.slot.take(timeout=0)
    assert frame is not None
    result = pipeline.process(frame, outputs)
    pipeline.published(result)  # what the worker does once the node has published it
    return result


# --- encodings in, depth out ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "yuv422_yuy2"])
def test_every_colour_encoding_gives_the_depth_of_its_pixels(rgb, encoding):
    lossy = encoding in ("mono8", "yuv422", "yuv422_yuy2")
    image = np.repeat(rgb[..., :1], 3, axis=2) if lossy else rgb  # gray survives mono8/yuv422 exactly (±1)
    msg = cdr(rm.image_to_msg(image, encoding, STAMP, "camera_optical"))
    estimator = StandIn()
    pipeline = DepthPipeline(estimator, params(use_camera_info=False))

    result = run_one(pipeline, msg)

    assert result.messages["depth"].encoding == "32FC1"
    depth = pixels(result, "depth")
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_allclose(depth, expected_depth(image), atol=0.5 if lossy else 1e-5)
    if not lossy:  # byte order: a swapped bgr8 would give a different depth
        np.testing.assert_array_equal(estimator.calls[0][0], rgb)
    assert result.messages["uncertainty"].encoding == "32FC1"
    sigma = pixels(result, "uncertainty")
    np.testing.assert_allclose(sigma, 0.1 * depth, rtol=1e-6)
    assert (result.stamp_ns, result.frame_id) == (STAMP, "camera_optical")
    assert pipeline.stats.snapshot().frames_out == 1


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_frames_give_the_depth_of_their_pixels(fmt):
    y, x = np.mgrid[0:16, 0:24]
    image = np.stack([x * 10, y * 15, np.full_like(x, 90)], axis=2).astype(np.uint8)  # smooth: JPEG-friendly
    estimator = StandIn()
    pipeline = DepthPipeline(estimator, params(use_camera_info=False))
    result = run_one(pipeline, cdr(rm.compressed_image_msg(image, fmt, STAMP, "cam")))
    seen = estimator.calls[0][0]
    if fmt == "png":
        np.testing.assert_array_equal(seen, image)
    else:
        assert np.abs(seen.astype(int) - image.astype(int)).mean() < 2.0
    np.testing.assert_allclose(pixels(result, "depth"), expected_depth(seen), rtol=1e-6)
    assert (result.stamp_ns, result.frame_id) == (STAMP, "cam")


def test_outputs_survive_cdr_with_the_input_header(rgb):
    msg = cdr(rm.image_to_msg(rgb, "bgr8", STAMP, "left_optical"))
    pipeline = DepthPipeline(StandIn(), params(use_camera_info=False))
    result = run_one(pipeline, msg)
    assert result.header is msg.header  # republished unchanged
    assert set(result.messages) == set(IMAGE_OUTPUTS)
    for name, msg in result.messages.items():
        out = cdr(msg)
        assert rm.stamp_to_ns(out.header.stamp) == STAMP and out.header.frame_id == "left_optical"
        assert out.encoding == OUTPUTS[name].encoding and (out.height, out.width) == (H, W)
        assert out.step == W * (4 if out.encoding == "32FC1" else 3) and out.is_bigendian == 0
        if out.encoding == "bgr8":  # the wire holds BGR bytes of the RGB colour map
            expected = (
                colorize_depth(pixels(result, "depth"))
                if name == "depth_colorized"
                else colorize_uncertainty(pixels(result, "uncertainty"))
            )
            np.testing.assert_array_equal(np.asarray(out.data).reshape(H, W, 3), expected[:, :, ::-1])
            np.testing.assert_array_equal(rm.msg_to_image(out), expected)


def test_colour_scale_follows_max_depth(rgb):
    msg = cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam"))
    result = run_one(DepthPipeline(StandIn(), params(use_camera_info=False, max_depth=80.0)), msg)
    np.testing.assert_array_equal(
        pixels(result, "depth_colorized"), colorize_depth(expected_depth(rgb), max_depth=80.0)
    )


def test_only_requested_outputs_are_built(rgb):
    pipeline = DepthPipeline(StandIn(), params(use_camera_info=False))
    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")), outputs={"depth"})
    assert set(result.messages) == {"depth"}
    assert pipeline.active_outputs({"depth": 0, "depth_colorized": 2, "camera_info": 1}) == {
        "depth_colorized"
    }
    assert pipeline.active_outputs({}) == frozenset()
    disabled = DepthPipeline(StandIn(), params(publish_colorized=False, publish_confident=False))
    assert disabled.enabled == ("depth", "camera_info", "uncertainty")
    assert disabled.active_outputs({"depth_colorized": 5}) == frozenset()
    with pytest.raises(ValueError, match="unknown output"):
        pipeline.process(pipeline.make_frame(rgb, rm.make_header(1, "c")), {"depth/image"})


# --- invalid depth and the confident mask ---------------------------------------------------------


class PatternEstimator:
    def __init__(self, depth, sigma):
        self.depth, self.sigma = depth, sigma

    def estimate(self, rgb, K=None):
        return self.depth.copy(), self.sigma.copy()


def test_confident_is_nan_exactly_where_sigma_exceeds_the_threshold(rgb):
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 50, (H, W)).astype(np.float32)
    sigma = rng.uniform(0, 4, (H, W)).astype(np.float32)
    sigma[0, 0] = 1.5  # exactly at the threshold: kept
    sigma[0, 1] = np.nan
    depth[1, 1] = np.nan  # not seen by the network
    depth[1, 2] = 0.0  # invalid
    depth[1, 3] = -np.inf
    pipeline = DepthPipeline(
        PatternEstimator(depth, sigma), params(use_camera_info=False, sigma_threshold=1.5)
    )
    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))

    out_depth = pixels(result, "depth")
    invalid = np.zeros((H, W), bool)
    invalid[1, 1:4] = True
    np.testing.assert_array_equal(np.isnan(out_depth), invalid)  # REP 117: NaN, never 0
    np.testing.assert_array_equal(out_depth[~invalid], depth[~invalid])
    out_sigma = pixels(result, "uncertainty")
    np.testing.assert_array_equal(np.isnan(out_sigma), invalid | np.isnan(sigma))

    confident = pixels(result, "confident")
    expected_nan = invalid | np.isnan(sigma) | (sigma > 1.5)
    np.testing.assert_array_equal(np.isnan(confident), expected_nan)
    np.testing.assert_array_equal(confident[~expected_nan], depth[~expected_nan])
    assert not np.isnan(confident[0, 0])
    np.testing.assert_array_equal(np.isnan(confident_depth(out_depth, out_sigma, 1.5)), expected_nan)


# --- per-frame errors: counted, reported, and the pipeline goes on ---------------------------------


def bad_messages(rgb):
    good = rm.image_to_msg(rgb, "rgb8", STAMP, "cam")
    bayer = T[rm.IMAGE](
        header=rm.make_header(STAMP, "cam"), height=H, width=W, encoding="bayer_rggb8", is_bigendian=0,
        step=W, data=np.zeros(H * W, np.uint8),
    )  # fmt: skip
    empty = T[rm.IMAGE](
        header=rm.make_header(STAMP, "cam"), height=0, width=0, encoding="rgb8", is_bigendian=0, step=0,
        data=np.zeros(0, np.uint8),
    )  # fmt: skip
    truncated = T[rm.IMAGE](
        header=good.header, height=H, width=W, encoding="rgb8", is_bigendian=0, step=3 * W,
        data=good.data[:-5].copy(),
    )  # fmt: skip
    depth_in = rm.image_to_msg(np.ones((H, W), np.float32), "32FC1", STAMP, "cam")
    jpeg = rm.compressed_image_msg(rgb, "jpeg", STAMP, "cam")
    jpeg.data = jpeg.data[: len(jpeg.data) // 2].copy()
    return {
        "unsupported encoding": (bayer, "expected a camera image .* got encoding 'bayer_rggb8'"),
        "zero size": (empty, "zero size"),
        "truncated data": (truncated, "data has"),
        "depth image as input": (depth_in, "expected a camera image .* got encoding '32FC1'"),
        "corrupt compressed": (jpeg, "'rgb8; jpeg compressed bgr8' compressed image .* truncated"),
    }


@pytest.mark.parametrize(
    "case",
    ["unsupported encoding", "zero size", "truncated data", "depth image as input", "corrupt compressed"],
)
def test_bad_frames_are_per_frame_errors_and_the_pipeline_keeps_going(rgb, case):
    bad, message = bad_messages(rgb)[case]
    pipeline = DepthPipeline(StandIn(), params(use_camera_info=False))
    pipeline.submit(cdr(bad))
    with pytest.raises(FrameError, match=message) as info:
        pipeline.process(pipeline.slot.take(0))
    assert info.value.kind == "decode"
    assert "'cam'" in str(info.value)  # the message says which frame

    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP + 1, "cam")))
    np.testing.assert_allclose(pixels(result, "depth"), expected_depth(rgb), rtol=1e-6)
    snap = pipeline.stats.snapshot()
    assert (snap.frames_in, snap.frames_out, snap.errors, snap.errors_by_kind) == (2, 1, 1, {"decode": 1})
    assert snap.last_error.startswith("[decode]")


def test_inference_failure_and_bad_estimator_output_are_frame_errors(rgb):
    class Flaky:
        def __init__(self):
            self.n = 0

        def estimate(self, rgb, K=None):
            self.n += 1
            if self.n == 1:
                raise RuntimeError("CUDA out of memory")
            if self.n == 2:
                return np.zeros((H, W), np.float32), np.zeros((H, W + 1), np.float32)
            return expected_depth(rgb), np.zeros((H, W), np.float32)

    pipeline = DepthPipeline(Flaky(), params(use_camera_info=False))
    msg = cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam"))
    with pytest.raises(FrameError, match="RuntimeError: CUDA out of memory"):
        run_one(pipeline, msg)
    with pytest.raises(FrameError, match="two equal non-empty HxW maps"):
        run_one(pipeline, msg)
    assert pixels(run_one(pipeline, msg), "depth").shape == (H, W)
    assert pipeline.stats.snapshot().errors_by_kind == {"inference": 2}


def test_an_array_input_needs_a_header(rgb):
    pipeline = DepthPipeline(StandIn(), params(use_camera_info=False))
    with pytest.raises(ValueError, match="needs a header"):
        pipeline.submit(rgb)
    result = run_one_array(pipeline, rgb)
    assert (result.stamp_ns, result.frame_id) == (42, "array_cam")


def run_one_array(pipeline, rgb):
    pipeline.submit(rgb, rm.make_header(42, "array_cam"))
    return pipeline.process(pipeline.slot.take(0))


# --- camera_info: focal-aware K, republishing, size checks -----------------------------------------


def test_camera_info_K_reaches_the_estimator_and_is_republished_with_the_image_stamp(rgb):
    estimator = StandIn()
    pipeline = DepthPipeline(estimator, params(camera_info_tolerance=2e-6))
    info = camera_info(K_CAM, stamp=STAMP - 1000)  # 1 µs off the image: within the tolerance
    pipeline.set_camera_info(info)
    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))

    np.testing.assert_allclose(estimator.calls[0][1], K_CAM)
    np.testing.assert_allclose(pixels(result, "depth"), expected_depth(rgb, K_CAM), rtol=1e-6)
    assert result.warnings == []
    out = cdr(result.camera_info)  # what depth/camera_info carries
    assert rm.stamp_to_ns(out.header.stamp) == STAMP and out.header.frame_id == "cam"
    assert (out.height, out.width) == (H, W)
    np.testing.assert_array_equal(out.k, info.k)
    np.testing.assert_array_equal(out.p, info.p)
    assert rm.stamp_to_ns(info.header.stamp) == STAMP - 1000  # the input message is not modified


def test_projection_matrix_is_preferred_over_K():
    P = np.array([[150.0, 0, 3.0, -15.0], [0, 150.0, 2.0, 0], [0, 0, 1, 0]])
    K, size = camera_info_geometry(camera_info(K_CAM, P=P))
    np.testing.assert_allclose(K, P[:, :3])
    assert size == (H, W)
    K, _ = camera_info_geometry(camera_info(K_CAM, P=np.zeros((3, 4))))
    np.testing.assert_allclose(K, K_CAM)


def test_binned_and_roi_camera_info_describe_the_smaller_image():
    K_full = np.array([[700.0, 0, 639.5], [0, 700.0, 359.5], [0, 0, 1]])
    info = rm.camera_info_msg(K_full, 720, 1280, STAMP, "cam")
    info.binning_x = info.binning_y = 2
    K, size = camera_info_geometry(cdr(info))
    assert size == (360, 640)
    np.testing.assert_allclose(K, [[350.0, 0, 319.75], [0, 350.0, 179.75], [0, 0, 1]])  # image_geometry

    roi = rm.camera_info_msg(K_full, 720, 1280, STAMP, "cam")
    roi.roi.x_offset, roi.roi.y_offset, roi.roi.width, roi.roi.height = 100, 50, 640, 480
    K, size = camera_info_geometry(cdr(roi))
    assert size == (480, 640)
    np.testing.assert_allclose(K, [[700.0, 0, 539.5], [0, 700.0, 309.5], [0, 0, 1]])


def test_camera_info_of_another_size_is_a_per_frame_error(rgb):
    pipeline = DepthPipeline(StandIn(), params())
    pipeline.set_camera_info(camera_info(K_CAM, height=375, width=1242))
    match = r"camera_info describes a 1242x375 \(WxH\) image but the image is 8x6"
    with pytest.raises(FrameError, match=match) as e:
        run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))
    assert e.value.kind == "camera_info"
    pipeline.set_camera_info(camera_info(K_CAM))  # the right one arrives: frames flow again
    assert run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam"))).camera_info is not None
    assert pipeline.stats.snapshot().errors_by_kind == {"camera_info": 1}


def test_uncalibrated_camera_info_is_a_per_frame_error(rgb):
    pipeline = DepthPipeline(StandIn(), params())
    info = camera_info(K_CAM)
    info.k = np.zeros(9)
    pipeline.set_camera_info(info)
    with pytest.raises(FrameError, match="not calibrated") as e:
        run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))
    assert e.value.kind == "camera_info"


def test_without_camera_info_the_frame_is_processed_with_a_warning(rgb):
    estimator = StandIn()
    pipeline = DepthPipeline(estimator, params(use_camera_info=True))
    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))
    assert estimator.calls[0][1] is None and result.K is None and result.camera_info is None
    assert [key for key, _ in result.warnings] == ["no_camera_info"]
    off = DepthPipeline(StandIn(), params(use_camera_info=False))
    off.set_camera_info(camera_info(K_CAM))  # ignored when use_camera_info is false
    result = run_one(off, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))
    assert result.warnings == [] and result.K is None and result.camera_info is None


def test_camera_info_of_another_frame_warns(rgb):
    pipeline = DepthPipeline(StandIn(), params())
    pipeline.set_camera_info(camera_info(K_CAM, frame_id="other_cam"))
    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))
    assert [key for key, _ in result.warnings] == ["camera_info_frame"]


def test_scale_camera_info_numbers():
    K = np.array([[700.0, 0, 639.5], [0, 710.0, 359.5], [0, 0, 1]])
    P = np.array([[700.0, 0, 639.5, -378.0], [0, 710.0, 359.5, 0], [0, 0, 1, 0]])
    info = camera_info(K, 720, 1280, P=P, D=[0.1, -0.2, 0, 0, 0])
    out = cdr(scale_camera_info(info, (360, 640)))
    assert (out.height, out.width) == (360, 640)
    np.testing.assert_allclose(out.k.reshape(3, 3), [[350.0, 0, 319.5], [0, 355.0, 179.5], [0, 0, 1]])
    np.testing.assert_allclose(
        out.p.reshape(3, 4), [[350.0, 0, 319.5, -189.0], [0, 355.0, 179.5, 0], [0, 0, 1, 0]]
    )
    np.testing.assert_array_equal(out.d, info.d)
    np.testing.assert_array_equal(out.r, info.r)
    np.testing.assert_array_equal(info.k.reshape(3, 3), K)  # input untouched
    same = cdr(scale_camera_info(info, (720, 1280)))
    np.testing.assert_allclose(same.k, info.k)
    np.testing.assert_allclose(same.p, info.p)
    # binned input: the result describes the resized image directly
    binned = rm.camera_info_msg(K, 720, 1280, STAMP, "cam")
    binned.binning_x = binned.binning_y = 2
    out = cdr(scale_camera_info(cdr(binned), (720, 1280)))  # the 640x360 binned image upsampled x2
    assert (out.binning_x, out.binning_y, out.height, out.width) == (0, 0, 720, 1280)
    np.testing.assert_allclose(out.k.reshape(3, 3), [[700.0, 0, 640.0], [0, 710.0, 360.0], [0, 0, 1]])
    with pytest.raises(ValueError, match="positive"):
        scale_camera_info(info, (0, 10))


def test_depth_of_another_size_gets_a_scaled_camera_info(rgb):
    class Half:
        def estimate(self, rgb, K=None):
            return np.ones((H // 2, W // 2), np.float32), np.ones((H // 2, W // 2), np.float32)

    pipeline = DepthPipeline(Half(), params())
    pipeline.set_camera_info(camera_info(K_CAM))
    result = run_one(pipeline, cdr(rm.image_to_msg(rgb, "rgb8", STAMP, "cam")))
    out = cdr(result.camera_info)
    assert (out.height, out.width) == (H // 2, W // 2)
    assert rm.stamp_to_ns(out.header.stamp) == STAMP
    np.testing.assert_allclose(out.k[0], K_CAM[0, 0] / 2)


# --- latest-frame-only processing ----------------------------------------------------------------


def test_latest_frame_slot_semantics():
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    assert slot.take(timeout=0) is None
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2 and slot.pending
    assert slot.take(timeout=0) == 3 and not slot.pending
    assert slot.take(timeout=0.01) is None
    got = []
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=30)))
    waiter.start()
    slot.put(4)
    waiter.join(30)
    assert got == [4]
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=30)))
    waiter.start()
    slot.close()  # wakes the waiting taker
    waiter.join(30)
    assert got == [4, None] and slot.closed


def test_concurrent_puts_and_takes_lose_nothing_but_drops():
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    taken: list[int] = []
    done = threading.Event()

    def consumer():
        while not done.is_set() or slot.pending:
            item = slot.take(timeout=0.01)
            if item is not None:
                taken.append(item)

    threads = [threading.Thread(target=consumer)]
    producers = [
        threading.Thread(target=lambda k=k: [slot.put(k * 1000 + i) for i in range(500)]) for k in range(3)
    ]
    for t in threads + producers:
        t.start()
    for t in producers:
        t.join(60)
    done.set()
    threads[0].join(60)
    assert len(taken) + slot.dropped == 1500
    assert len(set(taken)) == len(taken)


class BlockingEstimator:
    """Blocks in its first call until released, to make a burst arrive during inference."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen: list[float] = []

    def estimate(self, rgb, K=None):
        self.seen.append(float(rgb[0, 0, 0]))
        self.started.set()
        assert self.release.wait(60)
        return np.ones(rgb.shape[:2], np.float32), np.ones(rgb.shape[:2], np.float32)


def test_a_burst_during_inference_keeps_only_the_newest_frame_and_counts_drops():
    estimator = BlockingEstimator()
    pipeline = DepthPipeline(estimator, params(use_camera_info=False))
    published, errors = [], []
    finished = threading.Event()

    def on_result(result):
        published.append(result.stamp_ns)
        if len(published) == 2:
            finished.set()

    worker = InferenceWorker(pipeline, lambda: {"depth"}, on_result, errors.append, poll_s=0.01)
    worker.start()
    try:
        frames = [
            cdr(rm.image_to_msg(np.full((H, W, 3), i, np.uint8), "rgb8", 1000 + i, "cam")) for i in range(10)
        ]
        assert pipeline.submit(frames[0]) is False
        assert estimator.started.wait(60)  # frame 0 is in inference now
        replaced = [pipeline.submit(f) for f in frames[1:]]
        assert replaced == [False] + [True] * 8  # frames 1..8 were replaced before inference was free
        estimator.release.set()
        assert finished.wait(60)
    finally:
        worker.stop()
    assert published == [1000, 1009]  # the newest frame, never the backlog
    assert estimator.seen == [0.0, 9.0]
    snap = pipeline.stats.snapshot()
    assert (snap.frames_in, snap.frames_out, snap.dropped, snap.errors) == (10, 2, 8, 0)
    assert errors == [] and not worker.alive


def test_worker_survives_errors_skips_when_nobody_listens_and_reports_publish_failures(rgb):
    pipeline = DepthPipeline(StandIn(), params(use_camera_info=False))
    listeners = {"on": False}
    results, errors = [], []
    progress = threading.Semaphore(0)

    def on_result(result):
        if result.stamp_ns == 3:
            raise OSError("publisher destroyed")
        results.append(result.stamp_ns)
        progress.release()

    def on_error(err):
        errors.append(err)
        progress.release()
        if err.kind == "decode":
            raise RuntimeError("a failing logger must not stop the worker")

    worker = InferenceWorker(
        pipeline, lambda: {"depth"} if listeners["on"] else set(), on_result, on_error, poll_s=0.01
    )
    worker.start()
    try:
        pipeline.submit(cdr(rm.image_to_msg(rgb, "rgb8", 1, "cam")))  # nobody listens: skipped
        for _ in range(200):
            if pipeline.stats.snapshot().idle_skipped == 1:
                break
            threading.Event().wait(0.01)
        listeners["on"] = True
        bad = rm.image_to_msg(rgb, "rgb8", 2, "cam")
        bad.encoding = "bayer_rggb8"
        for msg in (bad, rm.image_to_msg(rgb, "rgb8", 3, "cam"), rm.image_to_msg(rgb, "rgb8", 4, "cam")):
            pipeline.submit(cdr(msg))
            assert progress.acquire(timeout=60)
    finally:
        worker.stop()
    assert results == [4]
    assert [e.kind for e in errors] == ["decode", "publish"]
    assert "publisher destroyed" in str(errors[1])
    snap = pipeline.stats.snapshot()
    assert (snap.idle_skipped, snap.errors_by_kind) == (1, {"decode": 1, "publish": 1})
    assert (snap.frames_in, snap.frames_out) == (4, 1)  # a frame whose publishing failed is not "out"
    assert len(snap.latency_ms) == 4  # one latency sample: the published frame's


def test_rate_limiter_spaces_inference_starts():
    clock = FakeClock(10.0)
    limiter = RateLimiter(4.0, clock)
    assert limiter.delay() == 0.0
    limiter.mark()
    clock.t = 10.1
    assert limiter.delay() == pytest.approx(0.15)
    clock.t = 10.3
    assert limiter.delay() == 0.0
    unlimited = RateLimiter(0.0, clock)
    unlimited.mark()
    assert unlimited.delay() == 0.0
    with pytest.raises(ValueError, match=">= 0 Hz"):
        RateLimiter(-1.0)


# --- statistics, throttling, health ---------------------------------------------------------------


def test_stats_rates_latency_percentiles_and_key_values():
    clock = FakeClock(0.0)
    stats = PipelineStats(clock=clock, window_s=5.0)
    for i in range(21):  # 20 Hz in
        clock.t = i * 0.05
        stats.on_input()
        if i % 2 == 0:  # 10 Hz out, latency 10..20 ms
            stats.on_output(0.010 + i * 0.0005)
    stats.on_drop(10)
    stats.on_error(FrameError("decode", "bad"))
    snap = stats.snapshot()
    assert snap.input_rate_hz == pytest.approx(20.0)
    assert snap.output_rate_hz == pytest.approx(10.0)
    # Fed latencies on a fake clock: this checks the statistics arithmetic, not how fast anything runs.
    latencies_ms = [10.0 + i * 0.5 for i in range(0, 21, 2)]
    assert snap.latency_ms["p50"] == pytest.approx(np.percentile(latencies_ms, 50))
    assert snap.latency_ms["p90"] == pytest.approx(np.percentile(latencies_ms, 90))
    assert snap.latency_ms["max"] == pytest.approx(20.0)
    kv = dict(snap.as_key_values())
    assert kv["input rate (Hz)"] == "20.00" and kv["dropped (newer frame arrived)"] == "10"
    assert kv["errors: decode"] == "1" and kv["last error"] == "[decode] bad"
    clock.t = 100.0  # the stream stopped: rates fall to 0
    later = stats.snapshot()
    assert later.input_rate_hz == 0.0 and later.output_rate_hz == 0.0 and later.frames_in == 21


def test_log_throttle_counts_suppressed_messages_per_key():
    clock = FakeClock(0.0)
    throttle = LogThrottle(5.0, clock)
    assert throttle.check("decode") == 0
    assert throttle.check("decode") is None
    assert throttle.check("camera_info") == 0  # other keys are independent
    clock.t = 4.9
    assert throttle.check("decode") is None
    clock.t = 5.0
    assert throttle.check("decode") == 2


def test_health_levels():
    clock = FakeClock(0.0)
    stats = PipelineStats(clock=clock)
    health = HealthMonitor()
    level, message = health.evaluate(stats.snapshot())
    assert level == WARN and "no image received yet" in message
    for i in range(5):
        clock.t = i * 0.1
        stats.on_input()
        stats.on_output(0.02)
    level, message = health.evaluate(stats.snapshot())
    assert level == OK and "10.0 Hz out of 10.0 Hz in" in message and "latency p50 20 ms" in message
    assert health.evaluate(stats.snapshot(), subscribed=False)[0] == OK
    stats.on_error(FrameError("camera_info", "size mismatch"))
    level, message = health.evaluate(stats.snapshot())
    assert level == WARN and "1 frame(s) failed" in message and "size mismatch" in message
    assert health.evaluate(stats.snapshot())[0] == OK  # only new errors warn
    assert health.evaluate(stats.snapshot(), worker_alive=False)[0] == ERROR
    clock.t = 60.0
    assert health.evaluate(stats.snapshot()) == (
        WARN,
        "image stream stalled: fewer than 2 images on 'image' in the last 5 s",
    )


# --- parameters ------------------------------------------------------------------------------------


def test_node_params_validation_names_the_parameter():
    assert NodeParams().enabled_outputs() == tuple(OUTPUTS)
    with pytest.raises(ValueError, match="'model_path' is empty"):
        NodeParams().require_model()
    for kw, match in [
        ({"backend": "cuda"}, r"'backend': expected one of \['auto', 'tensorrt', 'onnxruntime', 'torch'\]"),
        ({"policy": "crop"}, "'policy'"),
        ({"qos_reliability": "best-effort"}, "'qos_reliability'"),
        ({"qos_depth": 0}, "'qos_depth'"),
        ({"target_rate": -1.0}, "'target_rate'"),
        ({"sigma_threshold": 0.0}, "'sigma_threshold'"),
        ({"max_depth": float("nan")}, "'max_depth'"),
    ]:
        with pytest.raises(ValueError, match=match):
            NodeParams(**kw)
    p = params_from_values(NodeParams, {"model_path": "m.onnx", "max_depth": 80, "target_rate": 15})
    assert p.max_depth == 80.0 and isinstance(p.max_depth, float) and p.target_rate == 15.0
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['image_topic'\]"):
        params_from_values(NodeParams, {"image_topic": "/cam"})
    with pytest.raises(ValueError, match="qos_depth: expected an integer"):
        params_from_values(NodeParams, {"qos_depth": 1.5})


# --- the real estimator behind the pipeline --------------------------------------------------------


def test_pipeline_with_a_real_depth_estimator_is_focal_aware():
    """A randomly initialised nano student through DepthEstimator: shapes, NaN convention, and depth
    scaled by f_eff / f_train when camera_info arrives (issue 10)."""
    torch = pytest.importorskip("torch")
    from adu_depth_core.models import ModelConfig, build_student
    from adu_depth_core.runtime import DepthEstimator, ModelInfo, TorchBackend

    torch.manual_seed(0)
    net_hw = (64, 96)
    model = build_student(ModelConfig(preset="nano", input_size=net_hw))
    info = ModelInfo(source="<nano>", backend="torch", input_hw=net_hw, max_depth=80.0, focal_px=100.0)
    estimator = DepthEstimator(TorchBackend(model, info, "cpu"), "resize")
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    msg = cdr(rm.image_to_msg(image, "bgr8", STAMP, "cam"))

    plain = run_one(DepthPipeline(estimator, params(use_camera_info=False)), msg)
    pipeline = DepthPipeline(estimator, params())
    K = np.array([[150.0, 0, 39.5], [0, 150.0, 23.5], [0, 0, 1]])
    pipeline.set_camera_info(camera_info(K, 48, 80))
    aware = run_one(pipeline, msg)

    depth, sigma = pixels(plain, "depth"), pixels(plain, "uncertainty")
    assert depth.shape == (48, 80) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= 80.0).all()
    assert np.isfinite(sigma).all() and (sigma > 0).all()
    factor = estimator.focal_factor(K, (48, 80))
    assert factor == pytest.approx(150.0 * 96 / 80 / 100.0)  # K mapped to the network input, over f_train
    np.testing.assert_allclose(pixels(aware, "depth"), depth * factor, rtol=1e-5)
    np.testing.assert_allclose(pixels(aware, "uncertainty"), sigma * factor, rtol=1e-5)
    assert rm.stamp_to_ns(aware.camera_info.header.stamp) == STAMP
