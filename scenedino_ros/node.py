"""ROS 2 node: camera images in, semantic occupancy out. A thin adapter over the ROS-free modules.

Subscriptions (relative, remap them): ``image`` (sensor_msgs/Image) or, with ``input.transport: compressed``,
``<image>/compressed`` (sensor_msgs/CompressedImage; the remapped ``image`` name plus ``/compressed``, as
image_transport does), and ``camera_info``; SensorData QoS whose reliability follows the publishers'
(``input.reliability: auto``, ``scenedino_ros.input_qos``); messages the middleware reports lost are counted.
Callbacks only validate headers and pair by stamp (O(1)); a worker thread runs the model on the newest pair, so
callbacks never block and frames that arrive while it is busy are dropped and counted (as are pairs beyond
``max_rate_hz``). Outputs without subscribers are not built (the latched ``~/occupancy`` always is); a synthetic
warm-up frame runs when the node is configured. Per-frame errors (bad input, exceptions and out of memory inside
the model) are logged (throttled per kind), counted and the frame is skipped; device memory is released after a
failure, and the log and diagnostics turn ERROR after
``max_consecutive_failures`` failed frames in a row. Only startup errors (parameters, checkpoint, device) stop the
node. The worker's per-frame work (conversion, camera pose, model, output messages) is ``scenedino_ros.outputs``,
shared with ``scenedino-process-bag`` (``scenedino_ros.bag.process``).

Every ROS callback (subscriptions, the diagnostics and QoS timers, parameter services) runs in one single-threaded
executor and none of them waits for the worker, so while a frame runs (even one stuck longer than
``max_frame_s``, which the diagnostics report as it happens) the node keeps answering.

Publications (private, stamped with the input image's stamp): ``~/occupancy`` (nav_msgs/OccupancyGrid, reliable +
transient local), ``~/semantic_points`` (PointCloud2), ``~/voxels`` (MarkerArray), ``~/depth`` (32FC1),
``~/semantics`` (rgb8), ``~/voxel_grid`` (scenedino_ros/SemanticVoxelGrid) and ``/diagnostics``. With
``mapping.enabled`` every frame is also fused into a local semantic map (``scenedino_ros.map_node``): ``~/map/*``
outputs, ``~/map/clear`` and ``~/map/save`` services, a map status in ``/diagnostics``.
"""
from __future__ import annotations

import functools
import gc
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from scenedino_core.labels import class_table
from scenedino_core.pipeline import Pipeline, PipelineError

from . import messages, outputs, params
from .conversions import CameraInfoError, ImageConversionError, camera_info_to_intrinsics, check_image, has_distortion
from .faults import OUT_OF_MEMORY, FailureReport, FailureTracker, FrameWatch, release_device_memory
from .frames import FrameError, FrameResolver, invert
from .input_qos import AdaptiveSubscription
from .map_node import NodeMap
from .sync import LatencyWindow, LatestSlot, RateLimiter, RateMeter, StampSync, unpaired_message

#: Images may arrive this long (s) before the first CameraInfo without a warning.
NO_CAMERA_INFO_GRACE_S = 2.0
#: Errors that stop the node at startup (bad parameters, checkpoint, config or device).
STARTUP_ERRORS = (ValueError, PipelineError, OSError)
#: How often (s) ``input.reliability: auto`` re-checks the publishers' QoS.
QOS_CHECK_PERIOD_S = 1.0
#: Diagnostics stay WARN this long (s) after a failed frame or a message lost in transport.
RECENT_PROBLEM_S = 60.0


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A subscription callback that logs and counts unexpected errors instead of letting them stop the executor."""
    @functools.wraps(callback)
    def wrapper(self: SceneDinoNode, msg: Any) -> None:
        try:
            callback(self, msg)
        except Exception as exc:  # the callback boundary: a malformed message must not take the node down
            self._count("failed")
            self._warn(f"callback:{callback.__name__}:{type(exc).__name__}",
                       f"{callback.__name__} could not handle a message: {type(exc).__name__}: {exc}")
    return wrapper


class _Throttle:
    """Allows one message per key per ``period_s``; counts the suppressed ones."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def ready(self, key: str) -> tuple[bool, int]:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False, 0
            self._last[key] = now
            return True, self._suppressed.pop(key, 0)


