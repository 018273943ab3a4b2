"""The node's side of the local semantic map (``mapping.enabled``): camera poses from TF, the ``~/map/*`` outputs,
the ``~/map/clear`` and ``~/map/save`` services and the map's ``/diagnostics`` status.

The map itself is ``scenedino_ros.map_fusion.MapFusion`` (no ROS); its messages are ``scenedino_ros.map_outputs``.
``SceneDinoNode`` calls ``NodeMap`` from its lifecycle steps (configure: the map and the pose source; activate /
deactivate: publishers and services; cleanup: the TF subscriptions and the map), from its worker after each
frame's outputs are published (``on_frame``), from its image callback when the stamps jump back (``time_jump``)
and from its diagnostics timer.

Poses, ``map_from_camera`` at the image stamp, from TF:

* with ``tf2_ros`` (a ROS 2 distribution): a ``tf2_ros.Buffer`` fed by a ``TransformListener`` (the node's own
  when ``target_frame`` already made one), looked up with ``mapping.pose_timeout_s``;
* without it (the PyPI wheels have no ``tf2_ros``): the node subscribes ``/tf`` (reliable, volatile, depth 100) and
  ``/tf_static`` (reliable, transient local, depth 100) as ``tf2_msgs/TFMessage`` into a ``TransformCache``
  (``scenedino_ros.tf_cache``: a chain of frames, interpolated at the stamp) and waits up to
  ``mapping.pose_timeout_s`` for a transform that has not arrived yet. ``scenedino-replay`` and
  ``ros2 bag play`` publish exactly these topics, as does any robot's state publisher and odometry.

Threads: the worker fuses and publishes; service callbacks run on the executor. ``MapFusion`` locks the map, and
``save`` writes a copy outside the lock, so neither blocks the other for long.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from . import messages
from .frames import transform_to_matrix
from .map_fusion import CachedPoses, FrameOutcome, MapFusion
from .map_outputs import LATCHED_MAP_OUTPUTS, map_messages, map_output_types
from .outputs import OUTPUT_DEPTH
from .tf_cache import TransformCache

#: Seconds of dynamic transforms the ``TransformCache`` keeps (tf2's buffer keeps 10 s).
TF_CACHE_S = 30.0
#: QoS of the TF subscriptions without tf2_ros (those of tf2_ros's listener).
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class NodeMap:
    """The map of one ``SceneDinoNode`` (see the module docstring); made by the node's ``configure``."""

    def __init__(self, node: Any):
        self.node = node
        p = node.p
        self.fusion = MapFusion.from_params(p, node.pipeline.config.grid)
        self.frame = self.fusion.settings.frame
        self.publishers: dict[str, Any] = {}
        self._services: list[Any] = []
        self._tf_subscriptions: list[Any] = []
        self._tf_cache: TransformCache | None = None
        self._tf2_buffer: Any = None
        self._newest_tf_ns: int | None = None
        self.poses_from = self._pose_source(p.mapping_pose_timeout_s)

    # ------------------------------------------------------------------ poses
    def _pose_source(self, timeout_s: float) -> str:
        """Set up ``lookup``; returns how poses arrive, in words (for the log)."""
        try:
            import tf2_ros
        except ImportError:
            from tf2_msgs.msg import TFMessage

            self._tf_cache = TransformCache(cache_s=TF_CACHE_S)
            poses = CachedPoses(self._tf_cache, timeout_s)
            self._lookup = poses.lookup
            self._tf_subscriptions = [
                self.node.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS),
                self.node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True),
                                              TF_STATIC_QOS)]
            return "/tf and /tf_static (TransformCache: tf2_ros is not installed)"
        from rclpy.duration import Duration
        from rclpy.time import Time

        buffer = getattr(self.node.frames, "tf_buffer", None)
        if buffer is None:
            buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(buffer, self.node)
        self._tf2_buffer = buffer
        timeout = Duration(seconds=timeout_s)

        def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
            tf = buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns), timeout=timeout)
            return transform_to_matrix(tf.transform)

        self._lookup = lookup
        return "TF (tf2_ros buffer)"

    def _on_tf(self, msg: Any, static: bool) -> None:
        cache = self._tf_cache
        assert cache is not None
        if not static and msg.transforms:
            stamps = [int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec) for t in msg.transforms]
            if self._newest_tf_ns is not None and min(stamps) < self._newest_tf_ns - cache.cache_ns:
                # older than the history kept: time jumped back (bag loop, clock reset); start a new history
                cache.clear()
                self._newest_tf_ns = None
            self._newest_tf_ns = max(stamps + ([self._newest_tf_ns] if self._newest_tf_ns is not None else []))
        try:
            cache.add_message(msg, static)
        except ValueError as exc:  # a transform without frame names or with NaN: skip it, keep the rest
            self.node._warn("map:bad_tf", f"ignoring a {'/tf_static' if static else '/tf'} message: {exc}")

    # ------------------------------------------------------------------ lifecycle
    def activate(self) -> None:
        """Create the ``~/map/*`` publishers and the services."""
        from std_srvs.srv import Trigger

        out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        try:
            types = map_output_types()
        except ImportError as exc:
            types = map_output_types(voxel_grid=False)
            self.node.get_logger().warning(f"~/map/voxel_grid disabled: {exc}")
        self.publishers = {name: self.node.create_publisher(cls, f"~/{name}",
                                                            latched if name in LATCHED_MAP_OUTPUTS else out)
                           for name, cls in types.items()}
        self._services = [self.node.create_service(Trigger, "~/map/clear", self._on_clear),
                          self.node.create_service(Trigger, "~/map/save", self._on_save)]
        cfg = self.fusion.config
        period = self.fusion.settings.publish_period_ns * 1e-9
        self.node.get_logger().info(
            f"map: fusing every frame into '{self.frame}' ({'x'.join(map(str, cfg.dims))} voxels of "
            f"{cfg.voxel_size_m:g} m around the camera, {self.fusion.map.nbytes / 2**20:.3g} MiB); poses from "
            f"{self.poses_from}; ~/map/* " + (f"at most every {period:g} s of image stamps" if period > 0
                                               else "after every fused frame"))

    def deactivate(self) -> None:
        """Remove the publishers and services (the worker has stopped)."""
        for pub in self.publishers.values():
            self.node.destroy_publisher(pub)
        for srv in self._services:
            self.node.destroy_service(srv)
        self.publishers, self._services = {}, []

    def cleanup(self) -> None:
        """Remove the TF subscriptions (the map is released with this object)."""
        for sub in self._tf_subscriptions:
            self.node.destroy_subscription(sub)
        self._tf_subscriptions = []

    # ------------------------------------------------------------------ frames
    def on_frame(self, inp: Any, result: Any) -> FrameOutcome | None:
        """Fuse a processed frame (its outputs are out already) and publish the map when due. Errors are logged
        and counted here: the frame itself succeeded."""
        stamp_ns = int(inp.stamp.sec) * 1_000_000_000 + int(inp.stamp.nanosec)
        try:
            cam_from_grid = self.node.frames.resolve(inp.camera_frame, inp.stamp).cam_from_grid
            outcome = self.fusion.add_frame(stamp_ns, inp.camera_frame, result, cam_from_grid, self._lookup)
            if not outcome.fused:
                n = self.fusion.counters.frames_without_pose
                self.node._warn("map:no_pose", f"frame at {stamp_ns * 1e-9:.3f} s is not in the map: no pose of "
                                f"{inp.camera_frame} in {self.frame} at its stamp ({outcome.reason}); its per-frame "
                                f"outputs were published [{n} frame(s) without a pose]")
            elif outcome.publish:
                self.publish()
            return outcome
        except Exception as exc:  # the map must not fail a frame whose outputs are out
            self.node._warn(f"map:error:{type(exc).__name__}", f"frame at {stamp_ns * 1e-9:.3f} s: map fusion "
                            f"failed: {type(exc).__name__}: {exc}")
            return None

    def time_jump(self) -> None:
        """The image stamps jumped back: reset the map. A tf2 buffer forgets its history too (it would ignore the
        older transforms); the ``TransformCache`` starts a new history itself when ``/tf`` jumps back further than
        it keeps (transforms of the new timeline that arrived before the image stay)."""
        self.fusion.time_jump()
        if self._tf2_buffer is not None:
            self._tf2_buffer.clear()
        self.node._warn("map:reset", "image stamps jumped back: the map was reset")

    def publish(self) -> int:
        """Publish the map outputs that have subscribers (the latched occupancy grid always); returns how many."""
        wanted = [name for name, pub in self.publishers.items()
                  if name in LATCHED_MAP_OUTPUTS or pub.get_subscription_count() > 0]
        if not wanted:
            return 0
        built = map_messages(self.fusion.snapshot(), self.fusion.settings, self.node.class_names, self.node.palette,
                             wanted)
        for name, msg in built:
            self.publishers[name].publish(msg)
        self.fusion.mark_published()
        return len(built)

    # ------------------------------------------------------------------ services
    def _on_clear(self, request: Any, response: Any) -> Any:
        response.message = self.fusion.clear()
        response.success = True
        self.node.get_logger().info(f"~/map/clear: {response.message}")
        try:
            self.publish()
        except Exception as exc:  # the map is cleared; a failed re-publication is only logged
            self.node.get_logger().warning(f"~/map/clear: could not publish the cleared map: {exc}")
        return response

    def _on_save(self, request: Any, response: Any) -> Any:
        try:
            npz, ply = self.fusion.save()
        except OSError as exc:
            response.success, response.message = False, f"could not save the map: {exc}"
            self.node.get_logger().error(f"~/map/save: {response.message}")
            return response
        stats = self.fusion.statistics()
        response.success = True
        response.message = (f"saved the map ({stats['frames_in_map']} frame(s), {stats['occupied_voxels']} occupied "
                            f"voxels, frame {self.frame}) to {npz} and {ply}")
        self.node.get_logger().info(f"~/map/save: {response.message}")
        return response

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> tuple[str, str, dict[str, Any]]:
        """(level, message, values) of the map."""
        values = self.fusion.statistics()
        values["poses_from"] = self.poses_from
        if values["frames_fused"] == 0 and values["frames_without_pose"] == 0:
            return "ok", "waiting for frames", values
        if not self.fusion.last_frame_fused:
            return "warn", (f"latest frame not fused: no pose in {self.frame} ({values['frames_without_pose']} "
                            f"frame(s) without a pose)"), values
        return "ok", (f"{values['frames_in_map']} frame(s) in the map, {values['occupied_voxels']} occupied "
                      "voxels"), values

    def publish_diagnostics(self, publisher: Any, stamp: Any) -> None:
        level, message, values = self.diagnostics()
        publisher.publish(messages.diagnostic_array(stamp, f"{self.node.get_name()}: map", self.frame, level, message,
                                                    values))
