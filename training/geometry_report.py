"""Geometric IoU of a checkpoint on synthetic SSCBench frames, next to the score of the world's exact geometry.

    python training/geometry_report.py --sscbench runs/synthetic_sscbench/sscbench \
        --voxel-gt runs/synthetic_sscbench/voxel_gt --checkpoint checkpoints/scenedino_synthetic_demo.pt \
        [--frames 0 6 ...] [--figure docs/images/synthetic_geometry.png]

Every row uses the evaluation's voxel query (``sscbench.evaluate.Runtime.predict``), FOV mask, additional invalids
and σ cut-off 0.2. The reference protocol max-pools σ over 3x3x3 voxels before the cut-off and counts voxels that
the semantic head calls sky or rider as empty: its row is exactly what ``scenedino-eval-sscbench`` reports (for a
stage-1 checkpoint, whose head is untrained, that removes arbitrary voxels). The density rows score the field alone,
with and without the growth. "Exact geometry" predicts occupied exactly where the synthetic GT is not empty (its
surfaces, and the 255 voxels inside solids): without growth it scores 100 %; with growth it shows the ceiling the
reference protocol puts on the synthetic world's one-voxel surface shells, since the growth adds a voxel of free
space on each side of every surface.

Only meaningful on ``synthetic.write_sscbench`` output, where GT 255 means "inside a solid" (real SSCBench GT uses
255 for unobserved space). Prints a Markdown table; ``--figure`` draws side and top slices of the first frame.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from scenedino_core.sscbench import grid as G
from scenedino_core.sscbench import metrics as M
from scenedino_core.sscbench.dataset import SSCBenchKitti360
from scenedino_core.sscbench.evaluate import EvalOptions, Runtime
from scenedino_core.visualize import new_figure, plot_image, save_figure
from scenedino_core.voxels import SIGMA_THRESHOLD

RANGES_M = (12.8, 25.6, 51.2)
#: z index of the top slice: 0.6-0.8 m above the synthetic road (whose GT voxels have z index 1), through cars.
TOP_SLICE_Z = 4


@dataclass
class Geometry:
    """Evaluated voxels of one frame: ``evaluated``/``gt`` (bool, 256x256x32) and predictions by name."""

    evaluated: np.ndarray
    gt: np.ndarray
    predicted: dict[str, np.ndarray]


#: Row names: what scenedino-eval-sscbench scores, the density field with and without the growth, exact geometry.
REFERENCE = "checkpoint, reference protocol (eval-sscbench)"
GROWN = "checkpoint density, 3x3x3 growth"
FIELD = "checkpoint density, no growth"
EXACT_GROWN = "exact geometry, 3x3x3 growth"
EXACT = "exact geometry, no growth"
#: The rows drawn by ``--figure``.
FIGURE_ROWS = (GROWN, FIELD, EXACT_GROWN)


def frame_geometry(runtime: Runtime, dataset: SSCBenchKitti360, frame: int) -> tuple[np.ndarray, Geometry]:
    """Input image and the occupancy predictions of one frame (the row names above)."""
    sample = dataset.load(frame)
    pred = runtime.predict(sample, dataset.calibration.K)
    gt_ssc, _, _ = M.map_frame(sample.gt, np.zeros_like(sample.gt))
    exact = sample.gt != 0
    predicted = {
        REFERENCE: pred.labels > 0,  # also empty where the head says sky or rider
        GROWN: pred.sigma_grown >= SIGMA_THRESHOLD,
        FIELD: pred.sigma >= SIGMA_THRESHOLD,
        EXACT_GROWN: ndimage.maximum_filter(exact, size=3, mode="constant"),
        EXACT: exact,
    }
    return sample.rgb, Geometry(evaluated=(gt_ssc != 255) & runtime.fov, gt=gt_ssc > 0, predicted=predicted)


def counts(geo: Geometry, name: str, size_m: float) -> np.ndarray:
    """(TP, FP, FN) of one prediction inside the range crop."""
    ev, gt, p = (M.crop_range(a, size_m) for a in (geo.evaluated, geo.gt, geo.predicted[name]))
    return np.array([(p & gt & ev).sum(), (p & ~gt & ev).sum(), (~p & gt & ev).sum()], np.int64)


def _category_image(geo: Geometry, name: str, index: tuple) -> np.ndarray:
    """RGB of a 2D slice: TP green, FP red, FN blue, true empty white, not evaluated grey."""
    ev, gt, p = geo.evaluated[index], geo.gt[index], geo.predicted[name][index]
    rgb = np.full(ev.shape + (3,), 0.85)
    rgb[ev] = 1.0
    rgb[ev & p & gt] = (0.1, 0.65, 0.2)
    rgb[ev & p & ~gt] = (0.85, 0.15, 0.15)
    rgb[ev & ~p & gt] = (0.15, 0.3, 0.9)
    return rgb


def draw(path: str, rgb: np.ndarray, geo: Geometry, names: list[str], frame: int) -> None:
    """Input image; per prediction a side slice (x-z through the camera column) and a top slice (x-y)."""
    xs, ys = M.range_slices(25.6)
    size = xs.stop * G.VOXEL_SIZE
    z0, z1 = G.GRID_ORIGIN_VELO[2], G.GRID_ORIGIN_VELO[2] + G.GRID_DIMS[2] * G.VOXEL_SIZE
    fig = new_figure(13, 2.2 + 2.6 * len(names))
    grid = fig.add_gridspec(1 + len(names), 2, width_ratios=[2.2, 1])
    plot_image(fig.add_subplot(grid[0, :]), rgb, f"frame {frame}: input image")
    for row, name in enumerate(names, start=1):
        side = _category_image(geo, name, (xs, G.GRID_DIMS[1] // 2, slice(None)))  # (x, z)
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(side.transpose(1, 0, 2), origin="lower", extent=(0, size, z0, z1), aspect="auto",
                  interpolation="nearest")
        ax.set_title(f"{name}: side slice through the camera (y = 0)")
        ax.set_xlabel("x forward (m)")
        ax.set_ylabel("z (m, Velodyne)")
        top = _category_image(geo, name, (xs, ys, TOP_SLICE_Z))  # (x, y)
        ax = fig.add_subplot(grid[row, 1])
        ax.imshow(top[:, ::-1], origin="lower", extent=(size / 2, -size / 2, 0, size), aspect="equal",
                  interpolation="nearest")  # y left is drawn to the left
        ax.set_title(f"top slice at z = {z0 + (TOP_SLICE_Z + 0.5) * G.VOXEL_SIZE:+.1f} m")
        ax.set_xlabel("y left (m)")
        ax.set_ylabel("x forward (m)")
    fig.suptitle("green: occupied and predicted, red: predicted but empty, blue: missed, white: empty, "
                  "grey: not evaluated")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sscbench", required=True)
    p.add_argument("--voxel-gt", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--sequence", default="09")
    p.add_argument("--frames", type=int, nargs="+", help="default: every GT frame of the sequence")
    p.add_argument("--figure", help="PNG of side and top slices of the first frame")
    args = p.parse_args(argv)

    opts = EvalOptions(sscbench=args.sscbench, voxel_gt=args.voxel_gt, checkpoint=args.checkpoint, out=".",
                       sequence=args.sequence, fast_sweep=True)
    runtime = Runtime(opts)
    dataset = SSCBenchKitti360(opts.sscbench, opts.voxel_gt, opts.sequence, args.frames)
    totals: dict[tuple[str, float], np.ndarray] = {}
    for i, frame in enumerate(dataset.frames):
        rgb, geo = frame_geometry(runtime, dataset, frame)
        for name in geo.predicted:
            for size in RANGES_M:
                totals[name, size] = totals.get((name, size), 0) + counts(geo, name, size)
        if i == 0 and args.figure:
            draw(args.figure, rgb, geo, list(FIGURE_ROWS), frame)
    names = list(dict.fromkeys(name for name, _ in totals))
    print(f"| occupancy ({len(dataset)} frames, σ >= {SIGMA_THRESHOLD}) | "
          + " | ".join(f"IoU / precision / recall at {s} m" for s in RANGES_M) + " |")
    print("|---|" + "---|" * len(RANGES_M))
    for name in names:
        cells = []
        for size in RANGES_M:
            tp, fp, fn = totals[name, size]
            cells.append(f"{100 * tp / max(tp + fp + fn, 1):.1f} / {100 * tp / max(tp + fp, 1):.1f} / "
                         f"{100 * tp / max(tp + fn, 1):.1f} %")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
