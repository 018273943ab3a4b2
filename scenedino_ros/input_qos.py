"""Input subscriptions whose reliability follows the publishers' (``input.reliability: auto``).

Why: over DDS, a best-effort subscription to a *reliable* publisher gets no repairs, and a large image is split into
many fragments; with Fast DDS's defaults on one host a 1408x376 rgb8 image (1.6 MB) from a reliable publisher
mostly never arrived complete at a best-effort subscription, while a reliable subscription received every one. A
reliable subscription, on the other hand, does not match a best-effort publisher at all. So, like rosbag2's
recorder and image_pipeline's nodes, the subscription takes the publishers' offered reliability:

* ``choose_reliability`` (ROS-free): offered reliabilities of the current publishers -> the subscription's
  reliability and the reason, as text for the log;
* ``AdaptiveSubscription``: one rclpy subscription that re-checks the publishers every ``check_period_s`` and
  re-creates itself when the choice changes (a camera driver restarted with other QoS, a second publisher).

rclpy's ``ReliabilityPolicy.BEST_AVAILABLE`` makes the same choice, but only once, when the subscription is
created; a node usually starts before its camera driver, so the choice has to be made again later.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Reliability modes of ``input.reliability``.
MODES = ("auto", "best_effort", "reliable")
#: Offered reliabilities ``choose_reliability`` understands; anything else counts as not reliable.
RELIABLE, BEST_EFFORT = "reliable", "best_effort"


@dataclass(frozen=True)
class ReliabilityChoice:
    """The reliability a subscription should use, and why."""

    reliability: str
    """``reliable`` or ``best_effort``."""
    reason: str
    """One sentence for the log."""


def choose_reliability(offered: Sequence[str], mode: str = "auto", current: str | None = None) -> ReliabilityChoice:
    """The subscription reliability for publishers offering ``offered``.

    Args:
        offered: the reliability each current publisher offers (``reliable``, ``best_effort``, or anything else,
            e.g. ``unknown``, which counts as not reliable).
        mode: ``auto`` (follow the publishers), ``best_effort`` or ``reliable`` (fixed).
        current: the subscription's reliability now, or None before it exists; kept in ``auto`` mode while there
            is no publisher, so a camera driver that restarts does not make the subscription flip.

    Returns:
        ``reliable`` when every publisher offers reliable (a reliable subscription gets lost fragments repaired),
        ``best_effort`` as soon as one publisher offers anything else (a reliable subscription would not match
        it); with no publisher, ``current``, or ``best_effort`` (it matches either kind) before the first choice.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"reliability mode {mode!r} is not one of {list(MODES)}")
    if mode != "auto":
        return ReliabilityChoice(mode, f"input.reliability is {mode}")
    n = len(offered)
    if n == 0:
        if current is not None:
            return ReliabilityChoice(current, f"no publisher at the moment; keeping {current}")
        return ReliabilityChoice(BEST_EFFORT, "no publisher yet; best effort matches reliable and best-effort "
                                              "publishers alike")
    others = sum(1 for r in offered if r != RELIABLE)
    if others == 0:
        return ReliabilityChoice(RELIABLE, f"{'the publisher offers' if n == 1 else f'all {n} publishers offer'} "
                                           "reliable: lost fragments of large images get repaired")
    return ReliabilityChoice(BEST_EFFORT, f"{others} of {n} publisher(s) offer best effort (or unknown): a "
                                          "reliable subscription would not match them")


def offered_reliability(policy: Any) -> str:
    """``reliable``, ``best_effort`` or ``unknown`` for an rclpy ``ReliabilityPolicy`` (or its name)."""
    name = str(getattr(policy, "name", policy)).lower()
    return name if name in (RELIABLE, BEST_EFFORT) else "unknown"


class AdaptiveSubscription:
    """An rclpy subscription whose reliability is chosen by ``choose_reliability`` and kept up to date.

    Args:
        node: the owning ``rclpy.node.Node``.
        msg_type, topic, callback: as for ``Node.create_subscription`` (``topic`` may be relative).
        depth: keep-last history depth.
        mode: ``auto``, ``best_effort`` or ``reliable`` (fixed modes never re-check).
        durability: an rclpy ``DurabilityPolicy`` (default volatile, as SensorData QoS).
        on_message_lost: called with rclpy's ``QoSMessageLostInfo`` when the middleware reports lost messages.
        on_change: called with a log line whenever the reliability is (re)chosen.
        check_period_s: how often ``auto`` re-checks the publishers.
        callback_group: for the subscription and the re-check timer.
    """

    def __init__(self, node: Any, msg_type: type, topic: str, callback: Callable[[Any], None], *, depth: int,
                 mode: str = "auto", durability: Any = None,
                 on_message_lost: Callable[[Any], None] | None = None,
                 on_change: Callable[[str], None] | None = None, check_period_s: float = 1.0,
                 callback_group: Any = None):
        from rclpy.qos import DurabilityPolicy

        if mode not in MODES:
            raise ValueError(f"reliability mode {mode!r} is not one of {list(MODES)}")
        self._node = node
        self._msg_type, self._topic, self._callback = msg_type, topic, callback
        self._depth, self.mode = depth, mode
        self._durability = DurabilityPolicy.VOLATILE if durability is None else durability
        self._on_message_lost, self._on_change = on_message_lost, on_change
        self._callback_group = callback_group
        self.subscription: Any = None
        self.reliability: str | None = None
        self.changes = 0
        """How often the subscription was (re)created."""
        self._apply(choose_reliability(self._offered(node.resolve_topic_name(topic)), mode))
        self._timer = (node.create_timer(check_period_s, self.check, callback_group=callback_group)
                       if mode == "auto" else None)

    @property
    def topic_name(self) -> str:
        """The resolved (remapped, absolute) topic name."""
        return self.subscription.topic_name

    def _offered(self, topic: str) -> list[str]:
        return [offered_reliability(info.qos_profile.reliability)
                for info in self._node.get_publishers_info_by_topic(topic)]

    def publisher_reliabilities(self) -> list[str]:
        """The reliability each current publisher of the topic offers."""
        return self._offered(self.topic_name)

    def check(self) -> bool:
        """Re-evaluate the publishers; re-create the subscription if the choice changed. True if it did."""
        choice = choose_reliability(self.publisher_reliabilities(), self.mode, self.reliability)
        if choice.reliability == self.reliability:
            return False
        self._apply(choice)
        return True

    def _apply(self, choice: ReliabilityChoice) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        previous = self.reliability
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._depth, durability=self._durability,
                         reliability=(ReliabilityPolicy.RELIABLE if choice.reliability == RELIABLE
                                      else ReliabilityPolicy.BEST_EFFORT))
        events = SubscriptionEventCallbacks(message_lost=self._on_message_lost) if self._on_message_lost else None
        self.subscription = self._node.create_subscription(
            self._msg_type, self._topic, self._callback, qos, event_callbacks=events,
            callback_group=self._callback_group)
        self.reliability = choice.reliability
        self.changes += 1
        if self._on_change is not None:
            verb = "subscribed" if previous is None else f"switched from {previous} to"
            self._on_change(f"{self.subscription.topic_name}: {verb} {choice.reliability.replace('_', ' ')} "
                            f"({choice.reason})")

    def destroy(self) -> None:
        """Destroy the subscription and the re-check timer."""
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
            self.subscription = None
