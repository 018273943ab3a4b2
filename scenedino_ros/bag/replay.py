"""Play a rosbag2 (MCAP or SQLite 3) on live topics with ``/clock`` (``scenedino-replay``), for machines without
``ros2 bag`` (the PyPI ROS 2 wheels have no rosbag2).

The bag is read with ``rosbags``; every message is published unchanged (its CDR bytes) on a publisher per topic
whose type is imported from the type name (``sensor_msgs/msg/Image`` -> ``sensor_msgs.msg.Image``) and whose QoS
follows the bag's ``offered_qos_profiles`` (``/tf_static`` stays reliable + transient local, so late subscribers
still get it). Messages go out at their bag receive time scaled by ``--rate``, scheduled against a monotonic clock
(sleep until each message's due time: no drift over long bags), and ``/clock`` (rosgraph_msgs/Clock) carries the
bag time at ``--clock-hz`` so that nodes can run with ``use_sim_time:=true``. A topic whose message type has no
importable Python package is reported once and skipped; the rest plays. ``--loop`` starts over (``/clock`` then
jumps back, like ``ros2 bag play --loop``). Ctrl-C stops cleanly. One summary line is logged per loop.
"""
from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.duration import Duration
from rclpy.exceptions import InvalidTopicNameException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.type_support import check_for_type_support
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

_logger = logging.getLogger("scenedino-replay")

#: Publisher depth when the bag recorded no QoS (rosbag2's default: reliable, volatile, keep last 10).
DEFAULT_DEPTH = 10
#: Upper bound of the depth of a transient-local publisher, which keeps every message of its topic for late joiners.
MAX_LATCHED_DEPTH = 1000
#: After every publisher has a subscriber: time for the subscribers' side of the reliable matching to finish.
SETTLE_S = 0.5
#: At the end of playback: how long to wait for reliable subscribers to acknowledge the last messages.
ACK_TIMEOUT_S = 5.0


class ReplayError(ValueError):
    """A bag that cannot be played, or options that do not fit it; the message names the bag or the option."""


class UnknownTypeError(ImportError):
    """A message type whose Python package or class cannot be imported."""


@dataclass(frozen=True)
class ReplayOptions:
    """How to play a bag."""

    rate: float = 1.0
    """Playback speed: 2.0 plays twice as fast as recorded."""
    loop: bool = False
    """Start over at the end, until interrupted."""
    remaps: tuple[tuple[str, str], ...] = ()
    """(bag topic, published topic) pairs."""
    topics: tuple[str, ...] = ()
    """Bag topics to play; empty: all."""
    clock_hz: float = 100.0
    """Rate of /clock in wall time; 0: no /clock."""
    wait_for_subscribers_s: float = 0.0
    """Before the first message, wait up to this long until every topic has a subscriber."""

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ReplayError(f"--rate must be a positive number, got {self.rate}")
        if not (self.clock_hz >= 0 and math.isfinite(self.clock_hz)):
            raise ReplayError(f"--clock-hz must be >= 0 (0: no /clock), got {self.clock_hz}")
        if not (self.wait_for_subscribers_s >= 0 and math.isfinite(self.wait_for_subscribers_s)):
            raise ReplayError(f"--wait-for-subscribers must be >= 0 s, got {self.wait_for_subscribers_s}")


@dataclass(frozen=True)
class Channel:
    """One published topic: the bag connections that feed it, its type and QoS."""

    bag_topic: str
    topic: str
    """Name it is published under (after remapping)."""
    msgtype: str
    """ROS 2 type name, ``pkg/msg/Name``."""
    connection_ids: tuple[int, ...]
    message_count: int
    reliable: bool
    transient_local: bool
    depth: int


