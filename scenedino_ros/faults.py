"""Failures inside the node's worker, without ROS: what kind of failure, how many in a row, how long a frame runs.

* ``failure_kind``: ``out of memory`` (``torch.OutOfMemoryError``, ``MemoryError``, or a ``RuntimeError`` saying so,
  as CPU allocators do) or ``error`` (anything else).
* ``FailureTracker``: failed frames in all and in a row; ``escalate`` once ``max_consecutive`` frames in a row
  failed, so the node logs ERROR instead of WARN and its diagnostics say so.
* ``FrameWatch``: the frame the worker runs now and since when, so the diagnostics timer can report a frame that
  runs longer than ``max_frame_s`` while it still runs (it never waits for the worker).
* ``release_device_memory``: frees what a failed frame left behind (garbage, and PyTorch's cached CUDA blocks).

All classes are thread-safe: the worker writes, the diagnostics timer reads.
"""
from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

OUT_OF_MEMORY = "out of memory"
ERROR = "error"
#: Phrases of allocator errors that are raised as plain RuntimeError (CPU "DefaultCPUAllocator: can't allocate
#: memory", older CUDA and MPS "out of memory").
_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def failure_kind(exc: BaseException) -> str:
    """``out of memory`` or ``error``."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return OUT_OF_MEMORY
    if isinstance(exc, RuntimeError) and any(p in str(exc).lower() for p in _OOM_PHRASES):
        return OUT_OF_MEMORY
    return ERROR


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, at most ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class FailureReport:
    """One failed frame, as the tracker saw it."""

    kind: str
    """``out of memory`` or ``error``."""
    text: str
    """``Type: message`` of the exception."""
    consecutive: int
    """Failed frames in a row, this one included."""
    total: int
    """Failed frames since the start."""
    escalate: bool
    """``consecutive >= max_consecutive``: log ERROR, diagnostics ERROR."""


class FailureTracker:
    """Counts failed frames; ``succeeded`` ends a run of failures.

    Args:
        max_consecutive: failed frames in a row from which reports escalate (>= 1).
        clock: monotonic clock (seconds), for the age of the last failure.
    """

    def __init__(self, max_consecutive: int, clock: Callable[[], float] = time.monotonic):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self._clock = clock
        self._lock = threading.Lock()
        self.total = 0
        self.consecutive = 0
        self.last: FailureReport | None = None
        self._last_time: float | None = None

    def failed(self, exc: BaseException) -> FailureReport:
        """Record a failed frame."""
        with self._lock:
            self.total += 1
            self.consecutive += 1
            self.last = FailureReport(failure_kind(exc), describe(exc), self.consecutive, self.total,
                                      self.consecutive >= self.max_consecutive)
            self._last_time = self._clock()
            return self.last

    def succeeded(self) -> int:
        """Record a processed frame; returns how many failures in a row it ended (0: none)."""
        with self._lock:
            ended, self.consecutive = self.consecutive, 0
            return ended

    def seconds_since_last(self) -> float | None:
        """Seconds since the last failure, None if none."""
        with self._lock:
            return None if self._last_time is None else self._clock() - self._last_time


class FrameWatch:
    """The frame the worker is running: its stamp and since when.

    Args:
        clock: monotonic clock (seconds).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp_ns: int | None = None
        self._since = 0.0

    def start(self, stamp_ns: int) -> None:
        with self._lock:
            self._stamp_ns, self._since = stamp_ns, self._clock()

    def finish(self) -> float:
        """End the running frame; returns how long it ran (s), 0 if none ran."""
        with self._lock:
            if self._stamp_ns is None:
                return 0.0
            self._stamp_ns = None
            return self._clock() - self._since

    def running(self) -> tuple[int, float] | None:
        """(stamp in ns, seconds running) of the frame in progress, or None."""
        with self._lock:
            return None if self._stamp_ns is None else (self._stamp_ns, self._clock() - self._since)


def release_device_memory(device: Any) -> None:
    """Collect garbage, then return PyTorch's cached, unused CUDA memory to the driver when ``device`` is CUDA."""
    gc.collect()
    if getattr(device, "type", str(device).split(":")[0]) == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
