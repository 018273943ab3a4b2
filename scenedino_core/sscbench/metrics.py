"""SSCBench-KITTI-360 metrics: voxel counts per frame, summed over frames, then geometry and semantic reports.

Pipeline per frame (same order as the reference evaluation):

1. predicted trainIds -> SSC labels (``labels.trainid_to_ssc``; sky and rider become 0 = empty);
2. GT ids -> SSC labels (``labels.sscbench_gt_to_ssc``; 255 stays unknown);
3. additional invalids on the mapped GT (``additional_invalid_mask``);
4. (σ sweep counts on the full grid, before the cut-off);
5. predicted label := 0 where grown σ < cut-off (compared in σ's dtype, as numpy does in the reference);
6. for each range 12.8 / 25.6 / 51.2 m: crop, evaluated voxels = (GT != 255) & FOV, geometry counts and a
   16x16 confusion (rows GT, cols prediction, label 0 included);
7. counts are summed over frames (no per-frame averaging).

Geometry: IoU, precision and recall of "occupied" (label > 0). Semantics: per-class IoU of labels 1..15 from the
summed confusion, mIoU = their mean with classes absent from GT and prediction counted as 0, and a weighted mIoU
(``labels.SSC_CLASS_WEIGHTS``). The ``hungarian`` report re-labels the GT rows with a 16-way Hungarian matching of
the 51.2 m confusion (``scenedino_core.metrics``), applied to every range.

Typical use by an evaluation loop::

    total = SSCBenchAccumulator.empty()
    for frame in frames:
        acc = accumulate_frame(gt, pred_trainid, sigma_grown, fov)   # cache json.dumps(acc.to_dict())
        total.add(acc)
    report = report_from_accumulator(total)
    text = sscbench.report_files.results_markdown(report, name="run")
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scenedino_core import labels
from scenedino_core.metrics import hungarian_match, iou_per_class, mean_iou
from scenedino_core.sscbench.grid import GRID_DIMS, VOXEL_SIZE
from scenedino_core.voxels import SIGMA_THRESHOLD

logger = logging.getLogger(__name__)

#: Evaluation ranges (m): lateral/forward extent of the crop.
SIZES_M: tuple[float, ...] = (12.8, 25.6, 51.2)
#: Additional invalids only affect voxels with z index below this.
ADDITIONAL_INVALID_Z_LIMIT: int = 7
#: σ thresholds of the reference's precision/recall trade-off plot.
SIGMA_SWEEP_VALUES: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.0025, 0.001)
#: Number of SSC labels including 0 (empty).
NUM_LABELS: int = labels.NUM_SSC_CLASSES
#: Names of the evaluated classes 1..15 (row order of per-class results).
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in labels.SSC_CLASSES[1:])
MODES: tuple[str, ...] = ("direct", "hungarian")

_UNKNOWN = labels.UNKNOWN


# --------------------------------------------------------------------------------------------------- helpers
def size_key(size_m: float) -> str:
    """Dictionary key of a range: 12.8 -> "12.8"."""
    return f"{float(size_m):.1f}"


def _check_frame(name: str, arr: np.ndarray, allow_stack: bool = False) -> np.ndarray:
    arr = np.asarray(arr)
    ok = arr.shape[-3:] == GRID_DIMS and (arr.ndim == 3 or (allow_stack and arr.ndim == 4))
    if not ok:
        want = f"{GRID_DIMS} or (F, *{GRID_DIMS})" if allow_stack else f"{GRID_DIMS}"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


def additional_invalid_mask(gt_ssc: np.ndarray, z_limit: int = ADDITIONAL_INVALID_Z_LIMIT) -> np.ndarray:
    """Bool mask of the "additional invalids" of mapped GT (the reference evaluation's ground-level rule).

    ``gt_ssc``: (..., X, Y, Z) SSC labels (0..15, 255). A voxel is marked iff its label is 0, its z index is
    < ``z_limit``, and no voxel strictly below it in the same (x, y) column has a label other than 0 and 255.
    Returns a bool array of the same shape. Vectorised over columns; loops over the ``z_limit`` lowest levels.
    """
    gt_ssc = np.asarray(gt_ssc)
    if gt_ssc.ndim < 3:
        raise ValueError(f"gt_ssc must be (..., X, Y, Z), got shape {gt_ssc.shape}")
    mask = np.zeros(gt_ssc.shape, dtype=bool)
    seen_occupied = np.zeros(gt_ssc.shape[:-1], dtype=bool)
    for z in range(min(int(z_limit), gt_ssc.shape[-1])):
        level = gt_ssc[..., z]
        mask[..., z] = (level == 0) & ~seen_occupied
        seen_occupied |= (level != 0) & (level != _UNKNOWN)
    return mask


def additional_invalids(gt_ssc: np.ndarray, z_limit: int = ADDITIONAL_INVALID_Z_LIMIT) -> tuple[np.ndarray, int]:
    """Apply the additional-invalids rule: returns (copy of ``gt_ssc`` with those voxels set to 255, their count)."""
    mask = additional_invalid_mask(gt_ssc, z_limit)
    out = np.array(gt_ssc, copy=True)
    out[mask] = _UNKNOWN
    return out, int(np.count_nonzero(mask))


def range_slices(
    size_m: float, dims: tuple[int, int, int] = GRID_DIMS, voxel_size: float = VOXEL_SIZE
) -> tuple[slice, slice]:
    """(x, y) slices of the range crop: n = size / voxel; x in [0, n), y in [Y/2 - n/2, Y/2 + n/2)."""
    n = int(round(float(size_m) / voxel_size))
    if n <= 0 or n > dims[0] or n > dims[1] or n % 2:
        raise ValueError(f"range {size_m} m gives {n} voxels, which does not fit grid {dims} "
                         f"(need even n <= {dims[:2]})")
    y0 = dims[1] // 2 - n // 2
    return slice(0, n), slice(y0, y0 + n)


def crop_range(arr: np.ndarray, size_m: float) -> np.ndarray:
    """View of ``arr`` (..., 256, 256, 32) cropped to the range ``size_m`` (..., n, n, 32)."""
    arr = np.asarray(arr)
    if arr.shape[-3:] != GRID_DIMS:
        raise ValueError(f"expected an array (..., {', '.join(map(str, GRID_DIMS))}), got shape {arr.shape}")
    xs, ys = range_slices(size_m)
    return arr[..., xs, ys, :]


# --------------------------------------------------------------------------------------------- accumulators
def _zero_confusion() -> np.ndarray:
    return np.zeros((NUM_LABELS, NUM_LABELS), dtype=np.int64)


@dataclass
class RangeCounts:
    """Counts of one range, summed over frames.

    ``tp/fp/tn/fn``: geometry (occupied = label > 0) over evaluated voxels; ``confusion``: (16, 16) int64,
    rows = GT label, cols = predicted label, label 0 included.
    """

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    confusion: np.ndarray = field(default_factory=_zero_confusion)

    def __post_init__(self) -> None:
        c = np.asarray(self.confusion)
        if c.shape != (NUM_LABELS, NUM_LABELS):
            raise ValueError(f"confusion must be ({NUM_LABELS}, {NUM_LABELS}), got shape {c.shape}")
        if not np.all(np.isfinite(c)) or np.any(c < 0) or np.any(c != np.round(c)):
            raise ValueError("confusion must hold non-negative integer counts")
        self.confusion = c.astype(np.int64)
        for name in ("tp", "fp", "tn", "fn"):
            v = getattr(self, name)
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
            setattr(self, name, int(v))

    def add(self, other: RangeCounts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn
        self.confusion = self.confusion + other.confusion

    # Per-class one-vs-rest counts of labels 1..15 (the reference's tp_seg, ... ; derived from the confusion).
    @property
    def tp_seg(self) -> np.ndarray:
        return np.diag(self.confusion)[1:].copy()

    @property
    def fp_seg(self) -> np.ndarray:
        return self.confusion.sum(0)[1:] - self.tp_seg

    @property
    def fn_seg(self) -> np.ndarray:
        return self.confusion.sum(1)[1:] - self.tp_seg

    @property
    def tn_seg(self) -> np.ndarray:
        return self.confusion.sum() - self.tp_seg - self.fp_seg - self.fn_seg

    @property
    def tp_recall_seg(self) -> np.ndarray:
        """Per GT class 1..15: evaluated voxels predicted occupied (any label > 0)."""
        return self.confusion[1:, 1:].sum(1)

    @property
    def sum_recall_seg(self) -> np.ndarray:
        """Per GT class 1..15: evaluated voxels."""
        return self.confusion.sum(1)[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn, "confusion": self.confusion.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RangeCounts:
        missing = {"tp", "fp", "tn", "fn", "confusion"} - set(d)
        if missing:
            raise ValueError(f"range counts dict lacks keys {sorted(missing)}, got keys {sorted(d)}")
        return cls(d["tp"], d["fp"], d["tn"], d["fn"], np.asarray(d["confusion"]))


def _zero_sweep(n: int) -> np.ndarray:
    return np.zeros((n, 4), dtype=np.int64)


@dataclass
class SSCBenchAccumulator:
    """Everything the reports need, summed over frames; JSON-serialisable via ``to_dict`` / ``from_dict``.

    ``ranges``: size key ("12.8", ...) -> ``RangeCounts``; ``sweep_counts``: (T, 4) int64 [tp, fp, tn, fn] of
    the full grid at each of ``sweep_thresholds`` (σ trade-off), ``additional_invalids``: voxels turned to 255.
    """

    ranges: dict[str, RangeCounts]
    n_frames: int = 0
    additional_invalids: int = 0
    sweep_thresholds: tuple[float, ...] = SIGMA_SWEEP_VALUES
    sweep_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.sweep_thresholds = tuple(float(t) for t in self.sweep_thresholds)
        if self.sweep_counts is None:
            self.sweep_counts = _zero_sweep(len(self.sweep_thresholds))
        sc = np.asarray(self.sweep_counts)
        if sc.shape != (len(self.sweep_thresholds), 4):
            raise ValueError(
                f"sweep_counts must be ({len(self.sweep_thresholds)}, 4) for {len(self.sweep_thresholds)} thresholds, "
                f"got shape {sc.shape}"
            )
        self.sweep_counts = sc.astype(np.int64)

    @classmethod
    def empty(
        cls, sizes: Sequence[float] = SIZES_M, sweep_thresholds: Sequence[float] = SIGMA_SWEEP_VALUES
    ) -> SSCBenchAccumulator:
        return cls({size_key(s): RangeCounts() for s in sizes}, sweep_thresholds=tuple(sweep_thresholds))

    def add(self, other: SSCBenchAccumulator) -> None:
        """Add ``other`` in place (same ranges and sweep thresholds required)."""
        if set(other.ranges) != set(self.ranges):
            raise ValueError(f"cannot add accumulators with ranges {sorted(other.ranges)} to {sorted(self.ranges)}")
        if other.sweep_thresholds != self.sweep_thresholds:
            raise ValueError(
                f"cannot add accumulators with sweep thresholds {other.sweep_thresholds} to {self.sweep_thresholds}"
            )
        for k, rc in other.ranges.items():
            self.ranges[k].add(rc)
        self.n_frames += other.n_frames
        self.additional_invalids += other.additional_invalids
        self.sweep_counts = self.sweep_counts + other.sweep_counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_frames": self.n_frames,
            "additional_invalids": self.additional_invalids,
            "ranges": {k: v.to_dict() for k, v in self.ranges.items()},
            "sweep_thresholds": list(self.sweep_thresholds),
            "sweep_counts": self.sweep_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SSCBenchAccumulator:
        if not isinstance(d, dict) or "ranges" not in d:
            raise ValueError(f"not an SSCBench accumulator dict (need key 'ranges'), got {type(d).__name__}")
        return cls(
            ranges={str(k): RangeCounts.from_dict(v) for k, v in d["ranges"].items()},
            n_frames=int(d.get("n_frames", 0)),
            additional_invalids=int(d.get("additional_invalids", 0)),
            sweep_thresholds=tuple(d.get("sweep_thresholds", SIGMA_SWEEP_VALUES)),
            sweep_counts=np.asarray(d["sweep_counts"]) if "sweep_counts" in d else None,
        )


# ------------------------------------------------------------------------------------------ per-frame counts
def map_frame(
    gt: np.ndarray,
    pred_trainid: np.ndarray,
    use_additional_invalids: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Label-space step of one frame or stack: returns (gt_ssc with invalids applied, pred_ssc, n_invalids).

    ``gt``: SSCBench ids (0..19, 255); ``pred_trainid``: 0..18; same shape (..., 256, 256, 32). Outputs uint8.
    """
    gt = np.asarray(gt)
    pred_trainid = np.asarray(pred_trainid)
    if gt.shape != pred_trainid.shape:
        raise ValueError(f"gt {gt.shape} and pred_trainid {pred_trainid.shape} must have the same shape")
    gt_ssc = labels.sscbench_gt_to_ssc(gt)
    pred_ssc = labels.trainid_to_ssc(pred_trainid)
    n_inv = 0
    if use_additional_invalids:
        mask = additional_invalid_mask(gt_ssc)
        gt_ssc[mask] = _UNKNOWN
        n_inv = int(np.count_nonzero(mask))
    return gt_ssc, pred_ssc, n_inv


def apply_sigma_cutoff(pred_ssc: np.ndarray, sigma_grown: np.ndarray,
                       sigma_cutoff: float = SIGMA_THRESHOLD) -> np.ndarray:
    """Copy of ``pred_ssc`` with label 0 where σ < cut-off (the cut-off is cast to σ's float dtype first)."""
    sigma = np.asarray(sigma_grown)
    if sigma.shape != np.shape(pred_ssc):
        raise ValueError(f"sigma_grown {sigma.shape} and prediction {np.shape(pred_ssc)} must have the same shape")
    out = np.array(pred_ssc, copy=True)
    out[sigma < _threshold_in_dtype(sigma_cutoff, sigma)] = 0
    return out


def _threshold_in_dtype(t: float | Sequence[float], sigma: np.ndarray) -> np.ndarray:
    dtype = sigma.dtype if np.issubdtype(sigma.dtype, np.floating) else np.float64
    return np.asarray(t, dtype=dtype)


def range_counts(gt_ssc: np.ndarray, pred_ssc: np.ndarray, fov: np.ndarray) -> RangeCounts:
    """Counts over evaluated voxels ((gt != 255) & fov) of already cropped, mapped arrays (any equal shapes).

    ``gt_ssc``: 0..15 or 255; ``pred_ssc``: 0..15 (after the σ cut-off); ``fov``: bool / 0-1.
    """
    gt_ssc, pred_ssc, fov = np.asarray(gt_ssc), np.asarray(pred_ssc), np.asarray(fov)
    if not (gt_ssc.shape == pred_ssc.shape == fov.shape):
        raise ValueError(f"shapes differ: gt {gt_ssc.shape}, pred {pred_ssc.shape}, fov {fov.shape}")
    evaluated = (gt_ssc != _UNKNOWN) & (fov != 0)
    g = gt_ssc[evaluated].astype(np.intp)
    p = pred_ssc[evaluated].astype(np.intp)
    if g.size and (g.max() >= NUM_LABELS or p.max() >= NUM_LABELS or p.min() < 0):
        raise ValueError(f"labels must lie in [0, {NUM_LABELS - 1}], got gt max {g.max()}, "
                         f"pred range [{p.min()}, {p.max()}]")
    conf = np.bincount(g * NUM_LABELS + p, minlength=NUM_LABELS * NUM_LABELS).reshape(NUM_LABELS, NUM_LABELS)
    conf = conf.astype(np.int64)
    # occupied = label > 0 for both, so geometry follows from the confusion's blocks
    return RangeCounts(
        tp=int(conf[1:, 1:].sum()), fp=int(conf[0, 1:].sum()), tn=int(conf[0, 0]), fn=int(conf[1:, 0].sum()),
        confusion=conf,
    )


def sweep_counts(
    gt_ssc: np.ndarray,
    pred_ssc: np.ndarray,
    sigma_grown: np.ndarray,
    fov: np.ndarray,
    thresholds: Sequence[float] = SIGMA_SWEEP_VALUES,
) -> np.ndarray:
    """(T, 4) int64 geometry counts [tp, fp, tn, fn] over evaluated voxels when σ < t is set empty, per threshold.

    ``pred_ssc`` is the mapped prediction *before* any σ cut-off; all arrays share one shape. A voxel is
    predicted occupied at threshold t iff its label > 0 and not (σ < t) (NaN σ counts as occupied, as in numpy).
    One pass: histogram of "number of thresholds <= σ", then cumulative sums.
    """
    gt_ssc, pred_ssc, sigma, fov = (np.asarray(a) for a in (gt_ssc, pred_ssc, sigma_grown, fov))
    if not (gt_ssc.shape == pred_ssc.shape == sigma.shape == fov.shape):
        raise ValueError(
            f"shapes differ: gt {gt_ssc.shape}, pred {pred_ssc.shape}, sigma {sigma.shape}, fov {fov.shape}"
        )
    thr = _threshold_in_dtype(list(thresholds), sigma)
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got {thresholds!r}")
    n_t = thr.size
    order = np.argsort(thr, kind="stable")
    thr_sorted = thr[order]
    evaluated = (gt_ssc != _UNKNOWN) & (fov != 0)
    gt_occ = gt_ssc[evaluated] > 0
    pred_nonzero = pred_ssc[evaluated] > 0
    # k = how many (sorted) thresholds are <= σ; the voxel is occupied at sorted threshold j iff j < k
    k = np.searchsorted(thr_sorted, sigma[evaluated][pred_nonzero], side="right")
    hist = np.bincount(k + (n_t + 1) * gt_occ[pred_nonzero], minlength=2 * (n_t + 1)).reshape(2, n_t + 1)
    # occupied at sorted threshold j: sum over k > j
    occ_at = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (2, T): [gt free, gt occupied]
    n_gt_occ = int(np.count_nonzero(gt_occ))
    n_gt_free = int(gt_occ.size - n_gt_occ)
    tp = occ_at[1]
    fp = occ_at[0]
    out_sorted = np.stack([tp, fp, n_gt_free - fp, n_gt_occ - tp], axis=1).astype(np.int64)
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


def accumulate_frame(
    gt: np.ndarray,
    pred_trainid: np.ndarray,
    sigma_grown: np.ndarray,
    fov_mask: np.ndarray,
    sigma_cutoff: float = SIGMA_THRESHOLD,
    sizes: Sequence[float] = SIZES_M,
    use_additional_invalids: bool = True,
    sweep_thresholds: Sequence[float] = SIGMA_SWEEP_VALUES,
) -> SSCBenchAccumulator:
    """Counts of ONE frame (n_frames = 1).

    ``gt``: (256, 256, 32) SSCBench ids 0..19 / 255; ``pred_trainid``: (256, 256, 32) trainIds 0..18;
    ``sigma_grown``: (256, 256, 32) σ after the 3³ max-pool; ``fov_mask``: (256, 256, 32) bool / 0-1.
    """
    gt = _check_frame("gt", gt)
    pred_trainid = _check_frame("pred_trainid", pred_trainid)
    sigma = _check_frame("sigma_grown", sigma_grown)
    fov = _check_frame("fov_mask", fov_mask) != 0
    gt_ssc, pred_ssc, n_inv = map_frame(gt, pred_trainid, use_additional_invalids)
    acc = SSCBenchAccumulator.empty(sizes, sweep_thresholds)
    acc.n_frames = 1
    acc.additional_invalids = n_inv
    if len(acc.sweep_thresholds):
        acc.sweep_counts = sweep_counts(gt_ssc, pred_ssc, sigma, fov, acc.sweep_thresholds)
    pred_cut = apply_sigma_cutoff(pred_ssc, sigma, sigma_cutoff)
    for s in sizes:
        xs, ys = range_slices(s)
        acc.ranges[size_key(s)] = range_counts(gt_ssc[xs, ys], pred_cut[xs, ys], fov[xs, ys])
    return acc


def accumulate_frames(
    gt: np.ndarray,
    pred_trainid: np.ndarray,
    sigma_grown: np.ndarray,
    fov_mask: np.ndarray,
    **options: Any,
) -> SSCBenchAccumulator:
    """Sum of ``accumulate_frame`` over a frame or a stack.

    ``gt``, ``pred_trainid``, ``sigma_grown``: (256, 256, 32) or (F, 256, 256, 32), all the same shape;
    ``fov_mask``: (256, 256, 32) shared by all frames, or (F, 256, 256, 32) per frame; ``options``: the keyword
    options of ``accumulate_frame`` (``sigma_cutoff``, ``sizes``, ``use_additional_invalids``, ``sweep_thresholds``).
    """
    gt = _check_frame("gt", gt, allow_stack=True)
    pred_trainid = _check_frame("pred_trainid", pred_trainid, allow_stack=True)
    sigma = _check_frame("sigma_grown", sigma_grown, allow_stack=True)
    fov = _check_frame("fov_mask", fov_mask, allow_stack=True)
    if not (gt.shape == pred_trainid.shape == sigma.shape):
        raise ValueError(f"shapes differ: gt {gt.shape}, pred_trainid {pred_trainid.shape}, sigma_grown {sigma.shape}")
    if gt.ndim == 3:
        gt, pred_trainid, sigma = gt[None], pred_trainid[None], sigma[None]
    if fov.ndim == 4 and fov.shape[0] != gt.shape[0]:
        raise ValueError(f"per-frame fov_mask has {fov.shape[0]} frames, predictions have {gt.shape[0]}")
    total = SSCBenchAccumulator.empty(**{k: options[k] for k in ("sizes", "sweep_thresholds") if k in options})
    for f in range(gt.shape[0]):
        fov_f = fov[f] if fov.ndim == 4 else fov
        total.add(accumulate_frame(gt[f], pred_trainid[f], sigma[f], fov_f, **options))
    return total


# ------------------------------------------------------------------------------------------------- metrics
def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def hungarian_assignment(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of a square confusion (rows GT, cols prediction), maximising matched counts.

    Returns (cols, row_order): ``cols[r]`` = predicted label matched to GT row r (label 0 included);
    ``row_order = argsort(cols)``, the row permutation the reference applies (``confusion[row_order]`` has the GT
    label matched to prediction k in row k).
    """
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be square, got shape {c.shape}")
    cols = hungarian_match(c)
    return cols, np.argsort(cols).astype(np.int64)


def range_metrics(
    counts: RangeCounts, row_order: np.ndarray | None = None, weights: np.ndarray = labels.SSC_CLASS_WEIGHTS
) -> dict[str, Any]:
    """Metrics of one range: iou, precision, recall (geometry), miou, weighted_miou, per_class_iou.

    ``row_order``: optional (16,) permutation applied to the confusion's GT rows (Hungarian report).
    Per-class IoU of labels 1..15 = C[k,k] / (col_k + row_k - C[k,k]); 0/0 -> None, counted as 0 in the means.
    Geometry ratios with a zero denominator are None.
    """
    c = counts.confusion
    if row_order is not None:
        row_order = np.asarray(row_order)
        if sorted(row_order.tolist()) != list(range(NUM_LABELS)):
            raise ValueError(f"row_order must be a permutation of 0..{NUM_LABELS - 1}, got {row_order.tolist()}")
        c = c[row_order, :]
    per_class = iou_per_class(c)[1:]  # square: the orientation does not matter
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (NUM_LABELS - 1,):
        raise ValueError(f"weights must have {NUM_LABELS - 1} entries (labels 1..15), got shape {w.shape}")
    tp, fp, fn = counts.tp, counts.fp, counts.fn
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "miou": mean_iou(per_class, "zero"),
        "weighted_miou": mean_iou(per_class, "zero", w),
        "per_class_iou": {
            name: (None if np.isnan(per_class[k]) else float(per_class[k])) for k, name in enumerate(CLASS_NAMES)
        },
    }


def report_from_accumulator(acc: SSCBenchAccumulator, order: Sequence[int] | None = None) -> dict[str, Any]:
    """{"direct"|"hungarian": {"12.8"|"25.6"|"51.2": metrics}} from summed counts.

    The Hungarian matching is computed on the largest range's confusion (51.2 m) and applied to every range, unless
    ``order`` gives the GT row permutation (``hungarian_assignment``'s ``row_order``, chosen elsewhere, e.g. on a
    validation sequence). The "hungarian" entry also carries ``linear_sum_assignment_cols`` (the inverse
    permutation) and ``reassignment_argsort`` (= ``order``).
    """
    if not acc.ranges:
        raise ValueError("accumulator has no ranges")
    keys = range_keys(acc.ranges)
    if order is None:
        cols, row_order = hungarian_assignment(acc.ranges[keys[-1]].confusion)
    else:
        row_order = np.asarray(order, dtype=np.int64)
        if sorted(row_order.tolist()) != list(range(NUM_LABELS)):
            raise ValueError(f"order must be a permutation of 0..{NUM_LABELS - 1}, got {row_order.tolist()}")
        cols = np.argsort(row_order)
    direct = {k: range_metrics(acc.ranges[k]) for k in keys}
    hungarian: dict[str, Any] = {k: range_metrics(acc.ranges[k], row_order) for k in keys}
    hungarian["reassignment_argsort"] = row_order.tolist()
    hungarian["linear_sum_assignment_cols"] = cols.tolist()
    return {"direct": direct, "hungarian": hungarian}


def sscbench_report(
    gt: np.ndarray,
    pred_trainid: np.ndarray,
    sigma_grown: np.ndarray,
    fov_mask: np.ndarray,
    sigma_cutoff: float = SIGMA_THRESHOLD,
) -> dict[str, Any]:
    """SSCBench-KITTI-360 report of one frame or a stack of frames (counts summed over frames).

    ``gt``: (256, 256, 32) or (F, 256, 256, 32) GT in SSCBench id space (0..19, 255);
    ``pred_trainid``: same shape, predicted Cityscapes trainIds 0..18; ``sigma_grown``: same shape, σ after the
    3³ max-pool; ``fov_mask``: (256, 256, 32) shared or (F, 256, 256, 32) per frame.
    Returns {"direct"|"hungarian": {"12.8"|"25.6"|"51.2": {iou, precision, recall, miou, weighted_miou,
    per_class_iou}}} (see ``report_from_accumulator``).
    """
    acc = accumulate_frames(gt, pred_trainid, sigma_grown, fov_mask, sigma_cutoff=sigma_cutoff)
    logger.debug("sscbench_report: %d frame(s), %d additional invalids", acc.n_frames, acc.additional_invalids)
    return report_from_accumulator(acc)


# ------------------------------------------------------------------------------------------------ σ sweep
def sweep_metrics(counts: np.ndarray, thresholds: Sequence[float] = SIGMA_SWEEP_VALUES) -> list[dict[str, Any]]:
    """Per threshold: {"sigma", "precision", "recall", "iou", "tp", "fp", "tn", "fn"} from (T, 4) counts."""
    counts = np.asarray(counts)
    if counts.shape != (len(thresholds), 4):
        raise ValueError(f"counts must be ({len(thresholds)}, 4), got shape {counts.shape}")
    out = []
    for t, (tp, fp, tn, fn) in zip(thresholds, counts.tolist()):
        out.append({
            "sigma": float(t), "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "iou": _ratio(tp, tp + fp + fn), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        })
    return out


def sigma_sweep(
    gt: np.ndarray,
    pred_trainid: np.ndarray,
    sigma_grown: np.ndarray,
    fov_mask: np.ndarray,
    thresholds: Sequence[float] = SIGMA_SWEEP_VALUES,
) -> list[dict[str, Any]]:
    """Geometry precision / recall / IoU on the full 51.2 m grid at several σ thresholds (reference trade-off plot).

    Inputs as ``sscbench_report`` (frame or stack, raw label spaces); the additional invalids are applied.
    """
    acc = accumulate_frames(gt, pred_trainid, sigma_grown, fov_mask, sizes=(), sweep_thresholds=thresholds)
    return sweep_metrics(acc.sweep_counts, acc.sweep_thresholds)


# ------------------------------------------------------------------------------------------------ reports
def is_size_key(key: Any) -> bool:
    """True for the range entries of a report or accumulator ("12.8", ...), False for the other keys."""
    try:
        float(key)
    except (TypeError, ValueError):
        return False
    return True


def range_keys(entries: Any) -> list[str]:
    """The range keys ("12.8", "25.6", ...) among the keys of a report mode or ``SSCBenchAccumulator.ranges``,
    nearest first."""
    return sorted((k for k in entries if is_size_key(k)), key=float)


__all__ = [
    "SIZES_M", "SIGMA_SWEEP_VALUES", "ADDITIONAL_INVALID_Z_LIMIT", "CLASS_NAMES", "MODES",
    "RangeCounts", "SSCBenchAccumulator", "size_key", "additional_invalid_mask", "additional_invalids",
    "range_slices", "crop_range", "map_frame", "apply_sigma_cutoff", "range_counts", "sweep_counts",
    "accumulate_frame", "accumulate_frames", "hungarian_assignment", "range_metrics", "report_from_accumulator",
    "sscbench_report", "sweep_metrics", "sigma_sweep", "is_size_key", "range_keys",
]
