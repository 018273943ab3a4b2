"""A KITTI-360 drive (raw files) -> a rosbag2 (MCAP or sqlite3), without ROS (``scenedino-kitti360-to-bag``).

Messages are built and CDR-serialised with the ``rosbags`` typestore (ROS 2 Kilted definitions; the bytes are what
rclpy would publish), so this module never imports rclpy and runs on machines without ROS. Read per frame::

    calibration/perspective.txt, calib_cam_to_pose.txt, calib_cam_to_velo.txt
    data_poses/<seq>/poses.txt                                  frame id + 3x4 pose (IMU) -> map, some ids absent
    data_2d_raw/<seq>/image_0X/data_rect/<frame:010d>.png       rectified perspective images (X = 0, 1)
    data_2d_raw/<seq>/image_0X/timestamps.txt                   one UTC stamp per frame id, line = frame id
    data_3d_raw/<seq>/velodyne_points/data/<frame:010d>.bin     float32 N x 4 (x, y, z, reflectance), --velodyne
    data_3d_raw/<seq>/velodyne_points/timestamps.txt

Written (names in ``TOPICS`` and ``FRAMES``; header stamps = bag receive times = the ``timestamps.txt`` times, to
the nanosecond):

* ``/kitti360/image_0X/image_rect`` (``sensor_msgs/Image`` rgb8), or with ``compressed`` the
  ``.../image_rect/compressed`` ``sensor_msgs/CompressedImage`` instead (PNG: the file's bytes when it is an 8-bit
  RGB PNG, JPEG: quality ``JPEG_QUALITY``; format ``rgb8; png compressed bgr8`` as image_transport writes it);
* ``/kitti360/image_0X/camera_info``: width, height = ``S_rect_0X``, P = ``P_rect_0X``, K = P[:3, :3], R = I,
  D = 0 (``plumb_bob``). The images are already rectified, so the rectified model *is* the camera model: no
  distortion, no rectifying rotation. ``P_rect_01`` keeps its 4th column (-fx * baseline, the ROS stereo
  convention); project points given in ``camera_01_optical_frame`` with K;
* ``/tf``: ``map -> base_link`` (``pose @ BASE_LINK_FROM_POSE``) at every distinct sensor stamp of a frame, so a
  lookup at any image or scan stamp of the bag is exact;
* ``/tf_static``: one message at the first stamp, ``base_link -> camera_0X_optical_frame`` (calib_cam_to_pose
  composed with the rectification: ``T_cam->pose @ R_rect_0X^-1``, as ``kitti360.read_rig_calibration``) and
  ``base_link -> velodyne`` (``T_cam00->pose @ T_cam00->velo^-1``; the Velodyne calibration refers to the unrectified
  camera 00), offered as reliable + transient-local so ``ros2 bag play`` latches it;
* ``/kitti360/velodyne_points`` (``sensor_msgs/PointCloud2`` x, y, z, intensity float32, frame ``velodyne``).

Frames are the lines of the first camera's ``timestamps.txt`` (optionally a range ``A:B``, end exclusive).

Bad input: a missing or malformed calibration, timestamps or poses file raises ``FileNotFoundError`` /
``ValueError`` naming the file, before anything is written. Per-frame files are skipped instead, so one broken file
does not sink a long conversion: frames without a pose are skipped with one warning (count and frame ranges); a
frame whose image is missing, undecodable or not ``S_rect`` sized is skipped with a warning naming the file; a
Velodyne scan that is missing (no file or no timestamp line) is left out with one warning at the end, one that is
malformed with a warning naming the file. Everything skipped is listed in the ``ConversionSummary``. No frame left
is an error.

The bag is written in the work folder ``OUT.partial`` with a commit after every frame (``scenedino_ros.bag.partial``)
and renamed to ``out`` only when complete; an existing ``out`` is replaced only with ``overwrite``. A stop request
(SIGINT/SIGTERM in the CLI) finishes the current frame and closes the bag in ``OUT.partial``; a killed conversion
leaves its committed frames there; ``resume`` continues either with the first frame not done. An error removes the
work folder (but not the frames of an earlier, interrupted run when resuming).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.interfaces import Qos, QosDurability
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from scenedino_core.data import kitti360 as k360
from scenedino_core.data.kitti360_calib import read_cam_to_velo
from scenedino_core.data.kitti360_raw import (
    CameraCalibration,
    is_rgb8_png,
    read_camera_calibrations,
    read_image,
    read_scan,
    read_timestamps,
    timestamps_path,
    velodyne_scan_path,
    velodyne_timestamps_path,
)

from ..frames import matrix_to_xyz_quat
from .io import check_storage, reliable_qos
from .partial import PartialBag
from .stopping import pause_for_test

logger = logging.getLogger(__name__)

#: The tool named in the journal of ``OUT.partial``.
TOOL = "scenedino-kitti360-to-bag"

#: Message definitions used to build and serialise every message (ROS 2 Kilted; tf2_msgs included).
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
CAMERAS: tuple[str, ...] = k360.PERSPECTIVE_CAMERAS
COMPRESSIONS: tuple[str, ...] = ("png", "jpeg")
JPEG_QUALITY = 95
#: (4, 4) KITTI-360 pose (IMU) frame (x forward, y right, z down) -> base_link (REP-103: x forward, y left, z up).
BASE_LINK_FROM_POSE = np.diag([1.0, -1.0, -1.0, 1.0])
BASE_LINK_FROM_POSE.setflags(write=False)
#: Velodyne PointCloud2 layout: (name, byte offset), all float32, 16-byte points (the .bin layout).
VELODYNE_FIELDS: tuple[tuple[str, int], ...] = (("x", 0), ("y", 4), ("z", 8), ("intensity", 12))


@dataclass(frozen=True)
class BagTopics:
    """Topic names of a converted drive; ``camera`` is ``image_00`` or ``image_01``."""

    tf: str = "/tf"
    tf_static: str = "/tf_static"
    velodyne: str = "/kitti360/velodyne_points"

    def image(self, camera: str) -> str:
        return f"/kitti360/{camera}/image_rect"

    def compressed(self, camera: str) -> str:
        return f"{self.image(camera)}/compressed"

    def camera_info(self, camera: str) -> str:
        return f"/kitti360/{camera}/camera_info"


@dataclass(frozen=True)
class BagFrames:
    """TF frame names (REP-103/105); ``camera`` is ``image_00`` or ``image_01``."""

    map: str = "map"
    base_link: str = "base_link"
    velodyne: str = "velodyne"

    def camera(self, camera: str) -> str:
        """``image_00`` -> ``camera_00_optical_frame`` (rectified camera, x right, y down, z forward)."""
        return f"camera_{camera.removeprefix('image_')}_optical_frame"


TOPICS = BagTopics()
FRAMES = BagFrames()
#: Offered QoS of /tf_static (latched by ``ros2 bag play``) and of every other topic.
LATCHED_QOS = reliable_qos(1, QosDurability.TRANSIENT_LOCAL)
STREAM_QOS = reliable_qos(100, QosDurability.VOLATILE)


@dataclass(frozen=True)
class ConversionSummary:
    """What ``convert`` wrote; frame tuples hold KITTI-360 frame ids."""

    path: Path
    storage: str
    frames_written: tuple[int, ...]
    frames_without_pose: tuple[int, ...]
    frames_with_bad_image: tuple[int, ...]
    scans_skipped: tuple[int, ...]
    """Frames written without their Velodyne scan (missing or malformed); empty without ``velodyne``."""
    message_counts: dict[str, int]
    """Topic -> messages written."""
    start_ns: int
    end_ns: int
    """First and last message time (UTC ns)."""
    elapsed_s: float
    """Wall-clock time of the conversion."""
    interrupted: str = ""
    """Why the conversion stopped early (``SIGINT``, ...); ``path`` is then the bag in ``OUT.partial``."""
    frames_resumed: int = 0
    """Frames written or skipped by the interrupted run(s) this one continued."""

    @property
    def duration_s(self) -> float:
        """Time span of the bag's messages (s)."""
        return (self.end_ns - self.start_ns) / 1e9


