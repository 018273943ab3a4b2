"""``scenedino-eval-sscbench``: SSCBench-KITTI-360 semantic scene completion evaluation (spec §5).

Per frame: read the 1408x376 image, resize it whole to the model input, encode, query the SSCBench grid with
``voxels.predict_voxels`` (THE voxel query), and accumulate counts with ``sscbench.metrics.accumulate_frame``.
Per-frame counts are cached as JSON under ``OUT/frames/`` (atomic writes), so an interrupted run resumes where it
stopped; the final ``results.json``, ``results.md`` and PNG plots are written from the summed counts.

Protocol choices (also written into results.md / results.json):

* ``--assign-on test`` (default, the reference's protocol): the ``direct`` report uses the checkpoint's
  cluster -> class assignment (the original training picked it on labelled images of the test sequence 0009); the
  ``hungarian`` report re-labels with a 16-way Hungarian matching computed on the evaluated test frames.
* ``--assign-on val``: both choices are made on the validation sequence (default 0006) instead: k-means modes get a
  cluster -> class assignment by Hungarian matching of clusters to SSC labels on the val frames, and the
  ``hungarian`` report's permutation is computed on the val frames; test labels then never influence a choice.

Why trainId 255 -> 0 before ``accumulate_frame`` is exact: ``predict_voxels`` leaves trainId 255 only where it did
not compute semantics, i.e. (a) outside the FOV mask, which the metrics never evaluate (evaluated voxels are
(GT != 255) & FOV, also for the sweep), or (b) inside the FOV with grown density below the semantic threshold.
By default that threshold is the smallest σ of the precision/recall sweep (0.001) <= the 0.2 cut-off, and voxels
with grown σ below a threshold t are predicted empty at t whatever their class, so the placeholder class is never
read, neither by the range metrics (cut-off 0.2) nor by any sweep point. With ``--fast-sweep`` semantics are only
computed above the 0.2 cut-off: the range metrics stay exact, but sweep points below 0.2 then count those voxels
as occupied (the reference would count predicted sky/rider there as empty).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from .. import labels
from ..checkpoint import load_model
from ..model import DEFAULT_CHUNK, SceneDINO
from ..semantics import PredictionMode
from ..sscbench import grid
from ..sscbench import metrics as M
from ..sscbench.dataset import SSCBenchKitti360, SSCBenchSample, model_input
from ..voxels import VoxelPrediction, predict_voxels

logger = logging.getLogger("scenedino-eval-sscbench")

#: Bump when anything that changes cached per-frame numbers changes.
PROTOCOL_VERSION = 1
ASSIGN_CHOICES = ("test", "val")
KMEANS_MODES = (PredictionMode.STEGO_KMEANS, PredictionMode.DIRECT_KMEANS)


# ------------------------------------------------------------------------------------------------ options
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
    sigma_cutoff: float = M.SIGMA_CUTOFF

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


def parse_frames(tokens: Sequence[str] | None) -> tuple[int, ...] | None:
    """["5", "10-12", "20,21"] -> (5, 10, 11, 12, 20, 21); None stays None."""
    if not tokens:
        return None
    out: list[int] = []
    for token in tokens:
        for part in str(token).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1)
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    out.extend(range(lo, hi + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise ValueError(f"bad frame spec {part!r}: use integers or inclusive ranges like 100-200") from None
    if any(f < 0 for f in out):
        raise ValueError(f"frame ids must be >= 0, got {sorted(f for f in out if f < 0)[:5]}")
    return tuple(sorted(set(out)))


# ------------------------------------------------------------------------------------------ small helpers
def _default_mode() -> int:
    """0o666 minus the process umask (``mkstemp`` creates 0o600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> Path:
    """Write text to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: Path, what: str = "file", block: int = 1 << 22) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=_json_default, allow_nan=True)


def fingerprint_hash(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ frame cache
class FrameCache:
    """One JSON file per frame under ``folder``; a file only counts if its fingerprint matches this run."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.key = fingerprint_hash(fingerprint)

    def path(self, frame: int) -> Path:
        return self.folder / f"{int(frame):06d}.json"

    def load(self, frame: int) -> dict[str, Any] | None:
        """The cached payload, or None (absent, stale or corrupt -> recomputed; the last two with a warning)."""
        path = self.path(frame)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or "payload" not in data:
                raise ValueError("no 'payload' entry")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            logger.warning("corrupt frame cache %s (%s): recomputing frame %d", path, exc, frame)
            return None
        if data.get("key") != self.key or data.get("frame") != int(frame):
            logger.warning("frame cache %s was written with other settings (key %s, this run %s): recomputing",
                           path, data.get("key"), self.key)
            return None
        return data

    def store(self, frame: int, payload: dict[str, Any], seconds: float) -> None:
        atomic_write_text(self.path(frame), _dumps({"key": self.key, "frame": int(frame), "seconds": seconds,
                                                    "fingerprint": self.fingerprint, "payload": payload}))


# ---------------------------------------------------------------------------------- val-side assignment
#: Extra rows of a head-id confusion: voxels predicted empty (grown σ below the cut-off), and voxels whose α
#: underflows to 0 (the α-weighted argmax then yields trainId 0 whatever the head said).
ROW_EMPTY, ROW_ALPHA0 = 0, 1  # offsets after the head ids


def representative_trainids() -> np.ndarray:
    """(16,) the smallest trainId mapping to each SSC label (0 -> sky, 9 -> building, 5 -> bus, ...)."""
    rep = np.full(labels.NUM_SSC_CLASSES, -1, dtype=np.int64)
    for t in range(labels.NUM_TRAIN_CLASSES - 1, -1, -1):
        rep[labels.TRAINID_TO_SSC[t]] = t
    if np.any(rep < 0):  # pragma: no cover - the label table covers every SSC label
        raise RuntimeError(f"SSC labels without a trainId: {np.flatnonzero(rep < 0).tolist()}")
    return rep


def head_confusion(gt: np.ndarray, pred: VoxelPrediction, fov: np.ndarray, n_ids: int,
                   sigma_cutoff: float = M.SIGMA_CUTOFF) -> np.ndarray:
    """(n_ids + 2, 16) int64 counts of raw head ids against mapped GT over the evaluated voxels of the full grid.

    ``gt``: (256, 256, 32) SSCBench ids; ``pred``: the voxel query with ``train_ids`` = raw head ids (cluster ids
    under an identity assignment, or trainIds of a linear head); ``fov``: (256, 256, 32) bool. Evaluated voxels and
    the empty rule are exactly those of ``accumulate_frame`` (additional invalids, σ < cut-off in σ's dtype), so
    ``ssc_confusion_from_heads`` reproduces its 51.2 m confusion for any head-id -> trainId map.
    """
    gt_ssc = labels.sscbench_gt_to_ssc(gt)
    gt_ssc[M.additional_invalid_mask(gt_ssc)] = labels.UNKNOWN
    evaluated = (gt_ssc != labels.UNKNOWN) & (np.asarray(fov) != 0)
    sigma_g = pred.sigma_grown
    occupied = ~(sigma_g < np.asarray(sigma_cutoff, dtype=sigma_g.dtype))
    alpha = 1.0 - torch.exp(-pred.voxel_size * torch.from_numpy(np.ascontiguousarray(pred.sigma)))
    alpha0 = (alpha == 0).numpy()
    ids = pred.train_ids.astype(np.int64)
    rows = np.where(occupied, np.where(alpha0, n_ids + ROW_ALPHA0, ids), n_ids + ROW_EMPTY)
    bad = evaluated & occupied & (ids == labels.UNKNOWN)
    if np.any(bad):
        raise RuntimeError(f"{int(bad.sum())} evaluated occupied voxels have no semantics; the semantic threshold "
                           "must not exceed the σ cut-off")
    if np.any(rows[evaluated] >= n_ids + 2):
        raise ValueError(f"head ids must lie in [0, {n_ids - 1}], got {int(ids[evaluated & occupied].max())}")
    n_lab = labels.NUM_SSC_CLASSES
    flat = rows[evaluated] * n_lab + gt_ssc[evaluated].astype(np.int64)
    return np.bincount(flat, minlength=(n_ids + 2) * n_lab).reshape(n_ids + 2, n_lab).astype(np.int64)


def ssc_confusion_from_heads(conf_heads: np.ndarray, head_to_trainid: np.ndarray) -> np.ndarray:
    """(16, 16) SSC confusion (rows GT, cols prediction) of a head-id confusion under a head-id -> trainId map."""
    conf_heads = np.asarray(conf_heads, dtype=np.int64)
    n_ids = conf_heads.shape[0] - 2
    head_to_trainid = np.asarray(head_to_trainid, dtype=np.int64)
    if head_to_trainid.shape != (n_ids,):
        raise ValueError(f"head_to_trainid must have {n_ids} entries, got shape {head_to_trainid.shape}")
    pred_label = np.concatenate([labels.TRAINID_TO_SSC[head_to_trainid].astype(np.int64),
                                 [0, int(labels.TRAINID_TO_SSC[0])]])
    onehot = np.zeros((n_ids + 2, labels.NUM_SSC_CLASSES), dtype=np.int64)
    onehot[np.arange(n_ids + 2), pred_label] = 1
    return conf_heads.T @ onehot


def assign_clusters(conf_clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster -> SSC label by Hungarian matching (maximising matched voxels), then -> trainId.

    ``conf_clusters``: (K, 16) counts, rows = cluster ids, cols = GT SSC labels (label 0 = empty included, as in
    the reference's 16-way Hungarian report). With K > 16 the unmatched clusters take their majority label
    (label 0 if they never hit an evaluated voxel). Returns (cluster_label (K,), cluster_trainid (K,)), the
    trainId being the smallest trainId of that SSC label (``representative_trainids``).
    """
    c = np.asarray(conf_clusters, dtype=np.float64)
    rows, cols = linear_sum_assignment(c, maximize=True)
    label = c.argmax(axis=1).astype(np.int64)
    label[rows] = cols
    return label, representative_trainids()[label]


# ---------------------------------------------------------------------------------------------- runtime
@contextmanager
def cluster_assignment(model: SceneDINO, mode: PredictionMode, assignment: np.ndarray | None) -> Iterator[None]:
    """Temporarily replace the cluster -> trainId assignment of a k-means mode (no-op for None)."""
    if assignment is None:
        yield
        return
    if mode not in KMEANS_MODES:
        raise ValueError(f"mode {mode.value} has no cluster assignment")
    probe = model.head.stego_clusters if mode is PredictionMode.STEGO_KMEANS else model.head.direct_clusters
    old = probe.assignment.clone()
    new = torch.as_tensor(np.asarray(assignment), dtype=old.dtype, device=old.device)
    if new.shape != old.shape:
        raise ValueError(f"assignment must have {old.numel()} entries, got {tuple(new.shape)}")
    probe.assignment.copy_(new)
    try:
        yield
    finally:
        probe.assignment.copy_(old)


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


def _run_frames(dataset: SSCBenchKitti360, cache: FrameCache, compute, desc: str) -> dict[int, dict[str, Any]]:
    """Cached payload per frame; computes the missing ones with ``compute(sample) -> payload`` under a progress bar."""
    done: dict[int, dict[str, Any]] = {}
    for f in dataset.frames:
        data = cache.load(f)
        if data is not None:
            done[f] = data
    todo = [f for f in dataset.frames if f not in done]
    if done:
        logger.info("%s: %d/%d frames cached in %s, %d to compute", desc, len(done), len(dataset), cache.folder,
                    len(todo))
    if not todo:
        return done
    dataset.check_files(todo)
    bar = tqdm(todo, desc=desc, unit="frame", dynamic_ncols=True)
    for f in bar:
        t0 = time.perf_counter()
        payload = compute(dataset.load(f))
        seconds = time.perf_counter() - t0
        cache.store(f, payload, seconds)
        done[f] = {"payload": payload, "seconds": seconds}
        bar.set_postfix(frame=f"{f:06d}", s_per_frame=f"{seconds:.2f}")
    bar.close()
    return done


# -------------------------------------------------------------------------------------------------- run
def _base_fingerprint(opts: EvalOptions, ckpt_sha: str, config_sha: str | None, K_full: np.ndarray) -> dict[str, Any]:
    return {
        "protocol_version": PROTOCOL_VERSION, "checkpoint_sha256": ckpt_sha, "config_sha256": config_sha,
        "mode": opts.prediction_mode.value, "sigma_cutoff": opts.sigma_cutoff,
        "semantic_threshold": opts.semantic_threshold, "voxel_size": grid.VOXEL_SIZE, "sizes": list(M.SIZES_M),
        "sweep_thresholds": list(M.SIGMA_SWEEP_VALUES), "K_full": np.asarray(K_full).tolist(),
    }


def _val_assignment(opts: EvalOptions, rt: Runtime, base_fp: dict[str, Any]) -> dict[str, Any]:
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

    results = _run_frames(val, cache, compute, f"val {val.sequence}")
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


def report_with_order(acc: M.SSCBenchAccumulator, cols: Sequence[int], order: Sequence[int]) -> dict[str, Any]:
    """Like ``report_from_accumulator`` but the Hungarian permutation is given (derived elsewhere)."""
    keys = sorted(acc.ranges, key=float)
    order = np.asarray(order, dtype=np.int64)
    direct = {k: M.range_metrics(acc.ranges[k]) for k in keys}
    hungarian: dict[str, Any] = {k: M.range_metrics(acc.ranges[k], order) for k in keys}
    hungarian["reassignment_argsort"] = order.tolist()
    hungarian["linear_sum_assignment_cols"] = list(map(int, cols))
    return {"direct": direct, "hungarian": hungarian}


def run(opts: EvalOptions) -> dict[str, Any]:
    """Evaluate (resuming from ``opts.out/frames``) and write results.json, results.md and the plots."""
    t_start = time.perf_counter()
    mode = opts.prediction_mode
    checkpoint = Path(opts.checkpoint)
    ckpt_sha = file_sha256(checkpoint, "checkpoint")
    config_sha = file_sha256(opts.config, "config") if opts.config is not None else None
    test = SSCBenchKitti360(opts.sscbench, opts.voxel_gt, opts.sequence, opts.frames)
    opts.out.mkdir(parents=True, exist_ok=True)
    rt = Runtime(opts)
    base_fp = _base_fingerprint(opts, ckpt_sha, config_sha, test.calibration.K)

    val_info = _val_assignment(opts, rt, base_fp) if opts.assign_on == "val" else None
    assignment = None if val_info is None else val_info["cluster_to_trainid"]
    cache = FrameCache(opts.out / "frames" / "test" / test.sequence,
                       {**base_fp, "stage": "test", "cluster_assignment": assignment})

    def compute(sample: SSCBenchSample) -> dict[str, Any]:
        with cluster_assignment(rt.model, mode, None if assignment is None else np.asarray(assignment)):
            pred = rt.predict(sample, test.calibration.K)
        train_ids = np.where(pred.train_ids == labels.UNKNOWN, 0, pred.train_ids)  # exact, see module doc
        acc = M.accumulate_frame(sample.gt, train_ids, pred.sigma_grown, rt.fov, sigma_cutoff=opts.sigma_cutoff)
        return {"accumulator": acc.to_dict()}

    results = _run_frames(test, cache, compute, f"test {test.sequence}")
    acc = M.SSCBenchAccumulator.empty()
    for f in test.frames:
        acc.add(M.SSCBenchAccumulator.from_dict(results[f]["payload"]["accumulator"]))

    extra: dict[str, Any] = {}
    if val_info is None:
        report = M.report_from_accumulator(acc)
    else:
        report = report_with_order(acc, val_info["linear_sum_assignment_cols"], val_info["reassignment_argsort"])
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


# --------------------------------------------------------------------------------------------- outputs
def _is_size_key(k: str) -> bool:
    try:
        float(k)
    except (TypeError, ValueError):
        return False
    return True


def _pct(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * v:.2f}"


def results_text(summary: dict[str, Any]) -> str:
    """results.md: the README table layout first, then geometry, protocol, full tables and the σ sweep."""
    rep = summary["report"]
    keys = sorted((k for k in rep["direct"] if _is_size_key(k)), key=float)
    name = summary["name"]
    mode = summary["mode"]
    p = summary["protocol"]
    lines = [f"# SSCBench-KITTI-360 results: {name}", "",
             f"Checkpoint `{summary['checkpoint']}` (sha256 `{summary['checkpoint_sha256'][:16]}…`), mode "
             f"`{mode}`, sequence `{summary['sequence']}`, {summary['n_frames']} frames.", "",
             f"Cluster -> class assignment chosen on: **{p['assign_on']}** (default: {p['assign_on_default']}).", "",
             "## mIoU (%) — README table layout", "",
             "| Method | Checkpoint | Report | " + " | ".join(f"{float(k):.1f} m" for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for r in M.MODES:
        lines.append(f"| SceneDINO ({mode}) | `{name}` | {r} | "
                     + " | ".join(_pct(rep[r][k]["miou"]) for k in keys) + " |")
    lines += ["", "## Geometry (%)", "", "| Range | IoU | Precision | Recall |", "|---|---|---|---|"]
    for k in keys:
        g = rep["direct"][k]
        lines.append(f"| {float(k):.1f} m | {_pct(g['iou'])} | {_pct(g['precision'])} | {_pct(g['recall'])} |")
    lines += ["", "## Protocol", "", "| Setting | Value |", "|---|---|"]
    for k in ("assign_on", "cluster_assignment", "hungarian_permutation", "mode", "sequence", "voxel_size_m",
              "ranges_m", "sigma_cutoff", "grow_3x3x3", "alpha_weighting", "additional_invalids", "fov_mask",
              "semantic_threshold", "sweep_exact", "model_input"):
        lines.append(f"| {k} | {p[k]} |")
    cal = p["calibration"]
    lines.append(f"| calibration (model K) | {cal['source']}: K {np.round(np.asarray(cal['K_full']), 6).tolist()}, "
                 f"{cal['image_size_wh'][0]}x{cal['image_size_wh'][1]} |")
    assignment = summary["assignment"]["cluster_to_trainid"]
    if assignment is not None:
        lines.append(f"| cluster -> trainId (val) | {assignment} |")
    lines += ["", "## Full tables", M.results_markdown(rep, name=name).rstrip(), "",
              "## Density-threshold sweep (geometry, full 51.2 m grid, %)", "",
              "| σ threshold | Precision | Recall | IoU |", "|---|---|---|---|"]
    for s in summary["sweep"]:
        lines.append(f"| {s['sigma']:g} | {_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(s['iou'])} |")
    if summary.get("extra_reports", {}).get("hungarian_on_test"):
        h = summary["extra_reports"]["hungarian_on_test"]
        lines += ["", "For comparison only (test-chosen permutation, the reference protocol): hungarian mIoU "
                  + ", ".join(f"{float(k):.1f} m {_pct(h[k]['miou'])}" for k in keys) + "."]
    t = summary["timing"]
    lines += ["", f"Mean time per frame: {t['mean_seconds_per_frame']:.2f} s on {t['device']}.", ""]
    return "\n".join(lines)


def write_plots(out: Path, summary: dict[str, Any]) -> list[Path]:
    """per_class_iou.png (bars per class and range, both reports) and sigma_sweep.png (precision/recall vs σ)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency of the evaluation extras
        logger.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        return []
    rep = summary["report"]
    keys = sorted((k for k in rep["direct"] if _is_size_key(k)), key=float)
    written = []

    fig = Figure(figsize=(14, 7), constrained_layout=True)
    FigureCanvasAgg(fig)
    x = np.arange(len(M.CLASS_NAMES))
    width = 0.8 / len(keys)
    for i, r in enumerate(M.MODES):
        ax = fig.add_subplot(2, 1, i + 1)
        for j, k in enumerate(keys):
            vals = [100.0 * (rep[r][k]["per_class_iou"][c] or 0.0) for c in M.CLASS_NAMES]
            ax.bar(x + (j - (len(keys) - 1) / 2) * width, vals, width, label=f"{float(k):.1f} m "
                   f"(mIoU {100 * rep[r][k]['miou']:.2f})")
        ax.set_xticks(x)
        ax.set_xticklabels(M.CLASS_NAMES, rotation=30, ha="right")
        ax.set_ylabel("IoU (%)")
        ax.set_title(f"{summary['name']} ({summary['mode']}) — {r} report, {summary['n_frames']} frames")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    written.append(_save_fig(fig, out / "per_class_iou.png"))

    fig = Figure(figsize=(7, 5), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    sw = sorted(summary["sweep"], key=lambda s: s["sigma"])
    sig = [s["sigma"] for s in sw]
    for key, lab in (("precision", "precision"), ("recall", "recall"), ("iou", "IoU")):
        ax.plot(sig, [np.nan if s[key] is None else 100.0 * s[key] for s in sw], marker="o", label=lab)
    ax.axvline(summary["protocol"]["sigma_cutoff"], color="gray", ls="--", label="cut-off")
    ax.set_xscale("log")
    ax.set_xlabel("density threshold σ (1/m)")
    ax.set_ylabel("%")
    ax.set_title(f"Geometry vs density threshold — {summary['name']}")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(_save_fig(fig, out / "sigma_sweep.png"))
    return written


def _save_fig(fig: Any, path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_outputs(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(out / "results.json", _dumps(summary))
    atomic_write_text(out / "results.md", results_text(summary))
    plots = write_plots(out, summary)
    logger.info("wrote %s, %s%s", out / "results.json", out / "results.md",
                "".join(f", {p}" for p in plots))


# ------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-eval-sscbench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sscbench", type=Path, required=True, help="SSCBench-KITTI-360 root (data_2d_raw/, calibration/)")
    p.add_argument("--voxel-gt", type=Path, required=True, help="S4C voxel GT root (<seq>/<frame:06d>_1_1.npy)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="official checkpoint.pt (training_config.yaml beside it) or a scenedino-ros checkpoint")
    p.add_argument("--out", type=Path, required=True, help="output folder (rerun with the same folder to resume)")
    p.add_argument("--sequence", default="09", help="test sequence number or directory name")
    p.add_argument("--frames", nargs="+", default=None, help="frame ids / inclusive ranges (default: all GT frames)")
    p.add_argument("--mode", default=PredictionMode.STEGO_KMEANS.value, choices=[m.value for m in PredictionMode])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--assign-on", default="test", choices=ASSIGN_CHOICES,
                   help="where the cluster->class assignment and the Hungarian permutation are chosen: 'test' = "
                        "the reference protocol (checkpoint assignment, permutation on the test frames), 'val' = "
                        "both re-derived on the validation sequence")
    p.add_argument("--val-sequence", default="06", help="validation sequence for --assign-on val")
    p.add_argument("--val-frames", nargs="+", default=None, help="val frame ids / ranges (default: all val GT)")
    p.add_argument("--val-voxel-gt", type=Path, default=None, help="voxel GT root of the val sequence "
                                                                   "(default: --voxel-gt)")
    p.add_argument("--config", type=Path, default=None, help="training_config.yaml of an official checkpoint "
                                                             "(default: beside the checkpoint)")
    p.add_argument("--fast-sweep", action="store_true",
                   help="compute semantics only above the 0.2 cut-off (range metrics unchanged; sweep points below "
                        "0.2 then ignore predicted sky/rider)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="points per model call")
    p.add_argument("--name", default=None, help="run name in the tables (default: checkpoint folder name)")
    return p


def options_from_args(argv: Sequence[str] | None = None) -> EvalOptions:
    a = build_parser().parse_args(argv)
    return EvalOptions(sscbench=a.sscbench, voxel_gt=a.voxel_gt, checkpoint=a.checkpoint, out=a.out,
                       sequence=a.sequence, frames=parse_frames(a.frames), mode=a.mode, device=a.device,
                       assign_on=a.assign_on, val_sequence=a.val_sequence, val_frames=parse_frames(a.val_frames),
                       val_voxel_gt=a.val_voxel_gt, config=a.config, fast_sweep=a.fast_sweep,
                       chunk_size=a.chunk_size, name=a.name)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        opts = options_from_args(argv)
        summary = run(opts)
    except KeyboardInterrupt:
        logger.error("interrupted: finished frames are cached; rerun the same command to resume")
        return 130
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError and ConfigError are ValueErrors
        print(f"scenedino-eval-sscbench: error: {exc}", file=sys.stderr)
        return 2
    rep = summary["report"]
    for r in M.MODES:
        logger.info("%-9s mIoU %s", r, "  ".join(f"{k} m: {_pct(rep[r][k]['miou'])}"
                                                 for k in sorted((k for k in rep[r] if _is_size_key(k)),
                                                                 key=float)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
