"""KITTI-360 -> rosbag2 conversion on a tiny synthetic drive written in the real formats, read back with rosbags.

Expected values come from the files (parsed here independently of the converter) and from the synthetic world's
own geometry (``StreetWorld.camera_to_world`` / ``velo_to_world``), not from the converter's helpers.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from scipy.spatial.transform import Rotation

from scenedino_core.data import kitti360 as k360
from scenedino_core.data import kitti360_raw
from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_kitti360
from scenedino_ros.bag import kitti360 as k2b
from scenedino_ros.bag.kitti360 import FRAMES, TOPICS
from scenedino_ros.cli import kitti360_to_bag as k2b_cli

SEQ = "2013_05_28_drive_0009_sync"
FULL = (30, 96)  # (H, W) of the rectified images
FRAME_IDS = range(0, 6)
UNPOSED = 2
POSED = [f for f in FRAME_IDS if f != UNPOSED]
F = np.diag([1.0, -1.0, -1.0, 1.0])  # KITTI-360 pose frame -> base_link
#: Irregular stamps with odd nanoseconds (float64 seconds would lose them); cam 01 17 ns after cam 00, scans earlier.
BASE_NS = 1369730762880698602  # 2013-05-28 08:46:02.880698602 UTC
OFFSETS_NS = {"image_00": 0, "image_01": 17, "velodyne": -31_234_567}


def stamp_text(ns: int) -> str:
    return f"{np.datetime64(ns, 'ns').astype(str).replace('T', ' ')}"


def expected_stamp(sensor: str, frame: int) -> int:
    return BASE_NS + frame * 103_456_789 + OFFSETS_NS[sensor]


@pytest.fixture(scope="module")
def world() -> StreetWorld:
    return StreetWorld.generate(5, StreetConfig(num_frames=8))


@pytest.fixture(scope="module")
def drive(tmp_path_factory, world) -> Path:
    """Frames 0..5 with Velodyne; frame 2 has no pose line; irregular nanosecond timestamps."""
    root = tmp_path_factory.mktemp("kitti360")
    write_kitti360(world, root, SEQ, FRAME_IDS, full_size=FULL, image_size=(16, 48), semantics=False, velodyne=True)
    poses = k360.poses_path(root / "data_poses", SEQ)
    poses.write_text("".join(ln + "\n" for ln in poses.read_text().splitlines() if int(ln.split()[0]) != UNPOSED))
    for sensor, path in (("image_00", kitti360_raw.timestamps_path(root, SEQ, "image_00")),
                         ("image_01", kitti360_raw.timestamps_path(root, SEQ, "image_01")),
                         ("velodyne", kitti360_raw.velodyne_timestamps_path(root, SEQ))):
        path.write_text("".join(stamp_text(expected_stamp(sensor, f)) + "\n" for f in FRAME_IDS))
    return root


@pytest.fixture
def drive_copy(drive, tmp_path) -> Path:
    return Path(shutil.copytree(drive, tmp_path / "drive"))


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(bag time ns, deserialised message)] in bag order."""
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path]) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, [])
        for conn, t, raw in reader.messages():
            out[conn.topic].append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def tf_matrix(ts) -> np.ndarray:
    t, q = ts.transform.translation, ts.transform.rotation
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    m[:3, 3] = (t.x, t.y, t.z)
    return m


