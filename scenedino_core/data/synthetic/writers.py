"""Writers of the synthetic world as on-disk datasets in the real formats: a KITTI-360 tree (read by
``kitti360.Kitti360MultiView``, ``scenedino-kitti360-to-bag``) and an SSCBench-KITTI-360 tree (read by
``sscbench.dataset.SSCBenchKitti360``). Every file is written atomically (``files.atomic_path``).
"""
from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from scenedino_core import geometry, images
from scenedino_core.data import kitti360 as k360
from scenedino_core.data.fisheye import MEICalibration
from scenedino_core.data.kitti360_labels import ID_TO_TRAINID
from scenedino_core.data.synthetic.rig import FULL_SIZE, KITTI360_MEI, STEREO_BASELINE_M
from scenedino_core.data.synthetic.world import StreetWorld
from scenedino_core.files import atomic_path, atomic_write_bytes
from scenedino_core.sscbench import grid as sgrid
from scenedino_core.sscbench.io import kitti360_sequence_dir, sscbench_image_path, voxel_gt_path

FRAME_RATE_HZ = 10.0
_START_NS = 1369730762 * 10**9  # 2013-05-28 08:46:02 UTC, the start of KITTI-360 drive 0000


def _write_label_png(path: Path, ids: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(ids, dtype=np.uint8))
    if not ok:
        raise ValueError(f"could not encode {path}")
    return atomic_write_bytes(path, buf.tobytes())


