"""Everything `depth_node` does that is not ROS: the frame pipeline, tested without rclpy.

Data flow (one camera)::

    image callback ──submit()──> LatestFrameSlot (queue of 1: a newer frame replaces the pending one)
                                        │ take()                         (counted as a drop)
                                 InferenceWorker thread ── DepthPipeline.process(frame, outputs)
                                        │                     decode → K from camera_info → estimate
                                        │                     → runtime.outputs.compose_outputs
                                        └─ on_result(DepthResult) → the node publishes its messages

Messages are duck-typed: the same code reads rclpy messages in the node and `rosbags` messages in the
tests (`header.stamp.sec/nanosec`, `header.frame_id`, CameraInfo `k/p/height/width/binning_x/roi`).
The outputs are built by `adu_depth_core.runtime.outputs.compose_outputs`, the composer `bag-eval`'s
output bag uses too: REP 117/118 and depth_image_proc conventions, 32FC1 metres with NaN where invalid,
the input header's stamp and frame_id, and depth/camera_info = the input camera_info with the image's
header, so `depth_image_proc/point_cloud_xyz` pairs them by exact stamp.

Per-frame problems (bad encoding, a corrupt compressed payload, empty image, camera_info of another
size, a failing inference) raise `FrameError`; the pipeline counts them in `PipelineStats` and goes on
with the next frame. A frame counts as *out* only once its outputs were published (`published`).
camera_info is paired with each frame by stamp when the frame is processed (`camera_info_sync`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from adu_depth_core.data import camera_info as ci
from adu_depth_core.data.ros_messages import is_compressed, msg_to_rgb, stamp_to_ns
from adu_depth_core.runtime.outputs import OutputSettings, compose_outputs

from .camera_info_sync import LATEST, NONE, CameraInfoBuffer, latest_fallback_warning
from .params import NodeParams

T = TypeVar("T")

# --- topics and outputs --------------------------------------------------------------------------

IMAGE_TOPIC = "image"
CAMERA_INFO_TOPIC = "camera_info"
COMPRESSED_SUFFIX = "/compressed"  # image_transport's compressed transport: <base topic>/compressed


def input_image_topic(base: str, transport: str) -> str:
    """The topic a transport subscribes to for the (resolved, remapped) base image topic, named as
    image_transport names it: `raw` -> base, `compressed` -> base + "/compressed"."""
    if transport == "raw":
        return base
    if transport == "compressed":
        return base.rstrip("/") + COMPRESSED_SUFFIX
    raise ValueError(f"image transport must be 'raw' or 'compressed', got {transport!r}")


class Estimator(Protocol):
    """What the pipeline needs of `adu_depth_core.runtime.DepthEstimator`."""

    def estimate(self, rgb: np.ndarray, K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


class FrameError(ValueError):
    """A problem with one frame; the pipeline skips the frame and keeps running.

    `kind` groups errors for counting and log throttling: decode, header, camera_info, inference,
    output, publish.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- queue of one --------------------------------------------------------------------------------


class LatestFrameSlot(Generic[T]):
    """Thread-safe queue of length one: `put` replaces a pending item (a drop), `take` blocks.

    The camera callback puts, the inference thread takes, so inference always starts on the newest
    frame and never works through a backlog of stale ones.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store `item`; True when it replaced a pending item that was never taken (counted in `dropped`)."""
        with self._cond:
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Remove and return the pending item, waiting up to `timeout` s (None: forever); None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout=timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._has_item

    def close(self) -> None:
        """Wake every waiting `take` (they return None); later puts are still stored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# --- statistics ----------------------------------------------------------------------------------


def _rate(times: deque[float], now: float, window_s: float) -> float:
    """Events per second over the events of the last `window_s` seconds (0 with fewer than two)."""
    while times and times[0] < now - window_s:
        times.popleft()
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent view of `PipelineStats` (what /diagnostics reports)."""

    frames_in: int
    frames_out: int
    dropped: int
    idle_skipped: int
    errors: int
    errors_by_kind: dict[str, int]
    last_error: str
    input_rate_hz: float
    output_rate_hz: float
    latency_ms: dict[str, float]  # p50, p90, p99, max over the recent window; {} before the first output

    def as_key_values(self) -> list[tuple[str, str]]:
        """Flat (key, value) strings for a diagnostic_msgs/DiagnosticStatus."""
        kv = [
            ("input rate (Hz)", f"{self.input_rate_hz:.2f}"),
            ("output rate (Hz)", f"{self.output_rate_hz:.2f}"),
            ("frames in", str(self.frames_in)),
            ("frames out", str(self.frames_out)),
            ("dropped (newer frame arrived)", str(self.dropped)),
            ("skipped (no subscribers)", str(self.idle_skipped)),
            ("errors", str(self.errors)),
        ]
        kv += [(f"latency {k} (ms)", f"{v:.1f}") for k, v in self.latency_ms.items()]
        kv += [(f"errors: {k}", str(v)) for k, v in sorted(self.errors_by_kind.items())]
        if self.last_error:
            kv.append(("last error", self.last_error))
        return kv


