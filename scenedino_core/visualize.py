"""Pictures people would rather look at than read: depth, label maps, feature PCA, bird's-eye views, 3D voxels.

The array helpers return RGB images; the figure helpers draw labelled matplotlib figures (titles saying what is
shown, class legends, colour bars, axes in metres) on their own Agg canvas. Classes are drawn in the colours of the
palette they are given: ``scenedino_core.labels.class_table``, the one palette of every picture and message.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Patch
from mpl_toolkits.mplot3d.axes3d import Axes3D

from .config import FieldConfig
from .files import atomic_path


def colorize_labels(labels: np.ndarray, palette: np.ndarray, unknown_color=(0, 0, 0)) -> np.ndarray:
    """Integer labels (any shape) -> RGB via ``palette`` (K, 3); values outside [0, K) get ``unknown_color``."""
    labels = np.asarray(labels).astype(np.int64)
    out = np.empty((*labels.shape, 3), np.uint8)
    out[...] = unknown_color
    ok = (labels >= 0) & (labels < len(palette))
    out[ok] = palette[labels[ok]]
    return out


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """(..., C) features -> (..., 3) uint8 RGB from their first three principal components (robustly scaled)."""
    shape = features.shape[:-1]
    x = features.reshape(-1, features.shape[-1]).astype(np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x[:: max(1, len(x) // 20000)], full_matrices=False)
    proj = x @ vt[:3].T
    lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-9), 0, 1)
    return (rgb.reshape(*shape, 3) * 255).astype(np.uint8)


def bev_labels(labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z) labels (0 = empty) -> (X, Y) label of the highest non-empty voxel per column (0 if none)."""
    occupied = labels > 0
    top = labels.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    bev = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    return np.where(occupied.any(axis=2), bev, 0)


# ---------------------------------------------------------------------------------------------- figures
# Matplotlib figures drawn on an Agg canvas (no pyplot, no global backend): pictures of one processed frame.

#: Bird's-eye colours of free (observed, nothing in the height band) and never-observed cells.
BEV_FREE = (255, 255, 255)
BEV_UNKNOWN = (90, 90, 90)
#: How much of a ground class's colour tints a free bird's-eye cell (0: white, 1: the class colour).
BEV_GROUND_TINT = 0.3
#: Colour of the ego camera marker.
CAMERA_COLOR = "red"
#: Depth colour bar ticks (m), those inside the shown range are used.
DEPTH_TICKS_M = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 80, 120, 200)
#: Pictures of one frame (``frame_figures``).
FRAME_PICTURES = ("input", "depth", "semantics", "bev", "voxels")
#: Elevation (deg) of the 3D voxel view above the camera's heading.
VOXEL_VIEW_ELEVATION_DEG = 22.0
#: Vertical exaggeration of the 3D voxel view: driving grids are flat (e.g. 51.2 x 51.2 x 6.4 m), and at true scale
#: their height is a sliver. The z axis label says so.
VOXEL_VIEW_Z_SCALE = 2.0
#: What the 3D view draws of an occupied grid (``surface.exposed_voxels``): the voxels a viewer can see.
SURFACE_VOXELS = "surface voxels"


@dataclass(frozen=True)
class SceneView:
    """The arrays the pictures of one frame show; every voxel quantity is in the grid frame (x forward, y left,
    z up)."""

    rgb: np.ndarray
    """(H, W, 3) uint8 input image."""
    depth: np.ndarray | None
    """(h, w) float z-depth (m) rendered for the input view (NaN/inf: none), or None."""
    semantics: np.ndarray | None
    """(h, w) integer SSC labels rendered for the input view, or None."""
    bev: np.ndarray
    """(Y, X) int8 bird's-eye occupancy: 100 occupied, 0 free, -1 never observed (``bev[j, i]`` = column (i, j))."""
    bev_labels: np.ndarray
    """(Y, X) integer SSC label of each column's highest occupied voxel (0: none)."""
    points: np.ndarray
    """(N, 3) float centres of the occupied voxels (m)."""
    point_labels: np.ndarray
    """(N,) integer SSC labels of those voxels."""
    grid_min: tuple[float, float, float]
    grid_max: tuple[float, float, float]
    voxel_size: float
    camera_pose: np.ndarray
    """(4, 4) camera optical frame (x right, y down, z forward) -> grid frame."""
    class_names: tuple[str, ...]
    palette: np.ndarray
    """(C, 3) uint8 class colours, indexed by label."""
    occupied_count: int | None = None
    """All occupied voxels of the grid when ``points`` are only its surface voxels (``surface.exposed_voxels``);
    None when ``points`` are all of them."""


