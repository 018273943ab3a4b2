"""Latency of one camera frame through the node's per-frame code, stage by stage, and the share outside the network.

One KITTI-360-sized frame (1408 x 376 ``rgb8`` Image + CameraInfo) goes through exactly what the node's worker runs
(``scenedino_ros.outputs``): image conversion (``frame_input``), camera pose and ``Pipeline.process`` (``infer``:
fit, encode, voxel query, rendered view, output arrays), every output message (``build_messages``) and their
serialisation (``rclpy.serialization.serialize_message``, the conversion ``publish`` does before handing the bytes
to DDS). Parameters: the node's KITTI-360 files (``config/scenedino.yaml`` + ``config/kitti360.yaml``: the
256 x 256 x 32 SSCBench grid), every output switched on and subscribed.

Weights: the full-size official-layout ViT-B/8 checkpoint of the tests (the upstream fixture's synthetic weights,
``test/fixture_weights.py``, written with the fixture's ``training_config.yaml`` and loaded by ``load_model``) when
``../shared/reference/upstream_v1`` exists, else random full-size weights. Occupancy scenarios shift the density
logit (the field's output bias), as ``benchmarks/ssc_query.py`` does; the protocol is unchanged:

* ``street``: about 2 % of the in-view voxels occupied, like a real street scene;
* ``demo``: about the committed demo checkpoint's occupancy (~810 k of 2.1 M voxels);
* ``dense``: the weights as loaded (~1.3 M occupied: a worst case).

Network stages: encode, voxels (the field and the semantic head over the grid, with the bookkeeping of the query:
density growth, selection of the voxels that need semantics), render. Everything else (conversion, pose, fit, output
arrays, messages, serialisation) is "outside the network". Each stage is the median over ``--frames`` frames after
one warm-up frame; "peak MB" is the process's peak resident memory over the scenario's frames (on a GPU: the peak
CUDA memory allocated). With ``--precision fp32,bf16`` (or ``--compile``) the variants run in
this process on the same input and the script reports the ratio and how many in-view voxel labels agree.

    python benchmarks/frame_latency.py [--device cpu|cuda] [--scenarios street,demo,dense] [--frames N]
        [--precision fp32[,bf16]] [--compile] [--threads N] [--out FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

try:
    from rclpy.serialization import serialize_message
except ImportError:  # message classes without rclpy (e.g. a GPU host's other Python): no serialisation stage
    serialize_message = None

from report import emit, peak_rss_mb, peak_rss_reset  # noqa: E402

from scenedino_core import images  # noqa: E402
from scenedino_core.checkpoint import load_model  # noqa: E402
from scenedino_core.config import SceneDINOConfig  # noqa: E402
from scenedino_core.data import kitti360_calib  # noqa: E402
from scenedino_core.labels import class_table  # noqa: E402
from scenedino_core.model import SceneDINO  # noqa: E402
from scenedino_core.pipeline import Pipeline  # noqa: E402
from scenedino_ros import outputs  # noqa: E402
from scenedino_ros.frames import FrameResolver  # noqa: E402
from scenedino_ros.params_file import default_params_files, load_params  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference" / "upstream_v1"
#: Density-logit shift of each occupancy scenario (chosen for the fixture weights and this input image).
SCENARIOS = {"street": -1.75, "demo": -0.1, "dense": 0.0}
NETWORK = ("encode", "voxels", "render")
OUTSIDE = ("convert", "pose", "fit", "outputs", "messages", "serialise")


def build_checkpoint(folder: Path, reference: Path = REFERENCE) -> tuple[Path, str]:
    """Write the tests' official-layout ViT-B/8 checkpoint (synthetic weights), or random full-size weights."""
    if (reference / "manifest_v1.tsv").is_file():
        from fixture_weights import write_official_checkpoint

        return (write_official_checkpoint(reference, folder, verify=False),
                "upstream fixture weights, official layout (ViT-B/8)")
    from scenedino_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return (save_checkpoint(folder / "random.pt", SceneDINO(SceneDINOConfig()).eval()),
            "random weights (ViT-B/8; ../shared/reference not found)")


