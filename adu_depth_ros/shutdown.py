"""A clean exit on SIGINT and SIGTERM for the nodes, without rclpy (tested in test/test_node_logic.py).

`ros2 launch` in a terminal delivers Ctrl-C twice: the terminal sends SIGINT to the whole process
group and launch forwards another one. With rclpy's default handling the second SIGINT raises
KeyboardInterrupt wherever the node happens to be — in `destroy_node()` during cleanup — and the
node dies with a traceback and exit status -2. Here a signal only *requests* the stop:

- `SignalStop` replaces the SIGINT/SIGTERM handlers (the node initialises rclpy with
  `SignalHandlerOptions.NO`, so the context stays valid until the node shuts it down itself, and the
  final log lines still reach /rosout); every later signal is only counted.
- `spin_until_stopped` spins in short slices until a stop is requested or the context ends.
- `run_cleanup` runs the cleanup steps in order; a KeyboardInterrupt (a handler that could not be
  installed) or an error in one step is reported and the next step still runs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """Context manager: while active, SIGINT/SIGTERM set `requested` instead of raising.

    Signal handlers can only be installed from the main thread; elsewhere (a node built inside a
    test's thread) the handlers stay as they are and `installed` is False.
    """

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS) -> None:
        self._signals = tuple(signals)
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self.received: list[str] = []  # signal names in arrival order
        self.installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        self._event.set()

    def request(self, reason: str = "request") -> None:
        """Ask for the stop from code (same effect as a signal)."""
        self.received.append(reason)
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        """The first signal (or request) that asked for the stop; "" before."""
        return self.received[0] if self.received else ""

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self._signals}
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
        self.installed = False


def spin_until_stopped(
    spin_once: Callable[[float], None], ok: Callable[[], bool], stop: SignalStop, period_s: float = 0.1
) -> None:
    """Call `spin_once(period_s)` until `stop.requested` or `ok()` is False (the context was shut down).

    The short slices bound how long a stop request waits for the executor to come back to Python.
    """
    while not stop.requested and ok():
        spin_once(period_s)


def run_cleanup(steps: Sequence[tuple[str, Callable[[], Any]]], report: Callable[[str], None]) -> list[str]:
    """Run every `(name, step)` in order; return the names of the steps that failed.

    A step that raises (KeyboardInterrupt included) is reported as `"<name> failed: <error>"` and the
    remaining steps still run, so a late signal cannot leave the context un-shut-down.
    """
    failed = []
    for name, step in steps:
        try:
            step()
        except (Exception, KeyboardInterrupt) as exc:
            failed.append(name)
            try:
                report(f"{name} failed: {type(exc).__name__}: {exc}")
            except Exception:  # the logger may already be gone
                pass
    return failed
