"""Does fusing frames help? Per-frame predictions against the fused map, on a synthetic drive with exact ground truth.

    python benchmarks/map_quality.py [--frames 20] [--seed 2000] [--cache runs/map_frames]
        [--out benchmarks/results/map_quality.md] [--figure docs/images/map_quality.png]

The drive (``map_frames.py``): camera 00 of the synthetic street of seed 2000 (the first run's street, never trained
on by the demo checkpoint), one frame per metre, each frame predicted exactly as the node's pipeline does. The map
(``scenedino_core.mapping``, default ``MapConfig``: 0.2 m voxels, 51.2 x 51.2 x 6.4 m window around the camera)
fuses every frame in the odometry frame (= the first frame's Velodyne frame, so the map lattice and the frames'
SSCBench grids coincide).

Scoring, the same voxels for every row: for each frame, the voxels in that frame's view whose ground truth is known
(not inside a solid) and that the map holds at the end of the drive (inside its final window, observed). Each
per-frame row scores that frame's own prediction there; each map row scores the final fused map there. IoU,
precision and recall are the mean over frames of the per-frame values; "pooled" sums the counts over frames first;
the Hungarian mIoU matches predicted SSC labels to ground-truth labels on the pooled confusion of each row
(``sscbench.metrics.hungarian_assignment``), over the 15 SSC classes as SSCBench does (classes absent from the
street score 0 in every row). Ground truth: the world's exact voxel labels (``StreetWorld.voxel_gt``), SSCBench ids
mapped to SSC labels; no additional invalids (the synthetic ground has no holes).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_frames import DRIVE_SEED, GRID, ROOT, DriveSettings, FramePrediction, drive_predictions  # noqa: E402

from scenedino_core.files import atomic_write_text  # noqa: E402
from scenedino_core.labels import sscbench_gt_to_ssc  # noqa: E402
from scenedino_core.mapping import MapConfig, ObservationBuilder, SemanticMap  # noqa: E402
from scenedino_core.mapping.semantic_map import DenseMap  # noqa: E402
from scenedino_core.sscbench import metrics as M  # noqa: E402
from scenedino_core.voxels import SIGMA_THRESHOLD  # noqa: E402

#: Goals of the issue: the fused map's IoU and precision against the mean per-frame prediction.
IOU_GOAL, PRECISION_GOAL = 1.5, 2.0
#: Control input: share of voxels whose occupancy is flipped in each frame, independently.
CONTROL_FLIP_RATE = 0.1


@dataclass(frozen=True)
class MapRow:
    name: str
    source: str
    """``pipeline``: the node's dense arrays (grown density, percent); ``field``: density without the growth."""
    config: MapConfig


def map_rows() -> list[MapRow]:
    base = MapConfig()
    return [
        MapRow("fused map, pipeline arrays (what the node fuses), defaults", "pipeline", base),
        MapRow("fused map, density without the 3x3x3 growth, defaults", "field", base),
        MapRow("fused map, pipeline arrays, without free space in front of the rendered depth", "pipeline",
               dataclasses.replace(base, free_in_front_of_depth=False)),
        MapRow("fused map, pipeline arrays, occluded_weight 1.0", "pipeline",
               dataclasses.replace(base, occluded_weight=1.0)),
        MapRow("fused map, pipeline arrays, binary hit/miss (probability_gain 100)", "pipeline",
               dataclasses.replace(base, probability_gain=100.0)),
    ]


def pipeline_arrays(f: FramePrediction) -> tuple[np.ndarray, np.ndarray]:
    """The node pipeline's ``voxel_labels`` and ``voxel_occupancy`` of a frame (``Pipeline._outputs``)."""
    prob = 1.0 - np.exp(-GRID.voxel_size * f.sigma_grown)
    labels = np.where(f.labels > 0, f.labels, np.where(f.in_view, 254, 255)).astype(np.uint8)
    occupancy = np.where(f.in_view, np.rint(prob * 100.0), 255).astype(np.uint8)
    return labels, occupancy


def field_labels(f: FramePrediction) -> np.ndarray:
    """SSC labels of the density without growth: the pipeline's labels where σ itself passes the cut-off."""
    return np.where(f.sigma >= SIGMA_THRESHOLD, f.labels, 0).astype(np.uint8)