def load_package(name: str, folder: Path):
    """Import the package in ``folder`` under another ``name`` (its relative imports stay inside it)."""
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Baseline:
    """The core and the ROS output modules of another checkout (``--baseline``), loaded beside the current ones."""

    def __init__(self, root: Path):
        if not (root / "scenedino_core" / "pipeline.py").is_file():
            raise SystemExit(f"--baseline {root}: no scenedino_core/pipeline.py there")
        load_package("baseline_scenedino_core", root / "scenedino_core")
        load_package("baseline_scenedino_ros", root / "scenedino_ros")
        self.pipeline = importlib.import_module("baseline_scenedino_core.pipeline")
        self.checkpoint = importlib.import_module("baseline_scenedino_core.checkpoint")
        self.outputs = importlib.import_module("baseline_scenedino_ros.outputs")
        self.commit = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h"], capture_output=True,
                                     text=True).stdout.strip() or root.name

    def make_pipeline(self, checkpoint: Path, config, shift: float):
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(self.pipeline.PipelineConfig)}
        model = self.checkpoint.load_model(checkpoint, device=config.device)
        with torch.no_grad():
            model.mlp.lin_out.bias[0] += shift
        return self.pipeline.Pipeline(self.pipeline.PipelineConfig(**fields), model=model)


def compare(base: Baseline, base_pipeline, pipeline: Pipeline, p, repeats: int) -> list[tuple[str, float, float]]:
    """The voxel query and the stages after it, baseline and current alternating on the same encoded image.

    Returns (stage, baseline ms, current ms) medians; raises if the two disagree on the occupied voxels.
    """
    resolver = FrameResolver(p.target_frame, outputs.static_camera_pose(p))
    class_names, palette = class_table(p.class_colors_rgb)
    image, info = camera_messages()
    inp = outputs.frame_input(image, info, p)
    fs = resolver.resolve(inp.camera_frame, inp.stamp)
    out_from_grid = np.asarray(fs.out_from_grid, dtype=np.float64)
    frame, base_frame = pipeline.encode(inp.rgb, inp.intrinsics), base_pipeline.encode(inp.rgb, inp.intrinsics)
    K = frame.fitted.intrinsics
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in ("voxels", "outputs", "messages", "serialise")}
    for _ in range(repeats):
        t = [time.perf_counter()]
        pred = base_pipeline.predict(base_frame, fs.cam_from_grid)
        sync(pipeline.device)
        t.append(time.perf_counter())
        vox = pipeline.query_voxels(frame, fs.cam_from_grid)
        sync(pipeline.device)
        t.append(time.perf_counter())
        base_result = base_pipeline._outputs(pred, out_from_grid, None, None, K)
        t.append(time.perf_counter())
        result = pipeline._outputs(vox, out_from_grid, None, None, K, True)
        t.append(time.perf_counter())
        base_msgs = base.outputs.build_messages(base_result, inp.stamp, fs.frame_id, inp.camera_frame, p,
                                                class_names, palette)
        t.append(time.perf_counter())
        msgs = outputs.build_messages(result, inp.stamp, fs.frame_id, inp.camera_frame, p, class_names, palette)
        t.append(time.perf_counter())
        for _, msg in base_msgs if serialize_message else ():
            serialize_message(msg)
        t.append(time.perf_counter())
        for _, msg in msgs if serialize_message else ():
            serialize_message(msg)
        t.append(time.perf_counter())
        for i, stage in enumerate(runs):
            runs[stage].append(((t[2 * i + 1] - t[2 * i]) * 1e3, (t[2 * i + 2] - t[2 * i + 1]) * 1e3))
    if not np.array_equal(result.voxel_labels, base_result.voxel_labels):
        raise AssertionError("the baseline and the current voxel labels differ")
    return [(stage, statistics.median(b for b, _ in v), statistics.median(c for _, c in v))
            for stage, v in runs.items()]


def camera_messages(stamp_ns: int = 1_700_000_000_000_000_000) -> tuple[Image, CameraInfo]:
    """A 1408 x 376 rgb8 street image and its CameraInfo (KITTI-360 camera 00, rectified: intrinsics in P)."""
    h, w = kitti360_calib.CAM00_SIZE_HW
    rgb = images.synthetic_street_image((h, w))
    image = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=rgb.tobytes())
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    fx, fy, cx, cy = kitti360_calib.CAM00_INTRINSICS
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    for msg in (image, info):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10 ** 9)
        msg.header.frame_id = "camera_00_optical"
    return image, info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Frame:
    """One frame through the node's per-frame code; ``ms`` per stage, ``result`` and ``messages`` kept."""

    def __init__(self, pipeline: Pipeline, resolver: FrameResolver, p, image: Image, info: CameraInfo,
                 class_names, palette):
        ms: dict[str, float] = {}
        t0 = time.perf_counter()
        inp = outputs.frame_input(image, info, p)
        t1 = time.perf_counter()
        fs = resolver.resolve(inp.camera_frame, inp.stamp)
        t2 = time.perf_counter()
        result = pipeline.process(inp.rgb, inp.intrinsics, fs.cam_from_grid, fs.out_from_grid)
        sync(pipeline.device)
        t3 = time.perf_counter()
        msgs = outputs.build_messages(result, inp.stamp, fs.frame_id, inp.camera_frame, p, class_names, palette)
        t4 = time.perf_counter()
        self.sizes = {}
        self.serialise_ms = {}
        for name, msg in msgs:
            s = time.perf_counter()
            self.sizes[name] = len(serialize_message(msg)) if serialize_message else 0
            self.serialise_ms[name] = (time.perf_counter() - s) * 1e3 if serialize_message else float("nan")
        t5 = time.perf_counter()
        ms["convert"], ms["pose"] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        for k in ("fit", "encode", "voxels", "render", "outputs"):
            ms[k] = result.timings_ms.get(k, 0.0)
        ms["process_other"] = max(0.0, (t3 - t2) * 1e3 - sum(ms[k] for k in ("fit", "encode", "voxels", "render",
                                                                              "outputs")))
        ms["messages"] = (t4 - t3) * 1e3
        ms["serialise"] = (t5 - t4) * 1e3 if serialize_message else float("nan")
        ms["total"] = (t5 - t0) * 1e3
        self.ms = ms
        self.result = result
        self.build_ms = {name: _build_time(name, result, inp, fs, p, class_names, palette) for name, _ in msgs}


