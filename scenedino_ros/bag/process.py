"""Run the node's pipeline over every image of a rosbag2 bag, offline, into a new bag (``scenedino-process-bag``).

The input bag is read with ``rosbags``; its raw CDR is deserialised with ``rclpy.serialization`` into the message
classes the node receives, images are paired with CameraInfo by stamp with the node's ``StampSync``, and every
pair runs through the node's own functions (``scenedino_ros.outputs``: conversion, frame resolution,
``Pipeline.process``, message building). Nothing is dropped: the bag is processed as fast as the device allows.
The outputs go to a new bag under the topics the live node ``/scenedino`` would publish (``/scenedino/occupancy``,
``/scenedino/semantic_points``, ...), with the node's QoS, header stamps and bag times equal to the input image's
stamp. ``--include-inputs`` also copies every input topic (``/tf``, ``/tf_static`` ... with their QoS) unchanged.

A frame that cannot be used (corrupt message, unsupported encoding, unusable CameraInfo, no CameraInfo with its
stamp) is skipped with a warning naming its stamp and the reason, and counted in the summary (``summary.json`` and
``summary.md`` in the output folder). A damaged input bag (truncated MCAP, a chunk with a bad CRC, a missing storage
file) is read as far as it can be (``scenedino_ros.bag.salvage``); the summary names each problem and the messages
lost.

The output is written in the work folder ``OUT.partial`` and committed after every frame
(``scenedino_ros.bag.partial``); it is renamed to OUT when complete. A stop request (SIGINT/SIGTERM in the CLI)
finishes the current frame and closes the bag in ``OUT.partial``; a killed run leaves its committed frames there;
``resume`` continues either from the first frame not done, without writing any message twice.

Offline there is no TF listener: with ``target_frame`` set, the camera pose comes from the ``camera_pose.*``
parameters (what the live node does when ``tf2_ros`` is not installed). With ``mapping.enabled`` every frame is also
fused into the local semantic map (``scenedino_ros.map_fusion``) at the camera pose in ``mapping.frame`` that the
bag's ``/tf`` and ``/tf_static`` give at the image stamp (read into a ``TransformCache`` before the frames:
``scenedino_ros.bag.transforms``); the map topics (``/scenedino/map/occupancy``, ``/scenedino/map/semantic_points``,
``/scenedino/map/voxel_grid``) are written at ``mapping.publish_rate_hz`` of image stamps, as the live node
publishes them, and once more at the end when the latest fused frame's map was not written yet; the final map is
saved beside the bag (``map.npz`` + ``map.ply``). A frame without a pose keeps
its per-frame outputs and is counted (``map_statistics`` of the summary). A resumed run's map holds the frames of
that run only.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Connection, Qos, QosDurability
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from tqdm import tqdm

from scenedino_core.labels import SSC_CLASSES, class_table
from scenedino_core.pipeline import FrameResult, Pipeline

from .. import outputs
from ..conversions import CameraInfoError, ImageConversionError
from ..frames import FrameError, FrameResolver
from ..map_fusion import CachedPoses, FrameOutcome, MapFusion
from ..map_outputs import LATCHED_MAP_OUTPUTS, map_messages, map_output_types
from ..outputs import pipeline_config, static_camera_pose
from ..params import NodeParams
from ..sync import StampSync
from .io import check_storage, reliable_qos
from .partial import Journal, PartialBag, PartialBagError
from .salvage import BagOpenError, SalvagingReader
from .stopping import pause_for_test
from .summary import STAGES, BagSummary, SkippedFrame
from .transforms import read_transforms

_logger = logging.getLogger(__name__)

#: Name of the live node whose topics the outputs take.
NODE_NAME = "scenedino"
#: The tool named in the journal of ``OUT.partial``.
TOOL = "scenedino-process-bag"
#: Image message types the input topic may have.
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
#: Per-frame warnings logged for each kind of problem; further ones are only counted.
WARNINGS_PER_REASON = 5
#: Reason recorded for images that never found a CameraInfo.
UNPAIRED = "NoCameraInfo"
#: The final map in the output folder (``SemanticMap.load``; a coloured ``map.ply`` beside it).
MAP_FILE = "map.npz"


class BagError(RuntimeError):
    """The input bag cannot be opened or lacks the needed topics, or the output cannot be written."""


@dataclass(frozen=True)
class ProcessedFrame:
    """One processed image, handed to ``on_frame``."""

    stamp_ns: int
    """Header stamp of the input image (ns): stamp and bag time of every output."""
    rgb: np.ndarray
    """(H, W, 3) uint8 input image."""
    intrinsics: np.ndarray
    """(3, 3) pixel intrinsics of ``rgb``."""
    result: FrameResult
    frame_id: str
    """Output frame of the voxel outputs."""
    camera_frame: str
    """Frame of the input image (and of the rendered images)."""
    messages: list[tuple[str, Any]]
    """(output topic, rclpy message), in publishing order, as written to the bag (the map's after the frame's)."""
    map: MapFusion | None = None
    """The local semantic map (``mapping.enabled``), with this frame fused when it had a pose."""
    map_outcome: FrameOutcome | None = None
    """What the map did with this frame."""


# ----------------------------------------------------------------------------- topics and types

def _message_class(msgtype: str) -> type:
    """``pkg/msg/Name`` -> the rclpy message class."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _type_name(cls: type) -> str:
    """The rclpy message class -> ``pkg/msg/Name``."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def camera_info_sibling(image_topic: str) -> str:
    """``/cam/image_rect`` or ``/cam/image_rect/compressed`` -> ``/cam/camera_info`` (image_transport's rule)."""
    base = image_topic[:-len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    return base.rsplit("/", 1)[0] + "/camera_info"


def select_topics(connections: list[Connection], image_topic: str | None,
                  info_topic: str | None) -> tuple[list[Connection], list[Connection]]:
    """The connections of the image topic and of its CameraInfo topic.

    Args:
        connections: every connection of the input bag.
        image_topic: None: the bag's only Image or CompressedImage topic.
        info_topic: None: ``camera_info`` beside the image topic.

    Raises:
        BagError: no image topic, several and none chosen, a topic missing or of the wrong type.
    """
    by_topic: dict[str, list[Connection]] = {}
    for c in connections:
        by_topic.setdefault(c.topic, []).append(c)
    candidates = sorted(t for t, cs in by_topic.items() if cs[0].msgtype in IMAGE_TYPES)
    if image_topic is None:
        if not candidates:
            raise BagError(f"the bag has no sensor_msgs/Image or CompressedImage topic (topics: "
                           f"{', '.join(sorted(by_topic)) or 'none'})")
        if len(candidates) > 1:
            raise BagError(f"the bag has {len(candidates)} image topics; choose one with --image-topic: "
                           f"{', '.join(candidates)}")
        image_topic = candidates[0]
    if image_topic not in by_topic:
        raise BagError(f"image topic {image_topic} is not in the bag; image topics: {', '.join(candidates) or 'none'}")
    if by_topic[image_topic][0].msgtype not in IMAGE_TYPES:
        raise BagError(f"topic {image_topic} has type {by_topic[image_topic][0].msgtype}, not one of "
                       f"{', '.join(IMAGE_TYPES)}")
    info_topic = info_topic or camera_info_sibling(image_topic)
    infos = sorted(t for t, cs in by_topic.items() if cs[0].msgtype == CAMERA_INFO_TYPE)
    if info_topic not in by_topic or by_topic[info_topic][0].msgtype != CAMERA_INFO_TYPE:
        raise BagError(f"no CameraInfo topic {info_topic} in the bag (CameraInfo topics: {', '.join(infos) or 'none'});"
                       " choose one with --camera-info-topic")
    return by_topic[image_topic], by_topic[info_topic]


def _voxel_grid_msgdef() -> str | None:
    """Text of ``SemanticVoxelGrid.msg`` (repository ``msg/`` or the generated package's ``share``), or None."""
    try:
        module_file = Path(sys.modules[outputs.semantic_voxel_grid_type().__module__].__file__)
    except ImportError:
        return None
    candidates = [Path(__file__).resolve().parents[1] / "msg"]
    candidates += [parent / "share" / "scenedino_ros" / "msg" for parent in module_file.parents]
    for folder in candidates:
        if (folder / "SemanticVoxelGrid.msg").is_file():
            return (folder / "SemanticVoxelGrid.msg").read_text()
    return None


def output_topic_types(p: NodeParams, node_name: str = NODE_NAME) -> dict[str, type]:
    """Topic -> rclpy message type of every output ``process_bag`` writes with these parameters, in publishing
    order (``~/voxel_grid`` only when its message definition is available, as ``process_bag`` decides)."""
    voxel_grid = p.publish_voxel_grid and _voxel_grid_msgdef() is not None
    types = outputs.output_types(p, voxel_grid=voxel_grid)
    if p.mapping_enabled:
        types.update(map_output_types(voxel_grid=_voxel_grid_msgdef() is not None))
    return {f"/{node_name}/{name}": cls for name, cls in types.items()}


def _output_qos(name: str) -> Qos:
    """The QoS the live node offers on output ``name`` (``node._create_publishers``), as ``ros2 bag record`` writes
    it (rclpy's defaults resolved: automatic liveliness, infinite durations)."""
    if name in outputs.LATCHED_OUTPUTS or name in LATCHED_MAP_OUTPUTS:
        return reliable_qos(1, QosDurability.TRANSIENT_LOCAL)
    return reliable_qos(outputs.OUTPUT_DEPTH, QosDurability.VOLATILE)


# ----------------------------------------------------------------------------- processing

class _Clock:
    """Accumulates perf_counter seconds per stage."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES[:-1], 0.0)
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._t
        self._t = now

    def reset(self) -> None:
        self._t = time.perf_counter()


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class _Run:
    """One ``process_bag`` call: output connections, the pairing, the per-frame work, the tallies and the commits.

    Images are numbered in reading order (``seq``, from 1); a frame is *done* once processed or skipped. A resumed run
    reads the input again from its start, pairing exactly as before, but does no work for the frames done and copies
    (``include_inputs``) only the input messages after the last commit.
    """

    def __init__(self, p: NodeParams, pipeline: Pipeline, reader: SalvagingReader, writer: Writer,
                 topics: tuple[list[Connection], list[Connection]], include_inputs: bool, node_name: str,
                 on_frame: Callable[[ProcessedFrame], None] | None, fusion: MapFusion | None = None,
                 poses: CachedPoses | None = None):
        self.p, self.pipeline, self.reader, self.writer = p, pipeline, reader, writer
        self.image_conns, self.info_conns = topics
        self.node_name, self.on_frame = node_name, on_frame
        typestore = _output_typestore(p.publish_voxel_grid)
        voxel_grid = "scenedino_ros/msg/SemanticVoxelGrid" in typestore.types
        self.topics = {name: writer.add_connection(f"/{node_name}/{name}", _type_name(cls), typestore=typestore,
                                                   offered_qos_profiles=[_output_qos(name)])
                       for name, cls in outputs.output_types(p, voxel_grid=voxel_grid).items()}
        self.map, self.poses = fusion, poses
        if fusion is not None:
            self.topics.update({name: writer.add_connection(f"/{node_name}/{name}", _type_name(cls),
                                                            typestore=typestore,
                                                            offered_qos_profiles=[_output_qos(name)])
                                for name, cls in map_output_types(voxel_grid=voxel_grid).items()})
        self.no_pose_warnings = 0
        self.map_files: list[str] = []
        self.map_unwritten: int | None = None
        """Stamp of the latest fused frame when its map was not written yet (``flush_map``)."""
        """Files of the final map in the output folder (``save_map``)."""
        self.copies = {c.id: _copy_connection(writer, c, typestore) for c in reader.connections} \
            if include_inputs else {}
        self.frames = FrameResolver(p.target_frame, static_camera_pose(p))
        self.class_names, self.palette = class_table(p.class_colors_rgb)
        self.sync = StampSync(p.sync_queue_size, int(p.sync_max_stamp_diff_s * 1e9), p.sync_use_latest_camera_info)
        self.clock = _Clock()
        self.pending: dict[int, int] = {}
        """Sequence number -> stamp of images added to ``sync`` and not paired yet."""
        self.skipped: list[SkippedFrame] = []
        self.skip_counts: Counter[str] = Counter()
        self.occupied: list[int] = []
        self.class_voxels = np.zeros(len(SSC_CLASSES), dtype=np.int64)
        self.written: Counter[str] = Counter()
        self.images = self.infos = 0
        self.consumed = 0
        """Input messages handled in this pass."""
        self.wall_s = 0.0
        self.restored: set[int] = set()
        """Sequence numbers of the frames done (processed or skipped) by the interrupted run(s)."""
        self.copied_upto = 0
        """Input messages whose copies are in the output already (restored)."""
        self.stage_before: dict[str, float] = {}
        self.wall_before = 0.0
        self.interrupted = ""
        """Why the run stopped before the end of the input (empty: it did not)."""
        self.stop: threading.Event | None = None
        self._start = time.perf_counter()
        self._delta: dict[str, list] = {"done": [], "skipped": [], "frames": []}

    # ---------------------------------------------------------------------------------------- resume
    def restore(self, deltas: list[dict[str, Any]]) -> None:
        """Take over the frames, skips and counts committed by the interrupted run(s)."""
        for d in deltas:
            self.restored.update(d["done"])
            for _seq, stamp, reason, detail in d["skipped"]:
                self.skipped.append(SkippedFrame(stamp, reason, detail))
                self.skip_counts[reason] += 1
            for _, occupied, classes in d["frames"]:
                self.occupied.append(occupied)
                self.class_voxels += np.asarray(classes, dtype=np.int64)
        if deltas:
            last = deltas[-1]
            self.copied_upto = last["read"]
            self.written.update(last["written"])
            self.stage_before, self.wall_before = last["stage_s"], last["wall_s"]

    def delta(self) -> dict[str, Any]:
        """What changed since the last commit (lists), and the running totals."""
        out = {**self._delta, "read": self.consumed, "images": self.images, "infos": self.infos,
               "written": dict(self.written), "stage_s": self.stage_seconds(),
               "wall_s": self.wall_before + time.perf_counter() - self._start}
        self._delta = {"done": [], "skipped": [], "frames": []}
        return out

    # ------------------------------------------------------------------------------------- reading
    def read_all(self, progress: bool, commit: Callable[[], None], stop: threading.Event | None) -> None:
        """Read the input bag to its end (or until ``stop`` is set), processing every image; ``commit`` after every
        frame done."""
        image_ids, info_ids = {c.id for c in self.image_conns}, {c.id for c in self.info_conns}
        image_cls = _message_class(self.image_conns[0].msgtype)
        info_cls = _message_class(self.info_conns[0].msgtype)
        wanted = self.reader.connections if self.copies else self.image_conns + self.info_conns
        self._start = time.perf_counter()
        self.clock.reset()
        with tqdm(total=sum(c.msgcount for c in self.image_conns), unit="frame", desc="process-bag",
                  disable=not progress, dynamic_ncols=True) as bar:
            for conn, bag_ns, raw in self.reader.messages(connections=wanted):
                self.clock.lap("decode")
                if conn.id in self.copies and self.consumed >= self.copied_upto:
                    self.write(conn.topic, self.copies[conn.id], bag_ns, raw)
                    self.clock.lap("write")
                if conn.id in image_ids:
                    self.on_image(bag_ns, raw, image_cls)
                    bar.update()
                elif conn.id in info_ids:
                    self.on_info(bag_ns, raw, info_cls)
                self.consumed += 1
                if self._delta["done"]:
                    commit()
                    self.clock.lap("write")
                if stop is not None and stop.is_set():
                    self.interrupted = getattr(stop, "reason", "") or "stop requested"
                    break
        if not self.interrupted:
            self.finish()
            self.flush_map()
        commit()
        self.wall_s = self.wall_before + time.perf_counter() - self._start

    def stage_seconds(self) -> dict[str, float]:
        return {k: self.stage_before.get(k, 0.0) + v for k, v in self.clock.seconds.items()}

    def skip(self, seq: int, stamp_ns: int, reason: str, detail: str) -> None:
        if seq in self.restored:
            return
        self._delta["done"].append(seq)
        self._delta["skipped"].append([seq, stamp_ns, reason, detail])
        self.skipped.append(SkippedFrame(stamp_ns, reason, detail))
        self.skip_counts[reason] += 1
        n = self.skip_counts[reason]
        if n <= WARNINGS_PER_REASON:
            more = (f" (further {reason} skips are only counted in the summary)" if n == WARNINGS_PER_REASON else "")
            _logger.warning("skipping frame at %.3f s: %s: %s%s", stamp_ns * 1e-9, reason, detail, more)

    def write(self, topic: str, connection: Connection, stamp_ns: int, data: bytes | memoryview) -> None:
        self.writer.write(connection, stamp_ns, data)
        self.written[topic] += 1

    def on_image(self, bag_ns: int, raw: bytes | memoryview, cls: type) -> None:
        self.images += 1
        seq = self.images
        try:
            msg = deserialize_message(bytes(raw), cls)
        except Exception as exc:  # rclpy raises RMWError (and others) for undecodable CDR
            self.clock.lap("decode")
            self.skip(seq, bag_ns, "CorruptMessage", f"image message at bag time {bag_ns * 1e-9:.3f} s cannot be "
                      f"deserialised as {_type_name(cls)}: {type(exc).__name__}: {exc}")
            return
        self.clock.lap("decode")
        stamp = _stamp_ns(msg.header.stamp)
        jump = self.sync.time_jump(stamp)
        if jump:
            _logger.warning("image stamp went backwards by %.3f s at %.3f s: cleared the pairing queues", jump * 1e-9,
                            stamp * 1e-9)
        self.pending[seq] = stamp
        pair = self.sync.add_image(stamp, (seq, msg))
        if pair is not None:
            self.process(pair.image, pair.info)

    def on_info(self, bag_ns: int, raw: bytes | memoryview, cls: type) -> None:
        self.infos += 1
        try:
            info = deserialize_message(bytes(raw), cls)
        except Exception as exc:  # as in on_image
            self.clock.lap("decode")
            _logger.warning("ignoring CameraInfo at bag time %.3f s: cannot be deserialised: %s: %s", bag_ns * 1e-9,
                            type(exc).__name__, exc)
            return
        self.clock.lap("decode")
        pair = self.sync.add_info(_stamp_ns(info.header.stamp), info)
        if pair is not None:
            self.process(pair.image, pair.info)

    def process(self, image: tuple[int, Any], info: Any) -> None:
        seq, msg = image
        stamp = self.pending.pop(seq)
        if seq in self.restored:
            return
        try:
            inp = outputs.frame_input(msg, info, self.p)
        except (ImageConversionError, CameraInfoError) as exc:
            self.clock.lap("decode")
            self.skip(seq, stamp, type(exc).__name__, str(exc))
            return
        self.clock.lap("decode")
        try:
            result, frame_id = outputs.infer(self.pipeline, self.frames, inp)
        except FrameError as exc:
            self.clock.lap("inference")
            self.skip(seq, stamp, type(exc).__name__, str(exc))
            return
        except Exception as exc:  # the per-frame boundary, as in the node's worker: count it and go on
            self.clock.lap("inference")
            self.skip(seq, stamp, type(exc).__name__, f"frame failed: {exc}")
            return
        self.clock.lap("inference")
        pause_for_test(len(self.occupied), self.stop)
        self.clock.reset()
        built = outputs.build_messages(result, inp.stamp, frame_id, inp.camera_frame, self.p, self.class_names,
                                       self.palette, self.topics)
        messages = [(f"/{self.node_name}/{name}", m) for name, m in built]
        self.clock.lap("build")
        for (topic, m), (name, _) in zip(messages, built):
            self.write(topic, self.topics[name], stamp, serialize_message(m))
        self.clock.lap("write")
        outcome, built_map = self.fuse(stamp, inp, result)
        self.clock.lap("build")
        for name, m in built_map:
            topic = f"/{self.node_name}/{name}"
            messages.append((topic, m))
            self.write(topic, self.topics[name], stamp, serialize_message(m))
        self.clock.lap("write")
        classes = np.bincount(result.point_labels, minlength=len(SSC_CLASSES))[:len(SSC_CLASSES)]
        self.occupied.append(int(result.points.shape[0]))
        self.class_voxels += classes
        self._delta["done"].append(seq)
        self._delta["frames"].append([seq, int(result.points.shape[0]), [int(n) for n in classes]])
        if self.on_frame is not None:
            self.on_frame(ProcessedFrame(stamp, inp.rgb, inp.intrinsics, result, frame_id, inp.camera_frame,
                                         messages, self.map, outcome))
            self.clock.reset()  # the callback's time counts as "other"

    def fuse(self, stamp: int, inp: outputs.FrameInput, result: FrameResult
             ) -> tuple[FrameOutcome | None, list[tuple[str, Any]]]:
        """Fuse a frame into the map at the bag's TF pose; (what the map did, the map messages due now)."""
        if self.map is None or self.poses is None:
            return None, []
        cam_from_grid = self.frames.resolve(inp.camera_frame, inp.stamp).cam_from_grid
        outcome = self.map.add_frame(stamp, inp.camera_frame, result, cam_from_grid, self.poses.lookup)
        if not outcome.fused:
            self.no_pose_warnings += 1
            if self.no_pose_warnings <= WARNINGS_PER_REASON:
                _logger.warning("frame at %.3f s is not in the map: no pose of %s in %s (%s)%s", stamp * 1e-9,
                                inp.camera_frame, self.map.settings.frame, outcome.reason,
                                " (further frames without a pose are only counted in the summary)"
                                if self.no_pose_warnings == WARNINGS_PER_REASON else "")
            return outcome, []
        if not outcome.publish:
            self.map_unwritten = stamp
            return outcome, []
        self.map_unwritten = None
        return outcome, self.map_messages()

    def map_messages(self) -> list[tuple[str, Any]]:
        built = map_messages(self.map.snapshot(), self.map.settings, self.class_names, self.palette, self.topics)
        self.map.mark_published()
        return built

    def flush_map(self) -> None:
        """At the end of the input: write the map once more when the latest fused frame's map was not written (the
        bag ends with the final map, whatever ``mapping.publish_rate_hz``)."""
        if self.map is None or self.map_unwritten is None:
            return
        stamp, self.map_unwritten = self.map_unwritten, None
        for name, m in self.map_messages():
            self.write(f"/{self.node_name}/{name}", self.topics[name], stamp, serialize_message(m))

    def save_map(self, folder: Path) -> None:
        """Write the map into the bag folder (``MAP_FILE`` + ``.ply``) when it holds a frame."""
        if self.map is not None and self.map.map.frames_integrated:
            npz, ply = self.map.save(folder / MAP_FILE)
            self.map_files = [npz.name, ply.name]

    def finish(self) -> None:
        """Skip the images that never found a CameraInfo."""
        for seq, stamp in self.pending.items():
            self.skip(seq, stamp, UNPAIRED, f"no CameraInfo on {self.info_conns[0].topic} with a matching stamp "
                      f"(sync.max_stamp_diff_s = {self.p.sync_max_stamp_diff_s} s)")
        self.pending.clear()

    def summary(self, in_path: Path, out_path: Path, storage: str, setup_s: float) -> BagSummary:
        stage_s = self.stage_seconds()
        stage_s["other"] = max(self.wall_s - sum(stage_s.values()), 0.0)
        return BagSummary(
            input_path=str(in_path), output_path=str(out_path), storage=storage,
            image_topic=self.image_conns[0].topic, camera_info_topic=self.info_conns[0].topic,
            model=self.pipeline.describe(), device=str(self.pipeline.device),
            random_weights=self.pipeline.random_weights, images=self.images, camera_infos=self.infos,
            frames_processed=len(self.occupied), skipped=tuple(sorted(self.skipped, key=lambda x: x.stamp_ns)),
            setup_s=setup_s, wall_s=self.wall_s, stage_s=stage_s, occupied_voxels=tuple(self.occupied),
            class_voxels={c.name: int(n) for c, n in zip(SSC_CLASSES, self.class_voxels)},
            messages_written=dict(sorted(self.written.items())), input_damage=tuple(self.reader.damage),
            interrupted=self.interrupted, frames_resumed=len(self.restored),
            frames_pending=len(self.pending) if self.interrupted else 0,
            map_statistics={**self.map.statistics(), "files": self.map_files} if self.map is not None else {})


def _map_and_poses(reader: SalvagingReader, p: NodeParams, pipeline: Pipeline) -> tuple[MapFusion, CachedPoses]:
    """The map and the bag's transforms (read now, before the frames)."""
    tf = read_transforms(reader)
    if not tf.transforms:
        _logger.warning("mapping.enabled, but the bag has no /tf or /tf_static transforms: no frame can be fused "
                        "into the map (its per-frame outputs are written)")
    else:
        _logger.info("map: %d transforms from %d /tf and /tf_static messages; fusing into '%s'", tf.transforms,
                     tf.messages, p.mapping_frame)
    return MapFusion.from_params(p, pipeline.config.grid), CachedPoses(tf.cache, 0.0)


def _output_typestore(voxel_grid: bool) -> Any:
    """The ROS 2 Kilted typestore, plus ``scenedino_ros/msg/SemanticVoxelGrid`` when wanted and its definition is
    found (warns otherwise: ``~/voxel_grid`` is then not written)."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    if voxel_grid:
        msgdef = _voxel_grid_msgdef()
        if msgdef is None:
            _logger.warning("~/voxel_grid is not written: scenedino_ros.msg or its SemanticVoxelGrid.msg definition "
                            "is not available (scripts/build_msgs.sh)")
        else:
            typestore.register(get_types_from_msg(msgdef, "scenedino_ros/msg/SemanticVoxelGrid"))
    return typestore


def _copy_connection(writer: Writer, c: Connection, typestore: Any) -> Connection:
    """An output connection like input connection ``c`` (type, definition, hash, QoS); bags without definitions or
    hashes (older rosbag2) get them from the typestore."""
    complete = bool(c.msgdef.data) and c.digest.startswith("RIHS01_")
    try:
        return writer.add_connection(c.topic, c.msgtype, typestore=None if complete else typestore,
                                     msgdef=c.msgdef.data if complete else None, rihs01=c.digest if complete else None,
                                     serialization_format=c.ext.serialization_format,
                                     offered_qos_profiles=c.ext.offered_qos_profiles)
    except Exception as exc:  # rosbags: WriterError, or an unknown type in the typestore
        raise BagError(f"cannot copy input topic {c.topic} ({c.msgtype}): {type(exc).__name__}: {exc}") from exc


def _open_reader(path: Path) -> SalvagingReader:
    reader = SalvagingReader(path)
    try:
        reader.open()
    except BagOpenError as exc:
        raise BagError(f"cannot open input bag {path}: {str(exc).removeprefix(f'{path}: ')}") from exc
    except Exception as exc:  # rosbags and OS errors that the salvaging reader does not know
        raise BagError(f"cannot open input bag {path}: {type(exc).__name__}: {exc}") from exc
    return reader


def _settings(in_path: Path, reader: SalvagingReader, topics: tuple[list[Connection], list[Connection]],
              params: NodeParams, include_inputs: bool, node_name: str) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (the device may differ)."""
    sizes = sorted((f.name, f.stat().st_size) for f in reader.storage_files)
    return {"input": str(in_path.resolve()), "input_files": sizes, "image_topic": topics[0][0].topic,
            "camera_info_topic": topics[1][0].topic, "include_inputs": include_inputs, "node_name": node_name,
            "params": {k: v for k, v in dataclasses.asdict(params).items() if k != "device"}}


def summary_files(summary: BagSummary) -> dict[str, str]:
    """``summary.json`` and ``summary.md`` of a run."""
    return {"summary.json": json.dumps(summary.to_dict(), indent=2) + "\n", "summary.md": summary.to_markdown()}


def summary_from_journal(journal: Journal, bag: Path) -> BagSummary:
    """The summary of an interrupted run rebuilt from its journal (``scenedino-bag-recover``)."""
    info, deltas = journal.header["info"], journal.deltas
    last = deltas[-1] if deltas else {"images": 0, "infos": 0, "written": {}, "stage_s": {}, "wall_s": 0.0}
    skipped = [SkippedFrame(stamp, reason, detail) for d in deltas for _, stamp, reason, detail in d["skipped"]]
    frames = [(occ, classes) for d in deltas for _, occ, classes in d["frames"]]
    classes = np.sum([c for _, c in frames], axis=0) if frames else np.zeros(len(SSC_CLASSES), dtype=np.int64)
    stage_s = dict(last["stage_s"])
    stage_s["other"] = max(last["wall_s"] - sum(stage_s.values()), 0.0)
    return BagSummary(
        input_path=info["input_path"], output_path=str(bag), storage=journal.header["storage"],
        image_topic=journal.header["settings"]["image_topic"],
        camera_info_topic=journal.header["settings"]["camera_info_topic"], model=info["model"],
        device=info["device"], random_weights=info["random_weights"], images=last["images"],
        camera_infos=last["infos"], frames_processed=len(frames),
        skipped=tuple(sorted(skipped, key=lambda x: x.stamp_ns)), setup_s=info["setup_s"], wall_s=last["wall_s"],
        stage_s=stage_s, occupied_voxels=tuple(o for o, _ in frames),
        class_voxels={c.name: int(n) for c, n in zip(SSC_CLASSES, classes)},
        messages_written=dict(sorted(last["written"].items())), interrupted="killed (recovered)")


def process_bag(in_path: str | Path, out_path: str | Path, params: NodeParams, *,
                image_topic: str | None = None, info_topic: str | None = None, include_inputs: bool = False,
                storage: str = "mcap", on_frame: Callable[[ProcessedFrame], None] | None = None,
                progress: bool = True, pipeline: Pipeline | None = None, node_name: str = NODE_NAME,
                resume: bool = False, stop: threading.Event | None = None) -> BagSummary:
    """Run the node's processing over every image of a bag and write the outputs to a new bag.

    The output is written in the work folder ``OUT.partial`` with a commit after every frame
    (``scenedino_ros.bag.partial``) and renamed to ``out_path`` when complete. A damaged input is read as far as it
    can be (``scenedino_ros.bag.salvage``); the summary lists the damage and the messages lost.

    Args:
        in_path: input rosbag2 bag (folder, or a ``.mcap`` / ``.db3`` file).
        out_path: output bag folder (must not exist); also gets ``summary.json`` and ``summary.md``.
        params: the node's parameters (``scenedino_ros.params.load_params``).
        image_topic: Image or CompressedImage topic (default: the bag's only one).
        info_topic: CameraInfo topic (default: ``camera_info`` beside the image topic).
        include_inputs: also copy every input topic, raw, with its QoS.
        storage: ``mcap`` or ``sqlite3``.
        on_frame: called with every frame processed by this run (after it is written).
        progress: show a tqdm progress bar.
        pipeline: an already built pipeline (default: built from ``params``).
        node_name: node whose output topics (``/<node_name>/<output>``) are written.
        resume: continue the interrupted run in ``OUT.partial`` (same input, topics and parameters; the device may
            differ); without one, start from the beginning.
        stop: when set (between frames), stop after the current frame: the bag in ``OUT.partial`` is closed and
            the summary says the run was interrupted (``BagSummary.interrupted``; its ``output_path`` is that bag).

    Raises:
        BagError: the input cannot be opened or lacks the topics; the output exists; ``OUT.partial`` holds an
            interrupted run (without ``resume``) or one with other settings.
        scenedino_ros.pipeline.PipelineError, FileNotFoundError, ...: the pipeline cannot be built.
    """
    check_storage(storage)
    in_path, out_path = Path(in_path), Path(out_path)
    t0 = time.perf_counter()
    if out_path.exists():
        raise BagError(f"output {out_path} exists already; remove it or choose another path")
    reader = _open_reader(in_path)
    try:
        topics = select_topics(reader.connections, image_topic, info_topic)
        try:
            work = PartialBag.start(out_path, TOOL, storage,
                                    _settings(in_path, reader, topics, params, include_inputs, node_name),
                                    resume=resume)
        except (FileExistsError, PartialBagError) as exc:
            raise BagError(str(exc)) from exc
        writer = None
        try:
            pipeline = pipeline or Pipeline(pipeline_config(params))
            if params.target_frame and params.use_tf:
                _logger.info("TF is not read from the bag: the camera pose in %s comes from the camera_pose.* "
                             "parameters", params.target_frame)
            fusion = poses = None
            if params.mapping_enabled:
                fusion, poses = _map_and_poses(reader, params, pipeline)
            writer = work.open_writer()
            run = _Run(params, pipeline, reader, writer, topics, include_inputs, node_name, on_frame, fusion, poses)
            run.stop = stop
            setup_s = time.perf_counter() - t0
            info = {"input_path": str(in_path), "model": pipeline.describe(), "device": str(pipeline.device),
                    "random_weights": pipeline.random_weights, "setup_s": setup_s}
            try:
                run.restore(work.begin(writer, info))
            except PartialBagError as exc:
                raise BagError(str(exc)) from exc
            run.read_all(progress, lambda: work.commit(writer, run.delta()), stop)
            run.save_map(work.bag)
            if run.interrupted:
                summary = run.summary(in_path, work.bag, storage, setup_s)
                work.close_interrupted(writer, summary_files(summary))
                _logger.warning("interrupted (%s) after %d frames: %s holds them as a complete bag; continue with "
                                "--resume", run.interrupted, summary.frames_processed, work.bag)
            else:
                summary = run.summary(in_path, out_path, storage, setup_s)
                work.finish(writer, summary_files(summary))
        except KeyboardInterrupt:
            work.abandon(writer, keep=True)
            raise
        except BaseException as exc:
            work.abandon(writer, keep=work.resuming)
            if work.resuming:
                _logger.error("the frames done so far stay in %s; continue with --resume", work.work)
            if isinstance(exc, FileExistsError):
                raise BagError(str(exc)) from exc
            raise
    finally:
        reader.close()
    return summary
