"""The first run (``scenedino-first-run``): the project end to end on a synthetic drive, with pictures.

1. writes a short synthetic drive of the project's street world (``scenedino_core.data.synthetic``) as a real-format
   KITTI-360 tree (``OUT/kitti360``; kept and reused when it is already there with the same settings);
2. converts it to a rosbag2 MCAP bag (``OUT/drive``: both cameras, CameraInfo, Velodyne, ``/tf``, ``/tf_static``;
   ``scenedino_ros.bag.kitti360``);
3. runs the node's processing over camera 00 of that bag (``scenedino_ros.bag.process``, the node's parameters from
   ``config/scenedino.yaml`` + ``config/kitti360.yaml``) into ``OUT/scenedino_outputs`` (MCAP, inputs included);
4. draws pictures of a few frames (``OUT/pictures``: input, rendered depth, rendered semantics, bird's-eye
   occupancy, 3D semantic voxels, one ``overview.png``), and of the local semantic map that the node's processing
   fused over the whole drive at the bag's ``/tf`` poses (``map_bev.png``, ``map_3d.png``: the fused map next to
   the last frame's own prediction and the world's exact geometry; ``scenedino_ros.demo.map_pictures``), and writes
   ``OUT/summary.json`` (with the size of every part of the output and of each output topic);
5. with ``--viz``, streams every processed frame live to a Foxglove WebSocket server on 127.0.0.1
   (``scenedino_ros.demo.live_view``).

Output size: the node's parameters plus ``FIRST_RUN_PARAMS``: the cloud and the markers carry only the surface
voxels (what a 3D view shows) instead of every occupied voxel, several times less data for the same view; the dense
``~/voxel_grid`` keeps every voxel.

Weights: ``--checkpoint``, else the committed demo checkpoint (``checkpoints/scenedino_synthetic_demo.pt``); with
neither, ``--allow-random-weights`` runs an untrained model, announced in the output and in every picture title.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenedino_core.data.synthetic import FULL_SIZE, StreetConfig, StreetWorld, write_kitti360
from scenedino_core.files import atomic_write_text
from scenedino_core.labels import class_table
from scenedino_core.pipeline import Pipeline

from ..bag import kitti360
from ..bag.process import MAP_FILE, ProcessedFrame, process_bag
from ..outputs import pipeline_config
from ..params import NodeParams, validate
from ..params_file import default_params_files, load_params
from . import map_pictures
from .pictures import RANDOM_WARNING, FramePictures, clear_pictures

_logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
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
#: Node parameters the first run sets on top of the parameter files (``--param`` overrides still win): surface
#: voxels only in ~/semantic_points and ~/voxels (with the demo model about 7x fewer points per frame).
FIRST_RUN_PARAMS = ("points.surface_only:=true",)
#: Topic of the labelled cloud in the output bag.
CLOUD_TOPIC = "/scenedino/semantic_points"


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
    folder_bytes: dict[str, int] = dataclasses.field(default_factory=dict)
    """Bytes on disk of each part of ``out`` (drive, input bag, output bag, pictures)."""
    topic_bytes: dict[str, int] = dataclasses.field(default_factory=dict)
    """Message bytes (before the MCAP's zstd compression) of each topic of the output bag, largest first."""
    topic_messages: dict[str, int] = dataclasses.field(default_factory=dict)
    """Messages of each topic of the output bag."""
    mean_occupied_voxels: float = float("nan")
    """Occupied voxels per frame (mean)."""
    mean_cloud_points: float = float("nan")
    """Points per ~/semantic_points cloud (mean): the surface voxels with ``points.surface_only``."""
    surface_only: bool = False
    """``points.surface_only`` was set."""
    map_pictures: tuple[Path, ...] = ()
    """``map_bev.png`` and ``map_3d.png`` (empty: mapping off, or no frame had a pose)."""
    map_frames: int = 0
    """Frames fused into the map."""
    map_iou: dict[str, float] = dataclasses.field(default_factory=dict)
    """Occupancy IoU against the world's exact geometry of the last frame alone and of the fused map, on the voxels
    that frame observed (``map_pictures.compare``)."""
    map_file: Path | None = None
    """The final map (``SemanticMap.load``), a ``.ply`` beside it."""


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


def disk_bytes(path: Path) -> int:
    """Bytes of a file, or of every file below a folder (0 when absent)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def topic_sizes(mcaps: list[Path]) -> tuple[dict[str, int], dict[str, int]]:
    """(topic -> message bytes before compression, largest first; topic -> messages) of MCAP files."""
    from mcap.reader import make_reader

    size: dict[str, int] = {}
    count: dict[str, int] = {}
    for path in mcaps:
        with path.open("rb") as f:
            for _, channel, message in make_reader(f).iter_messages():
                size[channel.topic] = size.get(channel.topic, 0) + len(message.data)
                count[channel.topic] = count.get(channel.topic, 0) + 1
    return dict(sorted(size.items(), key=lambda kv: -kv[1])), count


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
    ``FIRST_RUN_PARAMS``, then ``name:=value`` ``overrides``) with these weights and device."""
    p = load_params(default_params_files(), FIRST_RUN_PARAMS + tuple(overrides))
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


def _map_pictures(last: ProcessedFrame | None, p: NodeParams, settings: DriveSettings, folder: Path, model: str,
                  random_weights: bool) -> tuple[list[Path], dict[str, float]]:
    """Draw the map pictures from the last fused frame (its ``map``): (pictures, IoU figures)."""
    if last is None or last.map is None:
        return [], {}
    world = StreetWorld.generate(settings.seed, StreetConfig(num_frames=settings.frames))
    comparison = map_pictures.compare(last.map, last.result, world)
    cfg = last.map.config
    title = (f"local semantic map in '{last.map.settings.frame}' after the drive: {comparison.frames} frames\n"
             f"window of {'x'.join(map(str, cfg.dims))} voxels of {cfg.voxel_size_m:g} m\n{model}")
    names, palette = class_table(p.class_colors_rgb)
    drawn = map_pictures.draw(folder, comparison, names, palette, f"{RANDOM_WARNING}\n{title}" if random_weights
                              else title, (p.occupancy_min_height_m, p.occupancy_max_height_m),
                              last.map.settings.ground_labels, "red" if random_weights else "black")
    return drawn, comparison.iou


def run(out: Path, frames: int, checkpoint: Path | None, *, allow_random_weights: bool = False, device: str = "cpu",
        image_size: tuple[int, int] = FULL_SIZE, seed: int = DRIVE_SEED, overrides: tuple[str, ...] = (),
        progress: bool = True, on_start: Callable[[NodeParams], object] | None = None,
        on_frame: Callable[[ProcessedFrame], None] | None = None) -> RunSummary:
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
        on_start: called with the node parameters once the input bag exists, before the first frame (e.g.
            ``LiveStream.start``, which advertises every channel of the live view).
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
        kitti360.convert(drive, settings.sequence, input_bag, storage="mcap", velodyne=True, overwrite=True,
                                progress=progress)
    _remove_output_bag(output_bag)
    pictures_dir = out / PICTURES_DIR
    clear_pictures(pictures_dir)
    pictures = FramePictures(pictures_dir, p, frames, model, pipeline.random_weights)
    timings: list[dict[str, float]] = []
    occupied: list[int] = []
    cloud_points: list[int] = []
    last_fused: list[ProcessedFrame] = []
    if on_start is not None:
        on_start(p)

    def each_frame(frame: ProcessedFrame) -> None:
        index = len(timings)
        timings.append(dict(frame.result.timings_ms))
        occupied.append(int(frame.result.points.shape[0]))
        cloud_points.extend(int(m.width) for topic, m in frame.messages if topic == CLOUD_TOPIC)
        pictures(index, frame)
        if frame.map_outcome is not None and frame.map_outcome.fused:
            last_fused[:] = [frame]
        if on_frame is not None:
            on_frame(frame)

    summary = process_bag(input_bag, output_bag, p, image_topic=kitti360.TOPICS.image(CAMERA),
                          include_inputs=True, storage="mcap", on_frame=each_frame, progress=progress,
                          pipeline=pipeline)
    map_drawn, map_iou = _map_pictures(last_fused[0] if last_fused else None, p, settings, pictures_dir, model,
                                       pipeline.random_weights)
    stages = sorted({k for t in timings for k in t})
    mean_model_ms = {k: float(np.mean([t.get(k, 0.0) for t in timings])) for k in stages}
    mcaps = mcap_files(output_bag)
    topic_bytes, topic_messages = topic_sizes(mcaps)
    folders = {DRIVE_DIR: drive, INPUT_BAG: input_bag, OUTPUT_BAG: output_bag, PICTURES_DIR: pictures_dir}
    result = RunSummary(
        out=out, drive=drive, drive_reused=reused, input_bag=input_bag, output_bag=output_bag,
        output_mcap=mcaps[0] if mcaps else None, pictures=tuple(pictures.written), overview=pictures.overview,
        summary_json=out / "summary.json", model=model, device=str(pipeline.device),
        random_weights=pipeline.random_weights, frames_processed=summary.frames_processed,
        frames_skipped=summary.frames_skipped, mean_frame_ms=summary.mean_frame_ms, mean_model_ms=mean_model_ms,
        folder_bytes={name: disk_bytes(path) for name, path in folders.items()}, topic_bytes=topic_bytes,
        topic_messages=topic_messages, mean_occupied_voxels=float(np.mean(occupied)) if occupied else float("nan"),
        mean_cloud_points=float(np.mean(cloud_points)) if cloud_points else float("nan"),
        surface_only=p.points_surface_only, map_pictures=tuple(map_drawn),
        map_frames=int(summary.map_statistics.get("frames_fused", 0)), map_iou=map_iou,
        map_file=output_bag / MAP_FILE if (output_bag / MAP_FILE).is_file() else None)
    atomic_write_text(result.summary_json, json.dumps(
        {**{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()},
         "pictures": [str(x) for x in result.pictures], "map_pictures": [str(x) for x in result.map_pictures],
         "drive_settings": dataclasses.asdict(settings),
         "frame_timings_ms": timings}, indent=2) + "\n")
    return result