@dataclass
class _Frame:
    """A paired input waiting for the worker."""

    image: Any
    info: Any
    intrinsics: np.ndarray | None
    """Already validated K (raw images), or None (compressed: checked after decoding)."""
    received: float
    """``time.monotonic()`` at pairing."""


class SceneDinoNode(Node):
    """SceneDINO semantic occupancy from a monocular camera.

    The plain node configures (parameters, model) and activates (publishers, subscriptions, worker) in its
    constructor. ``scenedino_ros.lifecycle_node.SceneDinoLifecycleNode`` runs the same steps from lifecycle
    transitions instead (``MANAGED``).
    """

    #: True: the constructor only declares the parameters; lifecycle transitions call configure/activate/...
    MANAGED = False

    def __init__(self, node_name: str = "scenedino", *, pipeline: Any = None, **kwargs: Any):
        """``pipeline``: a ready ``Pipeline`` (or a stand-in with ``process``, ``device``, ``image_size``,
        ``describe`` and ``random_weights``, as the tests use); default: built from the parameters."""
        super().__init__(node_name, **kwargs)
        self._given_pipeline = pipeline
        self.pipeline: Pipeline | None = None
        self._worker: threading.Thread | None = None
        self._subscriptions_made: list[Any] = []
        self.publishers_by_output: dict[str, Any] = {}
        self.mapping: NodeMap | None = None
        try:
            params.declare(self)
        except STARTUP_ERRORS as exc:
            self.get_logger().fatal(f"cannot start: {exc}")
            raise
        if not self.MANAGED:
            self.configure()
            self.activate()

    # ------------------------------------------------------------------ lifecycle steps
    def configure(self) -> None:
        """Read and check the parameters and load the model; raises one of ``STARTUP_ERRORS`` (logged)."""
        try:
            self.p = params.read(self)
            self.pipeline = (self._given_pipeline if self._given_pipeline is not None
                             else Pipeline(outputs.pipeline_config(self.p)))
            self.class_names, self.palette = class_table(self.p.class_colors_rgb)
            self.frames = FrameResolver(self.p.target_frame, outputs.static_camera_pose(self.p),
                                        tf_buffer=self._tf_buffer(), tf_timeout_s=self.p.tf_timeout_s)
            self._warm_up()
        except STARTUP_ERRORS as exc:
            self.pipeline = None
            self.get_logger().fatal(f"cannot start: {exc}")
            raise
        self._throttle = _Throttle(self.p.log_throttle_s)
        self.sync = StampSync(self.p.sync_queue_size, int(self.p.sync_max_stamp_diff_s * 1e9),
                              self.p.sync_use_latest_camera_info)
        self.slot: LatestSlot[_Frame] = LatestSlot()
        self.slot.close()  # opened by activate
        self.rate_limit = RateLimiter(self.p.max_rate_hz)
        self.input_rate, self.output_rate = RateMeter(), RateMeter()
        self.latency, self.processing = LatencyWindow(), LatencyWindow()
        self.counts = {"received": 0, "rejected": 0, "processed": 0, "failed": 0, "lost": 0, "infos_lost": 0}
        self._counts_lock = threading.Lock()
        self.failures = FailureTracker(self.p.max_consecutive_failures)
        self.watch = FrameWatch()
        self._last_lost: float | None = None
        self._last_timings: dict[str, float] = {}
        self._last_size: tuple[int, int] | None = None
        self._warned_distortion = False
        self._first_image: float | None = None
        if self.pipeline.random_weights:
            self.get_logger().warning("RANDOM WEIGHTS: no checkpoint given and allow_random_weights is set; the model "
                                   "is untrained and its outputs are meaningless (testing only)")
        self.mapping = NodeMap(self) if self.p.mapping_enabled else None

    def activate(self) -> None:
        """Create the publishers and subscriptions, start the diagnostics timer and the inference worker."""
        self.slot = LatestSlot()
        self._create_publishers()
        if self.mapping is not None:
            self.mapping.activate()
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self.p.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="scenedino_worker", daemon=True)
        self._worker.start()
        g = self.pipeline.config.grid
        self.get_logger().info(
            f"ready: {self.pipeline.describe()} on {self.pipeline.device} ({self.p.precision}); grid "
            f"{'x'.join(map(str, g.dims))} voxels of {g.voxel_size:g} m; frame "
            f"{self.p.target_frame or '<camera optical frame>'}"
            f"{' via TF' if self.frames.uses_tf else ''}; listening on {self._image_topic} and "
            f"{self._info_sub.topic_name}")

    def deactivate(self) -> None:
        """Stop processing: remove the subscriptions, publishers and timer; the worker finishes its frame and ends."""
        for sub in self._subscriptions_made:
            sub.destroy()  # the subscription and its QoS re-check timer
        self._subscriptions_made = []
        if getattr(self, "_diag_timer", None) is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._stop_worker()
        if self.mapping is not None:
            self.mapping.deactivate()
        for pub in [*self.publishers_by_output.values(), getattr(self, "pub_diag", None)]:
            if pub is not None:
                self.destroy_publisher(pub)
        self.publishers_by_output = {}
        self.pub_diag = None

    def cleanup(self) -> None:
        """Release the model (and the GPU memory it held)."""
        device = self.pipeline.device if self.pipeline is not None else None
        if self.mapping is not None:
            self.mapping.cleanup()
            self.mapping = None
        self.pipeline = None
        gc.unfreeze()  # the warm-up froze the model's objects; let the collector see them again
        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()

    def _stop_worker(self) -> None:
        if hasattr(self, "slot"):
            self.slot.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None

    # ------------------------------------------------------------------ setup
    def _tf_buffer(self) -> Any:
        if not self.p.target_frame or not self.p.use_tf:
            return None
        try:
            import tf2_ros
        except ImportError:
            self.get_logger().info("tf2_ros is not available: the camera pose in target_frame comes from the "
                                   "camera_pose.* parameters")
            return None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        return buffer

    def _warm_up(self) -> None:
        if not self.p.warm_up:
            return
        seconds = self.pipeline.warm_up(invert(outputs.static_camera_pose(self.p)))
        self.get_logger().info(f"warm-up frame took {seconds:.2f} s"
                               f"{' (compiled path)' if self.pipeline.compiled else ''}")
        if self.p.compile and not self.pipeline.compiled:
            self.get_logger().warning("compile: torch.compile failed during the warm-up; running eagerly")
        gc.freeze()  # the model and start-up objects: per-frame garbage collections (markers) skip them

    def _create_publishers(self) -> None:
        out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=outputs.OUTPUT_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        voxel_grid = self.p.publish_voxel_grid
        if voxel_grid:
            try:
                outputs.semantic_voxel_grid_type()
            except ImportError as exc:
                voxel_grid = False
                self.get_logger().warning(f"~/voxel_grid disabled: {exc}")
        self.publishers_by_output = {
            name: self.create_publisher(msg_type, f"~/{name}", latched if name in outputs.LATCHED_OUTPUTS else out)
            for name, msg_type in outputs.output_types(self.p, voxel_grid=voxel_grid).items()}
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _create_subscriptions(self) -> None:
        def log_qos(text: str) -> None:
            self.get_logger().info(f"input QoS: {text}")

        common = {"mode": self.p.reliability, "durability": qos_profile_sensor_data.durability,
                  "on_change": log_qos, "check_period_s": QOS_CHECK_PERIOD_S}
        if self.p.image_transport == "compressed":  # like image_transport: '<remapped image>/compressed'
            topic = self.resolve_topic_name("image") + "/compressed"
            self._image_sub = AdaptiveSubscription(self, CompressedImage, topic, self._on_compressed,
                                                   depth=self.p.queue_depth, on_message_lost=self._on_image_lost,
                                                   **common)
        else:
            self._image_sub = AdaptiveSubscription(self, Image, "image", self._on_image, depth=self.p.queue_depth,
                                                   on_message_lost=self._on_image_lost, **common)
        self._image_topic = self._image_sub.topic_name
        self._info_sub = AdaptiveSubscription(self, CameraInfo, "camera_info", self._on_info,
                                              depth=max(5, self.p.queue_depth), on_message_lost=self._on_info_lost,
                                              **common)
        self._subscriptions_made = [self._image_sub, self._info_sub]

    # ------------------------------------------------------------------ logging
    def _count(self, key: str) -> None:
        with self._counts_lock:
            self.counts[key] += 1

    def _warn(self, key: str, text: str) -> None:
        """Throttled warning, per kind of message (``key``)."""
        ok, suppressed = self._throttle.ready(key)
        if ok:
            more = f" [{suppressed} similar message(s) suppressed]" if suppressed else ""
            self.get_logger().warning(text + more)

    def _reject(self, stamp_ns: int, exc: Exception) -> None:
        self._count("rejected")
        # one throttle slot per kind of problem: the message with its numbers blanked out
        key = type(exc).__name__ + re.sub(r"[-+.\deE]+", "#", str(exc))
        self._warn(key, f"skipping frame at {stamp_ns * 1e-9:.3f} s: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ transport losses
    def _on_image_lost(self, info: Any) -> None:
        n = int(info.total_count_change)
        with self._counts_lock:
            self.counts["lost"] += n
            total = self.counts["lost"]
        self._last_lost = time.monotonic()
        sub = self._image_sub
        if sub.reliability == "reliable":
            hint = "the subscription is reliable: the publisher gave up on them (its history is too short?)"
        elif self.p.reliability == "best_effort" and "reliable" in sub.publisher_reliabilities():
            hint = ("the publisher is reliable but input.reliability is best_effort: set it to auto (the default) "
                    "so lost fragments get repaired")
        else:
            hint = ("large images from a best-effort publisher: run the node with the Fast DDS profile "
                    "config/fastdds_large_images.xml (the launch file does, see docs/ros_node.md) or make the "
                    "publisher reliable")
        self._warn("lost_in_transport", f"{n} image(s) lost in transport on {self._image_topic} ({total} in all; "
                   f"subscription {sub.reliability.replace('_', ' ')}): {hint}")

    def _on_info_lost(self, info: Any) -> None:
        with self._counts_lock:
            self.counts["infos_lost"] += int(info.total_count_change)
        self._warn("camera_info_lost", f"{int(info.total_count_change)} CameraInfo message(s) lost in transport on "
                   f"{self._info_sub.topic_name}")

    # ------------------------------------------------------------------ callbacks (never block)
    @_guarded
    def _on_image(self, msg: Image) -> None:
        self._count("received")
        self.input_rate.tick()
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        try:
            layout = check_image(msg, self.p.max_megapixels)
        except ImageConversionError as exc:
            self._reject(stamp, exc)
            return
        self._add_image(stamp, msg, (layout.height, layout.width))

    @_guarded
    def _on_compressed(self, msg: CompressedImage) -> None:
        self._count("received")
        self.input_rate.tick()
        self._add_image(Time.from_msg(msg.header.stamp).nanoseconds, msg, None)

    def _add_image(self, stamp: int, msg: Any, size: tuple[int, int] | None) -> None:
        previous = self.sync.last_image_stamp_ns
        jump = self.sync.time_jump(stamp)
        if jump:
            self._warn("time_jump", f"image stamp went backwards by {jump * 1e-9:.3f} s ({previous * 1e-9:.3f} -> "
                       f"{stamp * 1e-9:.3f} s): bag loop or clock reset? Cleared the pairing queues; continuing")
            if self.mapping is not None:
                self.mapping.time_jump()
        if self._first_image is None:
            self._first_image = time.monotonic()
        if self.sync.infos_received == 0 and time.monotonic() - self._first_image > NO_CAMERA_INFO_GRACE_S:
            self._warn("no_camera_info", f"images arrive on {self._image_topic} but no CameraInfo has been received "
                       f"on {self._info_sub.topic_name} yet: check the camera_info remapping and that the driver "
                       "publishes it; images wait unprocessed")
        pair = self.sync.add_image(stamp, (msg, size))
        self._warn_discarded()
        if pair is not None:
            self._submit(pair.stamp_ns, *pair.image, pair.info)

    @_guarded
    def _on_info(self, msg: CameraInfo) -> None:
        pair = self.sync.add_info(Time.from_msg(msg.header.stamp).nanoseconds, msg)
        self._warn_discarded()
        if pair is not None:
            self._submit(pair.stamp_ns, *pair.image, pair.info)

    def _warn_discarded(self) -> None:
        """Warn (throttled) about images the pairing discarded without a CameraInfo, naming them."""
        discarded = self.sync.take_discarded()
        if discarded:
            self._warn("unpaired", unpaired_message(discarded, self.sync.newest_info_stamp_ns(),
                                                    self._info_sub.topic_name))

    def _submit(self, stamp: int, image: Any, size: tuple[int, int] | None, info: CameraInfo) -> None:
        K = None
        if size is not None:
            try:
                K = camera_info_to_intrinsics(info, size, rectified=self.p.rectified)
            except CameraInfoError as exc:
                self._reject(stamp, exc)
                return
        if self.rate_limit.allow():  # beyond max_rate_hz: dropped before the worker (counted)
            self.slot.put(_Frame(image, info, K, time.monotonic()))

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self.slot.closed:
            frame = self.slot.take(timeout=0.5)
            if frame is None:
                continue
            stamp = Time.from_msg(frame.image.header.stamp).nanoseconds
            self.watch.start(stamp)
            failure = None
            try:
                self._process(frame)
            except (ImageConversionError, CameraInfoError, FrameError) as exc:
                self._reject(stamp, exc)
            except Exception as exc:  # the worker is the per-frame boundary: log, count, free memory, keep serving
                self._count("failed")
                failure = self.failures.failed(exc)
            else:
                ended = self.failures.succeeded()
                if ended >= self.p.max_consecutive_failures:
                    self.get_logger().info(f"frames are processed again after {ended} failed frames in a row")
            finally:
                took = self.watch.finish()
            del frame
            if failure is not None:
                # after the except block, so the exception's traceback no longer holds the frame's tensors
                release_device_memory(getattr(self.pipeline, "device", None))
                self._log_failure(stamp, failure)
            if took > self.p.max_frame_s:
                self._warn("slow_frame", f"frame at {stamp * 1e-9:.3f} s took {took:.1f} s (max_frame_s = "
                           f"{self.p.max_frame_s:g} s)")

    def _log_failure(self, stamp: int, report: FailureReport) -> None:
        """Log a failed frame by kind: WARN, or ERROR from ``max_consecutive_failures`` in a row (throttled)."""
        hint = ""
        if report.kind == OUT_OF_MEMORY:
            hint = ("; device memory released. Shrink the grid (grid.*), use precision: bf16 or a device with more "
                    "memory")
        text = (f"frame at {stamp * 1e-9:.3f} s failed ({report.kind}): {report.text}; skipped it{hint} "
                f"[{report.consecutive} in a row, {report.total} in all]")
        if report.escalate:
            key = "failed:escalated"
            text = (f"{report.consecutive} frames in a row failed (max_consecutive_failures = "
                    f"{self.p.max_consecutive_failures}); the latest: " + text)
            ok, suppressed = self._throttle.ready(key)
            if ok:
                more = f" [{suppressed} similar message(s) suppressed]" if suppressed else ""
                self.get_logger().error(text + more)
        else:
            self._warn(f"failed:{report.kind}:{report.text.split(':')[0]}", text)

    def _wanted_outputs(self) -> list[str]:
        """Outputs to build for this frame: those with subscribers, and the latched ones (late joiners get them)."""
        return [name for name, pub in self.publishers_by_output.items()
                if name in outputs.LATCHED_OUTPUTS or pub.get_subscription_count() > 0]

    def _process(self, frame: _Frame) -> None:
        inp = outputs.frame_input(frame.image, frame.info, self.p, frame.intrinsics)
        self._note_input(inp.rgb.shape[:2], frame.info)
        wanted = self._wanted_outputs()
        result, frame_id = outputs.infer(self.pipeline, self.frames, inp, wanted, mapping=self.mapping is not None)
        t_publish = time.perf_counter()
        for name, msg in outputs.build_messages(result, inp.stamp, frame_id, inp.camera_frame, self.p,
                                                self.class_names, self.palette, wanted):
            self.publishers_by_output[name].publish(msg)
        publish_ms = (time.perf_counter() - t_publish) * 1e3
        self._count("processed")
        self.output_rate.tick()
        now = self.get_clock().now().nanoseconds
        self.latency.add((now - Time.from_msg(inp.stamp).nanoseconds) * 1e-9)
        self.processing.add(time.monotonic() - frame.received)
        self._last_timings = {**result.timings_ms, "publish": publish_ms}
        if self.mapping is not None:
            self.mapping.on_frame(inp, result)

    def _note_input(self, size: tuple[int, int], info: CameraInfo) -> None:
        if size != self._last_size:
            self._last_size = size
            h, w = size
            mh, mw = self.pipeline.image_size
            scale = max(mh / h, mw / w)
            self.get_logger().info(f"input images are {w}x{h} ({h * w / 1e6:.2f} MP): each is resized by "
                                   f"{scale:.3g} and centre-cropped to the model's {mw}x{mh} input")
        if not self.p.rectified and not self._warned_distortion and has_distortion(info):
            self._warned_distortion = True
            self.get_logger().warning("CameraInfo has non-zero distortion but input.rectified is false: the model "
                                   "ignores distortion; feed rectified images (image_proc) with input.rectified:=true")

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> tuple[str, str, dict[str, Any]]:
        """(level, message, values) of the current state; never waits for the worker. A frame running longer than
        ``max_frame_s`` is also logged here (throttled), so the log says so while it runs."""
        p50, p95 = self.latency.percentiles(50, 95)
        q50, q95 = self.processing.percentiles(50, 95)
        running = self.watch.running()
        last = self.failures.last
        values = {
            "input_rate_hz": self.input_rate.rate_hz(),
            "output_rate_hz": self.output_rate.rate_hz(),
            "latency_p50_ms": p50 * 1e3, "latency_p95_ms": p95 * 1e3,
            "processing_p50_ms": q50 * 1e3, "processing_p95_ms": q95 * 1e3,
            "frames_received": self.counts["received"],
            "frames_paired": self.slot.put_count,
            "frames_processed": self.counts["processed"],
            "frames_dropped": self.slot.dropped,
            "frames_rate_limited": self.rate_limit.dropped,
            "frames_rejected": self.counts["rejected"],
            "frames_failed": self.counts["failed"],
            "consecutive_failures": self.failures.consecutive,
            "last_failure": f"{last.kind}: {last.text}" if last else "",
            "frame_running_s": running[1] if running else 0.0,
            "frames_lost_in_transport": self.counts["lost"],
            "frames_unpaired": self.sync.unpaired_images,
            "camera_infos_received": self.sync.infos_received,
            "camera_infos_lost_in_transport": self.counts["infos_lost"],
            "input_reliability": self._image_sub.reliability,
            "device": str(self.pipeline.device), "precision": self.p.precision, "compiled": self.pipeline.compiled,
            "model": self.pipeline.describe(), "checkpoint": self.p.checkpoint or "<none>",
            "random_weights": self.pipeline.random_weights,
            "stage_ms": " ".join(f"{k}={v:.1f}" for k, v in self._last_timings.items()),
        }
        if running and running[1] > self.p.max_frame_s:
            message = (f"frame at {running[0] * 1e-9:.3f} s has been running for {running[1]:.1f} s (max_frame_s = "
                       f"{self.p.max_frame_s:g} s): model stuck?")
            self._warn("stuck", message)
            return "error", message, values
        if last and self.failures.consecutive >= self.p.max_consecutive_failures:
            return "error", f"{self.failures.consecutive} frames in a row failed; last: {last.kind}", values
        if self.pipeline.random_weights:
            return "warn", "RANDOM WEIGHTS: untrained model, outputs are meaningless", values
        if self.counts["received"] and not self.sync.infos_received:
            return "warn", "images but no CameraInfo received", values
        since = self.failures.seconds_since_last()
        if last and (self.failures.consecutive or since < RECENT_PROBLEM_S):
            return "warn", f"{self.failures.total} frame(s) failed, the last {since:.0f} s ago: {last.kind}", values
        if self._last_lost is not None and time.monotonic() - self._last_lost < RECENT_PROBLEM_S:
            return "warn", f"{self.counts['lost']} image(s) lost in transport", values
        return "ok", "running", values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics()
        stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(messages.diagnostic_array(stamp, f"{self.get_name()}: inference",
                                                        str(self.pipeline.device), level, message, values))
        if self.mapping is not None:
            self.mapping.publish_diagnostics(self.pub_diag, stamp)

    def destroy_node(self) -> None:
        self._stop_worker()
        super().destroy_node()


def spin(node_class: type[SceneDinoNode], args: list[str] | None = None) -> None:
    """Run one node of ``node_class`` until Ctrl-C or shutdown; exit status 1 when it cannot start (logged)."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except STARTUP_ERRORS:
        sys.exit(1)  # already logged by the node
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``scenedino_node`` (console script and ``lib/scenedino_ros/scenedino_node``)."""
    spin(SceneDinoNode, args)


if __name__ == "__main__":
    main()