@dataclass(frozen=True)
class LoopSummary:
    """What one pass over the bag published."""

    loop: int
    messages: int
    topics: int
    bag_s: float
    """Bag time from the start of the bag to the last published message."""
    wall_s: float
    interrupted: bool = False

    @property
    def achieved_rate(self) -> float:
        return self.bag_s / self.wall_s if self.wall_s > 0 else float("nan")

    def describe(self) -> str:
        what = "interrupted" if self.interrupted else "done"
        return (f"loop {self.loop} {what}: {self.messages} messages on {self.topics} topics, {self.bag_s:.2f} s of "
                f"bag time in {self.wall_s:.2f} s (rate {self.achieved_rate:.2f}x)")


def parse_remap(text: str) -> tuple[str, str]:
    """``'/a:=/b'`` -> ``('/a', '/b')``; ``ReplayError`` for anything else."""
    source, sep, target = text.partition(":=")
    if not sep or not source or not target or ":=" in target:
        raise ReplayError(f"--remap {text!r}: expected FROM:=TO, e.g. /kitti360/image_00/image_rect:=/image")
    return source, target


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (or ``pkg/Name``); ``UnknownTypeError`` says how to get it."""
    parts = msgtype.split("/")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[1] != "msg") or not all(parts):
        raise UnknownTypeError(f"'{msgtype}' is not a message type name (pkg/msg/Name)")
    package, name = parts[0], parts[-1]
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError as exc:
        hint = ("run scripts/build_msgs.sh (it builds tf2_msgs/TFMessage for a venv with the PyPI ROS 2 wheels) or "
                "source a ROS 2 distribution" if package == "tf2_msgs" else
                f"source the ROS 2 workspace or distribution that provides {package}, or pip install "
                f"ros-kilted-{package.replace('_', '-')} where such a wheel exists")
        raise UnknownTypeError(f"Python package '{package}.msg' is not importable ({exc}); {hint}") from exc
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise UnknownTypeError(f"{package}.msg has no message '{name}' (another version of {package}?)")
    try:
        check_for_type_support(cls)
    except Exception as exc:  # rosidl raises several kinds when a type support library does not load
        raise UnknownTypeError(f"the type support of {msgtype} does not load ({type(exc).__name__}: {exc}); rebuild "
                               f"or reinstall {package}") from exc
    return cls


def _qos_settings(offers: Sequence[Any], message_count: int) -> tuple[bool, bool, int]:
    """(reliable, transient_local, depth) for a topic from the rosbags ``Qos`` profiles recorded for it.

    Best effort or transient local only when every recording publisher offered it (what a mixed set of publishers
    can all serve); no profiles: reliable, volatile, depth 10. Transient-local topics keep all their messages (up to
    ``MAX_LATCHED_DEPTH``) so that a late subscriber gets every one, like the static transforms of several publishers.
    """
    reliable = not offers or any(q.reliability.name != "BEST_EFFORT" for q in offers)
    latched = bool(offers) and all(q.durability.name == "TRANSIENT_LOCAL" for q in offers)
    recorded = max((q.depth for q in offers if q.history.name == "KEEP_LAST"), default=0)
    depth = max(DEFAULT_DEPTH, recorded)
    if latched:
        depth = min(MAX_LATCHED_DEPTH, max(depth, message_count))
    return reliable, latched, depth


def plan_channels(connections: Sequence[Any], options: ReplayOptions, bag: Path) -> list[Channel]:
    """The channels to publish: ``connections`` (rosbags ``Connection``) filtered by ``options.topics``, remapped,
    one channel per published topic. ``ReplayError`` for unknown topics or remaps and for type clashes."""
    by_topic: dict[str, list[Any]] = {}
    for conn in connections:
        by_topic.setdefault(conn.topic, []).append(conn)
    known = sorted(by_topic)
    for name, what in [(t, "--topics") for t in options.topics] + [(s, "--remap") for s, _ in options.remaps]:
        if name not in by_topic:
            raise ReplayError(f"{what} {name}: no such topic in {bag} (topics: {', '.join(known)})")
    remaps = dict(options.remaps)
    channels: dict[str, Channel] = {}
    for bag_topic in known:
        if options.topics and bag_topic not in options.topics:
            continue
        conns = by_topic[bag_topic]
        types = sorted({c.msgtype for c in conns})
        if len(types) > 1:
            raise ReplayError(f"{bag}: topic {bag_topic} carries several types ({', '.join(types)})")
        topic = remaps.get(bag_topic, bag_topic)
        if topic in channels:
            raise ReplayError(f"--remap: {bag_topic} and {channels[topic].bag_topic} would both be published on "
                              f"{topic}")
        count = sum(c.msgcount for c in conns)
        offers = [q for c in conns for q in getattr(c.ext, "offered_qos_profiles", [])]
        reliable, latched, depth = _qos_settings(offers, count)
        channels[topic] = Channel(bag_topic, topic, types[0], tuple(c.id for c in conns), count, reliable, latched,
                                  depth)
    return list(channels.values())


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


@dataclass
class _Progress:
    messages: int = 0
    topics: set[str] = field(default_factory=set)
    last_ns: int | None = None


class Player:
    """Publishes a bag through ``node``: one publisher per playable channel plus ``/clock``.

    ``play_once`` is one pass over the bag; ``run`` plays once or, with ``options.loop``, until interrupted.
    """

    def __init__(self, node: Node, bag: Path, options: ReplayOptions):
        self.node, self.bag, self.options = node, Path(bag), options
        try:
            self.reader = Reader(self.bag)
            self.reader.open()
        except FileNotFoundError as exc:
            raise ReplayError(f"{self.bag}: no such bag (file or folder)") from exc
        except Exception as exc:  # rosbags raises ReaderError and plugin-specific errors for unreadable bags
            raise ReplayError(f"{self.bag}: not a readable rosbag2 (MCAP or SQLite 3): {exc}") from exc
        try:
            planned = plan_channels(self.reader.connections, options, self.bag)
        except ReplayError:
            self.reader.close()
            raise
        self.channels: list[Channel] = []
        self._publishers: dict[int, tuple[Channel, Any]] = {}
        for ch in planned:
            try:
                cls = message_class(ch.msgtype)
            except UnknownTypeError as exc:
                _logger.warning("skipping %s (%s, %d messages): %s", ch.bag_topic, ch.msgtype, ch.message_count, exc)
                continue
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=ch.depth,
                             reliability=ReliabilityPolicy.RELIABLE if ch.reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=(DurabilityPolicy.TRANSIENT_LOCAL if ch.transient_local
                                         else DurabilityPolicy.VOLATILE))
            try:
                publisher = node.create_publisher(cls, ch.topic, qos)
            except InvalidTopicNameException as exc:
                self.close()
                raise ReplayError(f"cannot publish {ch.bag_topic} as {ch.topic!r}: {exc}") from exc
            self.channels.append(ch)
            for cid in ch.connection_ids:
                self._publishers[cid] = (ch, publisher)
        if not any(ch.message_count for ch in self.channels):
            self.close()
            raise ReplayError(f"{self.bag}: no messages to play on the selected topics (see any skipped above)")
        self._connections = [c for c in self.reader.connections if c.id in self._publishers]
        self._clock = (node.create_publisher(Clock, "/clock", QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=DEFAULT_DEPTH, reliability=ReliabilityPolicy.RELIABLE))
            if options.clock_hz > 0 else None)
        self.progress = _Progress()

    def describe(self) -> str:
        names = ", ".join(c.bag_topic + (f" -> {c.topic}" if c.topic != c.bag_topic else "")
                          + (" (transient local)" if c.transient_local else "") for c in self.channels)
        clock = f"; /clock at {self.options.clock_hz:g} Hz" if self._clock else ""
        return (f"{self.bag}: {sum(c.message_count for c in self.channels)} messages, "
                f"{self.reader.duration * 1e-9:.2f} s, at {self.options.rate:g}x; playing {names}{clock}")

    def wait_for_subscribers(self, timeout_s: float) -> list[str]:
        """Wait until every publisher has a subscriber (then ``SETTLE_S`` more), at most ``timeout_s``; returns the
        topics still without one."""
        end = time.monotonic() + timeout_s
        pubs = {ch.topic: pub for ch, pub in self._publishers.values()}
        while True:
            missing = sorted(t for t, p in pubs.items() if p.get_subscription_count() == 0)
            if not missing:
                time.sleep(SETTLE_S)
                return []
            if time.monotonic() >= end:
                return missing
            time.sleep(0.05)

    def _publish_clock(self, stamp_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(stamp_ns, 1_000_000_000)
        self._clock.publish(msg)

    def play_once(self, loop: int = 1) -> LoopSummary:
        """Publish every message of the bag at its scaled bag time; ``KeyboardInterrupt`` propagates (the progress
        so far is in ``self.progress``)."""
        start_ns, rate, hz = self.reader.start_time, self.options.rate, self.options.clock_hz
        self.progress = progress = _Progress()
        t0 = time.monotonic()
        next_tick = 0
        for conn, stamp_ns, data in self.reader.messages(connections=self._connections):
            due = t0 + (stamp_ns - start_ns) * 1e-9 / rate
            while self._clock is not None:
                # ticks missed while publishing fell behind are skipped, not sent in a burst
                tick = max(next_tick, int((time.monotonic() - t0) * hz))
                tick_wall = t0 + tick / hz
                if tick_wall > due:
                    break
                _sleep_until(tick_wall)
                self._publish_clock(start_ns + round(tick / hz * rate * 1e9))
                next_tick = tick + 1
            _sleep_until(due)
            channel, publisher = self._publishers[conn.id]
            publisher.publish(data if isinstance(data, bytes) else bytes(data))
            progress.messages += 1
            progress.topics.add(channel.topic)
            progress.last_ns = stamp_ns
        if self._clock is not None and progress.last_ns is not None:
            self._publish_clock(progress.last_ns)
        return self._summary(loop, t0)

    def wait_for_delivery(self, timeout_s: float = ACK_TIMEOUT_S) -> bool:
        """Wait until reliable subscribers acknowledged everything published (the last messages are still in
        flight when playback ends; exiting at once would drop them). True when all were acknowledged in time."""
        end = time.monotonic() + timeout_s
        acked = True
        for _, publisher in self._publishers.values():
            left = max(0.0, end - time.monotonic())
            acked &= publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
        return acked

    def _summary(self, loop: int, t0: float, interrupted: bool = False) -> LoopSummary:
        p = self.progress
        bag_s = (p.last_ns - self.reader.start_time) * 1e-9 if p.last_ns is not None else 0.0
        return LoopSummary(loop, p.messages, len(p.topics), bag_s, time.monotonic() - t0, interrupted)

    def run(self) -> list[LoopSummary]:
        """Play once, or until interrupted with ``options.loop``; logs one summary line per loop. Returns the
        summaries (the last one marked interrupted after Ctrl-C)."""
        if self.options.wait_for_subscribers_s > 0:
            missing = self.wait_for_subscribers(self.options.wait_for_subscribers_s)
            if missing:
                _logger.info("no subscriber after %.1f s on %s; playing anyway", self.options.wait_for_subscribers_s,
                             ", ".join(missing))
        summaries: list[LoopSummary] = []
        loop = 1
        t0 = time.monotonic()
        try:
            while True:
                t0 = time.monotonic()
                summaries.append(self.play_once(loop))
                _logger.info(summaries[-1].describe())
                if not self.options.loop:
                    if not self.wait_for_delivery():
                        _logger.warning("not every reliable subscriber acknowledged the last messages within %.0f s",
                                        ACK_TIMEOUT_S)
                    return summaries
                loop += 1
        except KeyboardInterrupt:
            summaries.append(self._summary(loop, t0, interrupted=True))
            _logger.info(summaries[-1].describe())
            return summaries

    def close(self) -> None:
        self.reader.close()