class PipelineStats:
    """Input/output rates, latency percentiles, drops and errors; thread-safe, clock injectable."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, window_s: float = 5.0, latency_samples: int = 500
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._clock = clock
        self._window_s = window_s
        self._lock = threading.Lock()
        self._in_times: deque[float] = deque()
        self._out_times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=latency_samples)
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.idle_skipped = 0
        self.errors = 0
        self.errors_by_kind: dict[str, int] = {}
        self.last_error = ""

    def on_input(self, now: float | None = None) -> None:
        with self._lock:
            self.frames_in += 1
            self._in_times.append(self._clock() if now is None else now)

    def on_drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def on_idle(self) -> None:
        with self._lock:
            self.idle_skipped += 1

    def on_output(self, latency_s: float, now: float | None = None) -> None:
        with self._lock:
            self.frames_out += 1
            self._out_times.append(self._clock() if now is None else now)
            self._latencies.append(max(0.0, float(latency_s)))

    def on_error(self, error: FrameError) -> None:
        with self._lock:
            self.errors += 1
            self.errors_by_kind[error.kind] = self.errors_by_kind.get(error.kind, 0) + 1
            self.last_error = f"[{error.kind}] {error}"

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            now = self._clock()
            latency: dict[str, float] = {}
            if self._latencies:
                ms = np.asarray(self._latencies, dtype=np.float64) * 1000.0
                p50, p90, p99 = np.percentile(ms, [50, 90, 99])
                latency = {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(ms.max())}
            return StatsSnapshot(
                frames_in=self.frames_in,
                frames_out=self.frames_out,
                dropped=self.dropped,
                idle_skipped=self.idle_skipped,
                errors=self.errors,
                errors_by_kind=dict(self.errors_by_kind),
                last_error=self.last_error,
                input_rate_hz=_rate(self._in_times, now, self._window_s),
                output_rate_hz=_rate(self._out_times, now, self._window_s),
                latency_ms=latency,
            )


OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


class HealthMonitor:
    """Level and message of the node's diagnostic status from successive `StatsSnapshot`s."""

    def __init__(self) -> None:
        self._last_errors = 0

    def evaluate(
        self, snap: StatsSnapshot, worker_alive: bool = True, subscribed: bool = True
    ) -> tuple[int, str]:
        new_errors, self._last_errors = snap.errors - self._last_errors, snap.errors
        if not worker_alive:
            return ERROR, "inference thread stopped; restart the node"
        if new_errors > 0:
            return WARN, f"{new_errors} frame(s) failed since the last report; last: {snap.last_error}"
        if not subscribed:  # lazy: the camera is not subscribed, so no input is expected
            return OK, "idle: nobody subscribes to the depth outputs (camera not subscribed)"
        if snap.frames_in == 0:
            return WARN, "no image received yet on 'image' (check the remapping and the QoS reliability)"
        if snap.input_rate_hz == 0.0:
            return WARN, "image stream stalled: fewer than 2 images on 'image' in the last 5 s"
        p50 = snap.latency_ms.get("p50")
        latency = f", latency p50 {p50:.0f} ms" if p50 is not None else ""
        return OK, f"{snap.output_rate_hz:.1f} Hz out of {snap.input_rate_hz:.1f} Hz in{latency}"


