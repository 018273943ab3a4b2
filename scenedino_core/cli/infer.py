"""``scenedino-infer``: offline SceneDINO inference on one image (points, rendered views, SSC voxel grid).

A thin command over ``scenedino_core.pipeline.Pipeline``, the inference path the ROS node runs. torch and the model
are imported only after the arguments are parsed, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..images import FittedImage
    from ..pipeline import Pipeline, RenderedView

_logger = logging.getLogger("scenedino-infer")

#: Semantic prediction modes (``scenedino_core.semantics.PredictionMode`` values; listed here so that ``--help``
#: needs no torch import). The default comes first.
MODES = ("stego_kmeans", "stego_linear", "direct_kmeans", "direct_linear")

RANDOM_BANNER = """
#####################################################################################
#  NO CHECKPOINT: this run uses RANDOMLY INITIALISED weights (--random-weights).     #
#  Every output below is noise that only proves the pipeline runs end to end.       #
#  Get real weights with:  scenedino-download ssc-kitti-360-dino                    #
#####################################################################################"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-infer", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="input image (any size; scaled to cover the model input, "
                                                "centre-cropped)")
    src.add_argument("--sample-image", action="store_true", help="use the project's procedural street image")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--checkpoint", type=Path, help="official checkpoint.pt (training_config.yaml beside it) or a "
                                                   "scenedino-ros checkpoint")
    w.add_argument("--random-weights", action="store_true", help="randomly initialised full-size model (testing)")
    p.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="pixel intrinsics of --image (default: KITTI-360 rectified camera 00 scaled to the image)")
    p.add_argument("--mode", default=MODES[0], choices=MODES,
                   help="semantic head: stego_* classify the STEGO projection of the features, direct_* the "
                        "features themselves; *_kmeans with the unsupervised cluster probe, *_linear with the linear "
                        "probe (default: %(default)s)")
    p.add_argument("--points", type=Path, help="(N, 3) .npy of camera-frame points (x right, y down, z forward, m)")
    p.add_argument("--grid", action="store_true", help="predict the SSCBench 256x256x32 grid (KITTI-360 camera "
                                                       "mounting) and write ssc_labels / fov_mask + a BEV picture")
    p.add_argument("--render", action="store_true", help="render z-depth (m, along the optical axis), semantics "
                                                         "and feature PCA of the input view")
    p.add_argument("--render-stride", type=int, default=1, help="render every n-th pixel (faster)")
    p.add_argument("--out", type=Path, default=Path("outputs/infer/result.npz"), help="output .npz")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    return p


def _pipeline(args: argparse.Namespace) -> Pipeline:
    import torch

    from ..pipeline import Pipeline, PipelineConfig
    from ..sscbench.grid import SSCBENCH_GRID

    if args.random_weights:
        _logger.warning(RANDOM_BANNER)
        torch.manual_seed(args.seed)
    return Pipeline(PipelineConfig(grid=SSCBENCH_GRID, checkpoint=str(args.checkpoint or ""),
                                   allow_random_weights=args.random_weights, device=args.device, mode=args.mode))


def _input(args: argparse.Namespace, pipe: Pipeline) -> FittedImage:
    from .. import images as imgs

    rgb = imgs.synthetic_street_image(pipe.image_size) if args.sample_image else imgs.read_rgb(args.image)
    if args.intrinsics is not None:
        K = imgs.intrinsics_matrix(*args.intrinsics)
    else:
        K = imgs.kitti360_intrinsics(rgb.shape[:2])
        _logger.info("no --intrinsics: assuming KITTI-360 camera 00 scaled to %dx%d", rgb.shape[1], rgb.shape[0])
    return pipe.fit(rgb, K)


def read_points(path: Path) -> np.ndarray:
    try:
        pts = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from exc
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.issubdtype(pts.dtype, np.number):
        raise ValueError(f"{path}: points must be an (N, 3) numeric array, got {pts.shape} {pts.dtype}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{path}: points contain NaN or infinite values")
    return pts.astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, np.ndarray]:
    from .. import visualize
    from ..sscbench import grid as sscgrid

    pipe = _pipeline(args)
    fitted = _input(args, pipe)
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, np.ndarray] = {"intrinsics": fitted.intrinsics, "mode": np.array(pipe.mode.value),
                                     "random_weights": np.array(bool(args.random_weights))}
    frame = pipe.encode_fitted(fitted)
    if args.points is not None:
        q = pipe.query_points(frame, read_points(args.points))
        result.update(sigma=q.sigma[0].cpu().numpy(), features=q.features[0].cpu().numpy(),
                      invalid=q.outside[0].cpu().numpy(), classes=q.classes[0].cpu().numpy().astype(np.uint8))
    view = None
    if args.render:
        view = pipe.render(frame, args.render_stride, features=True)
        result.update(render_depth=view.depth, render_classes=view.train_ids)
    grid = None
    if args.grid:
        fov = sscgrid.fov_mask()
        pred = pipe.predict(frame, centres=sscgrid.voxel_centers_camera(), semantic_mask=fov)
        result.update(ssc_labels=pred.labels, fov_mask=fov, sigma_grown=pred.sigma_grown)
        grid = (pred.labels, fov)
    _write_npz(args.out, result)
    source = "sample image" if args.sample_image else args.image.name
    title = f"scenedino-infer: {source}  |  {pipe.describe()}  |  mode {pipe.mode.value}"
    if args.random_weights:
        title = f"RANDOM WEIGHTS: untrained model, the outputs are noise\n{title}"
    for name, fig in pictures(fitted.rgb, title, view, grid).items():
        visualize.save_figure(fig, out_dir / f"{args.out.stem}_{name}.png")
    return result