def _floats(values: Iterable[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def _trainid_to_label_id() -> np.ndarray:
    """(256,) uint8 trainId -> the first KITTI-360 label id with that trainId (255 and unused -> 0 unlabeled)."""
    lut = np.zeros(256, np.uint8)
    for label_id, _, train_id in reversed(ID_TO_TRAINID):
        lut[train_id] = label_id
    return lut


def perspective_txt(K_norm: np.ndarray, full_size: tuple[int, int], baseline_m: float = STEREO_BASELINE_M) -> str:
    """``calibration/perspective.txt`` of a rectified stereo pair with normalised K at ``full_size`` (H, W)."""
    h, w = full_size
    K = geometry.denormalize_intrinsics(torch.as_tensor(np.asarray(K_norm, dtype=np.float64)), (h, w)).numpy()
    lines = ["calib_time: synthetic (scenedino_core.data.synthetic)"]
    for idx, tx in (("00", 0.0), ("01", -K[0, 0] * baseline_m)):
        P = np.concatenate([K, [[tx], [0.0], [0.0]]], axis=1)
        lines += [f"S_rect_{idx}: {w:.6e} {h:.6e}", f"R_rect_{idx}: {_floats(np.eye(3).ravel())}",
                  f"P_rect_{idx}: {_floats(P.ravel())}"]
    return "\n".join(lines) + "\n"


def mei_yaml(calib: MEICalibration, camera: str) -> str:
    """OpenCV-style ``image_02.yaml`` text (``%YAML:1.0`` first line, as KITTI-360 ships it)."""
    return (f"%YAML:1.0\n---\nmodel_type: MEI\ncamera_name: {camera}\nimage_width: {calib.width}\n"
            f"image_height: {calib.height}\nmirror_parameters:\n   xi: {calib.xi!r}\ndistortion_parameters:\n"
            f"   k1: {calib.k1!r}\n   k2: {calib.k2!r}\n   p1: {calib.p1!r}\n   p2: {calib.p2!r}\n"
            f"projection_parameters:\n   gamma1: {calib.gamma1!r}\n   gamma2: {calib.gamma2!r}\n"
            f"   u0: {calib.u0!r}\n   v0: {calib.v0!r}\n")


def write_calibration(world: StreetWorld, folder: str | Path, full_size: tuple[int, int] = FULL_SIZE,
                      fisheye: MEICalibration = KITTI360_MEI) -> Path:
    """``perspective.txt``, ``calib_cam_to_pose.txt``, ``calib_cam_to_velo.txt``, ``image_02/03.yaml``."""
    folder = Path(folder)
    rig = world.rig
    atomic_write_bytes(folder / "perspective.txt", perspective_txt(rig.K_norm, full_size).encode())
    atomic_write_bytes(folder / "calib_cam_to_pose.txt", "".join(
        f"{cam}: {_floats(rig.cam_to_pose[cam][:3].ravel())}\n" for cam in k360.CAMERAS).encode())
    atomic_write_bytes(folder / "calib_cam_to_velo.txt", (_floats(sgrid.CAM_TO_VELO_3X4) + "\n").encode())
    for cam in k360.FISHEYE_CAMERAS:
        atomic_write_bytes(folder / f"{cam}.yaml", mei_yaml(fisheye, cam).encode())
    return folder


def _timestamps(n: int) -> str:
    out = []
    for f in range(n):
        ns = _START_NS + round(f * 1e9 / FRAME_RATE_HZ)
        t = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.timezone.utc)
        out.append(f"{t:%Y-%m-%d %H:%M:%S}.{ns % 10**9:09d}\n")
    return "".join(out)


def _progress(items: Sequence[int], enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="frame")


def write_kitti360(world: StreetWorld, root: str | Path, sequence: str, frames: Sequence[int], *,
                   full_size: tuple[int, int] = FULL_SIZE, image_size: tuple[int, int] = k360.DEFAULT_IMAGE_SIZE,
                   fisheye_size: tuple[int, int] | None = None, semantics: bool = True, velodyne: bool = False,
                   progress: bool = False) -> Path:
    """Write ``frames`` of ``world`` as a KITTI-360 tree under ``root`` (read by ``kitti360.Kitti360MultiView``).

    Written: ``calibration/`` (see ``write_calibration``; ``S_rect`` = ``full_size``), ``data_poses/<seq>/poses.txt``
    (the frames given), ``data_2d_raw/<seq>/image_0{0,1}/data_rect/<frame:010d>.png`` at ``full_size`` (H, W),
    ``image_0{2,3}/data_<H>x<W>_0x-15/`` virtual pinholes at ``image_size`` (the preprocessed layout: the fisheye
    stage is skipped), ``image_0X/timestamps.txt`` (10 Hz, one line per frame id 0..max(frames)); optionally
    ``data_2d_semantics/train/<seq>/image_00/semantic/`` (uint8 KITTI-360 label ids), raw MEI fisheye images
    ``image_0{2,3}/data_rgb/`` at ``fisheye_size`` (H, W) (KITTI-360's lens scaled, p1 = p2 = 0; the yaml matches),
    and ``data_3d_raw/<seq>/velodyne_points/data/<frame:010d>.bin`` (float32 N x 4, Velodyne frame).
    """
    root = Path(root)
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise ValueError("frames is empty")
    for f in frames:
        world.check_frame(f)
    mei = KITTI360_MEI if fisheye_size is None else KITTI360_MEI.scaled(fisheye_size[1], fisheye_size[0])
    write_calibration(world, root / "calibration", full_size, mei)
    atomic_write_bytes(k360.poses_path(root / "data_poses", sequence), "".join(
        f"{f} {_floats(world.pose(f)[:3].ravel())}\n" for f in frames).encode())
    raw = root / "data_2d_raw" / sequence
    stamps = _timestamps(frames[-1] + 1).encode()
    for cam in k360.CAMERAS:
        atomic_write_bytes(raw / cam / "timestamps.txt", stamps)
    label_ids = _trainid_to_label_id()
    for f in _progress(frames, progress, "synthetic KITTI-360"):
        for cam in k360.PERSPECTIVE_CAMERAS:
            view = world.render_camera(f, cam, full_size)
            images.write_rgb(k360.raw_image_path(root, sequence, cam, f), view.rgb)
            if semantics and cam == "image_00":
                _write_label_png(k360.semantic_path(root, sequence, f), label_ids[view.labels])
        for cam in k360.FISHEYE_CAMERAS:
            view = world.render_camera(f, cam, image_size)
            images.write_rgb(k360.cached_image_path(root, sequence, cam, f, image_size, world.rig.pitch_deg), view.rgb)
            if fisheye_size is not None:
                images.write_rgb(k360.raw_image_path(root, sequence, cam, f), world.render_fisheye(f, cam, mei).rgb)
        if velodyne:
            path = root / "data_3d_raw" / sequence / "velodyne_points" / "data" / f"{f:010d}.bin"
            atomic_write_bytes(path, world.velodyne_scan(f).tobytes())
    if velodyne:
        atomic_write_bytes(root / "data_3d_raw" / sequence / "velodyne_points" / "timestamps.txt", stamps)
    return root


def write_sscbench(world: StreetWorld, root: str | Path, vgt_root: str | Path, sequence: int | str,
                   frames: Sequence[int], *, progress: bool = False) -> None:
    """Write ``frames`` as an SSCBench-KITTI-360 tree (read by ``sscbench.dataset.SSCBenchKitti360``).

    ``<root>/calibration/`` (1408 x 376 K = the SSCBench constants, the hard-coded cam -> velo),
    ``<root>/data_2d_raw/<seq>/image_00/data_rect/<frame:06d>.png`` (1408 x 376) and the voxel GT
    ``<vgt_root>/<seq>/<frame:06d>_1_1.npy`` ((256, 256, 32) uint8 SSCBench ids; S4C stores float32, the reader
    accepts both). ``sequence``: 9 or a directory name.
    """
    seq = kitti360_sequence_dir(sequence)
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise ValueError("frames is empty")
    write_calibration(world, Path(root) / "calibration", FULL_SIZE)
    for f in _progress(frames, progress, "synthetic SSCBench"):
        images.write_rgb(sscbench_image_path(root, seq, f), world.render_camera(f, "image_00", FULL_SIZE).rgb)
        with atomic_path(voxel_gt_path(vgt_root, seq, f)) as tmp, tmp.open("wb") as file:
            np.save(file, world.voxel_gt(f))


__all__ = ["FRAME_RATE_HZ", "mei_yaml", "perspective_txt", "write_calibration", "write_kitti360", "write_sscbench"]