class LogThrottle:
    """Per-key throttling of repeated log messages (one message per key per `period_s`).

    `check(key)` returns None while the key is throttled, else how many messages of that key were
    suppressed since the last one that was logged (so the log line can say so).
    """

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> int | None:
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


class RateLimiter:
    """Minimum spacing between inference starts for `target_rate` Hz (0 = unlimited)."""

    def __init__(self, rate_hz: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate_hz >= 0 or math.isinf(rate_hz):
            raise ValueError(f"rate must be a finite number >= 0 Hz, got {rate_hz}")
        self._period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self._clock = clock
        self._last: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next inference may start (0 when it may start now)."""
        if self._last is None or self._period == 0.0:
            return 0.0
        return max(0.0, self._last + self._period - self._clock())

    def mark(self) -> None:
        """An inference starts now."""
        self._last = self._clock()


# --- camera_info geometry ------------------------------------------------------------------------


def camera_info_geometry(info: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """`data.camera_info.camera_info_geometry`, with its errors as per-frame `FrameError`s."""
    try:
        return ci.camera_info_geometry(info)
    except ValueError as exc:
        raise FrameError("camera_info", str(exc)) from None


# --- the pipeline --------------------------------------------------------------------------------


@dataclass
class InputFrame:
    """One camera frame as received: the Image or CompressedImage message (or an RGB array), its header,
    an explicit camera_info (None: paired by stamp from the pipeline's buffer when the frame is processed),
    arrival time (clock s)."""

    image: Any
    header: Any
    camera_info: Any | None
    received_s: float


@dataclass
class DepthResult:
    """The outputs for one frame: `messages[name]` (`compose_outputs`) for the requested outputs, to
    publish on `OUTPUTS[name].topic`. Images are `ros_messages` (rosbags) messages stamped like the input;
    the node publishes their fields with `header`, the input header unchanged."""

    header: Any
    stamp_ns: int
    frame_id: str
    messages: dict[str, Any]
    K: np.ndarray | None
    latency_s: float  # arrival -> outputs built
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (throttle key, message)
    received_s: float = 0.0  # arrival (clock s), for the published latency

    @property
    def camera_info(self) -> Any | None:
        """depth/camera_info: the input camera_info with the image's header (None when not built)."""
        return self.messages.get("camera_info")


NO_CAMERA_INFO_WARNING = (
    "no camera_info received yet on 'camera_info': depth assumes the training camera's focal length and "
    "depth/camera_info is not published (remap camera_info, or set use_camera_info:=false)"
)


class DepthPipeline:
    """Frames in, REP 118 depth/uncertainty images out; the node's logic without ROS.

    Args:
        estimator: anything with `estimate(rgb, K) -> (depth, sigma)` (normally a `DepthEstimator`).
        params: validated node parameters (outputs to produce, sigma threshold, colour range, ...).
        decode: camera message -> RGB uint8 HxWx3. The default is `ros_messages.msg_to_rgb`
            (Image in rgb8, bgr8, mono8, rgba8, bgra8, yuv422, yuv422_yuy2; CompressedImage JPEG/PNG);
            the node adds cv_bridge for other encodings.
        clock: monotonic seconds, for latencies and rates (injectable for tests).
    """

    def __init__(
        self,
        estimator: Estimator,
        params: NodeParams,
        *,
        decode: Callable[[Any], np.ndarray] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.estimator = estimator
        self.params = params
        self.enabled: tuple[str, ...] = params.enabled_outputs()
        self._decode = decode or msg_to_rgb
        self._clock = clock
        self.stats = PipelineStats(clock=clock)
        self.slot: LatestFrameSlot[InputFrame] = LatestFrameSlot()
        self.camera_infos = CameraInfoBuffer(round(params.camera_info_tolerance * 1e9))

    # -- input side (camera callbacks) --

    def set_camera_info(self, msg: Any) -> None:
        """Store a CameraInfo; frames are paired with theirs by stamp when processed."""
        self.camera_infos.add(msg)

    @property
    def camera_info(self) -> Any | None:
        """The latest CameraInfo received (None before the first)."""
        return self.camera_infos.latest

    def make_frame(self, image: Any, header: Any | None = None) -> InputFrame:
        """An InputFrame for an Image message (header taken from it) or an RGB array plus `header`."""
        if header is None:
            header = getattr(image, "header", None)
            if header is None:
                raise ValueError("an image array needs a header (std_msgs/Header with stamp and frame_id)")
        return InputFrame(image=image, header=header, camera_info=None, received_s=self._clock())

    def submit(self, image: Any, header: Any | None = None) -> bool:
        """Queue a frame for the inference thread; True when it replaced a pending frame (a drop)."""
        frame = self.make_frame(image, header)
        self.stats.on_input(frame.received_s)
        replaced = self.slot.put(frame)
        if replaced:
            self.stats.on_drop()
        return replaced

    def active_outputs(self, subscribers: Mapping[str, int]) -> frozenset[str]:
        """Enabled outputs that have subscribers (`subscribers[name]` = count); empty = skip inference."""
        return frozenset(name for name in self.enabled if subscribers.get(name, 0) > 0)

    # -- processing (inference thread) --

    def process(self, frame: InputFrame, outputs: Collection[str] | None = None) -> DepthResult:
        """Run one frame. `outputs` (default: all enabled) selects which images to build.

        Returns the result (not yet an output: call `published` once it is out); raises FrameError
        (counted) for a bad frame.
        """
        try:
            return self._process(frame, self.enabled if outputs is None else outputs)
        except FrameError as err:
            self.stats.on_error(err)
            raise

    def published(self, result: DepthResult) -> None:
        """Count `result` as an output, with its latency from arrival to now (after publishing)."""
        self.stats.on_output(self._clock() - result.received_s)

    def _pair_camera_info(self, frame: InputFrame, stamp_ns: int, warnings: list[tuple[str, str]]) -> Any:
        if frame.camera_info is not None or not self.params.use_camera_info:
            return frame.camera_info if self.params.use_camera_info else None
        pairing = self.camera_infos.pair(stamp_ns)
        if pairing.kind == NONE:
            warnings.append(("no_camera_info", NO_CAMERA_INFO_WARNING))
        elif pairing.kind == LATEST:
            warnings.append(
                (
                    "camera_info_stamp",
                    latest_fallback_warning(stamp_ns, pairing, self.camera_infos.tolerance_ns),
                )
            )
        return pairing.info

    def _process(self, frame: InputFrame, outputs: Collection[str]) -> DepthResult:
        # unknown output names: ValueError before any work
        settings = OutputSettings(tuple(outputs), self.params.sigma_threshold, self.params.max_depth)
        header = frame.header
        try:
            stamp_ns, frame_id = stamp_to_ns(header.stamp), str(header.frame_id)
        except (AttributeError, TypeError, ValueError) as exc:
            raise FrameError("header", f"image header without a usable stamp/frame_id: {exc}") from None
        where = f"frame {frame_id!r} at {stamp_ns / 1e9:.3f} s"
        rgb = self._rgb(frame.image, where)
        height, width = rgb.shape[:2]
        warnings: list[tuple[str, str]] = []

        K = None
        info = self._pair_camera_info(frame, stamp_ns, warnings)
        if info is not None:
            try:
                K, info_hw = camera_info_geometry(info)
            except FrameError as err:
                raise FrameError(err.kind, f"{where}: {err}") from None
            if info_hw != (height, width):
                raise FrameError(
                    "camera_info",
                    f"{where}: camera_info describes a {info_hw[1]}x{info_hw[0]} (WxH) image but the image "
                    f"is {width}x{height}; remap camera_info to the calibration of this image topic",
                )
            info_frame = str(getattr(getattr(info, "header", None), "frame_id", ""))
            if info_frame and info_frame != frame_id:
                warnings.append(
                    (
                        "camera_info_frame",
                        f"camera_info frame_id {info_frame!r} differs from the image's {frame_id!r}",
                    )
                )

        depth, sigma = self._estimate(rgb, K, where)
        try:
            messages = compose_outputs(depth, sigma, header, info, settings)
        except (ValueError, TypeError) as exc:
            raise FrameError("output", f"{where}: building the outputs failed: {exc}") from None
        return DepthResult(
            header=header,
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            messages=messages,
            K=K,
            latency_s=self._clock() - frame.received_s,
            warnings=warnings,
            received_s=frame.received_s,
        )

    def _rgb(self, image: Any, where: str) -> np.ndarray:
        if isinstance(image, np.ndarray):
            rgb = image
        else:
            encoding = getattr(image, "encoding", "?")
            try:
                rgb = self._decode(image)
            except Exception as exc:  # cv_bridge raises CvBridgeError, msg_to_rgb ValueError
                what = (
                    f"{getattr(image, 'format', '?')!r} compressed"
                    if is_compressed(image)
                    else repr(encoding)
                )
                raise FrameError(
                    "decode", f"{where}: cannot convert {what} image to rgb8: {type(exc).__name__}: {exc}"
                ) from None
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FrameError(
                "decode",
                f"{where}: expected an RGB uint8 HxWx3 image, got {rgb.dtype} of shape {rgb.shape} "
                f"(colour encodings: rgb8, bgr8, mono8, rgba8, bgra8, yuv422; depth images are not input)",
            )
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise FrameError("decode", f"{where}: image has zero size ({rgb.shape[1]}x{rgb.shape[0]})")
        return rgb

    def _estimate(self, rgb: np.ndarray, K: np.ndarray | None, where: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            depth, sigma = self.estimator.estimate(rgb, K)
        except Exception as exc:  # a failing frame must not stop the node (CUDA OOM, bad size, ...)
            raise FrameError("inference", f"{where}: inference failed: {type(exc).__name__}: {exc}") from None
        depth = np.asarray(depth, dtype=np.float32)
        sigma = np.asarray(sigma, dtype=np.float32)
        if depth.ndim != 2 or depth.shape != sigma.shape or depth.size == 0:
            raise FrameError(
                "inference",
                f"{where}: the estimator returned depth {depth.shape} and sigma {sigma.shape}; expected two "
                "equal non-empty HxW maps",
            )
        return depth, sigma


# --- inference thread ----------------------------------------------------------------------------


class InferenceWorker:
    """The inference thread: take the newest frame, process it off the executor thread, hand it on.

    Args:
        pipeline: the DepthPipeline whose slot this worker drains.
        wanted: returns the outputs somebody listens to now (empty: skip the frame, counted as idle).
        on_result: publishes a DepthResult (exceptions become "publish" FrameErrors); the frame counts
            as an output only when it returns.
        on_error: reports a FrameError (the node logs it, throttled).
        rate_hz: at most this many inferences per second (0: unlimited).
    """

    def __init__(
        self,
        pipeline: DepthPipeline,
        wanted: Callable[[], Collection[str]],
        on_result: Callable[[DepthResult], None],
        on_error: Callable[[FrameError], None],
        *,
        rate_hz: float = 0.0,
        poll_s: float = 0.2,
        name: str = "adu_depth_inference",
    ) -> None:
        self.pipeline = pipeline
        self._wanted = wanted
        self._on_result = on_result
        self._on_error = on_error
        self._limiter = RateLimiter(rate_hz)
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self.pipeline.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _report(self, err: FrameError) -> None:
        try:
            self._on_error(err)
        except Exception:  # a failing logger must not kill the inference thread
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self._limiter.delay()
            if wait > 0:
                self._stop.wait(wait)
                continue
            frame = self.pipeline.slot.take(timeout=self._poll_s)
            if frame is None:
                continue
            try:
                self._step(frame)
            except Exception as exc:  # never let one frame end the thread
                err = FrameError("internal", f"unexpected {type(exc).__name__}: {exc}")
                self.pipeline.stats.on_error(err)
                self._report(err)

    def _step(self, frame: InputFrame) -> None:
        wanted = self._wanted()
        if not wanted:
            self.pipeline.stats.on_idle()
            return
        self._limiter.mark()
        try:
            result = self.pipeline.process(frame, wanted)
        except FrameError as frame_error:
            self._report(frame_error)
            return
        try:
            self._on_result(result)
        except Exception as exc:
            publish_error = FrameError(
                "publish", f"publishing frame {result.frame_id!r} failed: {type(exc).__name__}: {exc}"
            )
            self.pipeline.stats.on_error(publish_error)
            self._report(publish_error)
            return
        self.pipeline.published(result)
