"""The synthetic world's camera rig (KITTI-360-like) and the camera constants every synthetic view shares.

The pose (IMU) frame is x forward, y right, z down, ``pose_height_m`` above the ground; the Velodyne frame is level
(x forward, y left, z up) 1.73 m above the ground. Cam 00 = Velodyne @ the hard-coded SSCBench ``calib_cam_to_velo``
(so the SSCBench grid of every frame is axis-aligned with the world), cam 01 = cam 00 shifted ``STEREO_BASELINE_M``
along its x axis (rectified stereo, R_rect = I), cams 02/03 look left/right (fisheye frames, unpitched). All
perspective views use KITTI-360's normalised cam 00 K; cams 02/03 are rendered as the loader's virtual pinholes
(cam -> pose @ ``rotation_x(pitch_deg)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scenedino_core import geometry
from scenedino_core.data import kitti360 as k360
from scenedino_core.data.fisheye import MEICalibration, rotation_x
from scenedino_core.data.kitti360_calib import CAM00_SIZE_HW, cam00_intrinsics
from scenedino_core.sscbench import grid as sgrid

#: KITTI-360 full-resolution rectified size (H, W) and the normalised K of cam 00 (shared by every synthetic view).
FULL_SIZE: tuple[int, int] = CAM00_SIZE_HW
K_NORM: np.ndarray = geometry.normalize_intrinsics(torch.as_tensor(cam00_intrinsics()), FULL_SIZE).numpy()
K_NORM.setflags(write=False)
STEREO_BASELINE_M = 0.6
#: KITTI-360's ``image_02.yaml`` lens (p1 = p2 = 0 so the written yaml describes the rendered images exactly).
KITTI360_MEI = MEICalibration(xi=2.2134047507854890, k1=1.6798235660113681e-02, k2=1.6548773243373522,
                              gamma1=1336.3220825849971, gamma2=1335.7883350012958, u0=716.94323510126321,
                              v0=705.76498308221585, width=1400, height=1400)


@dataclass(frozen=True)
class Rig:
    """Camera rig: ``cam_to_pose`` (4, 4) float64 of the *physical* cameras (rectified 00/01, unpitched fisheye
    frames 02/03, as written to ``calib_cam_to_pose.txt``), ``velo_to_pose`` (4, 4), ``K_norm`` (3, 3)."""

    cam_to_pose: dict[str, np.ndarray]
    velo_to_pose: np.ndarray
    K_norm: np.ndarray
    pitch_deg: float = k360.FISHEYE_PITCH_DEG
    pose_height_m: float = 0.93

    @staticmethod
    def default() -> Rig:
        velo_to_pose = np.diag([1.0, -1.0, -1.0, 1.0])
        velo_to_pose[:3, 3] = (0.8, 0.0, -0.8)
        cam00 = velo_to_pose @ sgrid.cam_to_velo_matrix()
        shift = np.eye(4)
        shift[0, 3] = STEREO_BASELINE_M
        fisheye = {}
        for cam, side in (("image_02", 1.0), ("image_03", -1.0)):
            m = np.eye(4)  # columns: camera x, y, z in the Velodyne frame; looks to +y (left) or -y (right)
            m[:3, :3] = np.array([[side, 0.0, 0.0], [0.0, 0.0, side], [0.0, -1.0, 0.0]])
            m[:3, 3] = (0.0, 0.5 * side, 0.0)
            fisheye[cam] = velo_to_pose @ m
        return Rig(cam_to_pose={"image_00": cam00, "image_01": cam00 @ shift, **fisheye}, velo_to_pose=velo_to_pose,
                   K_norm=K_NORM.copy())

    def view_to_pose(self, camera: str) -> np.ndarray:
        """(4, 4) camera -> pose of the rendered view (cams 02/03: the pitched virtual pinhole)."""
        if camera not in self.cam_to_pose:
            raise ValueError(f"unknown camera {camera!r}, expected one of {sorted(self.cam_to_pose)}")
        m = self.cam_to_pose[camera]
        return m @ rotation_x(self.pitch_deg) if camera in k360.FISHEYE_CAMERAS else m


__all__ = ["FULL_SIZE", "KITTI360_MEI", "K_NORM", "Rig", "STEREO_BASELINE_M"]