def static_transforms(calibration_dir: str | Path, cameras: Sequence[str]) -> dict[str, np.ndarray]:
    """{child frame: (4, 4) float64 child -> base_link} for ``FRAMES.camera(c)`` of ``cameras`` and the Velodyne."""
    d = Path(calibration_dir)
    rig = k360.read_rig_calibration(d, fisheye=False)  # rectified cameras -> pose, R_rect applied
    cam00_to_pose = k360.read_cam_to_pose(d / "calib_cam_to_pose.txt")["image_00"]
    cam00_to_velo = read_cam_to_velo(d / "calib_cam_to_velo.txt")
    out = {FRAMES.camera(cam): BASE_LINK_FROM_POSE @ rig.cam_to_pose[cam] for cam in cameras}
    out[FRAMES.velodyne] = BASE_LINK_FROM_POSE @ cam00_to_pose @ np.linalg.inv(cam00_to_velo)
    return out


def select_frames(count: int, frames: tuple[int, int] | None, source: Path) -> list[int]:
    """Frame ids 0..count-1 of ``source`` (a timestamps file), restricted to ``frames`` = (start, stop), stop
    exclusive and clipped to ``count``; ``ValueError`` if the range is reversed, negative or selects nothing."""
    start, stop = (0, count) if frames is None else frames
    if start < 0 or stop <= start:
        raise ValueError(f"frame range {start}:{stop} is empty or negative (expected A:B with 0 <= A < B)")
    if start >= count:
        raise ValueError(f"frame range {start}:{stop} selects no frame: {source} lists frames 0..{count - 1}")
    return list(range(start, min(stop, count)))


