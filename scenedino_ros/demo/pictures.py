"""Pictures of processed frames for the first run: input, rendered depth and semantics, bird's-eye occupancy, 3D
semantic voxels and one overview, drawn with ``scenedino_core.visualize``."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from scenedino_core import visualize
from scenedino_core.labels import class_table
from scenedino_core.pipeline import FREE
from scenedino_core.surface import exposed_voxels

from ..bag.process import ProcessedFrame
from ..outputs import static_camera_pose
from ..params import NodeParams

RANDOM_WARNING = "RANDOM WEIGHTS: untrained model, the outputs are meaningless"


def scene_view(frame: ProcessedFrame, p: NodeParams, class_names: tuple[str, ...],
               palette: np.ndarray) -> visualize.SceneView:
    """The picture arrays of a processed frame: voxels in the grid frame (only the surface ones, which a viewer can
    see; ``occupied_count`` says how many are occupied in all), the camera at its ``camera_pose.*``."""
    r = frame.result
    grid = r.grid
    lo = np.asarray(grid.origin, dtype=np.float64)
    occupied = r.voxel_labels < FREE
    labels = np.where(occupied, r.voxel_labels, 0)
    index = np.argwhere(exposed_voxels(occupied))
    return visualize.SceneView(
        rgb=frame.rgb, depth=r.depth, semantics=r.semantics, bev=r.bev,
        bev_labels=np.ascontiguousarray(visualize.bev_labels(labels).T),
        points=lo + (index + 0.5) * grid.voxel_size, point_labels=labels[tuple(index.T)],
        grid_min=tuple(lo), grid_max=tuple(lo + np.asarray(grid.dims) * grid.voxel_size),
        voxel_size=grid.voxel_size, camera_pose=static_camera_pose(p), class_names=class_names, palette=palette,
        occupied_count=int(np.count_nonzero(occupied)))


def picture_indices(count: int) -> tuple[int, ...]:
    """Frames (processing order) that get pictures: first, middle, last."""
    return tuple(sorted({0, (count - 1) // 2, count - 1})) if count > 0 else ()


def frame_title(index: int, count: int, frame: ProcessedFrame, model: str, random_weights: bool) -> str:
    """Picture title: weights warning, frame and stamp, model, then the frame's timings (short lines, so that the
    narrowest picture holds them)."""
    t = frame.result.timings_ms
    lines = [f"frame {index + 1}/{count}, stamp {frame.stamp_ns / 1e9:.3f} s", model,
             f"{t.get('total', float('nan')):.0f} ms in the model (encode {t.get('encode', 0.0):.0f}, voxels "
             f"{t.get('voxels', 0.0):.0f}, render {t.get('render', 0.0):.0f})"]
    return "\n".join([RANDOM_WARNING, *lines] if random_weights else lines)


class FramePictures:
    """Draws the pictures of the chosen frames as they are processed (``__call__`` is the per-frame hook)."""

    def __init__(self, folder: Path, p: NodeParams, count: int, model: str, random_weights: bool):
        self.folder, self.p, self.count, self.model, self.random_weights = folder, p, count, model, random_weights
        self.class_names, self.palette = class_table(p.class_colors_rgb)
        self.chosen = picture_indices(count)
        self.overview_index = self.chosen[len(self.chosen) // 2] if self.chosen else -1
        self.written: list[Path] = []
        self.overview: Path | None = None

    def __call__(self, index: int, frame: ProcessedFrame) -> None:
        if index not in self.chosen:
            return
        view = scene_view(frame, self.p, self.class_names, self.palette)
        title = frame_title(index, self.count, frame, self.model, self.random_weights)
        for name, fig in visualize.frame_figures(view, title).items():
            self.written.append(visualize.save_figure(fig, self.folder / f"frame_{index:04d}_{name}.png"))
        if index == self.overview_index:
            fig = visualize.overview_figure(view, title, "red" if self.random_weights else "black")
            self.overview = visualize.save_figure(fig, self.folder / "overview.png")


def clear_pictures(folder: Path) -> None:
    """Remove pictures of an earlier run (only this command's file names)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if re.fullmatch(r"frame_\d{4}_[a-z]+\.png|overview\.png|map_(bev|3d)\.png", path.name):
                path.unlink()