def new_figure(width_in: float, height_in: float, dpi: int = 100) -> Figure:
    """A matplotlib ``Figure`` (constrained layout) with its own Agg canvas (thread-safe, independent of pyplot)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_rgb(fig: Figure) -> np.ndarray:
    """Render ``fig``: (H, W, 3) uint8 RGB at the figure's dpi."""
    canvas = fig.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (see ``files.atomic_path``); returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    return Path(path)


def _placeholder(ax: Axes, title: str, text: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_image(ax: Axes, rgb: np.ndarray, title: str = "input image") -> None:
    """An (H, W, 3) uint8 image without axes."""
    ax.imshow(rgb, interpolation="antialiased")
    ax.set_title(title)
    ax.set_axis_off()


def plot_depth(ax: Axes, depth: np.ndarray | None, title: str = "rendered depth", near: float = FieldConfig.z_near,
               far: float = FieldConfig.z_far) -> Colorbar | None:
    """(h, w) depth (m) in a logarithmic colour map (near = bright) with a colour bar as tall as the image; NaN/inf
    pixels grey.

    The colour range is [near, far] clipped to the finite values present; None or an empty array draws a
    placeholder.

    Returns:
        The colour bar (None for a placeholder).
    """
    if depth is None or np.size(depth) == 0:
        _placeholder(ax, title, "not rendered")
        return None
    depth = np.asarray(depth, dtype=np.float64)
    finite = depth[np.isfinite(depth) & (depth > 0)]
    lo = max(near, float(finite.min())) if finite.size else near
    hi = min(far, float(finite.max())) if finite.size else far
    hi = max(hi, lo * 1.01)
    cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="0.6")
    masked = np.ma.masked_invalid(np.where(depth > 0, depth, np.nan))
    im = ax.imshow(masked, cmap=cmap, norm=LogNorm(vmin=lo, vmax=hi), interpolation="nearest")
    cbar = ax.figure.colorbar(im, cax=ax.inset_axes((1.02, 0.0, 0.025, 1.0)))  # as tall as the image
    ticks = [t for t in DEPTH_TICKS_M if lo <= t <= hi] or [lo, hi]
    cbar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    cbar.minorticks_off()
    cbar.set_label("depth (m)")
    ax.set_title(title)
    ax.set_axis_off()
    return cbar


def plot_semantics(ax: Axes, labels: np.ndarray | None, class_names: Sequence[str], palette: np.ndarray,
                   title: str = "rendered semantics", legend: bool = True) -> Legend | None:
    """(h, w) class labels in the palette's colours, with a legend of the classes present (None or empty:
    placeholder).

    Returns:
        The legend (None when there is nothing to show or ``legend`` is False).
    """
    if labels is None or np.size(labels) == 0:
        _placeholder(ax, title, "not rendered")
        return None
    labels = np.asarray(labels)
    ax.imshow(colorize_labels(labels, palette), interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    return class_legend(ax, np.unique(labels), class_names, palette) if legend else None


def class_handles(present: np.ndarray, class_names: Sequence[str], palette: np.ndarray) -> list[Patch]:
    """Legend patches of the classes in ``present`` (labels outside the table are left out)."""
    return [Patch(facecolor=palette[c] / 255.0, edgecolor="0.3", label=class_names[c])
            for c in np.unique(np.asarray(present, dtype=np.int64)).tolist() if 0 <= c < len(class_names)]


def class_legend(ax: Axes, present: np.ndarray, class_names: Sequence[str], palette: np.ndarray) -> Legend | None:
    """A legend of the classes in ``present`` to the right of ``ax`` (an existing legend of ``ax`` stays)."""
    handles = class_handles(present, class_names, palette)
    if not handles:
        return None
    old = ax.get_legend()
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                       frameon=False, borderaxespad=0.0, title="classes", title_fontsize="small")
    if old is not None:
        ax.add_artist(old)
    return legend


