"""The transforms of a bag: its ``/tf`` and ``/tf_static`` messages in a ``TransformCache``, for the map's poses
offline (``scenedino-process-bag`` has no TF listener)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from rclpy.serialization import deserialize_message

from ..tf_cache import TransformCache
from .salvage import SalvagingReader

_logger = logging.getLogger(__name__)

TF_TYPE = "tf2_msgs/msg/TFMessage"
#: Topics read, and whether their transforms are static.
TF_TOPICS = {"/tf": False, "/tf_static": True}


@dataclass(frozen=True)
class BagTransforms:
    """Every transform of a bag."""

    cache: TransformCache
    messages: int
    """TFMessages read (both topics)."""
    transforms: int
    """Transforms added to ``cache``."""
    unreadable: int
    """Messages that could not be deserialised or held a transform without frame names or with NaN."""


def read_transforms(reader: SalvagingReader) -> BagTransforms:
    """Read the ``/tf`` and ``/tf_static`` messages (``tf2_msgs/TFMessage``) of an open bag into a
    ``TransformCache`` that keeps the whole bag's history (one pass over those topics, before the frames)."""
    from tf2_msgs.msg import TFMessage

    conns = [c for c in reader.connections if c.topic in TF_TOPICS and c.msgtype == TF_TYPE]
    cache = TransformCache(cache_s=reader.duration * 1e-9 + 60.0)
    messages = transforms = unreadable = 0
    if not conns:  # ``messages`` with no connections would read every topic
        return BagTransforms(cache, 0, 0, 0)
    for conn, _, raw in reader.messages(connections=conns):
        messages += 1
        try:
            transforms += cache.add_message(deserialize_message(bytes(raw), TFMessage), static=TF_TOPICS[conn.topic])
        except Exception as exc:  # undecodable CDR (rclpy raises several kinds), empty frame names, NaN
            unreadable += 1
            if unreadable <= 3:
                _logger.warning("ignoring a %s message: %s: %s", conn.topic, type(exc).__name__, exc)
    return BagTransforms(cache, messages, transforms, unreadable)
