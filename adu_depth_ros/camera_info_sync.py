"""camera_info paired with its image by stamp, as image_transport's CameraSubscriber does (no rclpy).

A camera driver publishes image and camera_info with the same header stamp, on two topics with no
ordering between them. `CameraInfoBuffer` keeps the last few camera_info messages by stamp; the
inference thread asks it for the one of each frame's stamp when it processes the frame:

- **exact**: a camera_info with the image's stamp;
- **nearest**: else the nearest one within `tolerance_ns` (parameter `camera_info_tolerance`, seconds;
  0 = exact only), for drivers whose two stamps differ by a little;
- **latest**: else the newest one, and the caller warns (throttled) that the calibration is not the
  frame's — with a fixed calibration the result is the same, with a zooming camera it is not;
- **none**: no camera_info has arrived yet.

Messages are duck-typed (`header.stamp.sec/nanosec`), rclpy or rosbags.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, NamedTuple

from adu_depth_core.data.ros_messages import stamp_to_ns

EXACT, NEAREST, LATEST, NONE = "exact", "nearest", "latest", "none"


class Pairing(NamedTuple):
    """The camera_info chosen for a frame, how it was chosen, and |its stamp - the image stamp| (ns)."""

    info: Any | None
    kind: str
    offset_ns: int


class CameraInfoBuffer:
    """Thread-safe store of the last `capacity` camera_info messages, keyed by header stamp.

    Args:
        tolerance_ns: largest |stamp difference| accepted as the frame's own camera_info (0 = exact).
        capacity: camera_info messages kept (a few frames' worth: the image is paired when it is
            processed, shortly after it arrived).
    """

    def __init__(self, tolerance_ns: int = 0, capacity: int = 32) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"tolerance must be >= 0 ns, got {tolerance_ns}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.tolerance_ns = int(tolerance_ns)
        self._capacity = capacity
        self._by_stamp: OrderedDict[int, Any] = OrderedDict()  # arrival order
        self._latest: Any | None = None
        self._lock = threading.Lock()

    def add(self, info: Any) -> None:
        """Store a camera_info (a second one with the same stamp replaces the first)."""
        stamp = stamp_to_ns(info.header.stamp)
        with self._lock:
            self._by_stamp.pop(stamp, None)
            self._by_stamp[stamp] = info
            while len(self._by_stamp) > self._capacity:
                self._by_stamp.popitem(last=False)
            self._latest = info

    @property
    def latest(self) -> Any | None:
        with self._lock:
            return self._latest

    def pair(self, stamp_ns: int) -> Pairing:
        """The camera_info for an image stamped `stamp_ns` (see the module docstring)."""
        with self._lock:
            if self._latest is None:
                return Pairing(None, NONE, 0)
            exact = self._by_stamp.get(stamp_ns)
            if exact is not None:
                return Pairing(exact, EXACT, 0)
            nearest = min(self._by_stamp, key=lambda s: abs(s - stamp_ns))
            offset = abs(nearest - stamp_ns)
            if offset <= self.tolerance_ns:
                return Pairing(self._by_stamp[nearest], NEAREST, offset)
            return Pairing(self._latest, LATEST, offset)


def latest_fallback_warning(stamp_ns: int, pairing: Pairing, tolerance_ns: int) -> str:
    """The (throttled) warning for a frame that got the latest camera_info instead of its own."""
    return (
        f"no camera_info with the image's stamp {stamp_ns / 1e9:.6f} s (nearest "
        f"{pairing.offset_ns / 1e6:.3f} ms away, camera_info_tolerance {tolerance_ns / 1e9:g} s): using "
        "the latest camera_info; check that the driver stamps both alike, or raise camera_info_tolerance"
    )