def plot_features(ax: Axes, features: np.ndarray | None,
                  title: str = "rendered features: first 3 principal components as RGB") -> None:
    """(h, w, C) features as the RGB of their first three principal components (``pca_rgb``); None or empty:
    placeholder."""
    if features is None or np.size(features) == 0:
        _placeholder(ax, title, "not rendered")
        return
    ax.imshow(pca_rgb(np.asarray(features)), interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()


def bev_rgb(bev: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colours of a bird's-eye occupancy grid.

    Args:
        bev: (Y, X) int8, 100 occupied, 0 free, -1 never observed.
        labels: (Y, X) integer class of each cell's highest occupied voxel (0: none).
        palette: (C, 3) uint8 class colours.

    Returns:
        (Y, X, 3) uint8: occupied cells in their class colour (black without a class), free cells white tinted by
        the class below (``BEV_GROUND_TINT``: road, sidewalk, ...), never-observed cells ``BEV_UNKNOWN``.
    """
    bev = np.asarray(bev)
    if bev.shape != np.shape(labels) or bev.ndim != 2:
        raise ValueError(f"bev and labels must be the same 2D shape, got {bev.shape} and {np.shape(labels)}")
    classes = colorize_labels(labels, palette).astype(np.float64)
    has_class = (labels > 0) & (labels < len(palette))
    free = np.where(has_class[..., None], (1 - BEV_GROUND_TINT) * np.array(BEV_FREE) + BEV_GROUND_TINT * classes,
                    np.array(BEV_FREE, dtype=np.float64))
    occupied = np.where(has_class[..., None], classes, 0.0)
    out = np.where((bev >= 100)[..., None], occupied, np.where((bev < 0)[..., None], BEV_UNKNOWN, free))
    return np.rint(out).astype(np.uint8)


def camera_heading(camera_pose: np.ndarray) -> tuple[float, float, float]:
    """(x, y, yaw) of a camera in a z-up frame: its position and the direction its optical axis points (rad)."""
    camera_pose = np.asarray(camera_pose, dtype=np.float64)
    forward = camera_pose[:3, 2]
    return float(camera_pose[0, 3]), float(camera_pose[1, 3]), float(np.arctan2(forward[1], forward[0]))


#: What the bird's-eye colours mean (second title line of ``plot_bev`` pictures).
BEV_KEY = "class colour: occupied; white: free (tinted by the ground class); grey: never observed"


def plot_bev(ax: Axes, bev: np.ndarray, labels: np.ndarray, palette: np.ndarray, grid_min: Sequence[float],
             grid_max: Sequence[float], camera_pose: np.ndarray | None = None,
             title: str = f"bird's-eye occupancy\n{BEV_KEY}") -> None:
    """The bird's-eye grid in metres: forward (x) up, left (+y) on the left; the camera as a dot with an arrow.

    Args:
        bev, labels, palette: see ``bev_rgb`` ((Y, X) arrays, ``bev[j, i]`` = column (i, j)).
        grid_min, grid_max: (3,) grid box corners (m); x and y set the axes.
        camera_pose: (4, 4) camera optical frame -> grid frame, or None for no marker.
    """
    x0, y0, x1, y1 = float(grid_min[0]), float(grid_min[1]), float(grid_max[0]), float(grid_max[1])
    img = bev_rgb(bev, labels, palette).transpose(1, 0, 2)  # rows: x (forward), columns: y
    ax.imshow(img, origin="lower", extent=(y0, y1, x0, x1), interpolation="nearest")
    ax.set_xlim(y1, y0)  # +y (left) on the left
    ax.set_ylim(x0, x1)
    ax.set_aspect("equal")
    ax.set_xlabel("y (m, left +)")
    ax.set_ylabel("x (m, forward)")
    ax.set_title(title)
    if camera_pose is not None:
        cx, cy, yaw = camera_heading(camera_pose)
        reach = 0.15 * (x1 - x0)
        ax.annotate("", xy=(cy + reach * np.sin(yaw), cx + reach * np.cos(yaw)), xytext=(cy, cx),
                    arrowprops=dict(arrowstyle="->", color=CAMERA_COLOR, lw=1.5), annotation_clip=False)
        ax.plot([cy], [cx], marker="o", color=CAMERA_COLOR, markersize=6, label="camera", clip_on=False,
                linestyle="none")
        ax.legend(loc="lower right", fontsize="small", framealpha=0.8)


def subsample(count: int, max_count: int) -> np.ndarray:
    """Indices of at most ``max_count`` of ``count`` items, evenly spaced (all when they fit)."""
    if count <= max_count:
        return np.arange(count)
    return np.linspace(0, count - 1, max(max_count, 0)).astype(np.int64)


def plot_voxels_3d(ax: Axes3D, points: np.ndarray, labels: np.ndarray, palette: np.ndarray,
                   grid_min: Sequence[float], grid_max: Sequence[float], voxel_size: float,
                   camera_pose: np.ndarray | None = None, max_voxels: int = 15000,
                   title: str = "semantic voxels", occupied_count: int | None = None, zoom: float = 1.25) -> int:
    """Occupied voxels as square markers in their class colours, seen from behind and above the camera.

    The z axis is drawn ``VOXEL_VIEW_Z_SCALE`` times taller than x and y (its label says so).

    Args:
        ax: a 3D axes (``fig.add_subplot(projection="3d")``).
        points: (N, 3) voxel centres (m) in a z-up frame; labels: (N,) class labels.
        grid_min, grid_max: (3,) box shown.
        voxel_size: voxel edge (m), sets the marker size.
        camera_pose: (4, 4) camera -> grid frame: drawn as a marker; the view looks along its heading.
        max_voxels: evenly spaced subset drawn when there are more (keeps drawing fast).
        title: first title line; the second says how many voxels are drawn.
        occupied_count: all occupied voxels when ``points`` are only the surface ones (``surface.exposed_voxels``); the
            title then says "M of N surface voxels drawn; T occupied in all".
        zoom: size of the drawn box within the axes (matplotlib ``set_box_aspect``).

    Returns:
        The number of voxels drawn.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(labels).reshape(-1)
    if len(points) != len(labels):
        raise ValueError(f"points and labels must have the same length, got {len(points)} and {len(labels)}")
    lo, hi = np.asarray(grid_min, dtype=np.float64), np.asarray(grid_max, dtype=np.float64)
    keep = subsample(len(points), max_voxels)
    pts, lab = points[keep], labels[keep]
    if len(pts):
        bbox = ax.get_position()
        fig_w_pt = ax.figure.get_figwidth() * 72.0
        size_pt = max(1.0, 1.6 * bbox.width * fig_w_pt * voxel_size / float(np.max(hi - lo)))
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=colorize_labels(lab, palette) / 255.0, marker="s",
                   s=size_pt ** 2, linewidths=0, depthshade=True)
    yaw = 0.0
    if camera_pose is not None:
        cx, cy, yaw = camera_heading(camera_pose)
        ax.scatter([cx], [cy], [camera_pose[2, 3]], color=CAMERA_COLOR, marker="o", s=40, depthshade=False)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    extent = hi - lo
    ax.set_box_aspect((extent[0], extent[1], extent[2] * VOXEL_VIEW_Z_SCALE), zoom=zoom)
    ax.set_proj_type("persp", focal_length=0.6)
    ax.view_init(elev=VOXEL_VIEW_ELEVATION_DEG, azim=180.0 + np.degrees(yaw))  # behind the camera, along its heading
    ax.set_xlabel("x (m, forward)", labelpad=2)
    ax.set_ylabel("y (m, left +)", labelpad=2)
    ax.set_zlabel(f"z (m, drawn {VOXEL_VIEW_Z_SCALE:g}x taller)", labelpad=0)
    ax.tick_params(labelsize="small", pad=0)
    ax.set_title(f"{title} (red dot: camera)\n{voxel_count_text(len(pts), len(points), occupied_count)}")
    return len(pts)


def fit_3d_box(ax: Axes3D, zoom: float = 1.25, shrink: float = 0.9, tries: int = 6) -> float:
    """Shrink the drawn box of a finished 3D axes (from ``zoom``, by ``shrink`` per try) until the axes with its
    labels and ticks lies on the canvas; returns the zoom kept.

    Call after everything else of the figure is placed: the layout decides how much room the axes gets.
    """
    fig = ax.figure
    aspect = ax.get_box_aspect()
    for _ in range(tries):
        ax.set_box_aspect(aspect, zoom=zoom)
        fig.canvas.draw()
        box = ax.get_tightbbox(fig.canvas.get_renderer())
        if box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height:
            break
        zoom *= shrink
    return zoom


def voxel_count_text(drawn: int, given: int, occupied_count: int | None = None) -> str:
    """What a 3D voxel view shows, in words: "M of N surface voxels drawn; T occupied in all" (surface voxels:
    occupied voxels with a free face neighbour, the ones a viewer can see; ``occupied_count`` None: the ``given``
    voxels are all of them)."""
    if occupied_count is None:
        return f"{drawn:,} of {given:,} occupied voxels drawn" if drawn < given else f"{given:,} occupied voxels"
    shown = f"{drawn:,} of {given:,}" if drawn < given else f"all {given:,}"
    return f"{shown} {SURFACE_VOXELS} drawn; {occupied_count:,} occupied in all"


def frame_figures(view: SceneView, title: str) -> dict[str, Figure]:
    """One figure per picture of a frame (``FRAME_PICTURES``): input image, rendered depth and semantics, bird's-eye
    occupancy, 3D voxels; each with ``title`` on top (frame, stamp, weights...) and a title saying what it shows.

    Args:
        view: the frame's arrays.
        title: the figure title (one or more lines).
    """
    h, w = view.rgb.shape[:2]
    wide = (12.0, 12.0 * h / w + 1.4)
    figs = {name: new_figure(*wide) for name in ("input", "depth", "semantics")}
    plot_image(figs["input"].add_subplot(), view.rgb, f"input image ({w}x{h} px)")
    plot_depth(figs["depth"].add_subplot(), view.depth, "rendered depth of the model input view (z along the "
                                                        "optical axis)")
    plot_semantics(figs["semantics"].add_subplot(), view.semantics, view.class_names, view.palette,
                   "rendered semantics of the model input view")
    figs["bev"] = new_figure(9.0, 7.5)
    ax_bev = figs["bev"].add_subplot()
    plot_bev(ax_bev, view.bev, view.bev_labels, view.palette, view.grid_min, view.grid_max, view.camera_pose)
    class_legend(ax_bev, view.bev_labels[view.bev_labels > 0], view.class_names, view.palette)
    figs["voxels"] = new_figure(10.0, 7.5)
    ax3 = figs["voxels"].add_subplot(projection="3d")
    plot_voxels_3d(ax3, view.points, view.point_labels, view.palette, view.grid_min, view.grid_max,
                   view.voxel_size, view.camera_pose, occupied_count=view.occupied_count)
    class_legend(ax3, view.point_labels, view.class_names, view.palette)
    for fig in figs.values():
        fig.suptitle(title, fontsize="medium")
    fit_3d_box(ax3)
    return {name: figs[name] for name in FRAME_PICTURES}


def overview_figure(view: SceneView, title: str, title_color: str = "black") -> Figure:
    """All pictures of a frame in one figure: input, depth and semantics side by side on top; bird's-eye view and 3D
    voxels below; one legend of every class shown; ``title`` on top (in ``title_color``)."""
    fig = new_figure(18.0, 10.0)
    rows = fig.add_gridspec(2, 1, height_ratios=(1.0, 3.0))
    top = rows[0].subgridspec(1, 3)
    bottom = rows[1].subgridspec(1, 2, width_ratios=(1.0, 1.6))
    h, w = view.rgb.shape[:2]
    plot_image(fig.add_subplot(top[0]), view.rgb, f"input image ({w}x{h} px)")
    plot_depth(fig.add_subplot(top[1]), view.depth, "rendered depth (z along the optical axis)")
    plot_semantics(fig.add_subplot(top[2]), view.semantics, view.class_names, view.palette,
                   "rendered semantics", legend=False)
    plot_bev(fig.add_subplot(bottom[0]), view.bev, view.bev_labels, view.palette, view.grid_min, view.grid_max,
             view.camera_pose, "bird's-eye occupancy\nclass colour: occupied; white: free; grey: never observed")
    ax3 = fig.add_subplot(bottom[1], projection="3d")
    plot_voxels_3d(ax3, view.points, view.point_labels, view.palette, view.grid_min, view.grid_max, view.voxel_size,
                   view.camera_pose, max_voxels=12000, occupied_count=view.occupied_count)
    shown = [np.asarray(view.point_labels).reshape(-1), np.asarray(view.bev_labels)[np.asarray(view.bev_labels) > 0]]
    if view.semantics is not None:
        shown.append(np.asarray(view.semantics).reshape(-1))
    handles = class_handles(np.concatenate(shown), view.class_names, view.palette)
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False, title="classes",
                   title_fontsize="small")
    fig.suptitle(title, color=title_color, fontsize="large")
    fit_3d_box(ax3)
    return fig
