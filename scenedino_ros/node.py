"""ROS 2 node: camera images in, semantic occupancy out. A thin adapter over the ROS-free modules.

Subscriptions (relative, remap them): ``image`` (sensor_msgs/Image) or, with ``input.transport: compressed``,
``<image>/compressed`` (sensor_msgs/CompressedImage; the remapped ``image`` name plus ``/compressed``, as
image_transport does), and ``camera_info``; SensorData QoS with a reliability parameter. Callbacks only validate
headers and pair by stamp (O(1)); a worker thread runs the model on the newest pair, so callbacks never block and
frames that arrive while it is busy are dropped and counted (as are pairs beyond ``max_rate_hz``). Outputs without
subscribers are not built (the latched ``~/occupancy`` always is); a synthetic warm-up frame runs at start-up.
Per-frame errors are logged (throttled per kind) and the frame is skipped; only startup errors (parameters,
checkpoint, device) stop the node. The worker's per-frame
work (conversion, camera pose, model, output messages) is ``scenedino_ros.outputs``, shared with
``scenedino-process-bag`` (``scenedino_ros.bag.process``).

Publications (private, stamped with the input image's stamp): ``~/occupancy`` (nav_msgs/OccupancyGrid, reliable +
transient local), ``~/semantic_points`` (PointCloud2), ``~/voxels`` (MarkerArray), ``~/depth`` (32FC1),
``~/semantics`` (rgb8), ``~/voxel_grid`` (scenedino_ros/SemanticVoxelGrid) and ``/diagnostics``.
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
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from scenedino_core.labels import class_table
from scenedino_core.pipeline import Pipeline, PipelineError

from . import messages, outputs, params
from .conversions import CameraInfoError, ImageConversionError, camera_info_to_intrinsics, check_image, has_distortion
from .frames import FrameError, FrameResolver, invert
from .sync import LatencyWindow, LatestSlot, RateLimiter, RateMeter, StampSync

#: Images may arrive this long (s) before the first CameraInfo without a warning.
NO_CAMERA_INFO_GRACE_S = 2.0
#: Errors that stop the node at startup (bad parameters, checkpoint, config or device).
STARTUP_ERRORS = (ValueError, PipelineError, OSError)


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A subscription callback that logs and counts unexpected errors instead of letting them stop the executor."""
    @functools.wraps(callback)
    def wrapper(self: "SceneDinoNode", msg: Any) -> None:
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
    """SceneDINO semantic occupancy from a monocular camera."""

    def __init__(self, node_name: str = "scenedino", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        try:
            params.declare(self)
            self.p = params.read(self)
            self.pipeline = Pipeline(outputs.pipeline_config(self.p))
            self.class_names, self.palette = class_table(self.p.class_colors_rgb)
            self.frames = FrameResolver(self.p.target_frame, outputs.static_camera_pose(self.p),
                                        tf_buffer=self._tf_buffer(), tf_timeout_s=self.p.tf_timeout_s)
            self._warm_up()
        except STARTUP_ERRORS as exc:
            self.get_logger().fatal(f"cannot start: {exc}")
            raise
        self._throttle = _Throttle(self.p.log_throttle_s)
        self.sync = StampSync(self.p.sync_queue_size, int(self.p.sync_max_stamp_diff_s * 1e9),
                              self.p.sync_use_latest_camera_info)
        self.slot: LatestSlot[_Frame] = LatestSlot()
        self.rate_limit = RateLimiter(self.p.max_rate_hz)
        self.input_rate, self.output_rate = RateMeter(), RateMeter()
        self.latency, self.processing = LatencyWindow(), LatencyWindow()
        self.counts = {"received": 0, "rejected": 0, "processed": 0, "failed": 0}
        self._counts_lock = threading.Lock()
        self._last_timings: dict[str, float] = {}
        self._last_size: tuple[int, int] | None = None
        self._warned_distortion = False
        self._first_image: float | None = None
        self._create_publishers()
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self.p.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="scenedino_worker", daemon=True)
        self._worker.start()
        if self.pipeline.random_weights:
            self.get_logger().warning("RANDOM WEIGHTS: no checkpoint given and allow_random_weights is set; the model "
                                   "is untrained and its outputs are meaningless (testing only)")
        g = self.pipeline.config.grid
        self.get_logger().info(
            f"ready: {self.pipeline.describe()} on {self.pipeline.device} ({self.p.precision}); grid "
            f"{'x'.join(map(str, g.dims))} voxels of {g.voxel_size:g} m; frame "
            f"{self.p.target_frame or '<camera optical frame>'}"
            f"{' via TF' if self.frames.uses_tf else ''}; listening on {self._image_topic} and "
            f"{self._info_sub.topic_name}")

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
        reliability = (ReliabilityPolicy.RELIABLE if self.p.reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        sensor = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.p.queue_depth, reliability=reliability,
                            durability=qos_profile_sensor_data.durability)
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(5, self.p.queue_depth),
                              reliability=reliability, durability=qos_profile_sensor_data.durability)
        if self.p.image_transport == "compressed":  # like image_transport: '<remapped image>/compressed'
            topic = self.resolve_topic_name("image") + "/compressed"
            sub = self.create_subscription(CompressedImage, topic, self._on_compressed, sensor)
        else:
            sub = self.create_subscription(Image, "image", self._on_image, sensor)
        self._image_topic = sub.topic_name
        self._info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_info, info_qos)

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
        if self._first_image is None:
            self._first_image = time.monotonic()
        if self.sync.infos_received == 0 and time.monotonic() - self._first_image > NO_CAMERA_INFO_GRACE_S:
            self._warn("no_camera_info", f"images arrive on {self._image_topic} but no CameraInfo has been received "
                       f"on {self._info_sub.topic_name} yet: check the camera_info remapping and that the driver "
                       "publishes it; images wait unprocessed")
        unpaired = self.sync.unpaired_images
        pair = self.sync.add_image(stamp, (msg, size))
        if self.sync.unpaired_images > unpaired and self.sync.infos_received:
            newest = self.sync.newest_info_stamp_ns()
            self._warn("unpaired", f"image at {stamp * 1e-9:.3f} s found no CameraInfo with a matching stamp "
                       f"(newest CameraInfo: {newest * 1e-9 if newest else float('nan'):.3f} s); stamp both alike, or "
                       "set sync.max_stamp_diff_s or sync.use_latest_camera_info")
        if pair is not None:
            self._submit(pair.stamp_ns, *pair.image, pair.info)

    @_guarded
    def _on_info(self, msg: CameraInfo) -> None:
        pair = self.sync.add_info(Time.from_msg(msg.header.stamp).nanoseconds, msg)
        if pair is not None:
            self._submit(pair.stamp_ns, *pair.image, pair.info)

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
            try:
                self._process(frame)
            except (ImageConversionError, CameraInfoError, FrameError) as exc:
                self._reject(stamp, exc)
            except Exception as exc:  # the worker is the per-frame boundary: log, count, keep serving
                self._count("failed")
                self._warn(f"failed:{type(exc).__name__}", f"frame at {stamp * 1e-9:.3f} s failed: "
                           f"{type(exc).__name__}: {exc}")

    def _wanted_outputs(self) -> list[str]:
        """Outputs to build for this frame: those with subscribers, and the latched ones (late joiners get them)."""
        return [name for name, pub in self.publishers_by_output.items()
                if name in outputs.LATCHED_OUTPUTS or pub.get_subscription_count() > 0]

    def _process(self, frame: _Frame) -> None:
        inp = outputs.frame_input(frame.image, frame.info, self.p, frame.intrinsics)
        self._note_input(inp.rgb.shape[:2], frame.info)
        wanted = self._wanted_outputs()
        result, frame_id = outputs.infer(self.pipeline, self.frames, inp, wanted)
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
        """(level, message, values) of the current state."""
        p50, p95 = self.latency.percentiles(50, 95)
        q50, q95 = self.processing.percentiles(50, 95)
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
            "frames_unpaired": self.sync.unpaired_images,
            "camera_infos_received": self.sync.infos_received,
            "device": str(self.pipeline.device), "precision": self.p.precision, "compiled": self.pipeline.compiled,
            "model": self.pipeline.describe(), "checkpoint": self.p.checkpoint or "<none>",
            "random_weights": self.pipeline.random_weights,
            "stage_ms": " ".join(f"{k}={v:.1f}" for k, v in self._last_timings.items()),
        }
        if self.pipeline.random_weights:
            return "warn", "RANDOM WEIGHTS: untrained model, outputs are meaningless", values
        if self.counts["received"] and not self.sync.infos_received:
            return "warn", "images but no CameraInfo received", values
        if self.counts["failed"]:
            return "warn", f"{self.counts['failed']} frame(s) failed", values
        return "ok", "running", values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics()
        self.pub_diag.publish(messages.diagnostic_array(self.get_clock().now().to_msg(),
                                                        f"{self.get_name()}: inference", str(self.pipeline.device),
                                                        level, message, values))

    def destroy_node(self) -> None:
        if hasattr(self, "slot"):
            self.slot.close()
            self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``scenedino_node`` (console script and ``lib/scenedino_ros/scenedino_node``)."""
    rclpy.init(args=args)
    node = None
    try:
        node = SceneDinoNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except STARTUP_ERRORS:
        sys.exit(1)  # already logged by the node
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
