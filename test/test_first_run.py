"""``scenedino-first-run`` end to end (tiny checkpoint, 3 small frames, a coarse grid) and its live Foxglove view.

The live view is checked with a minimal WebSocket client written here (the ``websockets`` package is not a project
dependency): HTTP upgrade offering the ``foxglove.sdk.v1`` and/or ``foxglove.websocket.v1`` subprotocols, then the
server's ``serverInfo`` / ``advertise`` JSON and binary ``messageData`` frames, over a real TCP socket. Run through
scripts/test.sh (private network namespace: only loopback).
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (scripts/setup.sh --ros-wheels)")
pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (pip install foxglove-sdk)")

from mcap.reader import make_reader  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from conftest import tiny_config, tiny_model  # noqa: E402
from picture_checks import assert_legible  # noqa: E402
from scenedino_core import visualize as viz  # noqa: E402
from scenedino_core.checkpoint import save_checkpoint  # noqa: E402
from scenedino_core.config import to_dict  # noqa: E402
from scenedino_core.labels import class_table  # noqa: E402
from scenedino_core.pipeline import FREE  # noqa: E402
from scenedino_core.surface import exposed_voxels  # noqa: E402
from scenedino_ros.bag.process import ProcessedFrame  # noqa: E402
from scenedino_ros.cli import first_run as first_run_cli  # noqa: E402
from scenedino_ros.demo import first_run, live_view  # noqa: E402
from scenedino_ros.demo import map_pictures as demo_map_pictures  # noqa: E402
from scenedino_ros.demo import pictures as demo_pictures  # noqa: E402
from scenedino_ros.demo import subprotocol_relay as relay  # noqa: E402
from scenedino_ros.demo.foxglove_view import HOST, FoxgloveView, RawMessage, ros2msg_definition, type_name  # noqa: E402

FRAMES = 3
IMAGE_SIZE = "94x352"
#: A coarse grid (64 x 64 x 8 voxels) so the tiny model answers in well under a second per frame; a map of the same
#: voxel size (64 x 64 x 8).
COARSE = ("grid.voxel_size_m:=0.8", "mapping.voxel_size_m:=0.8")
OUTPUT_TOPICS = ("/scenedino/semantic_points", "/scenedino/occupancy", "/scenedino/voxels", "/scenedino/depth",
                 "/scenedino/semantics")
INPUT_TOPICS = ("/tf", "/tf_static", "/kitti360/image_00/image_rect", "/kitti360/image_00/camera_info",
                "/kitti360/velodyne_points")


# ----------------------------------------------------------------------------- a minimal WebSocket client

class WsClient:
    """Just enough of RFC 6455 for a Foxglove server: handshake, masked text frames out, frames in."""

    def __init__(self, port: int, timeout: float = 10.0, protocols: str = "foxglove.sdk.v1, foxglove.websocket.v1",
                 upgrade: bool = True):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Protocol: {protocols}\r\n" if protocols else ""
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during the handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.response = head.decode()
        assert self.response.startswith("HTTP/1.1 101") == upgrade, self.response
        m = re.search(r"(?im)^sec-websocket-protocol:\s*(\S+)", self.response)
        self.subprotocol = m.group(1) if m else ""
        self.partial: tuple[int, bytes] = (0, b"")

    def _frame(self) -> tuple[bool, int, bytes] | None:
        """(fin, opcode, payload) of the first complete frame in the buffer (consumed), or None."""
        if len(self.buf) < 2:
            return None
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, start = b1 & 0x7F, 2
        if n == 126:
            if len(self.buf) < 4:
                return None
            n, start = struct.unpack_from(">H", self.buf, 2)[0], 4
        elif n == 127:
            if len(self.buf) < 10:
                return None
            n, start = struct.unpack_from(">Q", self.buf, 2)[0], 10
        if len(self.buf) < start + n:
            return None
        payload, self.buf = self.buf[start:start + n], self.buf[start + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next complete message (continuation frames joined). A socket timeout leaves
        the stream intact: the call can be repeated."""
        while True:
            frame = self._frame()
            if frame is None:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
                continue
            fin, opcode, payload = frame
            if opcode == 0:
                self.partial = (self.partial[0], self.partial[1] + payload)
            else:
                self.partial = (opcode, payload)
            if fin:
                message, self.partial = self.partial, (0, b"")
                return message

    def recv_json(self) -> dict:
        opcode, payload = self.recv()
        assert opcode == 1, f"expected a text frame, got opcode {opcode}"
        return json.loads(payload)

    def send_json(self, obj: dict) -> None:
        data, mask = json.dumps(obj).encode(), os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        self.sock.close()


