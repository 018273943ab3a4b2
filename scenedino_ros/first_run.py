"""``scenedino-first-run``: the project end to end on a synthetic drive, with pictures and an optional live view.

1. writes a short synthetic drive of the project's street world (``scenedino_core.data.synthetic``) as a real-format
   KITTI-360 tree (``OUT/kitti360``; kept and reused when it is already there with the same settings);
2. converts it to a rosbag2 MCAP bag (``OUT/drive``: both cameras, CameraInfo, Velodyne, ``/tf``, ``/tf_static``;
   ``scenedino_ros.kitti360_to_bag``);
3. runs the node's processing over camera 00 of that bag (``scenedino_ros.process_bag``, the node's parameters from
   ``config/scenedino.yaml`` + ``config/kitti360.yaml``) into ``OUT/scenedino_outputs`` (MCAP, inputs included);
4. draws pictures of a few frames (``OUT/pictures``: input, rendered depth, rendered semantics, bird's-eye
   occupancy, 3D semantic voxels, one ``overview.png``) and writes ``OUT/summary.json``;
5. with ``--viz``, streams every processed frame live to a Foxglove WebSocket server on 127.0.0.1
   (``scenedino_ros.foxglove_view``).

Weights: ``--checkpoint``, else the committed demo checkpoint (``checkpoints/scenedino_synthetic_demo.pt``); with
neither, ``--allow-random-weights`` runs an untrained model, announced in the output and in every picture title.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from scenedino_core import visualize
from scenedino_core.data.synthetic import FULL_SIZE, StreetConfig, StreetWorld, write_kitti360
from scenedino_core.files import atomic_write_text

from . import kitti360_to_bag
from .foxglove_view import DEFAULT_PORT, FoxgloveView, RawMessage
from .params import NodeParams, load_params, pipeline_config, static_camera_pose, validate
from .pipeline import FREE, Pipeline, PipelineError, class_table
from .process_bag import BagError, ProcessedFrame, default_params_files, process_bag

_logger = logging.getLogger(__name__)

PROG = "scenedino-first-run"
REPO = Path(__file__).resolve().parents[1]
#: The demo checkpoint trained on the synthetic world (committed with the repository).
DEMO_CHECKPOINT = REPO / "checkpoints" / "scenedino_synthetic_demo.pt"
SEQUENCE = "2013_05_28_drive_0000_sync"
#: Street of the synthetic drive: one the demo model never saw (its training street is seed 0, validation 1000).
DRIVE_SEED = 2000
CAMERA = "image_00"
#: Folders inside ``--out``: the KITTI-360 drive, its bag, the processed bag, the pictures.
DRIVE_DIR, INPUT_BAG, OUTPUT_BAG, PICTURES_DIR = "kitti360", "drive", "scenedino_outputs", "pictures"
#: Settings file written last into the drive folder: its presence means the drive is complete.
DRIVE_MARKER = "first_run_drive.json"
#: Input topics forwarded to the live view with each frame (/tf_static with every frame, for late viewers).
VIEW_INPUT_TOPICS = (kitti360_to_bag.TOPICS.tf, kitti360_to_bag.TOPICS.image(CAMERA),
                     kitti360_to_bag.TOPICS.camera_info(CAMERA), kitti360_to_bag.TOPICS.velodyne)
RANDOM_WARNING = "RANDOM WEIGHTS: untrained model, the outputs are meaningless"
RANDOM_BANNER = f"""
{'#' * 88}
#  {RANDOM_WARNING + ' (--allow-random-weights).':<84}#
#  {'They only show that the whole chain runs. Real weights: --checkpoint PATH.':<84}#
{'#' * 88}"""


@dataclass(frozen=True)
class DriveSettings:
    """What the synthetic drive is made of; equal settings mean an existing drive can be reused."""

    seed: int
    frames: int
    image_size: tuple[int, int]
    """(H, W) of the rectified perspective images."""
    sequence: str = SEQUENCE

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class RunSummary:
    """What a first run produced (printed by the CLI, also in ``summary.json``)."""

    out: Path
    drive: Path
    drive_reused: bool
    input_bag: Path
    output_bag: Path
    output_mcap: Path | None
    pictures: tuple[Path, ...]
    overview: Path | None
    summary_json: Path
    model: str
    device: str
    random_weights: bool
    frames_processed: int
    frames_skipped: int
    mean_frame_ms: float
    """Processing loop time per frame (bag I/O, model, messages, pictures)."""
    mean_model_ms: dict[str, float]
    """Mean ``FrameResult.timings_ms`` per stage."""


# ----------------------------------------------------------------------------- steps

def drive_is_complete(root: Path, settings: DriveSettings) -> bool:
    """True when ``root`` holds a drive written with ``settings`` (marker present and equal, images there)."""
    marker = root / DRIVE_MARKER
    if not marker.is_file() or marker.read_text().strip() != settings.to_json():
        return False
    images = root / "data_2d_raw" / settings.sequence / CAMERA / "data_rect"
    return all((images / f"{f:010d}.png").is_file() for f in range(settings.frames))


def make_drive(root: Path, settings: DriveSettings, progress: bool = True) -> bool:
    """Write the synthetic KITTI-360 drive into ``root`` unless it is already complete; True when reused.

    A drive of other settings that this command wrote (it has the marker) is replaced.
    """
    if drive_is_complete(root, settings):
        _logger.info("reusing the synthetic drive in %s", root)
        return True
    if (root / DRIVE_MARKER).is_file():
        _logger.info("replacing the synthetic drive in %s (other settings)", root)
        shutil.rmtree(root)
    _logger.info("writing a synthetic KITTI-360 drive into %s: %d frames, images %dx%d (HxW)", root, settings.frames,
                 *settings.image_size)
    world = StreetWorld.generate(settings.seed, StreetConfig(num_frames=settings.frames))
    write_kitti360(world, root, settings.sequence, range(settings.frames), full_size=settings.image_size,
                   velodyne=True, progress=progress)
    atomic_write_text(root / DRIVE_MARKER, settings.to_json() + "\n")
    return False


def mcap_files(bag: Path) -> list[Path]:
    """The ``.mcap`` files of a rosbag2 folder (or the file itself)."""
    return [bag] if bag.suffix == ".mcap" else sorted(bag.glob("*.mcap"))


class BagFeed:
    """Raw input messages of a rosbag2 bag for the live view: everything on ``topics`` since the previous frame.

    Args:
        bag: the input bag (folder, or a ``.mcap`` / ``.db3`` file).
        topics: topics to forward.
    """

    def __init__(self, bag: Path, topics: tuple[str, ...]):
        self._bag = bag
        self._topics = frozenset(topics)
        self._last_ns = -1
        self.static = self._read(frozenset({kitti360_to_bag.TOPICS.tf_static}), 0, None)

    def _read(self, topics: frozenset[str], start_ns: int, stop_ns: int | None) -> list[tuple[int, RawMessage]]:
        with Reader(self._bag) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            return [(t, RawMessage(c.topic, c.msgtype, c.msgdef.data, bytes(raw)))
                    for c, t, raw in reader.messages(connections=conns, start=start_ns, stop=stop_ns)] if conns else []

    def until(self, stamp_ns: int) -> list[tuple[int, RawMessage]]:
        """(bag time, message) on the topics after the previous call's stamp, up to ``stamp_ns`` inclusive."""
        out = self._read(self._topics, self._last_ns + 1, stamp_ns + 1)
        self._last_ns = max(self._last_ns, stamp_ns)
        return out


