"""Soak: the node under a steady camera stream for minutes, with a model failure injected every N frames.

    python benchmarks/soak.py [--minutes 10] [--rate-hz 10] [--fail-every 50] [--size 376x1408] [--checkpoint CKPT]
                              [--mapping] [--out benchmarks/results/soak.md]

Runs the real ``SceneDinoNode`` in this process (its model wrapped so that every ``--fail-every``-th frame raises
an out-of-memory error or a RuntimeError, alternately), a camera publisher and an output subscriber beside it,
DDS on loopback (run it inside ``unshare -n`` with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, as
``scripts/test.sh`` does). Every ``--sample-s`` seconds it records frames processed and failed, outputs received,
the node's diagnostics level and the process's resident memory; at the end it prints the table and a verdict:
the node alive, outputs in every sample interval, failures counted, and the RSS growth between the first and the
last quarter of the run. With ``--mapping`` the local semantic map is on (default window, 256 x 256 x 32 voxels in
``odom``): the publisher also sends ``/tf_static`` (base_link -> camera) and, at every image stamp, ``/tf`` (odom ->
base_link, driving forward at 1 m/s, so the window moves every 2 m), and the report adds the frames fused and the
map messages received.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from report import emit, rss_mb  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from scenedino_core.images import synthetic_street_image
from scenedino_core.pipeline import Pipeline
from scenedino_ros import outputs
from scenedino_ros.frames import camera_pose_from_rpy, matrix_to_xyz_quat
from scenedino_ros.node import SceneDinoNode
from scenedino_ros.params_file import load_params

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "checkpoints" / "scenedino_synthetic_demo.pt"
#: A 12.8 x 12.8 x 3.2 m grid of 0.4 m voxels: the soak is about the node around the model, not the model.
GRID = {"grid.voxel_size_m": 0.4, "grid.min_m": [0.0, -6.4, -0.4], "grid.max_m": [12.8, 6.4, 2.8]}
#: With --mapping: the map on in odom, published once per second of image stamps (the node's default rate).
MAPPING = {"mapping.enabled": True, "mapping.frame": "odom"}
#: Driving speed (m/s) along odom's x axis with --mapping.
SPEED_M_S = 1.0


class FailingPipeline:
    """The real pipeline; every ``every``-th call of ``process`` raises instead (OOM and RuntimeError alternately)."""

    def __init__(self, real: Pipeline, every: int):
        self._real, self._every, self.calls, self.injected = real, every, 0, 0

    def process(self, *args, **kwargs):
        self.calls += 1
        if self._every and self.calls % self._every == 0:
            self.injected += 1
            if self.injected % 2:
                raise torch.OutOfMemoryError("injected by benchmarks/soak.py")
            raise RuntimeError("injected by benchmarks/soak.py")
        return self._real.process(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


def transform(parent: str, child: str, stamp, T: np.ndarray) -> TransformStamped:
    (x, y, z), (qx, qy, qz, qw) = matrix_to_xyz_quat(T)
    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = stamp, parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = x, y, z
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = qx, qy, qz, qw
    return t


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate-hz", type=float, default=10.0)
    ap.add_argument("--fail-every", type=int, default=50)
    ap.add_argument("--size", type=_size, default=(376, 1408), help="image HxW (default KITTI-360 376x1408)")
    ap.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT)
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--mapping", action="store_true", help="local semantic map on, camera driving at 1 m/s in /tf")
    ap.add_argument("--out", type=Path, help="also write the report (Markdown) here")
    args = ap.parse_args(argv)
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        print("soak.py: set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (and run inside unshare -n)", file=sys.stderr)
        return 2

    overrides = [f"checkpoint:={args.checkpoint}", "input.reliability:=reliable", "diagnostics.period_s:=1.0"]
    extra = {**GRID, **(MAPPING if args.mapping else {})}
    overrides += [f"{k}:={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()]
    p = load_params([REPO / "config" / "scenedino.yaml"], [o.replace(" ", "") for o in overrides])
    pipeline = FailingPipeline(Pipeline(outputs.pipeline_config(p)), args.fail_every)
    rclpy.init()
    ros_params = [Parameter(k, value=v) for k, v in (
        ("checkpoint", str(args.checkpoint)), ("input.reliability", "reliable"), ("diagnostics.period_s", 1.0),
        *extra.items())]
    node = SceneDinoNode(pipeline=pipeline, parameter_overrides=ros_params)
    peer = rclpy.create_node("soak_camera")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub_image = peer.create_publisher(Image, "image", reliable)
    pub_info = peer.create_publisher(CameraInfo, "camera_info", reliable)
    received = {"clouds": 0, "maps": 0}
    diag = {"level": "?", "message": "", "fused": 0}
    lock = threading.Lock()

    def on_cloud(_msg):
        with lock:
            received["clouds"] += 1

    def on_map(_msg):
        with lock:
            received["maps"] += 1

    def on_diag(msg):
        for status in msg.status:
            if status.name.endswith(": map"):
                diag["fused"] = int(next((kv.value for kv in status.values if kv.key == "frames_fused"), 0))
            if status.name.endswith(": inference"):
                diag.update(level={0: "OK", 1: "WARN", 2: "ERROR"}.get(int.from_bytes(status.level, "little")
                                                                        if isinstance(status.level, bytes)
                                                                        else status.level, "?"),
                            message=status.message)

    peer.create_subscription(PointCloud2, "/scenedino/semantic_points", on_cloud, reliable)
    peer.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    if args.mapping:
        peer.create_subscription(PointCloud2, "/scenedino/map/semantic_points", on_map, reliable)
        pub_tf = peer.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        pub_tf_static = peer.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        pub_tf_static.publish(TFMessage(transforms=[transform(
            "base_link", "camera_optical", node.get_clock().now().to_msg(),
            camera_pose_from_rpy([0.0, 0.0, 1.5], [0.0, 0.0, 0.0]))]))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()

    h, w = args.size
    rgb = synthetic_street_image((h, w))
    image = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=rgb.tobytes())
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    f = 0.6 * w
    info.k = [f, 0.0, w / 2, 0.0, f, h / 2, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, w / 2, 0.0, 0.0, f, h / 2, 0.0, 0.0, 0.0, 1.0, 0.0]

    rows = []
    start = time.monotonic()
    end = start + args.minutes * 60.0
    next_sample = start + args.sample_s
    period = 1.0 / args.rate_hz
    sent = 0
    last_clouds = 0
    try:
        while time.monotonic() < end:
            stamp = node.get_clock().now().to_msg()
            image.header.stamp = info.header.stamp = stamp
            image.header.frame_id = info.header.frame_id = "camera_optical"
            if args.mapping:  # the pose at the image stamp first, as a robot's odometry would be
                odom_from_base = np.eye(4)
                odom_from_base[0, 3] = SPEED_M_S * (time.monotonic() - start)
                pub_tf.publish(TFMessage(transforms=[transform("odom", "base_link", stamp, odom_from_base)]))
            pub_image.publish(image)
            pub_info.publish(info)
            sent += 1
            now = time.monotonic()
            if now >= next_sample:
                with lock:
                    clouds, maps = received["clouds"], received["maps"]
                rows.append({"t_s": now - start, "sent": sent, "processed": node.counts["processed"],
                             "failed": node.counts["failed"], "clouds": clouds, "new_clouds": clouds - last_clouds,
                             "level": diag["level"], "rss_mb": rss_mb(), "fused": diag["fused"], "maps": maps})
                last_clouds = clouds
                r = rows[-1]
                print(f"{r['t_s']:7.0f} s  sent {r['sent']:6d}  processed {r['processed']:5d}  failed "
                      f"{r['failed']:3d}  clouds {r['clouds']:5d} (+{r['new_clouds']})  {r['level']:5s}  "
                      f"RSS {r['rss_mb']:.0f} MB" + (f"  fused {r['fused']}  maps {r['maps']}" if args.mapping else ""),
                      flush=True)
                next_sample += args.sample_s
            time.sleep(max(0.0, period - (time.monotonic() - now)))
    finally:
        alive = spin.is_alive() and node.context.ok()
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
        peer.destroy_node()
        rclpy.try_shutdown()

    quarter = max(1, len(rows) // 4)
    first = float(np.mean([r["rss_mb"] for r in rows[:quarter]])) if rows else float("nan")
    last = float(np.mean([r["rss_mb"] for r in rows[-quarter:]])) if rows else float("nan")
    mapped = args.mapping
    lines = [f"# soak.py --minutes {args.minutes:g} --rate-hz {args.rate_hz:g} --fail-every {args.fail_every} "
             f"--size {h}x{w}{' --mapping' if mapped else ''}", "",
             f"Model: {pipeline.describe()} on {pipeline.device}; grid {GRID}. Injected failures: "
             f"{pipeline.injected} (out of memory and RuntimeError alternately)."
             + (f" Map: {MAPPING}, default window, camera driving at {SPEED_M_S:g} m/s." if mapped else ""), "",
             "| t (s) | images sent | frames processed | frames failed | clouds received (+ in interval) | "
             "diagnostics | RSS (MB) |" + (" frames fused | map clouds |" if mapped else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if mapped else "")]
    lines += [f"| {r['t_s']:.0f} | {r['sent']} | {r['processed']} | {r['failed']} | {r['clouds']} "
              f"(+{r['new_clouds']}) | {r['level']} | {r['rss_mb']:.0f} |"
              + (f" {r['fused']} | {r['maps']} |" if mapped else "") for r in rows]
    outputs_throughout = all(r["new_clouds"] > 0 for r in rows)
    fused_throughout = not mapped or all(b["fused"] > a["fused"] for a, b in zip(rows, rows[1:]))
    lines += ["", f"- node alive at the end: {'yes' if alive else 'NO'}",
              f"- outputs in every {args.sample_s:g} s interval: {'yes' if outputs_throughout else 'NO'}",
              f"- failures counted by the node: {node.counts['failed']} of {pipeline.injected} injected",
              f"- RSS: first quarter {first:.0f} MB, last quarter {last:.0f} MB ({last - first:+.0f} MB)"]
    if mapped:
        lines.append(f"- frames fused into the map in every interval: {'yes' if fused_throughout else 'NO'} "
                     f"({rows[-1]['fused'] if rows else 0} in all, {rows[-1]['maps'] if rows else 0} map clouds)")
    report = "\n".join(lines) + "\n"
    emit(report, args.out)
    ok = alive and outputs_throughout and fused_throughout and node.counts["failed"] == pipeline.injected
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
