"""A live Foxglove view: a foxglove-sdk WebSocket server on 127.0.0.1 that streams ROS 2 messages as they come.

Every topic becomes a channel with ``cdr`` message encoding and a ``ros2msg`` schema (the full message definition,
dependencies appended after ``=====`` separators as rosbag2's MCAP writer stores them), so the Foxglove app decodes
them like a ROS 2 bag or the foxglove_bridge. rclpy messages are serialised with ``rclpy.serialization`` and their
schema is generated from the class's own field table (``ros2msg_definition``); already serialised messages (e.g.
``tf2_msgs/TFMessage`` read from a bag, where rclpy has no such class) come as ``RawMessage`` with their schema.

The server binds to the loopback interface only (``HOST``): it is for a viewer on the same machine (or an SSH
tunnel), never reachable from the network. The public port is a ``SubprotocolRelay`` in front of the foxglove-sdk
server (itself on another loopback port): clients offering ``foxglove.sdk.v1`` (current Foxglove app, Lichtblick
with ``foxglove.sdk.v1`` support) and clients offering only ``foxglove.websocket.v1`` (``@foxglove/ws-protocol``,
older Lichtblick and Foxglove releases) are both served.

Channels can be advertised before their first message (``advertise``, ``advertise_raw``): a viewer that subscribes
to them then gets every message from the first one on; messages sent on a channel before a viewer subscribed to it
are not delivered to that viewer.
"""
from __future__ import annotations

import importlib
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rclpy.serialization import serialize_message

from .subprotocol_relay import SubprotocolRelay

if TYPE_CHECKING:
    import foxglove

_logger = logging.getLogger(__name__)

#: The only address the server binds to.
HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
#: Separator between a definition and each dependency in a ``ros2msg`` schema (as rosbag2 and rosbags write it).
SEPARATOR = "=" * 80
#: IDL primitive names (rclpy's field table) -> .msg names.
_PRIMITIVES = {"boolean": "bool", "octet": "byte", "float": "float32", "double": "float64"}


@dataclass(frozen=True)
class RawMessage:
    """An already CDR-serialised ROS 2 message with its schema."""

    topic: str
    schema_name: str
    """``pkg/msg/Name``."""
    schema: str
    """The ``ros2msg`` definition (with dependencies)."""
    data: bytes
    """CDR bytes (with the 4-byte encapsulation header)."""


def type_name(msg_type: type) -> str:
    """``pkg/msg/Name`` of an rclpy message class (e.g. ``sensor_msgs/msg/Image``)."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def _msg_field_type(idl: str) -> tuple[str, str | None]:
    """rclpy field type -> (.msg field type, nested ``pkg/Name`` or None)."""
    m = re.fullmatch(r"sequence<(.+?)(?:, (\d+))?>", idl)
    if m:
        inner, nested = _msg_field_type(m.group(1))
        return f"{inner}[{'<=' + m.group(2) if m.group(2) else ''}]", nested
    m = re.fullmatch(r"(.+)\[(\d+)\]", idl)
    if m:
        inner, nested = _msg_field_type(m.group(1))
        return f"{inner}[{m.group(2)}]", nested
    if "/" in idl:
        return idl, idl
    return _PRIMITIVES.get(idl, idl), None


def _message_class(name: str) -> type:
    package, _, cls = name.partition("/")
    return getattr(importlib.import_module(f"{package}.msg"), cls)


def ros2msg_definition(msg_type: type) -> str:
    """The ``ros2msg`` schema text of an rclpy message class: its fields, then every nested type once
    (depth-first, in order of first use) after a ``SEPARATOR`` line and ``MSG: pkg/Name``. Constants are left out
    (they are not part of the wire format)."""
    sections: list[str] = []
    seen: set[str] = set()

    def visit(cls: type, name: str | None) -> None:
        lines, nested = [], []
        for field, idl in cls.get_fields_and_field_types().items():
            field_type, dep = _msg_field_type(idl)
            lines.append(f"{field_type} {field}")
            if dep is not None:
                nested.append(dep)
        body = "\n".join(lines) + "\n"
        sections.append(body if name is None else f"{SEPARATOR}\nMSG: {name}\n{body}")
        for dep in nested:
            if dep not in seen:
                seen.add(dep)
                visit(_message_class(dep), dep)

    visit(msg_type, None)
    return "".join(sections)


def _foxglove():
    """The foxglove-sdk module; ``ImportError`` with the install hint when it is missing."""
    try:
        import foxglove
    except ImportError as exc:
        raise ImportError(f"the live view needs foxglove-sdk ({exc}): pip install foxglove-sdk, or pip install "
                          "'.[viz]'") from exc
    return foxglove


class _Subscriptions:
    """A foxglove-sdk ``ServerListener`` counting the subscribers of each topic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.counts[channel.topic] += 1

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.counts[channel.topic] = max(self.counts[channel.topic] - 1, 0)

    def count(self, topic: str) -> int:
        with self._lock:
            return self.counts[topic]