class Recorder(threading.Thread):
    """Subscribes to every advertised channel and keeps the last payload per topic.

    Subscriptions go out ``SUBSCRIBE_DELAY_S`` after the advertisement, as a viewer app would: foxglove-sdk 0.30
    can answer "unknown channel" to a subscription that arrives within microseconds of the advertisement.
    """

    SUBSCRIBE_DELAY_S = 0.05

    def __init__(self, client: WsClient):
        super().__init__(daemon=True)
        self.client = client
        self.client.sock.settimeout(0.02)
        self.pending: list[tuple[float, int]] = []
        self.channels: dict[int, dict] = {}
        self.payloads: dict[str, bytes] = {}
        """Topic -> the last message received."""
        self.first: dict[str, tuple[int, bytes]] = {}
        """Topic -> (log time, data) of the first message received."""
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                due = [cid for t, cid in self.pending if time.monotonic() - t >= self.SUBSCRIBE_DELAY_S]
                if due:
                    self.client.send_json({"op": "subscribe",
                                           "subscriptions": [{"id": cid, "channelId": cid} for cid in due]})
                    self.pending = [(t, cid) for t, cid in self.pending if cid not in due]
                try:
                    opcode, payload = self.client.recv()
                except TimeoutError:
                    continue
                if opcode == 1:
                    msg = json.loads(payload)
                    if msg["op"] == "advertise":
                        for ch in msg["channels"]:
                            self.channels[ch["id"]] = ch
                            self.pending.append((time.monotonic(), ch["id"]))
                elif opcode == 2 and payload[0] == 1:  # messageData: op, subscription id, timestamp, payload
                    sub_id, log_time = struct.unpack_from("<IQ", payload, 1)
                    topic = self.channels[sub_id]["topic"]
                    self.payloads[topic] = payload[13:]
                    self.first.setdefault(topic, (log_time, payload[13:]))
                    self.counts[topic] = self.counts.get(topic, 0) + 1
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def wait_for(self, topics: tuple[str, ...], timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not set(topics) <= set(self.payloads):
            time.sleep(0.05)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_model(), meta={"note": "tests"})


@pytest.fixture(scope="module")
def first(tmp_path_factory, checkpoint):
    """One run of the command: (out folder, exit code, printed text, seconds)."""
    out = tmp_path_factory.mktemp("first_run")
    text = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(text):
        rc = first_run_cli.main(["--out", str(out), "--frames", str(FRAMES), "--image-size", IMAGE_SIZE,
                             "--checkpoint", str(checkpoint), "--no-progress", *[f"--param={p}" for p in COARSE]])
    return out, rc, text.getvalue(), time.perf_counter() - t0


def _mcap_topics(path: Path) -> dict[str, int]:
    with path.open("rb") as f:
        summary = make_reader(f).get_summary()
    return {summary.channels[cid].topic: n for cid, n in summary.statistics.channel_message_counts.items()}


# ----------------------------------------------------------------------------- the whole command

