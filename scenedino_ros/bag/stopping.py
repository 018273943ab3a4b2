"""Stopping the bag tools cleanly: SIGINT/SIGTERM ask the run to stop after the current frame.

``StopSignals`` (used by the command-line tools) turns the first SIGINT or SIGTERM into a request (an
``threading.Event`` the processing loops look at between frames); a second one raises ``KeyboardInterrupt`` at once,
leaving the output as a killed run leaves it. ``pause_for_test`` is the hook that lets tests stop or kill a run at a
chosen frame.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

_logger = logging.getLogger(__name__)

#: ``N:FILE``: when N frames are done, ``pause_for_test`` creates FILE (holding the process id) and waits until FILE
#: is removed or a stop is requested. For tests that signal a run at a known point; unset in normal use.
PAUSE_ENV = "SCENEDINO_BAG_TEST_PAUSE"


class StopRequest(threading.Event):
    """A request to stop after the current frame; ``reason`` says who asked (``SIGINT``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def request(self, reason: str) -> None:
        self.reason = reason
        self.set()


class StopSignals:
    """While active (a ``with`` block in the main thread), SIGINT and SIGTERM set ``event`` (the first) or raise
    ``KeyboardInterrupt`` (the second)."""

    def __init__(self) -> None:
        self.event = StopRequest()
        self._previous: dict[int, object] = {}

    @property
    def signum(self) -> int:
        """Number of the signal that asked to stop (0: none)."""
        return int(signal.Signals[self.event.reason]) if self.event.reason else 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.request(signal.Signals(signum).name)
        _logger.warning("%s: stopping after the current frame (send it again to stop at once)", self.event.reason)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def pause_for_test(frames_done: int, stop: threading.Event | None) -> None:
    """The test hook of ``PAUSE_ENV``: nothing unless it is set and names ``frames_done``."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    count, _, flag = spec.partition(":")
    if not flag or int(count) != frames_done:
        return
    path = Path(flag)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)
    while path.exists() and not (stop is not None and stop.is_set()):
        time.sleep(0.02)
