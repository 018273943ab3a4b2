"""A procedural street world with exact ground truth, rendered by the project's own (numpy) ray caster.

World frame: x along the street, y left, z up, ground plane z = 0. A street of road, sidewalks, terrain, building
facades, cars, poles with signs, trees, hedges and fences (``layout``), seen by a KITTI-360-like rig (``rig``),
rendered by a ray caster (``raycast``) with procedural textures and a fixed sun (``textures``), with the exact
SSCBench voxel ground truth of every frame (``voxel_gt``); ``world.StreetWorld`` puts them together and ``writers``
stores a drive as a KITTI-360 or SSCBench-KITTI-360 tree in the real formats.

Fisheye: the world renders cams 02/03 directly as the virtual pinholes the loader would produce (cam -> pose @
``rotation_x(-15)``, cam 00's normalised K), so ``write_kitti360`` stores them in the preprocessed layout
``image_0{2,3}/data_<H>x<W>_0x-15/`` and skips the fisheye stage; with ``fisheye_size`` it also renders true MEI
fisheye images (``data_rgb/``, exact MEI lift of every fisheye pixel) consistent with the written yaml.

Typical use::

    world = StreetWorld.generate(seed=0, config=StreetConfig(num_frames=40))
    view = world.render_camera(12, "image_00", (192, 640))     # RenderedView: rgb, distance, depth, labels
    gt = world.voxel_gt(12)                                      # (256, 256, 32) SSCBench GT ids
    write_kitti360(world, "drive", "2013_05_28_drive_0000_sync", range(40))
"""
from __future__ import annotations

from scenedino_core.data.synthetic.layout import (
                                                  BUILDING,
                                                  CAR,
                                                  FENCE,
                                                  POLE,
                                                  ROAD,
                                                  SIDEWALK,
                                                  SIGN,
                                                  SKY,
                                                  TERRAIN,
                                                  VEGETATION,
                                                  Material,
                                                  Primitives,
                                                  Shape,
                                                  StreetConfig,
)
from scenedino_core.data.synthetic.raycast import RayHits, camera_rays
from scenedino_core.data.synthetic.rig import FULL_SIZE, K_NORM, KITTI360_MEI, STEREO_BASELINE_M, Rig
from scenedino_core.data.synthetic.voxel_gt import TRAINID_TO_SSCBENCH_GT
from scenedino_core.data.synthetic.world import RenderedView, StreetWorld
from scenedino_core.data.synthetic.writers import (
                                                  FRAME_RATE_HZ,
                                                  mei_yaml,
                                                  perspective_txt,
                                                  write_calibration,
                                                  write_kitti360,
                                                  write_sscbench,
)

__all__ = ["BUILDING", "CAR", "FENCE", "FRAME_RATE_HZ", "FULL_SIZE", "KITTI360_MEI", "K_NORM", "Material", "POLE",
           "Primitives", "ROAD", "RayHits", "RenderedView", "Rig", "SIDEWALK", "SIGN", "SKY", "STEREO_BASELINE_M",
           "Shape", "StreetConfig", "StreetWorld", "TERRAIN", "TRAINID_TO_SSCBENCH_GT", "VEGETATION", "camera_rays",
           "mei_yaml", "perspective_txt", "write_calibration", "write_kitti360", "write_sscbench"]
