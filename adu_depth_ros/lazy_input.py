"""Subscribe to the camera only while some output has a subscriber (no rclpy).

With nobody listening to any output the node holds no image or camera_info subscription at all, so
an idle node costs no transport and no deserialisation (the frames are never sent to it). The node
feeds `InputGate` the subscriber count of each output — from the publishers' *matched* events
(rclpy Jazzy: `PublisherEventCallbacks(matched=...)`, `current_count`) and from a slow poll of
`get_subscription_count()` that also covers middlewares without matched events — and the gate calls
`subscribe()` when the first subscriber appears and `unsubscribe()` when the last one leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping


class InputGate:
    """Opens the camera input while any output has subscribers, closes it when none has.

    Args:
        outputs: the output names whose subscribers count.
        subscribe: creates the camera subscriptions (called on the executor thread).
        unsubscribe: destroys them.
        on_change: optional `(subscribed, counts)` callback, e.g. to log the change.
    """

    def __init__(
        self,
        outputs: Iterable[str],
        subscribe: Callable[[], None],
        unsubscribe: Callable[[], None],
        on_change: Callable[[bool, dict[str, int]], None] | None = None,
    ) -> None:
        self._counts = dict.fromkeys(outputs, 0)
        if not self._counts:
            raise ValueError("InputGate needs at least one output")
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._on_change = on_change
        self._open = False
        self._lock = threading.RLock()
        self.opened = 0  # how often the input was subscribed (for tests and diagnostics)
        self.closed = 0

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def set_count(self, output: str, count: int) -> bool:
        """Record one output's current subscriber count (a matched event); returns `is_open` after."""
        return self.update({output: count})

    def update(self, counts: Mapping[str, int]) -> bool:
        """Record subscriber counts (a poll); open or close the input as needed; returns `is_open`."""
        with self._lock:
            unknown = set(counts) - set(self._counts)
            if unknown:
                raise ValueError(f"unknown output(s) {sorted(unknown)}; known: {sorted(self._counts)}")
            for name, count in counts.items():
                self._counts[name] = max(0, int(count))
            wanted = any(self._counts.values())
            if wanted and not self._open:
                self._subscribe()
                self._open, self.opened = True, self.opened + 1
                self._changed()
            elif not wanted and self._open:
                self._unsubscribe()
                self._open, self.closed = False, self.closed + 1
                self._changed()
            return self._open

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._open, dict(self._counts))