def observe(builder: ObservationBuilder, f: FramePrediction, source: str, stride: int):
    if source == "pipeline":
        labels, occupancy = pipeline_arrays(f)
        return builder.from_dense(labels, occupancy, f.cam_from_grid, depth=f.depth, intrinsics=f.intrinsics,
                                  render_stride=stride)
    prob = (1.0 - np.exp(-GRID.voxel_size * f.sigma)).astype(np.float32)
    return builder.from_arrays(prob, f.in_view, field_labels(f), f.cam_from_grid, depth=f.depth,
                               intrinsics=f.intrinsics, render_stride=stride)


def fuse(frames: list[FramePrediction], row: MapRow, stride: int) -> SemanticMap:
    fusion = SemanticMap(row.config)
    builder = ObservationBuilder(GRID, row.config)
    for i, f in enumerate(frames):
        fusion.integrate(i * 100_000_000, f.map_from_grid, observe(builder, f, row.source, stride))
    return fusion


def frame_offset(f: FramePrediction, voxel_size: float) -> np.ndarray:
    """Map index of the frame grid's voxel (0, 0, 0) (the lattices coincide on this drive)."""
    if not np.allclose(f.map_from_grid[:3, :3], np.eye(3), atol=1e-9):
        raise ValueError("the quality drive must be straight (frame grids axis-aligned with the map)")
    corner = (f.map_from_grid[:3, 3] + np.asarray(GRID.origin)) / voxel_size
    offset = np.rint(corner)
    if not np.allclose(corner, offset, atol=1e-6) or not np.isclose(GRID.voxel_size, voxel_size):
        raise ValueError("the frame grids must lie on the map lattice")
    return offset.astype(np.int64)


def map_on_frame(d: DenseMap, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed, SSC label 0..15) of the map at the voxels of a frame grid (unobserved outside the window)."""
    seen = np.zeros(GRID.dims, bool)
    label = np.zeros(GRID.dims, np.uint8)
    lo = offset - np.asarray(d.origin_index)  # window index of frame voxel (0, 0, 0)
    a = np.maximum(0, -lo)
    b = np.minimum(GRID.dims, np.asarray(d.log_odds.shape) - lo)
    if np.all(b > a):
        fs = tuple(slice(int(x), int(y)) for x, y in zip(a, b))
        ws = tuple(slice(int(x + o), int(y + o)) for x, y, o in zip(a, b, lo))
        seen[fs] = d.observed[ws]
        lab = d.labels[ws]
        label[fs] = np.where(d.occupied[ws], lab, 0)
    return seen, label


@dataclass
class Score:
    per_frame: list[np.ndarray]
    """(tp, fp, fn) per frame."""
    pooled: M.RangeCounts

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        c = M.range_counts(gt, pred, np.ones(gt.shape, bool))
        self.per_frame.append(np.array([c.tp, c.fp, c.fn], np.float64))
        self.pooled.tp += c.tp
        self.pooled.fp += c.fp
        self.pooled.fn += c.fn
        self.pooled.tn += c.tn
        self.pooled.confusion += c.confusion

    def summary(self) -> dict[str, float]:
        pf = np.stack(self.per_frame)
        tp, fp, fn = pf[:, 0], pf[:, 1], pf[:, 2]
        _, order = M.hungarian_assignment(self.pooled.confusion)
        pooled = M.range_metrics(self.pooled, order)
        return {"iou": float(np.mean(tp / np.maximum(tp + fp + fn, 1))),
                "precision": float(np.mean(tp / np.maximum(tp + fp, 1))),
                "recall": float(np.mean(tp / np.maximum(tp + fn, 1))),
                "pooled_iou": pooled["iou"], "miou": pooled["miou"]}


def new_score() -> Score:
    return Score([], M.RangeCounts(confusion=np.zeros((M.NUM_LABELS, M.NUM_LABELS), np.int64)))


def evaluate(frames: list[FramePrediction], per_frame: dict[str, list[np.ndarray]], maps: dict[str, SemanticMap]
             ) -> tuple[dict[str, dict], int]:
    """Scores of per-frame label grids (one per frame) and of maps, on the shared voxels (see the module docstring);
    returns (rows, voxels scored)."""
    dense = {name: m.dense() for name, m in maps.items()}
    reference = next(iter(dense.values()))
    rows = {name: new_score() for name in [*per_frame, *maps]}
    scored = 0
    for i, f in enumerate(frames):
        offset = frame_offset(f, reference.voxel_size)
        gt = sscbench_gt_to_ssc(f.gt)
        seen, _ = map_on_frame(reference, offset)
        evaluated = f.in_view & (gt != 255) & seen
        scored += int(evaluated.sum())
        g = gt[evaluated]
        preds = [labels[i] for labels in per_frame.values()] + [map_on_frame(d, offset)[1] for d in dense.values()]
        for score, pred in zip(rows.values(), preds):
            score.add(g, pred[evaluated])
    return {name: s.summary() for name, s in rows.items()}, scored


#: Per-frame rows of the model.
PER_FRAME = "per frame, pipeline occupancy (grown density, what the node publishes)"
PER_FRAME_FIELD = "per frame, density without the 3x3x3 growth"


def noisy_frames(frames: list[FramePrediction], rate: float, seed: int = 0) -> list[np.ndarray]:
    """Control input: each frame's exact labels in its view, with every voxel's occupancy flipped with probability
    ``rate``, independently per frame (errors that differ between viewpoints; flipped-on voxels get a random
    class)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        gt = sscbench_gt_to_ssc(f.gt)
        occupied = (gt > 0) & (gt != 255)
        flip = rng.random(gt.shape) < rate
        labels = np.where(occupied & ~flip, gt, 0)
        labels = np.where(~occupied & flip & (gt != 255), rng.integers(1, 16, gt.shape), labels)
        out.append(np.where(f.in_view, labels, 0).astype(np.uint8))
    return out


