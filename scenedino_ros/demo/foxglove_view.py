"""A live Foxglove view: a foxglove-sdk WebSocket server on 127.0.0.1 that streams ROS 2 messages as they come.

Every topic becomes a channel with ``cdr`` message encoding and a ``ros2msg`` schema (the full message definition,
dependencies appended after ``=====`` separators as rosbag2's MCAP writer stores them), so the Foxglove app decodes
them like a ROS 2 bag or the foxglove_bridge. rclpy messages are serialised with ``rclpy.serialization`` and their
schema is generated from the class's own field table (``ros2msg_definition``); already serialised messages (e.g.
``tf2_msgs/TFMessage`` read from a bag, where rclpy has no such class) come as ``RawMessage`` with their schema.

The server binds to the loopback interface only (``HOST``): it is for a viewer on the same machine (or an SSH
tunnel), never reachable from the network. It speaks the ``foxglove.sdk.v1`` WebSocket subprotocol (current Foxglove
app; Lichtblick since its ``foxglove.sdk.v1`` support).
"""
from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rclpy.serialization import serialize_message

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


class FoxgloveView:
    """A WebSocket server on ``HOST`` that streams messages live; one channel per topic, created on first use.

    Use as a context manager (or call ``close``): the server stops and its port is freed.

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
        self._server = foxglove.start_server(name=name, host=HOST, port=port, context=self._context)
        self._channels: dict[str, foxglove.Channel] = {}
        self._schemas: dict[type, str] = {}
        _logger.info("Foxglove WebSocket server listening on %s", self.url)

    @property
    def port(self) -> int:
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

    def publish(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Send an rclpy message on ``topic``, timestamped ``stamp_ns`` (UTC ns)."""
        cls = type(msg)
        if cls not in self._schemas:
            self._schemas[cls] = ros2msg_definition(cls)
        self._channel(topic, type_name(cls), self._schemas[cls]).log(serialize_message(msg), log_time=int(stamp_ns))

    def publish_raw(self, msg: RawMessage, stamp_ns: int) -> None:
        """Send an already serialised message, timestamped ``stamp_ns`` (UTC ns)."""
        self._channel(msg.topic, msg.schema_name, msg.schema).log(msg.data, log_time=int(stamp_ns))

    def close(self) -> None:
        """Unadvertise every channel and stop the server (idempotent)."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._server.stop()

    def __enter__(self) -> "FoxgloveView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