def test_first_run_writes_bag_pictures_and_summary(first):
    out, rc, text, seconds = first
    print(f"first run: {seconds:.1f} s")
    assert rc == 0, text
    assert "scenedino-first-run: done" in text and "RANDOM" not in text
    assert f"{FRAMES} processed, 0 skipped" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == FRAMES and not summary["random_weights"] and not summary["drive_reused"]
    mcap = Path(summary["output_mcap"])
    assert mcap.is_file() and str(mcap) in text and str(out / "summary.json") in text

    counts = _mcap_topics(mcap)
    for topic in OUTPUT_TOPICS:
        assert counts.get(topic) == FRAMES, (topic, counts)
    for topic in INPUT_TOPICS:  # copied from the converted drive
        assert counts.get(topic, 0) >= 1, (topic, counts)
    with mcap.open("rb") as f:
        _, _, message = next(make_reader(f).iter_messages(topics=["/scenedino/occupancy"]))
    grid = deserialize_message(bytes(message.data), OccupancyGrid)
    assert (grid.info.width, grid.info.height) == (64, 64) and grid.header.frame_id == "camera_00_optical_frame"

    pictures = sorted((out / "pictures").glob("frame_*.png"))
    chosen = demo_pictures.picture_indices(FRAMES)
    assert [p.name for p in pictures] == sorted(f"frame_{i:04d}_{name}.png" for i in chosen
                                               for name in viz.FRAME_PICTURES)
    overview = out / "pictures" / "overview.png"
    assert str(overview) in text
    for path in [*pictures, overview]:
        img = cv2.imread(str(path))
        assert img is not None and min(img.shape[:2]) > 200, path
        colours = np.unique((img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2])
        assert img.std() > 15 and len(colours) > 50, f"{path} looks empty"
    inputs = [cv2.imread(str(out / "pictures" / f"frame_{i:04d}_input.png")) for i in (0, FRAMES - 1)]
    assert np.abs(inputs[0].astype(int) - inputs[1].astype(int)).mean() > 1  # the car moved


def test_first_run_output_size_is_stated_and_the_cloud_holds_surface_voxels(first):
    """The summary says how big the output is and why; the cloud carries exactly the surface voxels of the dense
    grid (``points.surface_only``, a first-run default), the grid every voxel."""
    out, rc, text, _ = first
    assert rc == 0, text
    summary = json.loads((out / "summary.json").read_text())
    folders = summary["folder_bytes"]
    assert set(folders) == {"kitti360", "drive", "scenedino_outputs", "pictures"}
    mcap = Path(summary["output_mcap"])
    assert folders["scenedino_outputs"] >= mcap.stat().st_size > 0
    assert f"{sum(folders.values()) / 1e6:.1f} MB in {out}" in text
    assert "per message before compression: " in text and "/scenedino/semantic_points" in summary["topic_bytes"]
    assert summary["surface_only"] is True
    assert "surface voxels of" in text and "24 bytes each" in text and "points.surface_only" in text
    assert 0 < summary["mean_cloud_points"] <= summary["mean_occupied_voxels"]
    from scenedino_ros.msg import SemanticVoxelGrid

    with mcap.open("rb") as f:
        clouds = [m for _, _, m in make_reader(f).iter_messages(topics=["/scenedino/semantic_points"])]
    with mcap.open("rb") as f:
        grids = [m for _, _, m in make_reader(f).iter_messages(topics=["/scenedino/voxel_grid"])]
    assert len(clouds) == len(grids) == FRAMES
    for cloud_msg, grid_msg in zip(clouds, grids):
        cloud = deserialize_message(bytes(cloud_msg.data), PointCloud2)
        grid = deserialize_message(bytes(grid_msg.data), SemanticVoxelGrid)
        labels = np.frombuffer(bytes(grid.labels), np.uint8).reshape(grid.size_z, grid.size_y, grid.size_x)
        occupied = labels < FREE
        assert cloud.width == np.count_nonzero(exposed_voxels(occupied)) <= np.count_nonzero(occupied)