def fuse_labels(frames: list[FramePrediction], labels: list[np.ndarray], config: MapConfig) -> SemanticMap:
    """Fuse per-frame label grids as binary occupancy (probability 0.5 occupied, 0 empty), every voxel visible."""
    fusion = SemanticMap(config)
    builder = ObservationBuilder(GRID, config)
    for i, (f, lab) in enumerate(zip(frames, labels)):
        prob = np.where(lab > 0, np.float32(0.5), np.float32(0.0))
        fusion.integrate(i * 100_000_000, f.map_from_grid, builder.from_arrays(prob, f.in_view, lab, f.cam_from_grid))
    return fusion


def table(results: dict[str, dict], frames: int, scored: int, base_name: str, goal_row: str | None = None) -> str:
    base = results[base_name]
    lines = [(f"| {frames} frames, {scored / frames:,.0f} voxels per frame | IoU | precision | recall | pooled IoU | "
             "Hungarian mIoU | IoU / per-frame | precision / per-frame |"), "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {100 * r['iou']:.1f} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | "
                     f"{100 * r['pooled_iou']:.1f} | {100 * r['miou']:.1f} | {r['iou'] / base['iou']:.2f}x | "
                     f"{r['precision'] / base['precision']:.2f}x |")
    if goal_row is not None:
        main = results[goal_row]
        met = (main["iou"] / base["iou"] >= IOU_GOAL, main["precision"] / base["precision"] >= PRECISION_GOAL)
        lines += ["", (f"Goals (default map from the pipeline arrays vs per-frame pipeline occupancy): IoU >= "
                  f"{IOU_GOAL}x {'met' if met[0] else 'NOT met'}, precision >= {PRECISION_GOAL}x "
                  f"{'met' if met[1] else 'NOT met'}.")]
    return "\n".join(lines)


def false_positives_by_height(frames: list[FramePrediction], per_frame: list[np.ndarray], fused: SemanticMap,
                              bands_m: tuple[float, ...] = (0.13, 0.93, 1.93, 3.73, 6.13)) -> str:
    """Mean false positives per frame in height bands above the road (the Velodyne is 1.73 m above it)."""
    d = fused.dense()
    z_bottom = GRID.origin[2] + 1.73 + GRID.voxel_size * np.arange(GRID.dims[2])  # voxel bottoms above the road
    fp = np.zeros((2, GRID.dims[2]))
    occ = np.zeros(GRID.dims[2])
    for f, labels in zip(frames, per_frame):
        offset = frame_offset(f, d.voxel_size)
        gt = sscbench_gt_to_ssc(f.gt)
        seen, fused_labels = map_on_frame(d, offset)
        evaluated = f.in_view & (gt != 255) & seen
        empty = evaluated & (gt == 0)
        fp[0] += (empty & (labels > 0)).sum(axis=(0, 1))
        fp[1] += (empty & (fused_labels > 0)).sum(axis=(0, 1))
        occ += (evaluated & (gt > 0)).sum(axis=(0, 1))
    n = len(frames)
    lines = [("| height above the road (voxel bottom) | occupied voxels (GT) | false positives, per frame | "
             "false positives, fused map |"), "|---|---|---|---|"]
    for lo, hi in zip((-1.0,) + bands_m, bands_m):
        k = (z_bottom >= lo) & (z_bottom < hi)
        name = "road layer" if lo < 0 else f"{lo:.2f} .. {hi:.2f} m"
        lines.append(f"| {name} | {occ[k].sum() / n:,.0f} | {fp[0, k].sum() / n:,.0f} | {fp[1, k].sum() / n:,.0f} |")
    return "\n".join(lines)


