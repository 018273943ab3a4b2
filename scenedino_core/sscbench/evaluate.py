"""SSCBench-KITTI-360 semantic scene completion evaluation: ``evaluate_sscbench(EvalOptions(...))``.

Per frame: read the 1408x376 image, resize it whole to the model input, encode, query the SSCBench grid with
``voxels.predict_voxels`` (THE voxel query), and accumulate counts with ``sscbench.metrics.accumulate_frame``.
Per-frame counts are cached as JSON under ``OUT/frames/`` (atomic writes, ``frame_cache``), so an interrupted run
resumes where it stopped; the final ``results.json``, ``results.md`` and PNG plots (``report_files``) are written
from the summed counts.

Protocol choices (also written into results.md / results.json):

* ``assign_on="test"`` (default, the reference's protocol): the ``direct`` report uses the checkpoint's
  cluster -> class assignment (the original training picked it on labelled images of the test sequence 0009); the
  ``hungarian`` report re-labels with a 16-way Hungarian matching computed on the evaluated test frames.
* ``assign_on="val"``: both choices are made on the validation sequence (default 0006) instead: k-means modes get a
  cluster -> class assignment by Hungarian matching of clusters to SSC labels on the val frames, and the
  ``hungarian`` report's permutation is computed on the val frames; test labels then never influence a choice
  (``val_assignment``, with the pure parts in ``assignment``).

Why trainId 255 -> 0 before ``accumulate_frame`` is exact: ``predict_voxels`` leaves trainId 255 only where it did
not compute semantics, i.e. (a) outside the FOV mask, which the metrics never evaluate (evaluated voxels are
(GT != 255) & FOV, also for the sweep), or (b) inside the FOV with grown density below the semantic threshold.
By default that threshold is the smallest σ of the precision/recall sweep (0.001) <= the 0.2 cut-off, and voxels
with grown σ below a threshold t are predicted empty at t whatever their class, so the placeholder class is never
read, neither by the range metrics (cut-off 0.2) nor by any sweep point. With ``fast_sweep`` semantics are only
computed above the 0.2 cut-off: the range metrics stay exact, but sweep points below 0.2 then count those voxels
as occupied (the reference would count predicted sky/rider there as empty).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import labels
from ..checkpoint import load_model
from ..files import file_sha256
from ..model import DEFAULT_CHUNK, SceneDINO
from ..semantics import KMEANS_MODES, PredictionMode
from ..voxels import SIGMA_THRESHOLD, VoxelPrediction, predict_voxels
from . import grid
from . import metrics as M
from .assignment import assign_clusters, cluster_assignment, head_confusion, ssc_confusion_from_heads
from .dataset import SSCBenchKitti360, SSCBenchSample, model_input
from .frame_cache import FrameCache, run_frames
from .report_files import write_outputs

logger = logging.getLogger(__name__)

#: Bump when anything that changes cached per-frame numbers changes.
PROTOCOL_VERSION = 1
ASSIGN_CHOICES = ("test", "val")


@dataclass(frozen=True)
class EvalOptions:
    """Everything one evaluation run depends on."""

    sscbench: Path
    voxel_gt: Path
    checkpoint: Path
    out: Path
    sequence: str = "09"
    frames: tuple[int, ...] | None = None
    mode: str = PredictionMode.STEGO_KMEANS.value
    device: str = "cpu"
    assign_on: str = "test"
    val_sequence: str = "06"
    val_frames: tuple[int, ...] | None = None
    val_voxel_gt: Path | None = None
    """Voxel GT root of the val sequence (default: ``voxel_gt``)."""
    config: Path | None = None
    """training_config.yaml of an official checkpoint (default: beside it)."""
    fast_sweep: bool = False
    chunk_size: int = DEFAULT_CHUNK
    name: str | None = None
    sigma_cutoff: float = SIGMA_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("sscbench", "voxel_gt", "checkpoint", "out", "val_voxel_gt", "config"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        for name in ("frames", "val_frames"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(f) for f in value))
        PredictionMode.parse(self.mode)
        if self.assign_on not in ASSIGN_CHOICES:
            raise ValueError(f"--assign-on must be one of {ASSIGN_CHOICES}, got {self.assign_on!r}")
        if self.chunk_size <= 0:
            raise ValueError(f"chunk size must be > 0, got {self.chunk_size}")

    @property
    def prediction_mode(self) -> PredictionMode:
        return PredictionMode.parse(self.mode)

    @property
    def semantic_threshold(self) -> float:
        """Grown σ above which ``predict_voxels`` computes semantics (see module doc)."""
        return self.sigma_cutoff if self.fast_sweep else min(min(M.SIGMA_SWEEP_VALUES), self.sigma_cutoff)

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        ckpt = Path(self.checkpoint)
        return ckpt.parent.name if ckpt.stem == "checkpoint" and ckpt.parent.name else ckpt.stem


class Runtime:
    """Lazily loaded model and grid (a fully cached run never loads the checkpoint)."""

    def __init__(self, opts: EvalOptions):
        self.opts = opts

    @cached_property
    def device(self) -> torch.device:
        dev = torch.device(self.opts.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.opts.device}: CUDA is not available on this machine")
        return dev

    @cached_property
    def model(self) -> SceneDINO:
        logger.info("loading %s", self.opts.checkpoint)
        return load_model(self.opts.checkpoint, device=self.device, config=self.opts.config)

    @cached_property
    def centers(self) -> torch.Tensor:
        """(256, 256, 32, 3) camera-frame voxel centres on the device (hard-coded SSCBench calibration)."""
        return torch.from_numpy(grid.voxel_centers_camera()).to(self.device)

    @cached_property
    def fov(self) -> np.ndarray:
        """(256, 256, 32) bool FOV mask (hard-coded SSCBench K, 1408x376)."""
        return grid.fov_mask()

    def predict(self, sample: SSCBenchSample, K_full: np.ndarray) -> VoxelPrediction:
        model = self.model
        image, K_norm = model_input(sample.rgb, K_full, model.config.image_size)
        with torch.no_grad():
            volume = model.encode(image.to(self.device), K_norm.to(self.device), normalized=True)
        pred = predict_voxels(model, volume, self.centers, grid.VOXEL_SIZE, mode=self.opts.prediction_mode,
                              sigma_threshold=self.opts.semantic_threshold, semantic_mask=self.fov,
                              chunk_size=self.opts.chunk_size)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return pred


def _base_fingerprint(opts: EvalOptions, ckpt_sha: str, config_sha: str | None, K_full: np.ndarray) -> dict[str, Any]:
    return {
        "protocol_version": PROTOCOL_VERSION, "checkpoint_sha256": ckpt_sha, "config_sha256": config_sha,
        "mode": opts.prediction_mode.value, "sigma_cutoff": opts.sigma_cutoff,
        "semantic_threshold": opts.semantic_threshold, "voxel_size": grid.VOXEL_SIZE, "sizes": list(M.SIZES_M),
        "sweep_thresholds": list(M.SIGMA_SWEEP_VALUES), "K_full": np.asarray(K_full).tolist(),
    }


def evaluate_sscbench(opts: EvalOptions) -> dict[str, Any]:
    """Evaluate (resuming from ``opts.out/frames``), write results.json, results.md and the plots; return the summary.

    Raises ``FileNotFoundError`` / ``ValueError`` (naming the file) for missing or broken inputs.
    """
    t_start = time.perf_counter()
    mode = opts.prediction_mode
    checkpoint = Path(opts.checkpoint)
    ckpt_sha = file_sha256(checkpoint, "checkpoint")
    config_sha = file_sha256(opts.config, "config") if opts.config is not None else None
    test = SSCBenchKitti360(opts.sscbench, opts.voxel_gt, opts.sequence, opts.frames)
    opts.out.mkdir(parents=True, exist_ok=True)
    rt = Runtime(opts)
    base_fp = _base_fingerprint(opts, ckpt_sha, config_sha, test.calibration.K)

    val_info = val_assignment(opts, rt, base_fp) if opts.assign_on == "val" else None
    assignment = None if val_info is None else val_info["cluster_to_trainid"]
    cache = FrameCache(opts.out / "frames" / "test" / test.sequence,
                       {**base_fp, "stage": "test", "cluster_assignment": assignment})

    def compute(sample: SSCBenchSample) -> dict[str, Any]:
        with cluster_assignment(rt.model, mode, None if assignment is None else np.asarray(assignment)):
            pred = rt.predict(sample, test.calibration.K)
        train_ids = np.where(pred.train_ids == labels.UNKNOWN, 0, pred.train_ids)  # exact, see module doc
        acc = M.accumulate_frame(sample.gt, train_ids, pred.sigma_grown, rt.fov, sigma_cutoff=opts.sigma_cutoff)
        return {"accumulator": acc.to_dict()}

    results = run_frames(test, cache, compute, f"test {test.sequence}")
    acc = M.SSCBenchAccumulator.empty()
    for f in test.frames:
        acc.add(M.SSCBenchAccumulator.from_dict(results[f]["payload"]["accumulator"]))

    extra: dict[str, Any] = {}
    if val_info is None:
        report = M.report_from_accumulator(acc)
    else:
        report = M.report_from_accumulator(acc, order=val_info["reassignment_argsort"])
        extra["hungarian_on_test"] = M.report_from_accumulator(acc)["hungarian"]
    frame_seconds = [float(results[f]["seconds"]) for f in test.frames]
    model_loaded = "model" in rt.__dict__
    summary = {
        "name": opts.run_name,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": ckpt_sha,
        "mode": mode.value,
        "sequence": test.sequence,
        "n_frames": acc.n_frames,
        "frames": list(test.frames),
        "protocol": protocol(opts, test, val_info),
        "report": report,
        "sweep": M.sweep_metrics(acc.sweep_counts, acc.sweep_thresholds),
        "assignment": {
            "assign_on": opts.assign_on,
            "cluster_to_trainid": assignment,
            "val": val_info,
        },
        "extra_reports": extra,
        "timing": {
            "mean_seconds_per_frame": float(np.mean(frame_seconds)),
            "seconds_per_frame_note": "read + resize + encode + voxel query + counts, from the per-frame caches",
            "device": opts.device,
            "cuda_peak_memory_bytes": (torch.cuda.max_memory_allocated(rt.device)
                                       if model_loaded and rt.device.type == "cuda" else None),
            "parameters": (sum(p.numel() for p in rt.model.parameters()) if model_loaded else None),
            "wall_seconds_this_run": time.perf_counter() - t_start,
        },
        "accumulator": acc.to_dict(),
    }
    write_outputs(opts.out, summary)
    return summary


def val_assignment(opts: EvalOptions, rt: Runtime, base_fp: dict[str, Any]) -> dict[str, Any]:
    """Val pass: head-id confusions of the val frames -> cluster assignment (k-means) and Hungarian permutation."""
    mode = opts.prediction_mode
    val = SSCBenchKitti360(opts.sscbench, opts.val_voxel_gt or opts.voxel_gt, opts.val_sequence, opts.val_frames)
    cache = FrameCache(opts.out / "frames" / "val" / val.sequence, {**base_fp, "stage": "val-head-confusion"})
    kmeans = mode in KMEANS_MODES

    def compute(sample: SSCBenchSample) -> dict[str, Any]:
        model = rt.model
        if kmeans:
            n_ids = model.config.semantic.n_clusters
            if n_ids > model.config.semantic.n_classes:
                raise ValueError(f"--assign-on val needs n_clusters <= n_classes, got {n_ids} > "
                                 f"{model.config.semantic.n_classes}")
            with cluster_assignment(model, mode, np.arange(n_ids)):
                pred = rt.predict(sample, val.calibration.K)
        else:
            n_ids = model.config.semantic.n_classes
            pred = rt.predict(sample, val.calibration.K)
        return {"head_confusion": head_confusion(sample.gt, pred, rt.fov, n_ids, opts.sigma_cutoff).tolist()}

    results = run_frames(val, cache, compute, f"val {val.sequence}")
    conf = sum(np.asarray(results[f]["payload"]["head_confusion"], dtype=np.int64) for f in val.frames)
    n_ids = conf.shape[0] - 2
    if kmeans:
        cluster_label, assignment = assign_clusters(conf[:n_ids])
        head_to_trainid = assignment
    else:
        cluster_label, assignment = None, None
        head_to_trainid = np.arange(n_ids)
    conf16 = ssc_confusion_from_heads(conf, head_to_trainid)
    cols, order = M.hungarian_assignment(conf16)
    logger.info("val %s (%d frames): cluster->trainId %s, SSC permutation %s", val.sequence, len(val),
                None if assignment is None else assignment.tolist(), order.tolist())
    return {"sequence": val.sequence, "frames": list(val.frames), "voxel_gt": str(opts.val_voxel_gt or opts.voxel_gt),
            "cluster_to_ssc_label": None if cluster_label is None else cluster_label.tolist(),
            "cluster_to_trainid": None if assignment is None else assignment.tolist(),
            "ssc_confusion": conf16.tolist(), "linear_sum_assignment_cols": cols.tolist(),
            "reassignment_argsort": order.tolist(), "calibration_source": val.calibration.source}


def protocol(opts: EvalOptions, test: SSCBenchKitti360, val_info: dict[str, Any] | None) -> dict[str, Any]:
    """The settings a reader needs to compare numbers (also rendered in results.md)."""
    mode = opts.prediction_mode
    kmeans = mode in KMEANS_MODES
    if opts.assign_on == "test":
        cluster = ("checkpoint pseudo_assignment (reference protocol: the original training chose it on labelled "
                   "images of the test sequence 0009)") if kmeans else "none (linear head predicts trainIds)"
        hung = "16-way Hungarian on the evaluated test frames' 51.2 m confusion, applied to all ranges (reference)"
    else:
        cluster = (f"Hungarian clusters -> SSC labels on val {val_info['sequence']} ({len(val_info['frames'])} frames)"
                   if kmeans else "none (linear head predicts trainIds)")
        hung = (f"16-way Hungarian on val {val_info['sequence']} ({len(val_info['frames'])} frames), "
                "applied unchanged to the test frames")
    return {
        "assign_on": opts.assign_on,
        "assign_on_default": "test",
        "cluster_assignment": cluster,
        "hungarian_permutation": hung,
        "mode": mode.value,
        "sequence": test.sequence,
        "voxel_size_m": grid.VOXEL_SIZE,
        "grid": {"origin_velo_m": list(grid.GRID_ORIGIN_VELO), "dims": list(grid.GRID_DIMS),
                 "cam_to_velo": "hard-coded KITTI-360 calib_cam_to_velo (as the reference)"},
        "ranges_m": list(M.SIZES_M),
        "sigma_cutoff": opts.sigma_cutoff,
        "grow_3x3x3": True,
        "alpha_weighting": True,
        "additional_invalids": True,
        "fov_mask": "voxel centre projects (rounded) into the 1408x376 image with the hard-coded SSCBench K",
        "semantic_threshold": opts.semantic_threshold,
        "sweep_exact": not opts.fast_sweep,
        "model_input": "whole 1408x376 image resized to the model size (cv2.INTER_LINEAR), normalised intrinsics "
                       "of the full-resolution K",
        "calibration": test.calibration.to_dict(),
    }