#: What the rendered semantics show (SSC classes; trainIds without one are drawn as "empty").
SEMANTICS_TITLE = "rendered semantics: SSCBench classes (sky and rider: empty)"


def pictures(rgb: np.ndarray, title: str, view: RenderedView | None = None,
             grid: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Figure]:
    """The pictures ``scenedino-infer`` writes, each titled ``title`` plus what it shows.

    Args:
        rgb: (H, W, 3) uint8 model input image.
        title: first title line(s): input, model, mode.
        view: the rendered input view (``--render``): ``depth``, ``semantics`` (trainIds drawn in the colour of
            their SSC class: one palette everywhere), ``features`` (PCA) and ``overview`` pictures.
        grid: (SSC labels (X, Y, Z), FOV mask (X, Y, Z)) of the SSCBench grid (``--grid``): the ``bev`` picture.

    Returns:
        Picture name -> figure: ``input`` always, the others as the arguments allow.
    """
    from .. import visualize
    from ..labels import class_table, trainid_to_ssc
    from ..sscbench import grid as sscgrid

    names, palette = class_table()
    h, w = rgb.shape[:2]
    size = (10.0, 10.0 * h / w + 1.6)
    figs: dict[str, Figure] = {"input": visualize.new_figure(*size)}
    visualize.plot_image(figs["input"].add_subplot(), rgb, f"model input image ({w}x{h} px)")
    semantics = None
    if view is not None:
        semantics = trainid_to_ssc(view.train_ids)
        figs["depth"] = visualize.new_figure(*size)
        visualize.plot_depth(figs["depth"].add_subplot(), view.depth, "rendered depth (z along the optical axis)")
        figs["semantics"] = visualize.new_figure(size[0] + 1.5, size[1])
        visualize.plot_semantics(figs["semantics"].add_subplot(), semantics, names, palette, SEMANTICS_TITLE)
        figs["features"] = visualize.new_figure(*size)
        visualize.plot_features(figs["features"].add_subplot(), view.features)
    if grid is not None:
        figs["bev"] = visualize.new_figure(9.0, 8.0)
        ax = figs["bev"].add_subplot()
        bev, top = grid_bev(*grid)
        lo = np.asarray(sscgrid.GRID_ORIGIN_VELO)
        visualize.plot_bev(ax, bev, top, palette, lo, lo + np.asarray(sscgrid.GRID_DIMS) * sscgrid.VOXEL_SIZE,
                           sscgrid.cam_to_velo_matrix(), "SSCBench grid from above: class of the highest occupied "
                           "voxel\nwhite: free; grey: outside the camera view")
        visualize.class_legend(ax, top[top > 0], names, palette)
    if view is not None:
        figs["overview"] = _overview(rgb, view, semantics, names, palette)
    for fig in figs.values():
        fig.suptitle(title, fontsize="medium")
    return figs


def grid_bev(labels: np.ndarray, fov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bird's-eye view of an SSC label grid: ((Y, X) int8 100 occupied column, 0 free, -1 never in view; (Y, X) class
    of each column's highest occupied voxel)."""
    from .. import visualize

    occupied = (np.asarray(labels) > 0).any(axis=2)
    bev = np.where(occupied, 100, np.where(np.asarray(fov).any(axis=2), 0, -1)).astype(np.int8)
    return np.ascontiguousarray(bev.T), np.ascontiguousarray(visualize.bev_labels(labels).T)


def _overview(rgb: np.ndarray, view: RenderedView, semantics: np.ndarray, names: tuple[str, ...],
              palette: np.ndarray) -> Figure:
    from .. import visualize

    h, w = rgb.shape[:2]
    fig = visualize.new_figure(16.0, 2 * 8.0 * h / w + 2.2)
    gs = fig.add_gridspec(2, 2)
    visualize.plot_image(fig.add_subplot(gs[0, 0]), rgb, "model input image")
    visualize.plot_depth(fig.add_subplot(gs[0, 1]), view.depth, "rendered depth (m)")
    visualize.plot_semantics(fig.add_subplot(gs[1, 0]), semantics, names, palette, SEMANTICS_TITLE, legend=False)
    visualize.plot_features(fig.add_subplot(gs[1, 1]), view.features, "rendered features (PCA as RGB)")
    handles = visualize.class_handles(semantics, names, palette)
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False, title="classes",
                   title_fontsize="small")
    return fig


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from ..files import atomic_path

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..pipeline import PipelineError

    try:
        result = run(args)
    except (FileNotFoundError, ValueError, PipelineError) as exc:  # CheckpointError, ConfigError: ValueErrors
        print(f"scenedino-infer: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({', '.join(sorted(result))})")
    for png in sorted(args.out.parent.glob(f"{args.out.stem}_*.png")):
        print(f"wrote {png}")
    if args.random_weights:
        print("NOTE: random weights were used; the outputs are not predictions.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