def view_consistency(frames: list[FramePrediction], min_views: int = 5) -> str:
    """How consistently the frames call empty voxels occupied: of the exactly empty voxels in view of at least
    ``min_views`` frames, the share called occupied by at least one, by most, and by all of those frames."""
    offsets = [frame_offset(f, GRID.voxel_size) for f in frames]
    lo = np.min(offsets, axis=0)
    shape = tuple(np.max(offsets, axis=0) - lo + np.asarray(GRID.dims))
    seen = np.zeros(shape, np.int16)
    called = np.zeros(shape, np.int16)
    gt = np.full(shape, 255, np.uint8)
    for f, off in zip(frames, offsets):
        sl = tuple(slice(int(a), int(a) + n) for a, n in zip(off - lo, GRID.dims))
        seen[sl] += f.in_view
        called[sl] += (f.labels > 0) & f.in_view
        g = sscbench_gt_to_ssc(f.gt)
        gt[sl] = np.where(g != 255, g, gt[sl])
    empty = (gt == 0) & (seen >= min_views)
    share = called[empty] / seen[empty]
    return (f"Of the {empty.sum():,} exactly empty voxels in view of at least {min_views} frames, "
            f"{100 * np.mean(share > 0):.1f} % are called occupied by at least one of those frames, "
            f"{100 * np.mean(share > 0.5):.1f} % by most of them and {100 * np.mean(share >= 1):.1f} % by all of "
            "them (per-frame pipeline occupancy): fusion can only remove the false positives that some views do not "
            "repeat.")