def test_first_run_draws_the_fused_map_next_to_one_frame_and_the_exact_geometry(first):
    """The drive is fused into the map at the bag's /tf poses: map topics in the output MCAP, the map file, and the
    map pictures (fused map, last frame alone, exact geometry) with their IoU figures in the summary."""
    from scenedino_core.mapping import SemanticMap
    from scenedino_ros.msg import SemanticVoxelGrid

    out, rc, text, _ = first
    assert rc == 0, text
    summary = json.loads((out / "summary.json").read_text())
    pictures = [out / "pictures" / f"{name}.png" for name in demo_map_pictures.MAP_PICTURES]
    assert summary["map_pictures"] == [str(p) for p in pictures]
    for path in pictures:
        img = cv2.imread(str(path))
        assert img is not None and min(img.shape[:2]) > 500, path
        assert img.std() > 15 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50, f"{path} looks empty"
    assert summary["map_frames"] == FRAMES
    iou = summary["map_iou"]
    assert 0.0 <= iou["single_frame"] <= 1.0 and 0.0 <= iou["fused_map"] <= 1.0 and iou["voxels"] > 0
    assert f"the map fused over {FRAMES} frames" in text and str(pictures[0]) in text
    assert f"last frame {iou['single_frame']:.2f}, fused map {iou['fused_map']:.2f}" in text

    saved = SemanticMap.load(summary["map_file"])
    assert saved.frames_integrated == FRAMES and Path(summary["map_file"]).with_suffix(".ply").is_file()
    mcap = Path(summary["output_mcap"])
    counts = _mcap_topics(mcap)
    assert counts.get("/scenedino/map/voxel_grid", 0) >= 1 and counts.get("/scenedino/map/occupancy", 0) >= 1
    with mcap.open("rb") as f:
        grids = [m for _, _, m in make_reader(f).iter_messages(topics=["/scenedino/map/voxel_grid"])]
    last = deserialize_message(bytes(grids[-1].data), SemanticVoxelGrid)
    assert last.header.frame_id == "map" and (last.size_x, last.size_y, last.size_z) == (64, 64, 8)
    labels = np.frombuffer(bytes(last.labels), np.uint8).reshape(8, 64, 64).transpose(2, 1, 0)
    np.testing.assert_array_equal(labels, saved.dense().labels)  # the bag ends with the final map