def frame_ranges(frames: Iterable[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    runs: list[list[int]] = []
    for f in sorted(frames):
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# ------------------------------------------------------------------------------------------------ messages
def _msg(msgtype: str, /, **fields: Any) -> Any:
    return TYPESTORE.types[msgtype](**fields)


def header(stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` (rosbags class) with an exact ``stamp_ns`` (UTC ns)."""
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    return _msg("std_msgs/msg/Header", stamp=_msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                frame_id=frame_id)


def tf_message(stamp_ns: int, transforms: dict[str, np.ndarray], parent: str) -> Any:
    """``tf2_msgs/TFMessage`` of (4, 4) child -> ``parent`` transforms, keyed by child frame."""
    out = []
    for child, T in transforms.items():
        (x, y, z), (qx, qy, qz, qw) = matrix_to_xyz_quat(np.asarray(T, dtype=np.float64))
        tr = _msg("geometry_msgs/msg/Transform", translation=_msg("geometry_msgs/msg/Vector3", x=x, y=y, z=z),
                  rotation=_msg("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))
        out.append(_msg("geometry_msgs/msg/TransformStamped", header=header(stamp_ns, parent), child_frame_id=child,
                        transform=tr))
    return _msg("tf2_msgs/msg/TFMessage", transforms=out)


def camera_info_message(stamp_ns: int, frame_id: str, calibration: CameraCalibration) -> Any:
    """``sensor_msgs/CameraInfo`` of a rectified image: K, P from ``P_rect``, R = I, D = 0 (plumb_bob)."""
    roi = _msg("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _msg("sensor_msgs/msg/CameraInfo", header=header(stamp_ns, frame_id), height=calibration.height,
                width=calibration.width, distortion_model="plumb_bob", d=np.zeros(5), k=calibration.K.ravel(),
                r=np.eye(3).ravel(), p=calibration.P.ravel().copy(), binning_x=0, binning_y=0, roi=roi)


def image_message(stamp_ns: int, frame_id: str, bgr: np.ndarray) -> Any:
    """``sensor_msgs/Image`` rgb8 of an (H, W, 3) uint8 BGR array."""
    h, w = bgr.shape[:2]
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    return _msg("sensor_msgs/msg/Image", header=header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
                is_bigendian=0, step=3 * w, data=rgb.reshape(-1))


def compressed_message(stamp_ns: int, frame_id: str, bgr: np.ndarray, png: bytes, fmt: str) -> Any:
    """``sensor_msgs/CompressedImage``: ``png`` (the file's bytes if 8-bit RGB, else re-encoded) or ``jpeg``."""
    if fmt == "png" and is_rgb8_png(png):
        data = png
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else []
        ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
        if not ok:
            raise ValueError(f"could not encode a {fmt} image")
        data = buf.tobytes()
    return _msg("sensor_msgs/msg/CompressedImage", header=header(stamp_ns, frame_id),
                format=f"rgb8; {fmt} compressed bgr8", data=np.frombuffer(data, np.uint8))


def pointcloud_message(stamp_ns: int, frame_id: str, points: np.ndarray) -> Any:
    """``sensor_msgs/PointCloud2`` (x, y, z, intensity float32, little-endian) of (N, 4) float32 points."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    fields = [_msg("sensor_msgs/msg/PointField", name=name, offset=offset, datatype=7, count=1)  # 7 = FLOAT32
              for name, offset in VELODYNE_FIELDS]
    return _msg("sensor_msgs/msg/PointCloud2", header=header(stamp_ns, frame_id), height=1, width=len(pts),
                fields=fields, is_bigendian=False, point_step=16, row_step=16 * len(pts),
                data=pts.view(np.uint8).reshape(-1), is_dense=bool(np.isfinite(pts[:, :3]).all()))


# ------------------------------------------------------------------------------------------------ convert
@dataclass(frozen=True)
class _Inputs:
    """Everything read before the bag is opened."""

    calibrations: dict[str, CameraCalibration]
    statics: dict[str, np.ndarray]
    stamps: dict[str, np.ndarray]
    scan_stamps: np.ndarray | None
    frames: list[int]
    poses: dict[int, np.ndarray]
    unposed: list[int]


def _read_inputs(root: Path, sequence: str, frames: tuple[int, int] | None, cameras: Sequence[str],
                 velodyne: bool) -> _Inputs:
    calib = root / "calibration"
    calibrations = read_camera_calibrations(calib / "perspective.txt", cameras)
    statics = static_transforms(calib, cameras)
    stamps = {cam: read_timestamps(timestamps_path(root, sequence, cam)) for cam in cameras}
    scan_stamps = read_timestamps(velodyne_timestamps_path(root, sequence)) if velodyne else None
    selected = select_frames(len(stamps[cameras[0]]), frames, timestamps_path(root, sequence, cameras[0]))
    for cam in cameras[1:]:
        if len(stamps[cam]) <= selected[-1]:
            raise ValueError(f"{timestamps_path(root, sequence, cam)} has {len(stamps[cam])} lines, frame "
                             f"{selected[-1]} needs {selected[-1] + 1}")
    poses_file = k360.poses_path(root / "data_poses", sequence)
    track = k360.read_poses(poses_file)
    poses, unposed = {}, []
    for f in selected:
        row = track.index_of(f)
        if row is None:
            unposed.append(f)
        else:
            poses[f] = track.poses[row]
    if unposed:
        logger.warning("%d of %d frames have no pose in %s and are skipped: %s", len(unposed), len(selected),
                       poses_file, frame_ranges(unposed))
    if not poses:
        raise ValueError(f"none of the frames {selected[0]}..{selected[-1]} has a pose in {poses_file}")
    return _Inputs(calibrations=calibrations, statics=statics, stamps=stamps, scan_stamps=scan_stamps,
                   frames=sorted(poses), poses=poses, unposed=unposed)


def convert(root: str | Path, sequence: str, out: str | Path, *, frames: tuple[int, int] | None = None,
            storage: str = "mcap", compressed: str | None = None, cameras: Sequence[str] = CAMERAS,
            velodyne: bool = False, overwrite: bool = False, progress: bool = True, resume: bool = False,
            stop: threading.Event | None = None) -> ConversionSummary:
    """Convert one KITTI-360 drive to a rosbag2 folder ``out`` (metadata version 9); see the module docstring.

    Args:
        root: KITTI-360 root (``calibration/``, ``data_2d_raw/``, ``data_poses/``, ``data_3d_raw/``).
        sequence: drive folder, e.g. ``2013_05_28_drive_0009_sync``.
        out: bag folder to create.
        frames: (start, stop) frame ids, stop exclusive (clipped to the drive); None = all.
        storage: ``mcap`` or ``sqlite3``.
        compressed: None (raw rgb8 ``Image``), ``png`` or ``jpeg`` (``CompressedImage``).
        cameras: subset of ``CAMERAS``, in any order (the first one defines the frames).
        velodyne: also write the Velodyne scans.
        overwrite: replace an existing ``out`` (and discard an interrupted conversion in ``OUT.partial``).
        progress: show a tqdm bar.
        resume: continue the conversion interrupted in ``OUT.partial`` (same arguments); without one, start.
        stop: when set (between frames), stop after the current frame and close the bag in ``OUT.partial``.

    Raises:
        FileExistsError: ``out`` exists (without ``overwrite``).
        PartialBagError: ``OUT.partial`` holds an interrupted conversion (without ``resume``) or one with other
            arguments.
    """
    t_start = time.perf_counter()
    root, out, cameras = Path(root), Path(out), tuple(cameras)
    check_storage(storage)
    if compressed not in (None, *COMPRESSIONS):
        raise ValueError(f"compressed must be None or one of {COMPRESSIONS}, got {compressed!r}")
    if not cameras or len(set(cameras)) != len(cameras) or not set(cameras) <= set(CAMERAS):
        raise ValueError(f"cameras must be distinct names from {CAMERAS}, got {cameras}")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise FileExistsError(f"output exists: {out} (pass --overwrite to replace it)")
    inputs = _read_inputs(root, sequence, frames, cameras, velodyne)

    settings = {"root": str(root.resolve()), "sequence": sequence, "frames": frames, "compressed": compressed,
                "cameras": cameras, "velodyne": velodyne}
    work = PartialBag.start(out, TOOL, storage, settings, resume=resume, overwrite=overwrite)
    writer = None
    try:
        writer = work.open_writer()
        summary = _write(work, writer, root, sequence, inputs, compressed, cameras, velodyne, progress, stop)
        if summary["interrupted"]:
            path = work.close_interrupted(writer)
            logger.warning("interrupted (%s) after %d frames: %s holds them as a complete bag; continue with "
                           "--resume", summary["interrupted"], len(summary["frames_written"]), path)
        else:
            path = work.finish(writer, overwrite=overwrite)
    except KeyboardInterrupt:
        work.abandon(writer, keep=True)
        raise
    except BaseException:
        work.abandon(writer, keep=work.resuming)
        if work.resuming:
            logger.error("the frames done so far stay in %s; continue with --resume", work.work)
        raise
    return ConversionSummary(path=path, storage=storage, elapsed_s=time.perf_counter() - t_start, **summary)


#: (stamp ns, order at equal stamps, topic, message); order: tf 0, camera_info 1, image 2, Velodyne 3.
_Stamped = tuple[int, int, str, Any]


def _frame_messages(frame: int, images: dict[str, tuple[np.ndarray, bytes]], scan: tuple[int, np.ndarray] | None,
                    inputs: _Inputs, compressed: str | None) -> list[_Stamped]:
    """Messages of one frame in write order: by stamp, ``/tf`` first at equal stamps (the pose precedes the data).

    ``images``: camera -> (BGR image, PNG bytes) as ``read_image`` returns them; ``scan``: (stamp, (N, 4) points).
    """
    msgs: list[_Stamped] = []
    for cam, (bgr, png) in images.items():
        stamp, frame_id = int(inputs.stamps[cam][frame]), FRAMES.camera(cam)
        msgs.append((stamp, 1, TOPICS.camera_info(cam), camera_info_message(stamp, frame_id, inputs.calibrations[cam])))
        if compressed:
            msgs.append((stamp, 2, TOPICS.compressed(cam), compressed_message(stamp, frame_id, bgr, png, compressed)))
        else:
            msgs.append((stamp, 2, TOPICS.image(cam), image_message(stamp, frame_id, bgr)))
    if scan is not None:
        msgs.append((scan[0], 3, TOPICS.velodyne, pointcloud_message(scan[0], FRAMES.velodyne, scan[1])))
    map_from_base = inputs.poses[frame] @ BASE_LINK_FROM_POSE
    for stamp in sorted({m[0] for m in msgs}):
        msgs.append((stamp, 0, TOPICS.tf, tf_message(stamp, {FRAMES.base_link: map_from_base}, FRAMES.map)))
    return sorted(msgs, key=lambda m: m[:2])


def _write(work: PartialBag, writer: Any, root: Path, sequence: str, inputs: _Inputs, compressed: str | None,
           cameras: tuple[str, ...], velodyne: bool, progress: bool, stop: threading.Event | None) -> dict[str, Any]:
    """Write the bag (``writer``, open, of work folder ``work``), committing after every frame; returns the
    ConversionSummary fields that depend on the data."""
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    first_stamps = [inputs.stamps[cam][inputs.frames[0]] for cam in cameras]
    if velodyne and inputs.frames[0] < len(inputs.scan_stamps):
        first_stamps.append(inputs.scan_stamps[inputs.frames[0]])
    t0 = int(min(first_stamps))
    conns = {}

    def connect(topic: str, msgtype: str, qos: Qos = STREAM_QOS) -> None:
        conns[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[qos])

    connect(TOPICS.tf_static, "tf2_msgs/msg/TFMessage", LATCHED_QOS)
    connect(TOPICS.tf, "tf2_msgs/msg/TFMessage")
    for cam in cameras:
        connect(TOPICS.camera_info(cam), "sensor_msgs/msg/CameraInfo")
        connect(TOPICS.compressed(cam) if compressed else TOPICS.image(cam), image_type)
    if velodyne:
        connect(TOPICS.velodyne, "sensor_msgs/msg/PointCloud2")
    deltas = work.begin(writer, {"t0": t0})
    written: list[int] = [f for d in deltas for f in d["written"]]
    bad_image = [f for d in deltas for f in d["bad_image"]]
    scans_missing = [f for d in deltas for f in d["scans_missing"]]
    scans_bad = [f for d in deltas for f in d["scans_bad"]]
    end_ns = max([t0] + [d["end_ns"] for d in deltas])
    done = set(written) | set(bad_image)
    delta: dict[str, list[int]] = {"written": [], "bad_image": [], "scans_missing": [], "scans_bad": []}

    def put(topic: str, stamp: int, msg: Any) -> None:
        writer.write(conns[topic], int(stamp), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

    def commit() -> None:
        nonlocal delta
        work.commit(writer, {**delta, "end_ns": end_ns})
        delta = {k: [] for k in delta}

    if not deltas:
        put(TOPICS.tf_static, t0, tf_message(t0, inputs.statics, FRAMES.base_link))
    interrupted = ""
    todo = [f for f in inputs.frames if f not in done]
    for f in tqdm(todo, desc=f"{sequence} -> {work.out.name}", unit="frame", disable=not progress):
        if stop is not None and stop.is_set():
            interrupted = getattr(stop, "reason", "") or "stop requested"
            break
        try:
            images = {cam: read_image(k360.raw_image_path(root, sequence, cam, f), inputs.calibrations[cam])
                      for cam in cameras}
        except (FileNotFoundError, ValueError) as e:
            logger.warning("skipping frame %d: %s", f, e)
            bad_image.append(f)
            delta["bad_image"].append(f)
            commit()
            continue
        scan = None
        if velodyne:
            if f >= len(inputs.scan_stamps) or not velodyne_scan_path(root, sequence, f).is_file():
                scans_missing.append(f)
                delta["scans_missing"].append(f)
            else:
                try:
                    scan = int(inputs.scan_stamps[f]), read_scan(velodyne_scan_path(root, sequence, f))
                except ValueError as e:
                    logger.warning("frame %d without its Velodyne scan: %s", f, e)
                    scans_bad.append(f)
                    delta["scans_bad"].append(f)
        msgs = _frame_messages(f, images, scan, inputs, compressed)
        for i, (stamp, _, topic, msg) in enumerate(msgs):
            put(topic, stamp, msg)
            end_ns = max(end_ns, stamp)
            if i == 0:
                pause_for_test(len(written), stop)
        written.append(f)
        delta["written"].append(f)
        commit()
    if not written and not interrupted:
        raise ValueError(f"no frame could be written: every selected frame of {sequence} was skipped "
                         f"(see the warnings above)")
    if scans_missing and not interrupted:
        logger.warning("%d frames written without a Velodyne scan (no file in %s or no line in %s): %s",
                       len(scans_missing), velodyne_scan_path(root, sequence, 0).parent,
                       velodyne_timestamps_path(root, sequence), frame_ranges(scans_missing))
    counts = {c.topic: writer.counts[c.id] for c in writer.connections}
    return dict(frames_written=tuple(sorted(written)), frames_without_pose=tuple(inputs.unposed),
                frames_with_bad_image=tuple(sorted(bad_image)), scans_skipped=tuple(sorted(scans_missing + scans_bad)),
                message_counts=counts, start_ns=t0, end_ns=end_ns, interrupted=interrupted,
                frames_resumed=len(done))