def scene_view(frame: ProcessedFrame, p: NodeParams, class_names: tuple[str, ...],
               palette: np.ndarray) -> visualize.SceneView:
    """The picture arrays of a processed frame: voxels in the grid frame (only the exposed ones: hidden voxels
    would only slow the 3D view down), the camera at its ``camera_pose.*``."""
    r = frame.result
    grid = r.grid
    lo = np.asarray(grid.origin, dtype=np.float64)
    labels = np.where(r.voxel_labels < FREE, r.voxel_labels, 0)
    index = np.argwhere(visualize.exposed_voxels(r.voxel_labels < FREE))
    return visualize.SceneView(
        rgb=frame.rgb, depth=r.depth, semantics=r.semantics, bev=r.bev,
        bev_labels=np.ascontiguousarray(visualize.bev_labels(labels).T),
        points=lo + (index + 0.5) * grid.voxel_size, point_labels=labels[tuple(index.T)],
        grid_min=tuple(lo), grid_max=tuple(lo + np.asarray(grid.dims) * grid.voxel_size),
        voxel_size=grid.voxel_size, camera_pose=static_camera_pose(p), class_names=class_names, palette=palette)


def picture_indices(count: int) -> tuple[int, ...]:
    """Frames (processing order) that get pictures: first, middle, last."""
    return tuple(sorted({0, (count - 1) // 2, count - 1})) if count > 0 else ()


def frame_title(index: int, count: int, frame: ProcessedFrame, model: str, random_weights: bool) -> str:
    """Picture title: weights warning, frame, stamp and model, then the frame's timings."""
    t = frame.result.timings_ms
    lines = [f"frame {index + 1}/{count}  |  stamp {frame.stamp_ns / 1e9:.3f} s  |  {model}",
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


def _clear_pictures(folder: Path) -> None:
    """Remove pictures of an earlier run (only this command's file names)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if re.fullmatch(r"frame_\d{4}_[a-z]+\.png|overview\.png", path.name):
                path.unlink()


def _remove_output_bag(path: Path) -> None:
    """Delete an earlier run's output bag; refuse anything that is not a rosbag2 folder."""
    if not path.exists():
        return
    if not (path.is_dir() and (path / "metadata.yaml").is_file()):
        raise FileExistsError(f"{path} exists and is not a rosbag2 folder; move it away or choose another --out")
    shutil.rmtree(path)


def node_params(checkpoint: Path | None, allow_random_weights: bool, device: str,
                overrides: tuple[str, ...] = ()) -> NodeParams:
    """The node's parameters for a KITTI-360 drive (``config/scenedino.yaml`` + ``kitti360.yaml``, then
    ``name:=value`` ``overrides``) with these weights and device."""
    p = load_params(default_params_files(), overrides)
    p = dataclasses.replace(p, checkpoint=str(checkpoint) if checkpoint else "",
                            allow_random_weights=allow_random_weights and checkpoint is None, device=device)
    validate(p)
    return p


def choose_checkpoint(given: Path | None, allow_random_weights: bool) -> Path | None:
    """``given``, else the demo checkpoint when present, else None (random weights, only if allowed).

    Raises:
        FileNotFoundError: ``given`` does not exist, or nothing is available and random weights are not allowed.
    """
    if given is not None:
        if not given.is_file():
            raise FileNotFoundError(f"checkpoint not found: {given}")
        return given
    if DEMO_CHECKPOINT.is_file():
        return DEMO_CHECKPOINT
    if allow_random_weights:
        return None
    raise FileNotFoundError(f"the demo checkpoint {DEMO_CHECKPOINT} is not there: pass --checkpoint PATH, or "
                            "--allow-random-weights to run an untrained model (outputs are meaningless)")


def run(out: Path, frames: int, checkpoint: Path | None, *, allow_random_weights: bool = False, device: str = "cpu",
        image_size: tuple[int, int] = FULL_SIZE, seed: int = DRIVE_SEED, overrides: tuple[str, ...] = (),
        progress: bool = True, on_frame: Callable[[ProcessedFrame], None] | None = None) -> RunSummary:
    """The first run (see the module docstring) into ``out``.

    Args:
        out: output folder.
        frames: frames of the synthetic drive (>= 1).
        checkpoint: SceneDINO checkpoint; None with ``allow_random_weights`` runs an untrained model.
        device: torch device.
        image_size: (H, W) of the synthetic camera images.
        seed: seed of the synthetic world.
        overrides: node parameter overrides, ``name:=value``.
        progress: show progress bars.
        on_frame: also called with every processed frame (e.g. a ``LiveStream``).

    Raises:
        FileNotFoundError, ValueError, BagError, PipelineError: unusable inputs or parameters.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    settings = DriveSettings(seed=seed, frames=frames, image_size=tuple(image_size))
    drive, input_bag, output_bag = out / DRIVE_DIR, out / INPUT_BAG, out / OUTPUT_BAG
    p = node_params(checkpoint, allow_random_weights, device, overrides)
    pipeline = Pipeline(pipeline_config(p))
    model = pipeline.describe()

    reused = make_drive(drive, settings, progress)
    if not (reused and (input_bag / "metadata.yaml").is_file()):
        _logger.info("converting the drive to a rosbag2 (MCAP) bag: %s", input_bag)
        kitti360_to_bag.convert(drive, settings.sequence, input_bag, storage="mcap", velodyne=True, overwrite=True,
                                progress=progress)
    _remove_output_bag(output_bag)
    pictures_dir = out / PICTURES_DIR
    _clear_pictures(pictures_dir)
    pictures = FramePictures(pictures_dir, p, frames, model, pipeline.random_weights)
    timings: list[dict[str, float]] = []

    def each_frame(frame: ProcessedFrame) -> None:
        index = len(timings)
        timings.append(dict(frame.result.timings_ms))
        pictures(index, frame)
        if on_frame is not None:
            on_frame(frame)

    summary = process_bag(input_bag, output_bag, p, image_topic=kitti360_to_bag.TOPICS.image(CAMERA),
                          include_inputs=True, storage="mcap", on_frame=each_frame, progress=progress,
                          pipeline=pipeline)
    stages = sorted({k for t in timings for k in t})
    mean_model_ms = {k: float(np.mean([t.get(k, 0.0) for t in timings])) for k in stages}
    mcaps = mcap_files(output_bag)
    result = RunSummary(
        out=out, drive=drive, drive_reused=reused, input_bag=input_bag, output_bag=output_bag,
        output_mcap=mcaps[0] if mcaps else None, pictures=tuple(pictures.written), overview=pictures.overview,
        summary_json=out / "summary.json", model=model, device=str(pipeline.device),
        random_weights=pipeline.random_weights, frames_processed=summary.frames_processed,
        frames_skipped=summary.frames_skipped, mean_frame_ms=summary.mean_frame_ms, mean_model_ms=mean_model_ms)
    atomic_write_text(result.summary_json, json.dumps(
        {**{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()},
         "pictures": [str(x) for x in result.pictures], "drive_settings": dataclasses.asdict(settings),
         "frame_timings_ms": timings}, indent=2) + "\n")
    return result


class LiveStream:
    """Streams processed frames to a live view (the ``on_frame`` hook of ``run``): per frame /tf_static (again, for
    viewers that connect late), the input bag's messages since the previous frame, then the outputs.

    Args:
        view: the running view.
        input_bag: the converted drive (opened at the first frame, when it exists).
    """

    def __init__(self, view: FoxgloveView, input_bag: Path):
        self.view, self.input_bag = view, input_bag
        self._feed: BagFeed | None = None
        self.last: ProcessedFrame | None = None

    def __call__(self, frame: ProcessedFrame) -> None:
        if self._feed is None:
            self._feed = BagFeed(self.input_bag, VIEW_INPUT_TOPICS)
        output_topics = {topic for topic, _ in frame.messages}
        for stamp, msg in self._feed.until(frame.stamp_ns):
            if msg.topic not in output_topics:
                self.view.publish_raw(msg, stamp)
        self._send_outputs(frame)
        self.last = frame

    def _send_outputs(self, frame: ProcessedFrame) -> None:
        for _, msg in self._feed.static if self._feed is not None else ():
            self.view.publish_raw(msg, frame.stamp_ns)
        for topic, msg in frame.messages:
            self.view.publish(topic, msg, frame.stamp_ns)

    def hold(self, period_s: float = 1.0) -> None:
        """Re-send the last frame's outputs every ``period_s`` until Ctrl-C."""
        try:
            while True:
                if self.last is not None:
                    self._send_outputs(self.last)
                time.sleep(period_s)
        except KeyboardInterrupt:
            _logger.info("live view stopped")


# ----------------------------------------------------------------------------- command line

def _image_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or int(m.group(1)) < 8 or int(m.group(2)) < 8:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 376x1408), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="SceneDINO end to end on a short synthetic KITTI-360 drive: a rosbag2 of the drive, "
        "the node's processing into an MCAP with the outputs, pictures and a summary (see OUT/summary.json).",
        epilog="Written into OUT: kitti360/ (the drive, reused by later runs), drive/ (its bag), scenedino_outputs/ "
        "(MCAP: inputs + /scenedino/* outputs), pictures/, summary.json. Everything stays on this machine; --viz "
        "listens on 127.0.0.1 only.")
    ap.add_argument("--out", type=Path, default=Path("outputs/first_run"), help="output folder "
                    "(default: outputs/first_run)")
    ap.add_argument("--frames", type=_positive, default=20, help="frames of the synthetic drive (default: 20)")
    ap.add_argument("--checkpoint", type=Path, help=f"SceneDINO checkpoint (default: {DEMO_CHECKPOINT.name} "
                    "in checkpoints/)")
    ap.add_argument("--allow-random-weights", action="store_true", help="without a checkpoint, run an untrained "
                    "model (the outputs are meaningless; announced everywhere)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N (default: cpu)")
    ap.add_argument("--viz", action="store_true", help="stream the outputs live to a Foxglove WebSocket server on "
                    "127.0.0.1 (open it in the Foxglove app: Open connection -> Foxglove WebSocket)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"--viz port (default: {DEFAULT_PORT})")
    ap.add_argument("--viz-hold", action="store_true", help="with --viz: keep the server up after the run, "
                    "re-sending the last frame every second, until Ctrl-C")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="node parameter override, as 'ros2 run ... -p' (repeatable), e.g. grid.voxel_size_m:=0.4")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--image-size", type=_image_size, default=FULL_SIZE, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=DRIVE_SEED, help=argparse.SUPPRESS)
    return ap


def format_summary(s: RunSummary) -> str:
    """The text printed at the end of a run."""
    t = s.mean_model_ms
    model_line = (f"{t.get('total', float('nan')):.0f} ms in the model pipeline (encode {t.get('encode', 0):.0f}, "
                  f"voxels {t.get('voxels', 0):.0f}, render {t.get('render', 0):.0f})")
    n_more = len(s.pictures)
    lines = [
        f"{PROG}: done" + (f"  --  {RANDOM_WARNING}" if s.random_weights else ""),
        f"  model      {s.model} on {s.device}",
        f"  drive      {s.drive}  (synthetic KITTI-360, {'reused' if s.drive_reused else 'written'})",
        f"  input bag  {s.input_bag}",
        f"  outputs    {s.output_mcap or s.output_bag}  (inputs + /scenedino/* outputs; summary.md beside it)",
        f"  frames     {s.frames_processed} processed, {s.frames_skipped} skipped; {s.mean_frame_ms:.0f} ms per frame "
        f"({model_line})",
        f"  pictures   {s.overview or '(none)'}" + (f" + {n_more} per-frame pictures in "
                                                     f"{s.overview.parent if s.overview else s.out}" if n_more else ""),
        f"  summary    {s.summary_json}",
        "Look at it:",
        f"  Foxglove app (or Lichtblick): open the file {s.output_mcap or s.output_bag}",
        f"  ROS 2: ros2 bag play {s.output_bag}   (topics /scenedino/*, /tf, /tf_static, /kitti360/*)",
        f"  live:  {PROG} --viz, then in Foxglove: Open connection -> ws://127.0.0.1:{DEFAULT_PORT}",
    ]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.viz_hold and not args.viz:
        print(f"{PROG}: error: --viz-hold needs --viz", file=sys.stderr)
        return 2
    view: FoxgloveView | None = None
    try:
        checkpoint = choose_checkpoint(args.checkpoint, args.allow_random_weights)
        if checkpoint is None:
            print(RANDOM_BANNER, flush=True)
        live = None
        if args.viz:
            view = FoxgloveView(args.port)
            live = LiveStream(view, args.out / INPUT_BAG)
            print(f"{PROG}: live view on {view.url} (Foxglove app: Open connection -> Foxglove WebSocket -> "
                  f"{view.url})", flush=True)
        summary = run(args.out, args.frames, checkpoint, allow_random_weights=args.allow_random_weights,
                      device=args.device, image_size=args.image_size, seed=args.seed, overrides=tuple(args.param),
                      progress=not args.no_progress, on_frame=live)
        print(format_summary(summary), flush=True)
        if live is not None and args.viz_hold:
            print(f"{PROG}: holding the live view on {live.view.url}, re-sending the last frame every second; "
                  "Ctrl-C to stop", flush=True)
            signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly on SIGTERM (kill, docker stop)
            live.hold()
    except (FileNotFoundError, FileExistsError, ValueError, BagError, PipelineError, RuntimeError, ImportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if view is not None:
            view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