def test_exact_geometry_on_the_map_lattice():
    """The world's ground truth on a map window: the layer below the road holds the ground classes, the ground
    below it is inside a solid, and a coarse voxel takes the most frequent surface class of its 0.2 m voxels."""
    from scenedino_core.data.synthetic import StreetConfig, StreetWorld

    world = StreetWorld.generate(3, StreetConfig(num_frames=2))
    origin, shape = (-16, -64, -4), (32, 128, 16)  # x -3.2 .. 3.2, y -12.8 .. 12.8, z -0.8 .. 2.4 m
    fine = demo_map_pictures.exact_labels(world, origin, shape, 0.2)
    assert fine.shape == shape
    below = fine[:, :, 3]  # z -0.2 .. 0: the layer whose top is the ground surface
    assert (below[:, 44:84] == 7).mean() > 0.8  # mostly road along the street (|y| < 4 m)
    assert np.all(fine[:, :, :3] == 255)  # inside the ground
    assert (fine[:, :, 4:] == 0).mean() > 0.5  # mostly empty air above the street
    coarse = demo_map_pictures.exact_labels(world, tuple(o // 4 for o in origin), tuple(n // 4 for n in shape), 0.8)
    blocks = fine.reshape(8, 4, 32, 4, 4, 4).transpose(0, 2, 4, 1, 3, 5).reshape(8, 32, 4, 64)
    for idx in np.ndindex(coarse.shape):
        b = blocks[idx]
        surface = b[(b > 0) & (b != 255)]
        if surface.size:
            values, n = np.unique(surface, return_counts=True)
            assert coarse[idx] == values[np.argmax(n)], idx
        else:
            assert coarse[idx] == (255 if (b == 255).any() else 0), idx


def _first_bag_times(bag: Path) -> dict[str, int]:
    """Topic -> bag time of its first message in a rosbag2 bag."""
    from rosbags.rosbag2 import Reader

    first: dict[str, int] = {}
    with Reader(bag) as reader:
        for conn, t, _ in reader.messages():
            first.setdefault(conn.topic, t)
    return first


def test_second_run_reuses_the_drive_and_streams_live(first, checkpoint):
    """A viewer connected before the run gets every channel advertised before the first frame and the first message
    on each (outputs: the first frame's; inputs: the bag's first), every frame's outputs, and clouds in the one
    palette. The drive and its bag are reused."""
    out, rc, _, _ = first
    assert rc == 0
    marker = out / first_run.DRIVE_DIR / first_run.DRIVE_MARKER
    image = next((out / first_run.DRIVE_DIR).rglob("0000000000.png"))
    before = (marker.stat().st_mtime_ns, image.stat().st_mtime_ns, (out / "drive" / "metadata.yaml").stat().st_mtime_ns)
    frames: list[ProcessedFrame] = []
    with FoxgloveView(port=0) as view:
        client = WsClient(view.port)  # connected before the run
        assert client.subprotocol == "foxglove.sdk.v1"
        assert client.recv_json()["op"] == "serverInfo"
        recorder = Recorder(client)
        recorder.start()
        live = live_view.LiveStream(view, out / first_run.INPUT_BAG)

        def start(p):
            topics = live.start(p)
            deadline = time.monotonic() + 30
            while not all(view.subscribers(t) for t in topics):  # the viewer subscribes to what was advertised
                assert time.monotonic() < deadline, {t: view.subscribers(t) for t in topics}
                time.sleep(0.02)
            assert not frames, "channels must exist before the first frame"

        def each(frame):
            frames.append(frame)
            live(frame)

        t0 = time.perf_counter()
        summary = first_run.run(out, FRAMES, checkpoint, image_size=(94, 352), overrides=COARSE, progress=False,
                                on_start=start, on_frame=each)
        print(f"second run: {time.perf_counter() - t0:.1f} s")
        end = time.monotonic() + 20
        while time.monotonic() < end and any(recorder.counts.get(t, 0) < FRAMES for t in OUTPUT_TOPICS):
            time.sleep(0.05)
        recorder.stop.set()
        recorder.join(5)
        client.close()
    assert recorder.error is None, recorder.error
    assert summary.drive_reused and summary.frames_processed == FRAMES
    after = (marker.stat().st_mtime_ns, image.stat().st_mtime_ns, (out / "drive" / "metadata.yaml").stat().st_mtime_ns)
    assert after == before, "the drive and its bag must be reused, not rewritten"

    advertised = {ch["topic"]: ch for ch in recorder.channels.values()}
    for topic in (*OUTPUT_TOPICS, *INPUT_TOPICS):
        assert topic in advertised, (topic, sorted(advertised))
        assert advertised[topic]["encoding"] == "cdr" and advertised[topic]["schemaEncoding"] == "ros2msg"
    assert advertised["/tf"]["schemaName"] == "tf2_msgs/msg/TFMessage"
    assert advertised["/scenedino/semantic_points"]["schemaName"] == "sensor_msgs/msg/PointCloud2"

    # the first message on every channel: outputs and /tf_static stamped with the first frame, inputs the bag's first
    first_stamp = frames[0].stamp_ns
    bag_first = _first_bag_times(out / first_run.INPUT_BAG)
    for topic in advertised:
        assert topic in recorder.first, f"nothing received on {topic}"
        expected = first_stamp if topic.startswith("/scenedino/") or topic == "/tf_static" else bag_first[topic]
        assert recorder.first[topic][0] == expected, (topic, recorder.first[topic][0], expected)
    for topic in OUTPUT_TOPICS:
        assert recorder.counts[topic] == FRAMES, (topic, recorder.counts)

    grid = deserialize_message(recorder.payloads["/scenedino/occupancy"], OccupancyGrid)
    assert grid.info.width == 64 and len(grid.data) == 64 * 64
    image_msg = deserialize_message(recorder.payloads["/kitti360/image_00/image_rect"], Image)
    assert (image_msg.height, image_msg.width, image_msg.encoding) == (94, 352, "rgb8")
    tf = get_typestore(Stores.ROS2_KILTED).deserialize_cdr(recorder.payloads["/tf_static"], "tf2_msgs/msg/TFMessage")
    assert {t.child_frame_id for t in tf.transforms} >= {"camera_00_optical_frame", "velodyne"}

    # one palette on the wire: every point of the first cloud has the colour of its class
    cloud = deserialize_message(recorder.first["/scenedino/semantic_points"][1], PointCloud2)
    points = np.frombuffer(bytes(cloud.data), np.dtype({"names": ["rgb", "label"], "formats": ["<u4", "<u4"],
                                                        "offsets": [12, 16], "itemsize": 24}))
    rgb = np.stack([points["rgb"] >> 16 & 0xFF, points["rgb"] >> 8 & 0xFF, points["rgb"] & 0xFF], 1)
    assert len(points) > 0
    np.testing.assert_array_equal(rgb, class_table()[1][points["label"]])

    # the pictures of a real frame with the real title are legible
    p = first_run.node_params(checkpoint, False, "cpu", COARSE)
    names, palette = class_table(p.class_colors_rgb)
    view_arrays = demo_pictures.scene_view(frames[-1], p, names, palette)
    title = demo_pictures.frame_title(FRAMES - 1, FRAMES, frames[-1], summary.model, random_weights=True)
    figures = viz.frame_figures(view_arrays, title)
    figures["overview"] = viz.overview_figure(view_arrays, title, "red")
    for name, fig in figures.items():
        assert_legible(fig, name)

    # the live view got the map with the first frame; the map pictures of the run are legible
    map_topics = ("/scenedino/map/occupancy", "/scenedino/map/semantic_points", "/scenedino/map/voxel_grid")
    for topic in map_topics:
        assert advertised[topic]["encoding"] == "cdr" and recorder.counts.get(topic, 0) >= 1, topic
    last = frames[-1]
    assert last.map_outcome.fused and last.map.counters.frames_fused == FRAMES
    from scenedino_core.data.synthetic import StreetConfig, StreetWorld

    world = StreetWorld.generate(first_run.DRIVE_SEED, StreetConfig(num_frames=FRAMES))
    comparison = demo_map_pictures.compare(last.map, last.result, world)
    for name, fig in demo_map_pictures.figures(comparison, names, palette, title, (0.2, 2.0), (7, 8, 12),
                                               "red").items():
        assert_legible(fig, name)


def test_drive_completeness(first):
    drive = first[0] / first_run.DRIVE_DIR
    seed = first_run.DRIVE_SEED
    same = first_run.DriveSettings(seed=seed, frames=FRAMES, image_size=(94, 352))
    assert first_run.drive_is_complete(drive, same)
    assert not first_run.drive_is_complete(drive, first_run.DriveSettings(seed=seed + 1, frames=FRAMES,
                                                                         image_size=(94, 352)))
    assert not first_run.drive_is_complete(drive, first_run.DriveSettings(seed=seed, frames=FRAMES + 1,
                                                                         image_size=(94, 352)))
    assert not first_run.drive_is_complete(drive.parent / "nowhere", same)


def test_drive_of_other_settings_is_replaced(tmp_path):
    root = tmp_path / "kitti360"
    root.mkdir()
    (root / first_run.DRIVE_MARKER).write_text('{"seed": 5}\n')
    (root / "stale.txt").write_text("from an earlier drive")
    settings = first_run.DriveSettings(seed=0, frames=1, image_size=(16, 48))
    assert first_run.make_drive(root, settings, progress=False) is False
    assert not (root / "stale.txt").exists() and first_run.drive_is_complete(root, settings)
    assert first_run.make_drive(root, settings, progress=False) is True


def test_random_weights_are_announced(tmp_path):
    """No checkpoint + --allow-random-weights: an untrained (tiny, via model_config) model, said loudly."""
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(to_dict(tiny_config())))
    missing = tmp_path / "no_demo.pt"
    text = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(text):
        mp.setattr(first_run, "DEMO_CHECKPOINT", missing)
        rc = first_run_cli.main(["--out", str(tmp_path / "out"), "--frames", "1", "--image-size", IMAGE_SIZE,
                             "--allow-random-weights", "--no-progress", f"--param=model_config:={config}",
                             *[f"--param={p}" for p in COARSE]])
    assert rc == 0, text.getvalue()
    assert "#  RANDOM WEIGHTS" in text.getvalue() and f"done  --  {demo_pictures.RANDOM_WARNING}" in text.getvalue()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["random_weights"] is True
    assert (tmp_path / "out" / "pictures" / "overview.png").is_file()


def test_missing_weights_are_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(first_run, "DEMO_CHECKPOINT", tmp_path / "no_demo.pt")
    assert first_run_cli.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no_demo.pt" in err and "--allow-random-weights" in err
    assert first_run_cli.main(["--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "gone.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        first_run_cli.main(["--frames", "0"])


def test_titles_and_picture_frames():
    result = SimpleNamespace(timings_ms={"total": 812.4, "encode": 100.0, "voxels": 700.0, "render": 12.0})
    frame = ProcessedFrame(stamp_ns=1_369_730_762_100_000_000, rgb=np.zeros((2, 2, 3), np.uint8),
                                     intrinsics=np.eye(3), result=result, frame_id="cam", camera_frame="cam",
                                     messages=[])
    title = demo_pictures.frame_title(1, 3, frame, "tiny 32x64 (tiny.pt)", random_weights=False)
    assert title.splitlines() == ["frame 2/3, stamp 1369730762.100 s", "tiny 32x64 (tiny.pt)",
                                  "812 ms in the model (encode 100, voxels 700, render 12)"]
    random_title = demo_pictures.frame_title(1, 3, frame, "tiny", random_weights=True)
    assert random_title.splitlines()[0] == demo_pictures.RANDOM_WARNING
    assert demo_pictures.picture_indices(0) == ()
    assert demo_pictures.picture_indices(1) == (0,)
    assert demo_pictures.picture_indices(3) == (0, 1, 2)
    assert demo_pictures.picture_indices(20) == (0, 9, 19)


# ----------------------------------------------------------------------------- the live view on its own

def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                    found.append(address)
    return found


def test_view_binds_loopback_and_serves_ros2_messages():
    typestore = get_typestore(Stores.ROS2_KILTED)
    tf_type = "tf2_msgs/msg/TFMessage"
    tf = typestore.types[tf_type](transforms=[])
    raw = RawMessage("/tf", tf_type, typestore.generate_msgdef(tf_type, ros_version=2)[0],
                     bytes(typestore.serialize_cdr(tf, tf_type)))
    info = CameraInfo(width=64, height=32)
    info.header.frame_id = "cam"
    view = FoxgloveView(port=0, name="test-view")
    try:
        port = view.port
        assert view.url == f"ws://127.0.0.1:{port}"
        if os.path.exists("/proc/net/tcp"):
            for p in (port, view.server_port):  # the relay and the SDK server behind it
                assert _listeners(p) == ["0100007F"], "the server must listen on 127.0.0.1 only"
        view.publish("/camera_info", info, 5)
        view.publish_raw(raw, 5)
        client = WsClient(port)
        hello = client.recv_json()
        assert hello["op"] == "serverInfo" and hello["name"] == "test-view"
        channels = {}
        while len(channels) < 2:
            msg = client.recv_json()
            assert msg["op"] == "advertise"
            channels.update({ch["topic"]: ch for ch in msg["channels"]})
        assert channels["/camera_info"]["schemaName"] == "sensor_msgs/msg/CameraInfo"
        assert channels["/camera_info"]["schema"] == ros2msg_definition(CameraInfo)
        assert channels["/tf"]["schemaName"] == tf_type and channels["/tf"]["schema"] == raw.schema
        cid = channels["/camera_info"]["id"]
        client.send_json({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": cid}]})
        deadline = time.monotonic() + 10
        client.sock.settimeout(0.2)
        while True:  # the subscription is asynchronous: publish until a message arrives
            assert time.monotonic() < deadline, "no message data received"
            view.publish("/camera_info", info, 123_000_000_042)
            with contextlib.suppress(socket.timeout):
                opcode, payload = client.recv()
                if opcode == 2:
                    break
        assert payload[0] == 1 and struct.unpack_from("<IQ", payload, 1) == (7, 123_000_000_042)
        back = deserialize_message(payload[13:], CameraInfo)
        assert (back.width, back.height, back.header.frame_id) == (64, 32, "cam")
        with pytest.raises(ValueError, match="carries sensor_msgs/msg/CameraInfo"):
            view.publish("/camera_info", Image(), 1)
        client.close()
    finally:
        view.close()
    deadline = time.monotonic() + 5  # the server stops asynchronously: the port closes right after close()
    while _listeners(port) if os.path.exists("/proc/net/tcp") else False:
        assert time.monotonic() < deadline, "the server still listens after close()"
        time.sleep(0.01)
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=2).close()


@pytest.mark.parametrize("protocols, served", [("foxglove.websocket.v1", "foxglove.websocket.v1"),
                                               ("foxglove.sdk.v1", "foxglove.sdk.v1"),
                                               ("foxglove.websocket.v1, foxglove.sdk.v1", "foxglove.sdk.v1")])
def test_view_serves_both_subprotocol_names(protocols, served):
    """A client offering only ``foxglove.websocket.v1`` (@foxglove/ws-protocol, older Lichtblick) is served under
    that name and gets the protocol's messages, like one offering ``foxglove.sdk.v1``."""
    info = CameraInfo(width=64, height=32)
    with FoxgloveView(port=0) as view:
        view.advertise("/camera_info", CameraInfo)
        client = WsClient(view.port, protocols=protocols)
        assert client.subprotocol == served
        assert client.recv_json()["op"] == "serverInfo"
        advert = client.recv_json()
        assert advert["op"] == "advertise" and advert["channels"][0]["topic"] == "/camera_info"
        time.sleep(Recorder.SUBSCRIBE_DELAY_S)
        client.send_json({"op": "subscribe", "subscriptions": [{"id": 3, "channelId": advert["channels"][0]["id"]}]})
        deadline = time.monotonic() + 10
        while not view.subscribers("/camera_info"):
            assert time.monotonic() < deadline, "the subscription never reached the server"
            time.sleep(0.01)
        view.publish("/camera_info", info, 77)
        opcode, payload = client.recv()
        assert opcode == 2 and struct.unpack_from("<BIQ", payload) == (1, 3, 77)
        assert deserialize_message(payload[13:], CameraInfo).width == 64
        client.close()


@pytest.mark.parametrize("protocols", ["", "some.other.v1"])
def test_view_refuses_other_subprotocols_with_the_sdk_error(protocols):
    with FoxgloveView(port=0) as view:
        client = WsClient(view.port, protocols=protocols, upgrade=False)
        assert client.response.startswith("HTTP/1.1 400")
        while b"Missing expected sec-websocket-protocol header" not in client.buf:
            chunk = client.sock.recv(4096)
            assert chunk, client.buf
            client.buf += chunk
        client.sock.close()


def test_relay_rewrites_only_legacy_handshakes():
    legacy = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"sec-websocket-protocol: foxglove.websocket.v1\r\n\r\n")
    assert relay.offered_subprotocols(legacy) == ["foxglove.websocket.v1"]
    head, rewritten = relay.rewrite_request(legacy)
    assert rewritten and relay.offered_subprotocols(head) == ["foxglove.sdk.v1"] and head.endswith(b"\r\n\r\n")
    assert head.startswith(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    both = legacy.replace(b"foxglove.websocket.v1", b"foxglove.websocket.v1, foxglove.sdk.v1")
    assert relay.rewrite_request(both) == (both, False)
    other = legacy.replace(b"foxglove.websocket.v1", b"x.v2")
    assert relay.rewrite_request(other) == (other, False)
    ok = b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-protocol: foxglove.sdk.v1\r\n\r\n"
    assert relay.rewrite_response(ok) == (b"HTTP/1.1 101 Switching Protocols\r\n"
                                          b"Sec-WebSocket-Protocol: foxglove.websocket.v1\r\n\r\n")
    refused = b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert relay.rewrite_response(refused) == refused


@pytest.mark.parametrize("msg_type", [PointCloud2, Image, CameraInfo, MarkerArray, OccupancyGrid])
def test_schema_matches_rosbags(msg_type):
    """The definition generated from the rclpy class equals rosbags' (constants aside, which rclpy keeps apart)."""
    def fields(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not re.match(r"^\S+ [A-Z0-9_]+=", line)]

    expected = get_typestore(Stores.ROS2_KILTED).generate_msgdef(type_name(msg_type), ros_version=2)[0]
    assert fields(ros2msg_definition(msg_type)) == fields(expected)
