"""The first run's live view: each processed frame and the input bag's messages since the previous one, streamed to
a ``FoxgloveView``. Every channel is advertised before the first frame (``LiveStream.start``), so a viewer connected
before the run receives the first message on every channel."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from rosbags.rosbag2 import Reader

from ..bag.kitti360 import TOPICS
from ..bag.process import ProcessedFrame, output_topic_types
from ..params import NodeParams
from .first_run import CAMERA
from .foxglove_view import FoxgloveView, RawMessage

_logger = logging.getLogger(__name__)


#: Input topics forwarded to the live view with each frame (/tf_static with every frame, for late viewers).
VIEW_INPUT_TOPICS = (TOPICS.tf, TOPICS.image(CAMERA),
                     TOPICS.camera_info(CAMERA), TOPICS.velodyne)


class BagFeed:
    """Raw input messages of a rosbag2 bag for the live view: everything on ``topics`` since the previous frame.

    Args:
        bag: the input bag (folder, or a ``.mcap`` / ``.db3`` file).
        topics: topics to forward.
    """

    def __init__(self, bag: Path, topics: tuple[str, ...]):
        self._bag = bag
        self._topics = frozenset(topics)
        self._last_ns = -1
        self.static = self._read(frozenset({TOPICS.tf_static}), 0, None)
        with Reader(self._bag) as reader:
            wanted = self._topics | {TOPICS.tf_static}
            self.schemas = {c.topic: (c.msgtype, c.msgdef.data) for c in reader.connections if c.topic in wanted}
            """Topic -> (``pkg/msg/Name``, ``ros2msg`` definition) of every forwarded topic in the bag."""

    def _read(self, topics: frozenset[str], start_ns: int, stop_ns: int | None) -> list[tuple[int, RawMessage]]:
        with Reader(self._bag) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            return [(t, RawMessage(c.topic, c.msgtype, c.msgdef.data, bytes(raw)))
                    for c, t, raw in reader.messages(connections=conns, start=start_ns, stop=stop_ns)] if conns else []

    def until(self, stamp_ns: int) -> list[tuple[int, RawMessage]]:
        """(bag time, message) on the topics after the previous call's stamp, up to ``stamp_ns`` inclusive."""
        out = self._read(self._topics, self._last_ns + 1, stamp_ns + 1)
        self._last_ns = max(self._last_ns, stamp_ns)
        return out


class LiveStream:
    """Streams processed frames to a live view: ``start`` (the ``on_start`` hook of ``run``) advertises every channel;
    then per frame (``__call__``, the ``on_frame`` hook) /tf_static (again, for viewers that connect late), the input
    bag's messages since the previous frame, then the outputs (with the map outputs when the frame carries them).

    Args:
        view: the running view.
        input_bag: the converted drive (opened by ``start``, or at the first frame).
    """

    def __init__(self, view: FoxgloveView, input_bag: Path):
        self.view, self.input_bag = view, input_bag
        self._feed: BagFeed | None = None
        self.last: ProcessedFrame | None = None
        self.last_map: dict[str, object] = {}
        """Topic -> the latest message of each map output (``~/map/*``, written at ``mapping.publish_rate_hz``)."""

    def start(self, p: NodeParams) -> tuple[str, ...]:
        """Advertise the channel of every input topic forwarded and every output these node parameters switch on,
        before the first frame; returns the view's topics."""
        self._feed = BagFeed(self.input_bag, VIEW_INPUT_TOPICS)
        for topic, (schema_name, schema) in self._feed.schemas.items():
            self.view.advertise_raw(topic, schema_name, schema)
        for topic, cls in output_topic_types(p).items():
            self.view.advertise(topic, cls)
        return self.view.topics

    def __call__(self, frame: ProcessedFrame) -> None:
        if self._feed is None:
            self._feed = BagFeed(self.input_bag, VIEW_INPUT_TOPICS)
        output_topics = {topic for topic, _ in frame.messages}
        for stamp, msg in self._feed.until(frame.stamp_ns):
            if msg.topic not in output_topics:
                self.view.publish_raw(msg, stamp)
        self._send_outputs(frame)
        self.last = frame
        self.last_map.update({topic: msg for topic, msg in frame.messages if "/map/" in topic})

    def _send_outputs(self, frame: ProcessedFrame, with_map: bool = False) -> None:
        for _, msg in self._feed.static if self._feed is not None else ():
            self.view.publish_raw(msg, frame.stamp_ns)
        sent = set()
        for topic, msg in frame.messages:
            self.view.publish(topic, msg, frame.stamp_ns)
            sent.add(topic)
        if with_map:  # the latest map, which the last frame may not carry (mapping.publish_rate_hz)
            for topic, msg in self.last_map.items():
                if topic not in sent:
                    self.view.publish(topic, msg, frame.stamp_ns)

    def hold(self, period_s: float = 1.0) -> None:
        """Re-send the last frame's outputs and the latest map every ``period_s`` until Ctrl-C."""
        try:
            while True:
                if self.last is not None:
                    self._send_outputs(self.last, with_map=True)
                time.sleep(period_s)
        except KeyboardInterrupt:
            _logger.info("live view stopped")
