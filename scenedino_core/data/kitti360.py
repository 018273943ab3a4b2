"""KITTI-360 multi-view training samples: the one loader of the calibrated stereo + fisheye rig (the reference's
``old_KITTI_360`` dataset).

Layout read (``<seq>`` = ``2013_05_28_drive_0000_sync``)::

    calibration/perspective.txt              S_rect_00, P_rect_00/01, R_rect_00/01 (``kitti360_calib``)
    calibration/calib_cam_to_pose.txt        image_00..image_03: 3x4 camera -> pose (IMU) frame
    calibration/image_02.yaml, image_03.yaml MEI fisheye intrinsics (first line ``%YAML:1.0`` is skipped)
    data_poses/<seq>/poses.txt               per posed frame: frame id + 3x4 pose -> world (or an ORB-SLAM3 file)
    data_2d_raw/<seq>/image_0{0,1}/data_rect/<frame:010d>.png        rectified perspective images
    data_2d_raw/<seq>/image_0{2,3}/data_rgb/<frame:010d>.png         fisheye images
    data_2d_raw/<seq>/image_0{0,1}/data_<H>x<W>/<frame:010d>.png     cache: resized perspective images
    data_2d_raw/<seq>/image_0{2,3}/data_<H>x<W>_0x<pitch>/...        cache: fisheye resampled to virtual pinholes
    data_2d_semantics/train/<seq>/image_00/semantic/<frame:010d>.png optional uint8 KITTI-360 label ids

Item: 8 views ``[00@t, 00@t+1, 01@t, 01@t+1, 02@t+o, 02@t+o+1, 03@t+o, 03@t+o+1]``; split entries
marked ``r`` swap left and right (``[01, 01, 00, 00, 03, 03, 02, 02]``). With ``fisheye=False`` only the first 4.

Frame arithmetic, as in the reference: ``t+1``, ``t+o`` and ``t+o+1`` count *posed* frames (the rows of poses.txt
sorted by frame id, located with ``searchsorted``; a row is never indexed by frame id) and are clamped to the last
posed frame of the sequence. Entries whose frame ``t`` has no pose are skipped (one warning with the count). ``o`` is
drawn from ``fisheye_offsets`` by a generator seeded with (seed, epoch, index), so it is the same in every worker and
after a resume; ``fisheye_offsets=(10,)`` is the reference's test mode.

Geometry: camera -> world = pose(frame) @ cam -> pose, with rectified cam 00/01 -> pose = ``T_0x->pose @ R_rect_0x^-1``
and virtual fisheye pinhole -> pose = ``T_0x->pose @ R_x(pitch)`` (pitch -15 deg: the optical axis looks 15 deg
down). Returned poses are relative to view 0 (``inv(P0) @ P``), so view 0 is the identity. Normalised K follows
``geometry`` (``fx' = 2 fx / W``, ``cx' = 2 cx / W - 1``) with (W, H) from ``S_rect_00``; the virtual pinholes share
cam 00's normalised K.

Fisheye views are resampled to virtual pinholes with the MEI model of ``fisheye`` (``calibration/image_0X.yaml``).

Images are resized whole (``cv2.INTER_LINEAR``), which leaves normalised K unchanged. 2D labels are read as label ids,
nearest-resized and mapped to trainIds (255 = ignore; views of other cameras are all 255). A missing or malformed
calibration, yaml, poses, split or image file raises ``FileNotFoundError`` / ``ValueError`` naming the file.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from scenedino_core import geometry, images
from scenedino_core.data.fisheye import (
    MEICalibration,
    fisheye_to_pinhole_maps,
    read_mei_yaml,
    resample_fisheye,
    rotation_x,
)
from scenedino_core.data.kitti360_calib import parse_key_floats, read_perspective
from scenedino_core.data.kitti360_labels import label_ids_to_trainids, read_label_ids
from scenedino_core.files import atomic_write_text, require_file
from scenedino_core.labels import UNKNOWN

logger = logging.getLogger(__name__)

PERSPECTIVE_CAMERAS: tuple[str, str] = ("image_00", "image_01")
FISHEYE_CAMERAS: tuple[str, str] = ("image_02", "image_03")
CAMERAS: tuple[str, ...] = PERSPECTIVE_CAMERAS + FISHEYE_CAMERAS
DEFAULT_IMAGE_SIZE: tuple[int, int] = (192, 640)
#: Reference training offsets of the fisheye frames (``fisheye_offset`` 10..40); the test split uses (10,).
TRAIN_FISHEYE_OFFSETS: tuple[int, ...] = tuple(range(10, 41))
#: Pitch of the virtual fisheye pinholes (degrees about the camera x axis; negative looks down).
FISHEYE_PITCH_DEG: float = -15.0


# ------------------------------------------------------------------------------------------------ paths
def cache_dir_name(image_size: tuple[int, int], pitch_deg: float | None = None) -> str:
    """``data_192x640`` (perspective) or ``data_192x640_0x-15`` (virtual fisheye pinhole with that pitch)."""
    h, w = image_size
    if pitch_deg is None:
        return f"data_{h}x{w}"
    return f"data_{h}x{w}_0x{pitch_deg:g}"


def raw_image_path(root: str | Path, sequence: str, camera: str, frame: int) -> Path:
    """Original image: ``data_rect`` for cameras 00/01, ``data_rgb`` for the fisheyes 02/03."""
    folder = "data_rect" if camera in PERSPECTIVE_CAMERAS else "data_rgb"
    return Path(root) / "data_2d_raw" / sequence / camera / folder / f"{int(frame):010d}.png"


def cached_image_path(root: str | Path, sequence: str, camera: str, frame: int, image_size: tuple[int, int],
                      pitch_deg: float = FISHEYE_PITCH_DEG) -> Path:
    """Preprocessed image of ``camera`` (resized perspective, or resampled fisheye for cameras 02/03)."""
    name = cache_dir_name(image_size, None if camera in PERSPECTIVE_CAMERAS else pitch_deg)
    return Path(root) / "data_2d_raw" / sequence / camera / name / f"{int(frame):010d}.png"


def semantic_path(root: str | Path, sequence: str, frame: int) -> Path:
    return Path(root) / "data_2d_semantics" / "train" / sequence / "image_00" / "semantic" / f"{int(frame):010d}.png"


def poses_path(poses_root: str | Path, sequence: str) -> Path:
    """``<poses_root>/<seq>/poses.txt`` (``poses_root`` = ``<root>/data_poses`` or an ORB-SLAM3 poses folder)."""
    return Path(poses_root) / sequence / "poses.txt"


# ------------------------------------------------------------------------------------------- calibration
def _as_4x4(values: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3] = values.reshape(3, 4)
    return m


def read_cam_to_pose(path: str | Path) -> dict[str, np.ndarray]:
    """``calib_cam_to_pose.txt`` -> {"image_00": (4, 4) float64 camera -> pose, ...} for all four cameras."""
    path = require_file(path, "calibration file")
    entries = parse_key_floats(path)
    out = {}
    for cam in CAMERAS:
        if cam not in entries:
            raise ValueError(f"{path}: missing entry '{cam}' (found {sorted(entries)})")
        if entries[cam].size != 12:
            raise ValueError(f"{path}: entry '{cam}' must have 12 values, got {entries[cam].size}")
        out[cam] = _as_4x4(entries[cam])
    return out


@dataclass(frozen=True)
class RigCalibration:
    """Everything the loader needs from ``calibration/``.

    ``cam_to_pose``: (4, 4) float64 per camera, for the *rectified* cams 00/01 and the *virtual* pinholes 02/03;
    ``K_norm``: (3, 3) float64 normalised intrinsics per camera (02/03 = cam 00's); ``full_size``: (H, W) of the
    rectified images (``S_rect_00``); ``fisheye``: MEI model of cams 02/03.
    """

    cam_to_pose: dict[str, np.ndarray]
    K_norm: dict[str, np.ndarray]
    full_size: tuple[int, int]
    fisheye: dict[str, MEICalibration]
    pitch_deg: float


def read_rig_calibration(calibration_dir: str | Path, pitch_deg: float = FISHEYE_PITCH_DEG,
                         fisheye: bool = True) -> RigCalibration:
    """Read ``perspective.txt``, ``calib_cam_to_pose.txt`` and (with ``fisheye``) ``image_02/03.yaml``."""
    d = Path(calibration_dir)
    persp_path = d / "perspective.txt"
    persp = read_perspective(persp_path)
    w, h = persp.image_size_wh
    K_norm, cam_to_pose = {}, {}
    raw = read_cam_to_pose(d / "calib_cam_to_pose.txt")
    for cam, idx in (("image_00", "00"), ("image_01", "01")):
        for key, size in ((f"P_rect_{idx}", 12), (f"R_rect_{idx}", 9)):
            if key not in persp.entries or persp.entries[key].size != size:
                got = persp.entries[key].size if key in persp.entries else "no"
                raise ValueError(f"{persp_path}: entry '{key}' must have {size} values, got {got}")
        P = persp.entries[f"P_rect_{idx}"].reshape(3, 4)
        R_rect = np.eye(4)
        R_rect[:3, :3] = persp.entries[f"R_rect_{idx}"].reshape(3, 3)
        K_norm[cam] = geometry.normalize_intrinsics(torch.as_tensor(P[:, :3]), (h, w)).numpy()
        cam_to_pose[cam] = raw[cam] @ np.linalg.inv(R_rect)
    mei: dict[str, MEICalibration] = {}
    for cam in FISHEYE_CAMERAS:
        if fisheye:
            mei[cam] = read_mei_yaml(d / f"{cam}.yaml")
        cam_to_pose[cam] = raw[cam] @ rotation_x(pitch_deg)
        K_norm[cam] = K_norm["image_00"]
    return RigCalibration(cam_to_pose=cam_to_pose, K_norm=K_norm, full_size=(h, w), fisheye=mei,
                          pitch_deg=float(pitch_deg))


# ------------------------------------------------------------------------------------------ poses, splits
@dataclass(frozen=True)
class PoseTrack:
    """Posed frames of one sequence: ``frames`` (N,) int64 ascending, ``poses`` (N, 4, 4) float64 pose -> world."""

    frames: np.ndarray
    poses: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.size)

    def index_of(self, frame: int) -> int | None:
        """Row of ``frame`` or None when it has no pose."""
        i = int(np.searchsorted(self.frames, frame))
        return i if i < self.frames.size and self.frames[i] == frame else None


def read_poses(path: str | Path) -> PoseTrack:
    """Read ``poses.txt`` (KITTI-360 or ORB-SLAM3): per line a frame id and 12 floats (3x4 row-major pose -> world)."""
    path = require_file(path, "poses file")
    frames, poses = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise ValueError(f"{path}:{n}: non-numeric value in {line.strip()[:80]!r}") from None
        if len(values) != 13 or values[0] != int(values[0]) or values[0] < 0:
            raise ValueError(f"{path}:{n}: expected a frame id and 12 floats, got {len(values)} values")
        frames.append(int(values[0]))
        poses.append(_as_4x4(np.asarray(values[1:])))
    if not frames:
        raise ValueError(f"{path}: no poses")
    frames_arr = np.asarray(frames, dtype=np.int64)
    if np.unique(frames_arr).size != frames_arr.size:
        raise ValueError(f"{path}: duplicate frame ids")
    order = np.argsort(frames_arr, kind="stable")
    return PoseTrack(frames=frames_arr[order], poses=np.stack(poses)[order])


@dataclass(frozen=True)
class SplitEntry:
    """One line of an SSCBench split file: ``<sequence> <frame:010d> <l|r>``."""

    sequence: str
    frame: int
    side: str = "l"


def read_split(path: str | Path) -> list[SplitEntry]:
    path = require_file(path, "split file")
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("l", "r"):
            raise ValueError(f"{path}:{n}: expected '<sequence> <frame> <l|r>', got {line.strip()[:80]!r}")
        out.append(SplitEntry(parts[0], int(parts[1]), parts[2]))
    return out


def write_split(path: str | Path, entries: Sequence[SplitEntry]) -> Path:
    """Write a split file (``read_split``'s format), atomically."""
    return atomic_write_text(path, "".join(f"{e.sequence} {e.frame:010d} {e.side}\n" for e in entries))


# ---------------------------------------------------------------------------------------- images, labels
def _check_size(path: Path, img: np.ndarray, size_hw: tuple[int, int], what: str) -> np.ndarray:
    if img.shape[:2] != tuple(size_hw):
        raise ValueError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, {what} says {size_hw[1]}x{size_hw[0]}")
    return img


def load_perspective(path: Path, full_size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Original rectified image (must be ``full_size`` (H, W)) resized whole to ``image_size`` -> uint8 RGB."""
    img = _check_size(path, images.read_rgb(path), full_size, "calibration/perspective.txt (S_rect_00)")
    return images.resize_whole_image(img, image_size)


def load_fisheye(path: Path, calib: MEICalibration, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Original fisheye image (must match its yaml's size) resampled to the virtual pinhole -> uint8 RGB."""
    img = _check_size(path, images.read_rgb(path), (calib.height, calib.width), "its fisheye yaml")
    return resample_fisheye(img, maps)


# ----------------------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class Kitti360Config:
    """Loader options; the defaults are the reference's stage-1 training settings."""

    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    """(H, W) of every returned view."""
    fisheye: bool = True
    """Add the 4 virtual fisheye views (8 views per item) instead of returning only the 4 perspective views."""
    fisheye_offsets: tuple[int, ...] = TRAIN_FISHEYE_OFFSETS
    """Posed-frame offsets o of the fisheye views; (10,) is the reference's test mode."""
    fisheye_pitch_deg: float = FISHEYE_PITCH_DEG
    semantics: bool = False
    """Return 2D labels; keep only ``l`` entries whose cam 00 frames t, t+1 have label PNGs (``data_segmentation``)."""
    use_cache: bool = True
    """Read preprocessed images (``data_<H>x<W>[_0x<pitch>]``) where present."""
    poses_root: str | Path | None = None
    """Folder with ``<seq>/poses.txt`` (e.g. ORB-SLAM3 poses); default ``<root>/data_poses``."""
    seed: int = 0
    """Seed of the per-item fisheye offset draw."""

    def __post_init__(self) -> None:
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"image_size must be (H, W) > 0, got {self.image_size}")
        if self.fisheye and (not self.fisheye_offsets or min(self.fisheye_offsets) < 0):
            raise ValueError(f"fisheye_offsets must be non-empty and >= 0, got {self.fisheye_offsets}")


@dataclass(frozen=True)
class MultiViewSample:
    """One training item; V = 8 (or 4 without fisheye)."""

    images: torch.Tensor
    """(V, 3, H, W) float32 RGB in [0, 1]."""
    K: torch.Tensor
    """(V, 3, 3) float32 normalised intrinsics."""
    poses: torch.Tensor
    """(V, 4, 4) float32 camera -> world, relative to view 0 (view 0 is the identity)."""
    labels: torch.Tensor | None
    """(V, H, W) uint8 trainIds (255 = ignore / view without labels), or None."""
    sequence: str
    frame: int
    frame_ids: tuple[int, ...]
    """KITTI-360 frame id of every view."""
    cameras: tuple[str, ...]
    """Camera of every view (``image_00`` ...)."""
    fisheye_offset: int


@dataclass(frozen=True)
class _Item:
    entry: SplitEntry
    pose_index: int


class Kitti360MultiView(Dataset):
    """KITTI-360 multi-view items (see module doc).

    Args:
        root: KITTI-360 root (``calibration/``, ``data_2d_raw/``, ``data_poses/``, ...).
        split: split file path or a list of ``SplitEntry``; default: every posed frame of ``sequences`` (``l``).
        sequences: sequence directory names, used when ``split`` is None.
        config: loader options.
    """

    def __init__(self, root: str | Path, split: str | Path | Sequence[SplitEntry] | None = None,
                 sequences: Sequence[str] | None = None, config: Kitti360Config = Kitti360Config()):
        self.root = Path(root)
        self.config = config
        if not self.root.is_dir():
            raise FileNotFoundError(f"KITTI-360 root not found: {self.root}")
        self.calibration = read_rig_calibration(self.root / "calibration", config.fisheye_pitch_deg, config.fisheye)
        poses_root = Path(config.poses_root) if config.poses_root else self.root / "data_poses"
        if split is None:
            if not sequences:
                raise ValueError("give a split (file or entries) or a list of sequences")
            seqs = list(dict.fromkeys(sequences))
            self.tracks = {s: read_poses(poses_path(poses_root, s)) for s in seqs}
            entries = [SplitEntry(s, int(f), "l") for s in seqs for f in self.tracks[s].frames]
        else:
            entries = read_split(split) if isinstance(split, (str, Path)) else list(split)
            seqs = list(dict.fromkeys(e.sequence for e in entries))
            self.tracks = {s: read_poses(poses_path(poses_root, s)) for s in seqs}
        self.items = self._select(entries)
        if not self.items:
            raise ValueError(f"no usable items in {self.root} (split {split!r}, sequences {sequences})")
        self.epoch = 0
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -------------------------------------------------------------------------------------- selection
    def _select(self, entries: Sequence[SplitEntry]) -> list[_Item]:
        items, unposed, unlabelled, right = [], 0, 0, 0
        label_frames: dict[str, set[int]] = {}
        for e in entries:
            track = self.tracks[e.sequence]
            i = track.index_of(e.frame)
            if i is None:
                unposed += 1
                continue
            if self.config.semantics:
                if e.side != "l":
                    right += 1
                    continue
                if e.sequence not in label_frames:
                    label_frames[e.sequence] = self._label_frames(e.sequence)
                wanted = {int(track.frames[i]), int(track.frames[min(i + 1, len(track) - 1)])}
                if not wanted <= label_frames[e.sequence]:
                    unlabelled += 1
                    continue
            items.append(_Item(e, i))
        if unposed:
            logger.warning("%d split entries skipped: their frame has no pose in %s", unposed,
                           self.config.poses_root or self.root / "data_poses")
        if unlabelled or right:
            logger.info("semantics: %d entries skipped without 2D labels for frames t, t+1, %d right-camera entries "
                        "skipped", unlabelled, right)
        return items

    def _label_frames(self, sequence: str) -> set[int]:
        folder = semantic_path(self.root, sequence, 0).parent
        if not folder.is_dir():
            raise FileNotFoundError(f"2D semantics folder not found: {folder}")
        return {int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit()}

    # ----------------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Change the fisheye offsets drawn for every item (call once per epoch, like ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def fisheye_offset(self, index: int) -> int:
        offsets = self.config.fisheye_offsets
        if len(offsets) == 1:
            return int(offsets[0])
        rng = np.random.default_rng([self.config.seed, self.epoch, int(index)])
        return int(offsets[rng.integers(len(offsets))])

    def view_plan(self, index: int) -> list[tuple[str, int]]:
        """(camera, posed-frame row) of every view of item ``index``."""
        item = self.items[index]
        n = len(self.tracks[item.entry.sequence])
        i = item.pose_index
        t0, t1 = i, min(i + 1, n - 1)
        left, right = PERSPECTIVE_CAMERAS if item.entry.side == "l" else PERSPECTIVE_CAMERAS[::-1]
        plan = [(left, t0), (left, t1), (right, t0), (right, t1)]
        if self.config.fisheye:
            o = self.fisheye_offset(index)
            f0, f1 = min(i + o, n - 1), min(i + o + 1, n - 1)
            fl, fr = FISHEYE_CAMERAS if item.entry.side == "l" else FISHEYE_CAMERAS[::-1]
            plan += [(fl, f0), (fl, f1), (fr, f0), (fr, f1)]
        return plan

    def load_image(self, sequence: str, camera: str, frame: int) -> np.ndarray:
        """(H, W, 3) uint8 view of ``camera`` at ``frame``: from the cache when present, else from the original."""
        size = self.config.image_size
        if self.config.use_cache:
            cached = cached_image_path(self.root, sequence, camera, frame, size, self.config.fisheye_pitch_deg)
            if cached.is_file():
                return _check_size(cached, images.read_rgb(cached), size, "the loader's image_size")
        path = raw_image_path(self.root, sequence, camera, frame)
        if camera in PERSPECTIVE_CAMERAS:
            return load_perspective(path, self.calibration.full_size, size)
        return load_fisheye(path, self.calibration.fisheye[camera], self.fisheye_maps(camera))

    def fisheye_maps(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        if camera not in self._maps:
            c = self.calibration
            self._maps[camera] = fisheye_to_pinhole_maps(c.fisheye[camera], c.K_norm[camera], self.config.image_size,
                                                         rotation_x(c.pitch_deg))
        return self._maps[camera]

    def load_labels(self, sequence: str, frame: int) -> np.ndarray:
        """(H, W) uint8 trainIds of cam 00 at ``frame`` (nearest-resized)."""
        path = semantic_path(self.root, sequence, frame)
        ids = _check_size(path, read_label_ids(path), self.calibration.full_size,
                          "calibration/perspective.txt (S_rect_00)")
        h, w = self.config.image_size
        return label_ids_to_trainids(cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST))

    def __getitem__(self, index: int) -> MultiViewSample:
        item = self.items[index]
        seq = item.entry.sequence
        track = self.tracks[seq]
        plan = self.view_plan(index)
        imgs, c2w, Ks, labels, frame_ids = [], [], [], [], []
        h, w = self.config.image_size
        for cam, row in plan:
            frame = int(track.frames[row])
            frame_ids.append(frame)
            imgs.append(self.load_image(seq, cam, frame))
            c2w.append(track.poses[row] @ self.calibration.cam_to_pose[cam])
            Ks.append(self.calibration.K_norm[cam])
            if self.config.semantics:
                labels.append(self.load_labels(seq, frame) if cam == "image_00"
                              else np.full((h, w), UNKNOWN, np.uint8))
        poses = np.linalg.inv(c2w[0]) @ np.stack(c2w)
        return MultiViewSample(
            images=torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0),
            K=torch.from_numpy(np.stack(Ks)).float(), poses=torch.from_numpy(poses).float(),
            labels=torch.from_numpy(np.stack(labels)) if labels else None, sequence=seq, frame=item.entry.frame,
            frame_ids=tuple(frame_ids), cameras=tuple(c for c, _ in plan),
            fisheye_offset=self.fisheye_offset(index) if self.config.fisheye else 0)


__all__ = ["CAMERAS", "FISHEYE_CAMERAS", "FISHEYE_PITCH_DEG", "Kitti360Config", "Kitti360MultiView", "MultiViewSample",
           "PERSPECTIVE_CAMERAS", "PoseTrack", "RigCalibration", "SplitEntry", "TRAIN_FISHEYE_OFFSETS",
           "cache_dir_name", "cached_image_path", "load_fisheye", "load_perspective", "poses_path", "raw_image_path",
           "read_cam_to_pose", "read_label_ids", "read_poses", "read_rig_calibration", "read_split", "semantic_path",
           "write_split"]