def perspective_entries(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for line in (root / "calibration" / "perspective.txt").read_text().splitlines():
        key, _, values = line.partition(":")
        if key.startswith(("S_rect", "P_rect", "R_rect")):
            out[key] = np.array(values.split(), dtype=np.float64)
    return out


def png_rgb(root: Path, camera: str, frame: int) -> np.ndarray:
    bgr = cv2.imread(str(k360.raw_image_path(root, SEQ, camera, frame)), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]


def no_leftovers(out: Path) -> bool:
    """Neither ``out`` nor a hidden temporary sibling of it exists."""
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def converted(request, drive, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bag_{request.param}") / "drive_bag"
    logger = logging.getLogger(k2b.__name__)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        summary = k2b.convert(drive, SEQ, out, storage=request.param, velodyne=True, progress=False)
    finally:
        logger.removeHandler(handler)
    return summary, read_bag(out), [r.getMessage() for r in records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------------------- round trip
def test_metadata_version_storage_topics_and_counts(converted):
    summary, bag, _ = converted
    meta = yaml.safe_load((summary.path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == summary.storage
    assert (summary.path / meta["relative_file_paths"][0]).is_file()
    assert summary.frames_written == tuple(POSED) and summary.frames_without_pose == (UNPOSED,)
    n = len(POSED)
    expected = {TOPICS.tf_static: 1, TOPICS.tf: 3 * n, TOPICS.velodyne: n}
    for cam in k2b.CAMERAS:
        expected[TOPICS.image(cam)] = expected[TOPICS.camera_info(cam)] = n
    assert {t: len(m) for t, m in bag.items()} == expected == summary.message_counts
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts == expected
    assert summary.start_ns == min(expected_stamp(s, POSED[0]) for s in OFFSETS_NS)
    assert summary.end_ns == expected_stamp("image_01", POSED[-1])


def test_unposed_frame_is_skipped_with_one_warning(converted):
    _, bag, warnings = converted
    pose_warnings = [w for w in warnings if "no pose" in w]
    assert len(pose_warnings) == 1 and "1 of 6 frames" in pose_warnings[0] and "poses.txt" in pose_warnings[0]
    assert pose_warnings[0].endswith(f": {UNPOSED}")
    assert all(stamp_ns(m) != expected_stamp("image_00", UNPOSED) for _, m in bag[TOPICS.image("image_00")])


def test_images_equal_the_pngs_and_stamps_equal_timestamps(converted, drive):
    _, bag, _ = converted
    for cam in k2b.CAMERAS:
        msgs = bag[TOPICS.image(cam)]
        assert [stamp_ns(m) for _, m in msgs] == [expected_stamp(cam, f) for f in POSED]
        for f, (t, m) in zip(POSED, msgs):
            assert t == stamp_ns(m)
            assert m.header.frame_id == FRAMES.camera(cam) and m.encoding == "rgb8" and m.step == 3 * m.width
            rgb = np.asarray(m.data, dtype=np.uint8).reshape(m.height, m.width, 3)
            np.testing.assert_array_equal(rgb, png_rgb(drive, cam, f))


def test_camera_info_equals_the_calibration_file(converted, drive):
    _, bag, _ = converted
    entries = perspective_entries(drive)
    for cam in k2b.CAMERAS:
        idx = cam[-2:]
        P = entries[f"P_rect_{idx}"].reshape(3, 4)
        msgs = bag[TOPICS.camera_info(cam)]
        assert [stamp_ns(m) for _, m in msgs] == [expected_stamp(cam, f) for f in POSED]
        for t, m in msgs:
            assert t == stamp_ns(m) and m.header.frame_id == FRAMES.camera(cam)
            assert (m.width, m.height) == tuple(entries[f"S_rect_{idx}"].astype(int)) == (FULL[1], FULL[0])
            np.testing.assert_array_equal(np.asarray(m.p).reshape(3, 4), P)
            np.testing.assert_array_equal(np.asarray(m.k).reshape(3, 3), P[:, :3])
            np.testing.assert_array_equal(np.asarray(m.r).reshape(3, 3), np.eye(3))
            assert m.distortion_model == "plumb_bob" and not np.any(m.d)
    assert bag[TOPICS.camera_info("image_01")][0][1].p[3] < 0  # -fx * baseline: the right camera of the pair


def test_tf_is_the_pose_in_base_link_convention_at_every_sensor_stamp(converted, drive):
    _, bag, _ = converted
    rows = [np.array(ln.split(), dtype=np.float64)
            for ln in k360.poses_path(drive / "data_poses", SEQ).read_text().splitlines()]
    poses = {int(r[0]): np.vstack([r[1:].reshape(3, 4), [0, 0, 0, 1]]) for r in rows}
    msgs = bag[TOPICS.tf]
    expected_stamps = sorted(expected_stamp(s, f) for f in POSED for s in OFFSETS_NS)
    assert [stamp_ns(m.transforms[0]) for _, m in msgs] == expected_stamps
    for t, m in msgs:
        (ts,) = m.transforms
        assert t == stamp_ns(ts) and ts.header.frame_id == FRAMES.map and ts.child_frame_id == FRAMES.base_link
        frame = next(f for f in POSED if any(expected_stamp(s, f) == t for s in OFFSETS_NS))
        np.testing.assert_allclose(tf_matrix(ts), poses[frame] @ F, atol=1e-9)


def test_tf_static_places_cameras_and_velodyne_like_the_world(converted, world):
    summary, bag, _ = converted
    ((t, m),) = bag[TOPICS.tf_static]
    assert t == summary.start_ns and all(stamp_ns(ts) == t for ts in m.transforms)
    static = {ts.child_frame_id: tf_matrix(ts) for ts in m.transforms}
    assert all(ts.header.frame_id == FRAMES.base_link for ts in m.transforms)
    assert sorted(static) == sorted([FRAMES.camera(c) for c in k2b.CAMERAS] + [FRAMES.velodyne])
    (_, tf0), = [x for x in bag[TOPICS.tf] if stamp_ns(x[1].transforms[0]) == expected_stamp("image_00", 0)]
    map_from_base = tf_matrix(tf0.transforms[0])
    for cam in k2b.CAMERAS:
        np.testing.assert_allclose(map_from_base @ static[FRAMES.camera(cam)], world.camera_to_world(0, cam),
                                   atol=1e-9)
    np.testing.assert_allclose(map_from_base @ static[FRAMES.velodyne], world.velo_to_world(0), atol=1e-9)
    np.testing.assert_allclose(static[FRAMES.velodyne][:3, :3], np.eye(3), atol=1e-9)  # level Velodyne, REP-103


def test_tf_static_is_offered_transient_local(converted):
    summary, _, _ = converted
    meta = yaml.safe_load((summary.path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    (static,) = qos[TOPICS.tf_static]
    assert static["durability"] == "transient_local" and static["reliability"] == "reliable"
    assert static["history"] == "keep_last" and static["depth"] >= 1
    assert all(p["durability"] == "volatile" for t, ps in qos.items() if t != TOPICS.tf_static for p in ps)
    with AnyReader([summary.path]) as reader:
        (conn,) = [c for c in reader.connections if c.topic == TOPICS.tf_static]
        assert conn.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"


def test_velodyne_points_equal_the_bin_files(converted, drive):
    _, bag, _ = converted
    msgs = bag[TOPICS.velodyne]
    assert [stamp_ns(m) for _, m in msgs] == [expected_stamp("velodyne", f) for f in POSED]
    for f, (t, m) in zip(POSED, msgs):
        assert t == stamp_ns(m) and m.header.frame_id == FRAMES.velodyne
        assert [(fl.name, fl.offset, fl.datatype, fl.count) for fl in m.fields] == \
            [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 1)]
        assert m.point_step == 16 and m.row_step == 16 * m.width and m.height == 1 and not m.is_bigendian
        expected = np.fromfile(kitti360_raw.velodyne_scan_path(drive, SEQ, f), dtype="<f4").reshape(-1, 4)
        np.testing.assert_array_equal(np.frombuffer(bytes(m.data), "<f4").reshape(-1, 4), expected)
        assert m.width == len(expected) > 1000


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_images_decode_to_the_pngs(drive, tmp_path, fmt):
    out = tmp_path / "c_bag"
    summary = k2b.convert(drive, SEQ, out, compressed=fmt, cameras=("image_01",), frames=(3, 5), progress=False)
    bag = read_bag(out)
    assert set(bag) == {TOPICS.tf_static, TOPICS.tf, TOPICS.camera_info("image_01"), TOPICS.compressed("image_01")}
    assert summary.frames_written == (3, 4)
    for f, (t, m) in zip((3, 4), bag[TOPICS.compressed("image_01")]):
        assert t == stamp_ns(m) == expected_stamp("image_01", f) and m.format == f"rgb8; {fmt} compressed bgr8"
        rgb = cv2.imdecode(np.asarray(m.data, dtype=np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        if fmt == "png":
            assert bytes(m.data) == k360.raw_image_path(drive, SEQ, "image_01", f).read_bytes()
            np.testing.assert_array_equal(rgb, png_rgb(drive, "image_01", f))
        else:
            assert bytes(m.data[:2]) == b"\xff\xd8" and rgb.shape == (*FULL, 3)
            assert np.abs(rgb.astype(int) - png_rgb(drive, "image_01", f)).mean() < 8


def test_non_rgb8_png_is_reencoded_for_compressed_png(drive_copy, tmp_path):
    path = k360.raw_image_path(drive_copy, SEQ, "image_00", 0)
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(path), gray)
    k2b.convert(drive_copy, SEQ, tmp_path / "g_bag", compressed="png", cameras=("image_00",), frames=(0, 1),
                progress=False)
    ((_, m),) = read_bag(tmp_path / "g_bag")[TOPICS.compressed("image_00")]
    assert bytes(m.data) != path.read_bytes()
    decoded = cv2.imdecode(np.asarray(m.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (*FULL, 3)
    np.testing.assert_array_equal(decoded, np.repeat(gray[..., None], 3, axis=2))


def test_rectification_rotation_is_composed_into_the_camera_frame(drive_copy):
    """Camera frames get ``R_rect_0X^-1``; the Velodyne calibration refers to the unrectified camera 00."""
    calib = drive_copy / "calibration"
    R = {"00": Rotation.from_euler("xyz", [0.01, -0.02, 0.03]).as_matrix(),
         "01": Rotation.from_euler("xyz", [-0.03, 0.01, 0.02]).as_matrix()}
    text = (calib / "perspective.txt").read_text()
    for idx, rot in R.items():
        old = next(ln for ln in text.splitlines() if ln.startswith(f"R_rect_{idx}:"))
        text = text.replace(old, f"R_rect_{idx}: " + " ".join(repr(float(v)) for v in rot.ravel()))
    (calib / "perspective.txt").write_text(text)
    raw = {ln.split(":")[0]: np.vstack([np.array(ln.split(":")[1].split(), float).reshape(3, 4), [0, 0, 0, 1]])
           for ln in (calib / "calib_cam_to_pose.txt").read_text().splitlines()}
    cam_to_velo = np.vstack([np.loadtxt(calib / "calib_cam_to_velo.txt").reshape(3, 4), [0, 0, 0, 1]])
    static = k2b.static_transforms(calib, ["image_00", "image_01"])
    for idx, rot in R.items():
        R4 = np.eye(4)
        R4[:3, :3] = rot
        np.testing.assert_allclose(static[FRAMES.camera(f"image_{idx}")], F @ raw[f"image_{idx}"] @ R4.T,
                                   atol=1e-12)
    np.testing.assert_allclose(static[FRAMES.velodyne], F @ raw["image_00"] @ np.linalg.inv(cam_to_velo), atol=1e-12)


# ----------------------------------------------------------------------------------------- bad input
def test_missing_perspective_txt_names_the_file(drive_copy, tmp_path):
    (drive_copy / "calibration" / "perspective.txt").unlink()
    out = tmp_path / "out_bag"
    with pytest.raises(FileNotFoundError, match="perspective.txt"):
        k2b.convert(drive_copy, SEQ, out, progress=False)
    assert no_leftovers(out)


def test_missing_poses_file_names_the_file(drive_copy, tmp_path):
    k360.poses_path(drive_copy / "data_poses", SEQ).unlink()
    with pytest.raises(FileNotFoundError, match="poses.txt"):
        k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", progress=False)
    assert no_leftovers(tmp_path / "out_bag")


def test_bad_poses_line_names_file_and_line(drive_copy, tmp_path):
    path = k360.poses_path(drive_copy / "data_poses", SEQ)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0]  # 11 floats
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"poses.txt:2: expected a frame id and 12 floats"):
        k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", progress=False)


def test_missing_or_malformed_timestamps_name_the_file(drive_copy, tmp_path):
    path = kitti360_raw.timestamps_path(drive_copy, SEQ, "image_01")
    path.write_text(path.read_text().replace(stamp_text(expected_stamp("image_01", 3)), "2013-05-28 8h46"))
    with pytest.raises(ValueError, match=r"image_01/timestamps.txt:4: expected"):
        k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", progress=False)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="image_01/timestamps.txt"):
        k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", progress=False)
    assert no_leftovers(tmp_path / "out_bag")


def test_missing_velodyne_timestamps_names_the_file(drive_copy, tmp_path):
    kitti360_raw.velodyne_timestamps_path(drive_copy, SEQ).unlink()
    k2b.convert(drive_copy, SEQ, tmp_path / "ok_bag", progress=False)  # not needed without velodyne
    with pytest.raises(FileNotFoundError, match="velodyne_points/timestamps.txt"):
        k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", velodyne=True, progress=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "wrong size"])
def test_bad_image_skips_its_frame_with_a_warning_naming_the_file(drive_copy, tmp_path, caplog, damage):
    path = k360.raw_image_path(drive_copy, SEQ, "image_01", 3)
    if damage == "garbage":
        path.write_bytes(b"not a png at all" * 10)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "missing":
        path.unlink()
    else:
        cv2.imwrite(str(path), np.zeros((FULL[0], FULL[1] + 1, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger=k2b.__name__):
        summary = k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", progress=False)
    assert summary.frames_with_bad_image == (3,) and summary.frames_written == tuple(f for f in POSED if f != 3)
    assert str(path) in caplog.text and "skipping frame 3" in caplog.text
    bag = read_bag(tmp_path / "out_bag")
    assert [stamp_ns(m) for _, m in bag[TOPICS.image("image_00")]] == [expected_stamp("image_00", f)
                                                                       for f in summary.frames_written]


def test_all_frames_bad_is_an_error_and_writes_nothing(drive_copy, tmp_path):
    for f in FRAME_IDS:
        k360.raw_image_path(drive_copy, SEQ, "image_00", f).write_bytes(b"junk")
    with pytest.raises(ValueError, match="no frame could be written"):
        k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", progress=False)
    assert no_leftovers(tmp_path / "out_bag")


def test_missing_and_malformed_scans_are_left_out(drive_copy, tmp_path, caplog):
    kitti360_raw.velodyne_scan_path(drive_copy, SEQ, 1).unlink()
    kitti360_raw.velodyne_scan_path(drive_copy, SEQ, 4).write_bytes(b"\0" * 17)
    stamps = kitti360_raw.velodyne_timestamps_path(drive_copy, SEQ)
    stamps.write_text("".join(stamps.read_text().splitlines(keepends=True)[:5]))  # no line for frame 5
    with caplog.at_level(logging.WARNING, logger=k2b.__name__):
        summary = k2b.convert(drive_copy, SEQ, tmp_path / "out_bag", velodyne=True, progress=False)
    assert summary.scans_skipped == (1, 4, 5) and summary.frames_written == tuple(POSED)
    assert str(kitti360_raw.velodyne_scan_path(drive_copy, SEQ, 4)) in caplog.text
    assert "2 frames written without a Velodyne scan" in caplog.text and ": 1, 5" in caplog.text
    assert [stamp_ns(m) for _, m in read_bag(tmp_path / "out_bag")[TOPICS.velodyne]] == \
        [expected_stamp("velodyne", f) for f in (0, 3)]


@pytest.mark.parametrize("frames, match", [((3, 1), "empty or negative"), ((-1, 2), "empty or negative"),
                                           ((6, 9), r"selects no frame: .*image_00/timestamps.txt lists frames 0..5"),
                                           ((2, 3), "none of the frames 2..2 has a pose")])
def test_bad_frame_range_is_an_error(drive, tmp_path, frames, match):
    with pytest.raises(ValueError, match=match):
        k2b.convert(drive, SEQ, tmp_path / "out_bag", frames=frames, progress=False)
    assert no_leftovers(tmp_path / "out_bag")


def test_frame_range_is_clipped_to_the_drive(drive, tmp_path):
    summary = k2b.convert(drive, SEQ, tmp_path / "out_bag", frames=(4, 1000), cameras=("image_00",), progress=False)
    assert summary.frames_written == (4, 5)


def test_existing_output_is_kept_unless_overwrite(drive, tmp_path):
    out = tmp_path / "out_bag"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match=str(out)):
        k2b.convert(drive, SEQ, out, progress=False)
    assert (out / "keep.txt").read_text() == "old"
    k2b.convert(drive, SEQ, out, cameras=("image_00",), frames=(0, 2), overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "metadata.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out_bag"]


def test_output_created_during_the_conversion_is_not_replaced(drive, tmp_path, monkeypatch):
    out = tmp_path / "late_bag"
    real_write = k2b._write

    def write_then_race(*args, **kwargs):
        result = real_write(*args, **kwargs)
        out.mkdir()
        return result

    monkeypatch.setattr(k2b, "_write", write_then_race)
    with pytest.raises(FileExistsError, match="late_bag"):
        k2b.convert(drive, SEQ, out, cameras=("image_00",), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["late_bag"] and not any(out.iterdir())


def test_failure_while_writing_leaves_no_bag_and_keeps_the_old_one(drive, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(k2b, "pointcloud_message", broken)
    out = tmp_path / "new_bag"
    with pytest.raises(OSError, match="simulated"):
        k2b.convert(drive, SEQ, out, velodyne=True, progress=False)
    assert no_leftovers(out)
    old = tmp_path / "old_bag"
    old.mkdir()
    (old / "keep.txt").write_text("old")
    with pytest.raises(OSError, match="simulated"):
        k2b.convert(drive, SEQ, old, velodyne=True, overwrite=True, progress=False)
    assert [p.name for p in old.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old_bag"]


def test_bad_options_are_errors(drive, tmp_path):
    for kwargs, match in (({"storage": "rosbag1"}, "storage"), ({"compressed": "webp"}, "compressed"),
                          ({"cameras": ("image_02",)}, "cameras"), ({"cameras": ()}, "cameras")):
        with pytest.raises(ValueError, match=match):
            k2b.convert(drive, SEQ, tmp_path / "out_bag", progress=False, **kwargs)


# ------------------------------------------------------------------------------------------- helpers
def test_parse_timestamp_keeps_nanoseconds():
    assert kitti360_raw.parse_timestamp("2013-05-28 08:46:02.880698602") == BASE_NS
    assert kitti360_raw.parse_timestamp("2013-05-28 08:46:02.5\n") == 1369730762_500000000
    assert kitti360_raw.parse_timestamp("1970-01-01 00:00:00") == 0
    for bad in ("2013-05-28T08:46:02.1", "2013-05-28 08:46:02.1234567890", "2013-05-28 08:46:02.12a", ""):
        with pytest.raises(ValueError):
            kitti360_raw.parse_timestamp(bad)


def test_frame_ranges():
    assert k2b.frame_ranges([9, 3, 4, 5, 7]) == "3-5, 7, 9"
    assert k2b.frame_ranges([]) == ""


def test_topic_and_frame_names():
    assert TOPICS.image("image_00") == "/kitti360/image_00/image_rect"
    assert TOPICS.compressed("image_01") == "/kitti360/image_01/image_rect/compressed"
    assert TOPICS.camera_info("image_01") == "/kitti360/image_01/camera_info"
    assert (TOPICS.tf, TOPICS.tf_static, TOPICS.velodyne) == ("/tf", "/tf_static", "/kitti360/velodyne_points")
    assert FRAMES.camera("image_01") == "camera_01_optical_frame"
    assert (FRAMES.map, FRAMES.base_link, FRAMES.velodyne) == ("map", "base_link", "velodyne")


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_end_to_end_and_error_exit(drive, tmp_path, capsys):
    out = tmp_path / "cli_bag"
    argv = [str(drive), "--sequence", SEQ, "--frames", "0:4", "--cameras", "00", "--velodyne", "--compressed",
            "jpeg", "--storage", "sqlite3", "--no-progress", str(out)]
    assert k2b_cli.main(argv) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (sqlite3)" in text and "3 frames" in text and "skipped 1 frames (no pose): 2" in text
    assert TOPICS.compressed("image_00") in text and TOPICS.velodyne in text
    assert set(read_bag(out)) == {TOPICS.tf_static, TOPICS.tf, TOPICS.camera_info("image_00"),
                                  TOPICS.compressed("image_00"), TOPICS.velodyne}
    assert k2b_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("scenedino-kitti360-to-bag: error: output exists") and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        k2b_cli.main([str(drive), "--sequence", SEQ, "--cameras", "02", str(tmp_path / "x_bag")])
    assert exc.value.code == 2


def test_console_script_runs_without_importing_rclpy(drive, tmp_path):
    code = ("import sys; from scenedino_ros.cli import kitti360_to_bag as m; "
            "assert 'rclpy' not in sys.modules, 'rclpy imported'; sys.exit(m.main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(drive / "nope"), "--sequence", SEQ,
                           str(tmp_path / "x_bag")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("scenedino-kitti360-to-bag: error: calibration file not found") and \
        "perspective.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