# ------------------------------------------------------------------------------------------------ picture
def _categories(gt_occ: np.ndarray, pred: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """RGB: TP green, FP red, FN blue, true empty white, not evaluated grey."""
    rgb = np.full(gt_occ.shape + (3,), 0.85)
    rgb[evaluated] = 1.0
    rgb[evaluated & pred & gt_occ] = (0.1, 0.65, 0.2)
    rgb[evaluated & pred & ~gt_occ] = (0.85, 0.15, 0.15)
    rgb[evaluated & ~pred & gt_occ] = (0.15, 0.3, 0.9)
    return rgb


def draw(path: Path, frames: list[FramePrediction], maps: dict[str, SemanticMap]) -> None:
    """Top slice (1.0-1.2 m above the road) and side slice (through the camera) of the final window: the last
    frame's own prediction and each fused map, against the exact geometry."""
    from scenedino_core.visualize import new_figure, save_figure

    d0 = next(iter(maps.values())).dense()
    shape = d0.log_odds.shape
    o = np.asarray(d0.origin_index)
    gt = np.full(shape, 255, np.uint8)
    evaluated = np.zeros(shape, bool)
    for f in frames:  # exact geometry over the window, from every frame's GT; evaluated = any frame's view
        off = frame_offset(f, d0.voxel_size) - o
        a, b = np.maximum(0, -off), np.minimum(GRID.dims, np.asarray(shape) - off)
        fs = tuple(slice(int(x), int(y)) for x, y in zip(a, b))
        ws = tuple(slice(int(x + s), int(y + s)) for x, y, s in zip(a, b, off))
        g = sscbench_gt_to_ssc(f.gt)[fs]
        gt[ws] = np.where(g != 255, g, gt[ws])
        evaluated[ws] |= f.in_view[fs]
    evaluated &= (gt != 255) & d0.observed
    gt_occ = (gt > 0) & (gt != 255)
    last = frames[-1]
    off = frame_offset(last, d0.voxel_size) - o
    single = np.zeros(shape, bool)
    single_ev = np.zeros(shape, bool)
    a, b = np.maximum(0, -off), np.minimum(GRID.dims, np.asarray(shape) - off)
    fs = tuple(slice(int(x), int(y)) for x, y in zip(a, b))
    ws = tuple(slice(int(x + s), int(y + s)) for x, y, s in zip(a, b, off))
    single[ws], single_ev[ws] = last.labels[fs] > 0, last.in_view[fs]
    panels = [("last frame's own prediction (pipeline occupancy)", single, evaluated & single_ev)]
    panels += [(name, m.dense().occupied, evaluated) for name, m in maps.items()]
    s = d0.voxel_size
    road_z = -last.map_from_grid[2, 3] - 1.73  # the Velodyne is 1.73 m above the road
    k_top = int(np.floor((road_z + 1.1) / s)) - o[2]
    cam_y = int(np.floor(last.map_from_grid[1, 3] / s)) - o[1]
    cam_x = (last.map_from_grid[0, 3]) / s - o[0]
    x0, x1 = o[0] * s, (o[0] + shape[0]) * s
    y0, y1 = o[1] * s, (o[1] + shape[1]) * s
    z0, z1 = o[2] * s - road_z, (o[2] + shape[2]) * s - road_z
    fig = new_figure(15, 3.1 * len(panels))
    grid = fig.add_gridspec(len(panels), 2, width_ratios=[1.25, 1])
    for row, (name, pred, ev) in enumerate(panels):
        top = _categories(gt_occ[:, :, k_top], pred[:, :, k_top], ev[:, :, k_top])  # (x, y)
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(top.transpose(1, 0, 2), origin="lower", extent=(x0, x1, y0, y1), aspect="equal",
                  interpolation="nearest")
        ax.axvline((cam_x + o[0]) * s, color="k", lw=0.6, ls="--")
        ax.set_title(f"{name}: top slice {(k_top + o[2]) * s - road_z:+.1f} m above the road", fontsize=9)
        ax.set_xlabel("x (m, odometry)")
        ax.set_ylabel("y (m)")
        side = _categories(gt_occ[:, cam_y], pred[:, cam_y], ev[:, cam_y])  # (x, z)
        ax = fig.add_subplot(grid[row, 1])
        ax.imshow(side.transpose(1, 0, 2), origin="lower", extent=(x0, x1, z0, z1), aspect="auto",
                  interpolation="nearest")
        ax.axvline((cam_x + o[0]) * s, color="k", lw=0.6, ls="--")
        ax.set_title("side slice through the camera (height above the road)", fontsize=9)
        ax.set_xlabel("x (m, odometry)")
    fig.suptitle("final window after the drive (dashed: last camera). green: occupied and predicted, red: predicted "
                 "but empty, blue: missed, white: empty, grey: not evaluated")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--seed", type=int, default=DRIVE_SEED)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "map_frames")
    ap.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    ap.add_argument("--figure", type=Path, help="PNG of top and side slices of the final window")
    args = ap.parse_args(argv)
    settings = DriveSettings(seed=args.seed, frames=args.frames)
    frames = drive_predictions(args.cache, settings)
    maps = {row.name: fuse(frames, row, settings.render_stride) for row in map_rows()}
    per_frame = {PER_FRAME: [f.labels for f in frames], PER_FRAME_FIELD: [field_labels(f) for f in frames]}
    results, scored = evaluate(frames, per_frame, maps)
    text = table(results, len(frames), scored, PER_FRAME, map_rows()[0].name)
    text += (f"\n\nModel time per frame while the cache was made: {np.median([f.model_ms for f in frames]):.0f} ms "
             "(median).\n\nFalse positives by height, on the same voxels (per-frame pipeline occupancy against the "
             "default fused map):\n\n")
    text += false_positives_by_height(frames, per_frame[PER_FRAME], maps[map_rows()[0].name])
    text += "\n\n" + view_consistency(frames)
    noisy = noisy_frames(frames, CONTROL_FLIP_RATE)
    control_name = f"per frame, exact labels with {CONTROL_FLIP_RATE:.0%} of the voxels flipped independently per frame"
    control_map = "fused map of those frames (defaults, probability 0.5 for occupied, all visible)"
    control, _ = evaluate(frames, {control_name: noisy}, {control_map: fuse_labels(frames, noisy, MapConfig())})
    text += ("\n\nControl (no model: errors that differ between viewpoints), same voxels:\n\n"
             + table(control, len(frames), scored, control_name))
    print(text)
    if args.out:
        atomic_write_text(args.out, f"# map_quality.py --frames {args.frames} --seed {args.seed}\n\n{text}\n")
    if args.figure:
        first_two = dict(list(maps.items())[:2])
        draw(args.figure, frames, first_two)
    return 0


if __name__ == "__main__":
    sys.exit(main())