class FoxgloveView:
    """A WebSocket server on ``HOST`` that streams messages live; one channel per topic, created by ``advertise`` /
    ``advertise_raw`` or on first use.

    Use as a context manager (or call ``close``): the server stops and its ports are freed.

    Args:
        port: TCP port; 0 picks a free one (see ``port``).
        name: server name shown by the Foxglove app.

    Raises:
        ImportError: foxglove-sdk is not installed.
        RuntimeError: the server cannot start (port in use).
    """

    def __init__(self, port: int = DEFAULT_PORT, name: str = "scenedino"):
        foxglove = _foxglove()
        self._context = foxglove.Context()
        self._subscriptions = _Subscriptions()
        self._server = foxglove.start_server(name=name, host=HOST, port=0, context=self._context,
                                             server_listener=self._subscriptions)
        try:
            self._relay = SubprotocolRelay(int(self._server.port), HOST, port)
        except RuntimeError:
            self._server.stop()
            raise
        self._channels: dict[str, foxglove.Channel] = {}
        self._schemas: dict[type, str] = {}
        _logger.info("Foxglove WebSocket server listening on %s", self.url)

    @property
    def port(self) -> int:
        """The public port (the relay's)."""
        return self._relay.port

    @property
    def server_port(self) -> int:
        """The foxglove-sdk server's own port (loopback; clients offering ``foxglove.sdk.v1`` may use it too)."""
        return int(self._server.port)

    @property
    def url(self) -> str:
        """The address to open in the Foxglove app (Open connection -> Foxglove WebSocket)."""
        return f"ws://{HOST}:{self.port}"

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics with a channel, in order of creation."""
        return tuple(self._channels)

    def _channel(self, topic: str, schema_name: str, schema: str) -> foxglove.Channel:
        channel = self._channels.get(topic)
        if channel is None:
            foxglove = _foxglove()
            channel = foxglove.Channel(topic, schema=foxglove.Schema(name=schema_name, encoding=SCHEMA_ENCODING,
                                                                     data=schema.encode()),
                                       message_encoding=MESSAGE_ENCODING, context=self._context)
            self._channels[topic] = channel
        elif channel.schema_name() != schema_name:
            raise ValueError(f"topic {topic} carries {channel.schema_name()}, cannot publish {schema_name} on it")
        return channel

    def _schema(self, cls: type) -> str:
        if cls not in self._schemas:
            self._schemas[cls] = ros2msg_definition(cls)
        return self._schemas[cls]

    def advertise(self, topic: str, msg_type: type) -> None:
        """Create the channel of ``topic`` for rclpy messages of ``msg_type`` now, before its first message."""
        self._channel(topic, type_name(msg_type), self._schema(msg_type))

    def advertise_raw(self, topic: str, schema_name: str, schema: str) -> None:
        """Create the channel of ``topic`` for already serialised ``schema_name`` messages (``RawMessage``) now."""
        self._channel(topic, schema_name, schema)

    def subscribers(self, topic: str) -> int:
        """How many viewers are subscribed to ``topic`` now."""
        return self._subscriptions.count(topic)

    def publish(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Send an rclpy message on ``topic``, timestamped ``stamp_ns`` (UTC ns)."""
        cls = type(msg)
        self._channel(topic, type_name(cls), self._schema(cls)).log(serialize_message(msg), log_time=int(stamp_ns))

    def publish_raw(self, msg: RawMessage, stamp_ns: int) -> None:
        """Send an already serialised message, timestamped ``stamp_ns`` (UTC ns)."""
        self._channel(msg.topic, msg.schema_name, msg.schema).log(msg.data, log_time=int(stamp_ns))

    def close(self) -> None:
        """Unadvertise every channel, stop the relay and the server (idempotent)."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._relay.close()
        self._server.stop()

    def __enter__(self) -> FoxgloveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