def _build_time(name, result, inp, fs, p, class_names, palette) -> float:
    s = time.perf_counter()
    outputs.build_messages(result, inp.stamp, fs.frame_id, inp.camera_frame, p, class_names, palette,
                           outputs=(name,))
    return (time.perf_counter() - s) * 1e3


def median_ms(frames: list[Frame], attr: str = "ms") -> dict[str, float]:
    keys = getattr(frames[0], attr)
    return {k: statistics.median(getattr(f, attr)[k] for f in frames) for k in keys}


def run_variant(model: SceneDINO, p, n_frames: int, precision: str, compiled: bool) -> tuple[list[Frame], Pipeline]:
    overrides = {"precision": precision}
    cfg = dataclasses.replace(outputs.pipeline_config(p), **overrides)
    if compiled:
        cfg = dataclasses.replace(cfg, compile=True)
    pipeline = Pipeline(cfg, model=model)
    resolver = FrameResolver(p.target_frame, outputs.static_camera_pose(p))
    class_names, palette = class_table(p.class_colors_rgb)
    image, info = camera_messages()
    frames = []
    peak_rss_reset()
    if pipeline.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    for i in range(n_frames + 1):  # the first is the warm-up
        frame = Frame(pipeline, resolver, p, image, info, class_names, palette)
        if i:
            frames.append(frame)
    frames[-1].peak_mb = peak_rss_mb()
    if pipeline.device.type == "cuda":
        frames[-1].peak_mb = torch.cuda.max_memory_allocated(pipeline.device) / 2 ** 20
    return frames, pipeline


def stage_table(rows: list[tuple[str, dict[str, float], int, float]]) -> list[str]:
    stages = ("convert", "pose", "fit", "encode", "voxels", "render", "outputs", "messages", "serialise")
    lines = ["| scenario | occupied voxels | " + " | ".join(stages) + " | total ms | network ms | outside ms | "
             "outside share | peak MB |", "|---|---|" + "---|" * len(stages) + "---|---|---|---|---|"]
    for label, ms, occupied, peak in rows:
        network = sum(ms[k] for k in NETWORK)
        outside = sum(ms[k] for k in OUTSIDE if not np.isnan(ms[k]))  # serialise is NaN without rclpy
        lines.append(f"| {label} | {occupied} | " + " | ".join(f"{ms[k]:.1f}" for k in stages)
                     + f" | {ms['total']:.0f} | {network:.0f} | {outside:.1f} | {outside / ms['total']:.1%} | "
                       f"{peak:.0f} |")
    return lines


