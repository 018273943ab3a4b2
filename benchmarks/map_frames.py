"""Per-frame predictions of a synthetic drive, cached for the map benchmarks (``map_quality.py``, ``map_cost.py``).

Every frame of a short drive through a synthetic street (``scenedino_core.data.synthetic``; by default seed 2000,
the first run's street, which the demo checkpoint never trained on) goes through the same steps as the node's
pipeline: render camera 00, fit the image to the model input, encode, query the SSCBench grid (256 x 256 x 32,
0.2 m, Velodyne frame) with ``voxels.predict_voxels``, render the depth of the input view at a stride. What is kept
per frame (one ``.npz`` each, reused when the settings match): density with and without the 3x3x3 growth, SSC
labels, the in-view mask, the rendered depth, the fitted intrinsics, the poses and the world's exact voxel GT.

Frames: the odometry ("map") frame is the Velodyne frame of the first frame (x forward, y left, z up, as an odometry
frame that starts at the robot's first pose); the SSCBench grid of every frame then lies on the same voxel lattice.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenedino_core import geometry, voxels
from scenedino_core import images as core_images
from scenedino_core.checkpoint import load_model
from scenedino_core.data.synthetic import K_NORM, StreetConfig, StreetWorld
from scenedino_core.files import atomic_path
from scenedino_core.sscbench import grid as sgrid

ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = ROOT / "checkpoints" / "scenedino_synthetic_demo.pt"
#: The first run's street (``scenedino_ros.first_run.DRIVE_SEED``): never trained on by the demo checkpoint.
DRIVE_SEED = 2000
#: Size (H, W) the camera images are rendered at before fitting to the model input (half of KITTI-360's 376 x 1408).
RENDER_SIZE = (188, 704)
RENDER_STRIDE = 2
GRID = sgrid.SSCBENCH_GRID


@dataclass(frozen=True)
class DriveSettings:
    seed: int = DRIVE_SEED
    frames: int = 20
    checkpoint: str = str(DEMO_CHECKPOINT)
    render_stride: int = RENDER_STRIDE


@dataclass(frozen=True)
class FramePrediction:
    """One frame; voxel arrays (256, 256, 32) on the frame's SSCBench grid (Velodyne frame)."""

    sigma: np.ndarray
    sigma_grown: np.ndarray
    labels: np.ndarray
    """uint8 SSC labels where the grown density passes the cut-off (0 elsewhere)."""
    in_view: np.ndarray
    depth: np.ndarray
    """(h, w) float32 rendered z-depth of the model input at ``render_stride``."""
    intrinsics: np.ndarray
    """(3, 3) pixel intrinsics of the model input."""
    cam_from_grid: np.ndarray
    map_from_grid: np.ndarray
    gt: np.ndarray
    """uint8 SSCBench GT ids (0 empty, 255 inside solids)."""
    model_ms: float
    """Wall time of encode + voxel query + depth render."""


def map_from_velo(world: StreetWorld, frame: int) -> np.ndarray:
    """(4, 4) Velodyne frame of ``frame`` -> odometry frame (= Velodyne frame of frame 0)."""
    return np.linalg.inv(world.velo_to_world(0)) @ world.velo_to_world(frame)


def predict_frame(model, world: StreetWorld, frame: int, render_stride: int) -> FramePrediction:
    """Run the model on camera 00 of ``frame`` exactly as the node's pipeline does (fp32, stego k-means)."""
    view = world.render_camera(frame, "image_00", RENDER_SIZE)
    K = geometry.denormalize_intrinsics(torch.as_tensor(K_NORM.copy()), RENDER_SIZE).numpy()
    fitted = core_images.fit_to_model(view.rgb, K, tuple(model.config.image_size))
    cam_from_grid = np.linalg.inv(world.camera_to_world(frame, "image_00")) @ world.velo_to_world(frame)
    centres = torch.from_numpy(voxels.voxel_centers_camera(GRID, cam_from_grid))
    t0 = time.perf_counter()
    with torch.inference_mode():
        volume = model.encode(core_images.to_tensor_image(fitted.rgb),
                              torch.as_tensor(fitted.intrinsics, dtype=torch.float32))
        pred = voxels.predict_voxels(model, volume, centres, GRID.voxel_size)
        origins, dirs, (h, w) = model.image_rays(volume, render_stride)
        out = model.render(volume, origins, dirs)
        depth = (out.depth * dirs[..., 2]).reshape(h, w).numpy().astype(np.float32)
    model_ms = (time.perf_counter() - t0) * 1e3
    return FramePrediction(sigma=pred.sigma, sigma_grown=pred.sigma_grown, labels=pred.labels,
                           in_view=pred.in_view, depth=depth, intrinsics=fitted.intrinsics,
                           cam_from_grid=cam_from_grid, map_from_grid=map_from_velo(world, frame),
                           gt=world.voxel_gt(frame), model_ms=model_ms)


def _save(path: Path, p: FramePrediction) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **dataclasses.asdict(p))


def _load(path: Path) -> FramePrediction:
    with np.load(path) as z:
        return FramePrediction(**{k: (float(z[k]) if k == "model_ms" else z[k]) for k in z.files})


def drive_predictions(cache: Path, settings: DriveSettings = DriveSettings(), log=print) -> list[FramePrediction]:
    """Predictions of every frame of the drive, from a folder of ``cache`` per street and drive length (its
    settings file must match), else computed and stored there."""
    cache = cache / f"seed{settings.seed}_frames{settings.frames}_stride{settings.render_stride}"
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / "settings.json"
    text = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    if not marker.is_file() or marker.read_text() != text:  # another checkpoint: predict again
        for old in cache.glob("frame_*.npz"):
            old.unlink()
        marker.write_text(text)
    world = StreetWorld.generate(settings.seed, StreetConfig(num_frames=settings.frames))
    model = None
    out = []
    for f in range(settings.frames):
        path = cache / f"frame_{f:04d}.npz"
        if not path.is_file():
            if model is None:
                model = load_model(settings.checkpoint).eval()
            p = predict_frame(model, world, f, settings.render_stride)
            _save(path, p)
            log(f"frame {f}: model {p.model_ms:.0f} ms")
        out.append(_load(path))
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "map_frames")
    ap.add_argument("--frames", type=int, default=DriveSettings.frames)
    ap.add_argument("--seed", type=int, default=DRIVE_SEED)
    args = ap.parse_args()
    drive_predictions(args.cache, DriveSettings(seed=args.seed, frames=args.frames))
