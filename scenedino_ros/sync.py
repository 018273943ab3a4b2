"""Frame flow between the ROS callbacks and the inference worker, without ROS.

* ``StampSync`` pairs images with CameraInfo messages by stamp (the small part of ``message_filters`` the node
  needs; ``message_filters`` is not on PyPI); ``unpaired_message`` words the warning about images it discarded.
* ``LatestSlot`` hands the newest pair to the worker: a new pair replaces one still waiting (counted as dropped), so
  a slow model never builds a backlog.
* ``RateLimiter`` lets at most ``max_rate_hz`` pairs a second through to the worker (the rest are counted).
* ``RateMeter`` and ``LatencyWindow`` feed the diagnostics.

Stamps are integer nanoseconds. All classes are thread-safe where the node shares them between threads.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Pair:
    """An image and the CameraInfo with the same (or the closest allowed) stamp."""

    stamp_ns: int
    image: Any
    info: Any


class StampSync:
    """Pair images and CameraInfo messages by stamp.

    Args:
        queue_size: unpaired messages kept per input; older ones are evicted (counted in ``unpaired_images``).
        max_diff_ns: largest stamp difference accepted as a pair (0: exact match).
        use_latest_info: pair every image with the newest CameraInfo whatever its stamp (for drivers or bags whose
            CameraInfo stamps do not follow the images).
    """

    def __init__(self, queue_size: int = 10, max_diff_ns: int = 0, use_latest_info: bool = False):
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.max_diff_ns = int(max_diff_ns)
        self.use_latest_info = use_latest_info
        self._images: deque[tuple[int, Any]] = deque(maxlen=queue_size)
        self._infos: deque[tuple[int, Any]] = deque(maxlen=queue_size)
        self._lock = threading.Lock()
        self.unpaired_images = 0
        """Images discarded without a pair (evicted from a full queue, or older than a paired image)."""
        self.infos_received = 0
        self.last_image_stamp_ns: int | None = None
        self._newest_info_ns: int | None = None
        self._discarded: deque[int] = deque(maxlen=1000)

    def reset(self) -> None:
        """Forget every queued message (after a jump back in time)."""
        with self._lock:
            self._images.clear()
            self._infos.clear()
            self.last_image_stamp_ns = None
            self._newest_info_ns = None

    def time_jump(self, stamp_ns: int) -> int:
        """How far ``stamp_ns`` lies before the previous image stamp (0 if not before).

        On a jump back (bag loop, clock reset) the queued images and the CameraInfos stamped after ``stamp_ns`` are
        dropped: they belong to the old timeline. CameraInfos up to ``stamp_ns`` stay, so an image whose CameraInfo
        came first still pairs.
        """
        last = self.last_image_stamp_ns
        if last is None or stamp_ns >= last:
            return 0
        with self._lock:
            self._images.clear()
            kept = [(s, info) for s, info in self._infos if s <= stamp_ns]
            self._infos.clear()
            self._infos.extend(kept)
            self.last_image_stamp_ns = None
            self._newest_info_ns = max((s for s, _ in kept), default=None)
        return last - stamp_ns

    def add_image(self, stamp_ns: int, image: Any) -> Pair | None:
        """Queue an image; returns its pair when a matching CameraInfo is already here."""
        with self._lock:
            self.last_image_stamp_ns = stamp_ns
            if self.use_latest_info:
                return Pair(stamp_ns, image, self._infos[-1][1]) if self._infos else self._queue_image(stamp_ns, image)
            i = self._closest(self._infos, stamp_ns)
            if i is None:
                return self._queue_image(stamp_ns, image)
            info = self._infos[i][1]
            for _ in range(i + 1):  # the match and every older CameraInfo
                self._infos.popleft()
            self._drop_images_before(stamp_ns)
            return Pair(stamp_ns, image, info)

    def add_info(self, stamp_ns: int, info: Any) -> Pair | None:
        """Queue a CameraInfo; returns the pair with a waiting image of matching stamp, if any."""
        with self._lock:
            self.infos_received += 1
            if self._newest_info_ns is None or stamp_ns > self._newest_info_ns:
                self._newest_info_ns = stamp_ns
            if self.use_latest_info:
                self._infos.clear()
                self._infos.append((stamp_ns, info))
                if self._images:  # the newest waiting image; older ones are stale
                    s, image = self._images.pop()
                    self._discard_all_images()
                    return Pair(s, image, info)
                return None
            i = self._closest(self._images, stamp_ns)
            if i is None:
                self._infos.append((stamp_ns, info))
                return None
            for _ in range(i):  # images older than the match: their CameraInfo will not come any more
                self._discard(self._images.popleft()[0])
            s, image = self._images.popleft()
            return Pair(s, image, info)

    @property
    def pending_images(self) -> int:
        return len(self._images)

    def newest_info_stamp_ns(self) -> int | None:
        """Newest stamp of any CameraInfo received (paired or not) since the start or the last time jump."""
        with self._lock:
            return self._newest_info_ns

    def take_discarded(self) -> list[int]:
        """Stamps of the images discarded unpaired since the last call, oldest first (at most the last 1000)."""
        with self._lock:
            out = list(self._discarded)
            self._discarded.clear()
            return out

    def _discard(self, stamp_ns: int) -> None:
        self.unpaired_images += 1
        self._discarded.append(stamp_ns)

    def _discard_all_images(self) -> None:
        while self._images:
            self._discard(self._images.popleft()[0])

    def _queue_image(self, stamp_ns: int, image: Any) -> None:
        if len(self._images) == self._images.maxlen:
            self._discard(self._images.popleft()[0])
        self._images.append((stamp_ns, image))

    def _drop_images_before(self, stamp_ns: int) -> None:
        while self._images and self._images[0][0] < stamp_ns:
            self._discard(self._images.popleft()[0])

    def _closest(self, queue: deque[tuple[int, Any]], stamp_ns: int) -> int | None:
        best, best_diff = None, self.max_diff_ns + 1
        for i, (s, _) in enumerate(queue):
            d = abs(s - stamp_ns)
            if d < best_diff:
                best, best_diff = i, d
        return best


def unpaired_message(discarded_ns: Sequence[int], newest_info_ns: int | None, info_topic: str) -> str:
    """The warning for images ``StampSync`` discarded without a CameraInfo.

    Args:
        discarded_ns: stamps of the discarded images, oldest first (not empty).
        newest_info_ns: newest CameraInfo stamp received, or None when none has arrived.
        info_topic: the CameraInfo topic, for the message.
    """
    newest = discarded_ns[-1] * 1e-9
    what = (f"image at {newest:.3f} s" if len(discarded_ns) == 1
            else f"{len(discarded_ns)} images (the newest at {newest:.3f} s)")
    info = (f"the newest CameraInfo on {info_topic} is stamped {newest_info_ns * 1e-9:.3f} s"
            if newest_info_ns is not None else f"no CameraInfo has arrived on {info_topic} yet")
    return (f"discarded {what}: no CameraInfo with a matching stamp ({info}); stamp images and CameraInfo alike, "
            "or set sync.max_stamp_diff_s or sync.use_latest_camera_info")


class LatestSlot(Generic[T]):
    """A one-element queue: ``put`` replaces a waiting item (a drop), ``take`` blocks until an item or ``close``."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> bool:
        """Offer an item; returns True if it replaced one the worker had not taken yet."""
        with self._cond:
            replaced = self._item is not None
            self.dropped += int(replaced)
            self.put_count += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (removing it), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class RateLimiter:
    """Lets at most one event through per period of ``1 / max_hz`` seconds; counts the others in ``dropped``.

    Time is cut into periods from the first accepted event; an event passes when it falls (rounded to the nearest
    period) into a later period than the last accepted one. Input at exactly ``max_hz`` therefore passes whole
    despite arrival jitter of up to half a period, and faster input is thinned to ``max_hz`` on average.

    Args:
        max_hz: the largest rate let through; 0 lets everything through.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, max_hz: float, clock=time.monotonic):
        if max_hz < 0:
            raise ValueError(f"max_hz must be >= 0, got {max_hz}")
        self.period_s = 1.0 / max_hz if max_hz > 0 else 0.0
        self._clock = clock
        self._start: float | None = None
        self._last = 0
        self._lock = threading.Lock()
        self.dropped = 0

    def allow(self) -> bool:
        """True if an event arriving now may pass (and counts it as passed); False counts it as dropped."""
        if not self.period_s:
            return True
        now = self._clock()
        with self._lock:
            if self._start is None:
                self._start = now
                return True
            period = round((now - self._start) / self.period_s)
            if period > self._last:
                self._last = period
                return True
            self.dropped += 1
            return False


class RateMeter:
    """Events per second over the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self) -> None:
        with self._lock:
            now = self._clock()
            self._times.append(now)
            self.count += 1
            self._trim(now)

    def rate_hz(self) -> float:
        with self._lock:
            now = self._clock()
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(now - self._times[0], 1e-9)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class LatencyWindow:
    """The last ``size`` latencies (seconds) and their percentiles."""

    def __init__(self, size: int = 200):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(float(seconds))

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        """Percentiles (0..100) of the window, NaN when empty."""
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64)
        if values.size == 0:
            return tuple(float("nan") for _ in qs)
        return tuple(float(v) for v in np.percentile(values, qs))

    def __len__(self) -> int:
        return len(self._values)