def message_table(rows: list[tuple[str, dict[str, float], dict[str, float], dict[str, int]]]) -> list[str]:
    lines = ["| scenario | message | build ms | serialise ms | bytes |", "|---|---|---|---|---|"]
    for label, build, ser, sizes in rows:
        for name in ser:
            size = f"{sizes[name]:,}" if serialize_message else "n/a"
            lines.append(f"| {label} | {name} | {build[name]:.1f} | {ser[name]:.1f} | {size} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--scenarios", default="street,demo", help=f"comma-separated, from {', '.join(SCENARIOS)}")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per scenario (after one warm-up)")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, or both (fp32,bf16: compared)")
    parser.add_argument("--compile", action="store_true", help="also run the torch.compile path and compare")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of another commit (e.g. `git worktree add /tmp/base <commit>`): its voxel "
                             "query, output arrays and message builders run alternating with the current ones on "
                             "the same encoded image, in this process")
    parser.add_argument("--repeats", type=int, default=3, help="alternations for --baseline")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None, help="also write the tables as markdown")
    parser.add_argument("--reference", type=Path, default=REFERENCE,
                        help="the upstream_v1 fixture folder whose weights to use (default: ../shared beside the "
                             "checkout; random full-size weights when it is absent)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    precisions = [s.strip() for s in args.precision.split(",")]
    p = load_params(default_params_files(), [f"device:={args.device}"])
    base = Baseline(args.baseline) if args.baseline else None
    work = Path(tempfile.mkdtemp(prefix="frame_latency."))
    try:
        checkpoint, weights = build_checkpoint(work, args.reference)
        model = load_model(checkpoint, device=p.device)
        gc.freeze()  # as the node after its start-up: collections skip the model's objects
        if not base:
            shutil.rmtree(work)
        text = run(args, p, model, weights, scenarios, precisions, base, checkpoint)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(text, args.out)


def run(args, p, model: SceneDINO, weights: str, scenarios: list[str], precisions: list[str],
        base: Baseline | None, checkpoint: Path) -> str:
    """Every scenario and variant; the tables as markdown."""
    load_before = os.getloadavg()[0]
    stage_rows, message_rows, compare_rows, baseline_rows = [], [], [], []
    for scenario in scenarios:
        shift = SCENARIOS[scenario]
        with torch.no_grad():
            model.mlp.lin_out.bias[0] += shift
        try:
            variants = [(prec, False) for prec in precisions] + ([(precisions[0], True)] if args.compile else [])
            first = None
            for prec, compiled in variants:
                frames, pipeline = run_variant(model, p, args.frames, prec, compiled)
                label = f"{scenario}, {prec}{', compiled' if compiled else ''}"
                ms = median_ms(frames)
                occupied = len(frames[-1].result.points)
                stage_rows.append((label, ms, occupied, frames[-1].peak_mb))
                message_rows.append((label, median_ms(frames, "build_ms"), median_ms(frames, "serialise_ms"),
                                     frames[-1].sizes))
                labels = frames[-1].result.voxel_labels
                if first is None:
                    first = (ms, labels)
                else:
                    in_view = first[1] != 255
                    agree = float((labels[in_view] == first[1][in_view]).mean())
                    compare_rows.append((label, first[0]["total"] / ms["total"],
                                         sum(first[0][k] for k in NETWORK) / sum(ms[k] for k in NETWORK), agree))
            if base:
                base_pipeline = base.make_pipeline(checkpoint, dataclasses.replace(pipeline.config, precision="fp32",
                                                                                   compile=False), shift)
                current = Pipeline(dataclasses.replace(pipeline.config, precision="fp32", compile=False), model=model)
                for stage, b, c in compare(base, base_pipeline, current, p, args.repeats):
                    baseline_rows.append((scenario, stage, b, c))
                del base_pipeline
        finally:
            with torch.no_grad():
                model.mlp.lin_out.bias[0] -= shift

    device = torch.cuda.get_device_name(p.device) if p.device.startswith("cuda") else "CPU"
    lines = [f"Frame latency: {weights}, {model.config.image_size[1]}x{model.config.image_size[0]} model input, "
             f"1408x376 rgb8 input, grid 256x256x32 (0.2 m); {device}, {args.threads} threads, torch "
             f"{torch.__version__}; median of {args.frames} frame(s) after a warm-up (ms); load average "
             f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end", ""]
    if serialize_message is None:
        lines += ["rclpy is not importable in this Python: serialise is not measured (n/a, left out of the "
                  "outside-the-network sum); messages are built with the generated message classes.", ""]
    lines += stage_table(stage_rows)
    lines += ["", "Messages (every output on; build = `build_messages` for that output alone):", ""]
    lines += message_table(message_rows)
    if compare_rows:
        lines += ["", "| variant (vs the first) | frame speed-up | network speed-up | in-view voxel labels identical |",
                  "|---|---|---|---|"]
        lines += [f"| {label} | {a:.2f}x | {b:.2f}x | {c:.2%} |" for label, a, b, c in compare_rows]
    if baseline_rows:
        lines += ["", f"Against the baseline {base.commit} in this process (alternating, median of {args.repeats}; "
                  "same encoded image, identical voxel labels; every output built):", "",
                  "| scenario | stage | baseline ms | current ms | speed-up |", "|---|---|---|---|---|"]
        lines += [f"| {sc} | {stage} | {b:.1f} | {c:.1f} | {b / c:.2f}x |" for sc, stage, b, c in baseline_rows]
        for sc in dict.fromkeys(r[0] for r in baseline_rows):
            after = [r for r in baseline_rows if r[0] == sc and r[1] != "voxels"]
            b, c = sum(r[2] for r in after), sum(r[3] for r in after)
            lines.append(f"| {sc} | outputs + messages + serialise | {b:.1f} | {c:.1f} | {b / c:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
