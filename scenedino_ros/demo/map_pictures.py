"""Pictures of the first run's local semantic map: the map fused over the whole drive next to the last fused frame's
own prediction and the world's exact geometry, as bird's-eye views (``map_bev.png``) and 3D surface voxels
(``map_3d.png``).

All three are drawn on the map's voxel lattice over its final window, in the drive's map frame: the single frame
is that frame fused alone into an empty map at the same pose (one frame reproduces its per-frame occupancy); the
exact geometry is the synthetic world's voxel ground truth (``scenedino_core.data.synthetic``: its primitives
rasterised at 0.2 m, the SSCBench rule, then taken to the map's voxel size: a map voxel holds a surface when one
of its 0.2 m voxels does). The titles give each prediction's occupancy IoU against the exact geometry on the voxels
the single frame observed and whose ground truth is known (outside solids).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scenedino_core import visualize
from scenedino_core.data.synthetic import StreetWorld
from scenedino_core.data.synthetic.voxel_gt import rasterize
from scenedino_core.labels import UNKNOWN as GT_INSIDE
from scenedino_core.labels import sscbench_gt_to_ssc
from scenedino_core.mapping import DenseMap, SemanticMap
from scenedino_core.sscbench.grid import SSCBENCH_GRID
from scenedino_core.surface import exposed_voxels

from ..map_fusion import MapFusion

#: File names (without ``.png``) of the map pictures.
MAP_PICTURES = ("map_bev", "map_3d")
#: The rasterisation labels the ground in the voxel layer that straddles it (z = 0); on a lattice with a plane at
#: z = 0 none does, so the tiles are raised by this much: the layer just below the road surface takes its class.
GROUND_LIFT_M = 1e-6


@dataclass(frozen=True)
class Panel:
    """One label volume on the map window (X, Y, Z)."""

    title: str
    occupied: np.ndarray
    """bool: occupied voxels (for the exact geometry: surfaces and the inside of solids)."""
    labels: np.ndarray
    """uint8 SSC class of occupied voxels (0: none, e.g. the inside of a solid)."""
    known: np.ndarray
    """bool: observed (predictions) or with a known ground truth (everything, for the exact geometry)."""


def on_window(d: DenseMap, origin: tuple[int, int, int], shape: tuple[int, int, int]) -> Panel:
    """The occupied voxels, labels and observed voxels of ``d`` on another window of the same lattice (lowest voxel
    ``origin``, ``shape``); voxels outside ``d`` are unobserved."""
    occupied = np.zeros(shape, bool)
    labels = np.zeros(shape, np.uint8)
    known = np.zeros(shape, bool)
    lo = np.asarray(d.origin_index) - np.asarray(origin)
    a, b = np.maximum(lo, 0), np.minimum(lo + np.asarray(d.labels.shape), shape)
    if np.all(b > a):
        dst = tuple(slice(int(x), int(y)) for x, y in zip(a, b, strict=True))
        src = tuple(slice(int(x - o), int(y - o)) for x, y, o in zip(a, b, lo, strict=True))
        occupied[dst], known[dst] = d.occupied[src], d.observed[src]
        labels[dst] = np.where(d.occupied[src], d.labels[src], 0)
    return Panel("", occupied, labels, known)


def exact_labels(world: StreetWorld, origin: tuple[int, int, int], shape: tuple[int, int, int],
                 voxel_size: float) -> np.ndarray:
    """(X, Y, Z) uint8 SSC labels of the world on a map window (lowest voxel ``origin``, ``shape`` voxels of
    ``voxel_size``): 0 empty, 1..15 surfaces, ``labels.UNKNOWN`` (255) inside solids.

    The world is rasterised at the SSCBench voxel size (0.2 m, tiles of the SSCBench grid, raised by
    ``GROUND_LIFT_M``); a map voxel made of several of them takes the most frequent class among them (a surface wins
    over empty and over inside), one at another size takes the 0.2 m voxel at its centre.
    """
    g = SSCBENCH_GRID
    fine = g.voxel_size
    ratio = voxel_size / fine
    k = int(round(ratio)) if abs(ratio - round(ratio)) < 1e-6 and ratio >= 1 else 0
    lo_m = np.asarray(origin, dtype=np.float64) * voxel_size
    fine_shape = np.asarray(shape) * k if k else np.ceil(np.asarray(shape) * ratio).astype(int) + 1
    labels = np.zeros(tuple(int(n) for n in fine_shape), np.uint8)
    tiles = [range(0, int(n), d) for n, d in zip(fine_shape, g.dims, strict=True)]
    for i in tiles[0]:
        for j in tiles[1]:
            for m in tiles[2]:
                corner = lo_m + fine * np.array([i, j, m]) + (0.0, 0.0, GROUND_LIFT_M)
                velo_to_world = np.eye(4)
                velo_to_world[:3, 3] = corner - np.asarray(g.origin)
                tile = sscbench_gt_to_ssc(rasterize(world.primitives, velo_to_world, world.ground_train_id))
                n = np.minimum(np.asarray(g.dims), fine_shape - [i, j, m])
                labels[i:i + n[0], j:j + n[1], m:m + n[2]] = tile[:n[0], :n[1], :n[2]]
    if not k:
        centres = ((np.indices(shape).reshape(3, -1).T + 0.5) * ratio).astype(int)
        return labels[tuple(centres.T)].reshape(shape)
    if k == 1:
        return labels
    X, Y, Z = shape
    blocks = labels.reshape(X, k, Y, k, Z, k).transpose(0, 2, 4, 1, 3, 5).reshape(X, Y, Z, k ** 3)
    surface = np.where((blocks > 0) & (blocks != GT_INSIDE), blocks, 0).astype(np.int64)
    counts = np.stack([(surface == c).sum(axis=-1) for c in range(1, 16)], axis=-1)
    best = (counts.argmax(axis=-1) + 1).astype(np.uint8)
    inside = (blocks == GT_INSIDE).any(axis=-1)
    return np.where(counts.max(axis=-1) > 0, best, np.where(inside, GT_INSIDE, 0)).astype(np.uint8)


def occupancy_iou(pred: Panel, truth: Panel, where: np.ndarray) -> float:
    """IoU of the occupied voxels of ``pred`` and ``truth`` over the voxels ``where`` (NaN: none occupied)."""
    p, t = pred.occupied[where], truth.occupied[where]
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t) / union) if union else float("nan")


@dataclass(frozen=True)
class MapComparison:
    """The three panels on the final window, and what the pictures need to place them."""

    panels: tuple[Panel, Panel, Panel]
    """(single frame, fused map, exact geometry)."""
    origin: tuple[int, int, int]
    voxel_size: float
    ground_z_m: float
    map_from_camera: np.ndarray | None
    frames: int
    iou: dict[str, float]
    """Occupancy IoU against the exact geometry of the single frame and of the fused map, and the voxels scored."""


def compare(fusion: MapFusion, last_result, world: StreetWorld) -> MapComparison:
    """The last fused frame alone, the fused map and the exact geometry on the map's final window.

    Args:
        fusion: the map after the drive (``fusion.last_frame``: the poses of its latest frame).
        last_result: that frame's ``FrameResult``.
        world: the synthetic world of the drive.
    """
    snap = fusion.snapshot()
    d = snap.dense
    shape = d.labels.shape
    last = fusion.last_frame
    if last is None:
        raise ValueError("the map has no fused frame")
    alone = SemanticMap(fusion.config)
    alone.integrate(last.stamp_ns, last.map_from_grid,
                    fusion.builder.from_result(last_result, last.cam_from_grid, fusion.settings.render_stride))
    single = on_window(alone.dense(), d.origin_index, shape)
    fused = on_window(d, d.origin_index, shape)
    gt = exact_labels(world, d.origin_index, shape, d.voxel_size)
    truth = Panel("", (gt > 0), np.where((gt > 0) & (gt != GT_INSIDE), gt, 0).astype(np.uint8),
                  np.ones(shape, bool))
    where = single.known & (gt != GT_INSIDE)
    iou = {"single_frame": occupancy_iou(single, truth, where), "fused_map": occupancy_iou(fused, truth, where),
           "voxels": int(np.count_nonzero(where))}
    n = snap.frames
    panels = (
        Panel(f"the last frame alone\noccupancy IoU with the exact geometry {iou['single_frame']:.2f}",
              single.occupied, single.labels, single.known),
        Panel(f"the map fused over the drive ({n} frames)\noccupancy IoU with the exact geometry "
              f"{iou['fused_map']:.2f}", fused.occupied, fused.labels, fused.known),
        Panel("the world's exact geometry\n(ground truth; black: inside a solid)", truth.occupied, truth.labels,
              truth.known))
    return MapComparison(panels, d.origin_index, d.voxel_size, snap.ground_z_m, snap.map_from_camera, n, iou)


def _bev(panel: Panel, c: MapComparison, min_height_m: float, max_height_m: float,
         ground_labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """((Y, X) int8 bird's-eye occupancy, (Y, X) top class) of a panel; the band is measured from the ground below
    the last camera."""
    z = (c.origin[2] + np.arange(panel.labels.shape[2]) + 0.5) * c.voxel_size - c.ground_z_m
    band = (z >= min_height_m) & (z <= max_height_m)
    blocking = panel.occupied[:, :, band] & ~np.isin(panel.labels[:, :, band], ground_labels)
    bev = np.where(blocking.any(axis=2), 100, np.where(panel.known[:, :, band].any(axis=2), 0, -1)).astype(np.int8)
    return np.ascontiguousarray(bev.T), np.ascontiguousarray(visualize.bev_labels(panel.labels).T)


def figures(c: MapComparison, class_names: tuple[str, ...], palette: np.ndarray, title: str,
            band_m: tuple[float, float], ground_labels: tuple[int, ...], title_color: str = "black",
            max_voxels: int = 12000) -> dict[str, Figure]:
    """The map pictures (``MAP_PICTURES``): the three panels side by side as bird's-eye views (the height band
    ``band_m`` above the ground below the last camera, ``ground_labels`` never occupied) and as 3D surface voxels
    (at most ``max_voxels`` drawn per panel); ``title`` on top of each."""
    s = c.voxel_size
    lo = np.asarray(c.origin, dtype=np.float64) * s
    hi = lo + np.asarray(c.panels[0].labels.shape) * s
    camera = c.map_from_camera
    shown = np.concatenate([p.labels[p.occupied] for p in c.panels])
    handles = visualize.class_handles(shown[shown > 0], class_names, palette)

    def legend(fig: Figure) -> None:
        if handles:
            fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False, title="classes",
                       title_fontsize="small")

    bev_fig = visualize.new_figure(19.0, 8.0)
    for i, panel in enumerate(c.panels):
        bev, top = _bev(panel, c, *band_m, ground_labels)
        visualize.plot_bev(bev_fig.add_subplot(1, 3, i + 1), bev, top, palette, lo, hi, camera,
                           f"{panel.title}\nbird's-eye view ({band_m[0]:g} .. {band_m[1]:g} m above the ground)")
    bev_fig.suptitle(f"{title}\nclass colour: occupied; white: free; grey: never observed", color=title_color)
    legend(bev_fig)

    fig3 = visualize.new_figure(12.5, 13.5)  # one panel per row: the window is wide and flat
    axes = []
    for i, panel in enumerate(c.panels):
        index = np.argwhere(exposed_voxels(panel.occupied) & (panel.labels > 0))
        ax = fig3.add_subplot(3, 1, i + 1, projection="3d")
        visualize.plot_voxels_3d(ax, lo + (index + 0.5) * s, panel.labels[tuple(index.T)], palette, lo, hi, s,
                                 camera, max_voxels=max_voxels, title=panel.title,
                                 occupied_count=int(np.count_nonzero(panel.occupied)))
        axes.append(ax)
    fig3.suptitle(title, color=title_color)
    legend(fig3)
    zooms = [1.25] * len(axes)
    for _ in range(2):  # fitting one axes moves the others (constrained layout): twice round
        zooms = [visualize.fit_3d_box(ax, zoom=z) for ax, z in zip(axes, zooms, strict=True)]
    return {"map_bev": bev_fig, "map_3d": fig3}


def draw(folder: Path, c: MapComparison, class_names: tuple[str, ...], palette: np.ndarray, title: str,
         band_m: tuple[float, float], ground_labels: tuple[int, ...], title_color: str = "black") -> list[Path]:
    """Write the map pictures (``figures``) into ``folder`` as ``map_bev.png`` and ``map_3d.png``; returns their
    paths."""
    figs = figures(c, class_names, palette, title, band_m, ground_labels, title_color)
    return [visualize.save_figure(figs[name], folder / f"{name}.png") for name in MAP_PICTURES]
