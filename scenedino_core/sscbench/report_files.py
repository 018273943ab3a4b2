"""The files an SSCBench evaluation writes from its summary: results.json, results.md and two PNG plots, and the
reference's ``results.md`` tables of a report (``results_markdown``)."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_path, atomic_write_text
from . import metrics as M
from .frame_cache import dumps
from .metrics import range_keys

logger = logging.getLogger(__name__)


def pct(v: float | None) -> str:
    """A fraction as a percentage with 2 decimals; "–" for None or NaN."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * v:.2f}"


def results_text(summary: dict[str, Any]) -> str:
    """results.md: the README table layout first, then geometry, protocol, full tables and the σ sweep."""
    rep = summary["report"]
    keys = range_keys(rep["direct"])
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
                     + " | ".join(pct(rep[r][k]["miou"]) for k in keys) + " |")
    lines += ["", "## Geometry (%)", "", "| Range | IoU | Precision | Recall |", "|---|---|---|---|"]
    for k in keys:
        g = rep["direct"][k]
        lines.append(f"| {float(k):.1f} m | {pct(g['iou'])} | {pct(g['precision'])} | {pct(g['recall'])} |")
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
    lines += ["", "## Full tables", results_markdown(rep, name=name).rstrip(), "",
              "## Density-threshold sweep (geometry, full 51.2 m grid, %)", "",
              "| σ threshold | Precision | Recall | IoU |", "|---|---|---|---|"]
    for s in summary["sweep"]:
        lines.append(f"| {s['sigma']:g} | {pct(s['precision'])} | {pct(s['recall'])} | {pct(s['iou'])} |")
    if summary.get("extra_reports", {}).get("hungarian_on_test"):
        h = summary["extra_reports"]["hungarian_on_test"]
        lines += ["", "For comparison only (test-chosen permutation, the reference protocol): hungarian mIoU "
                  + ", ".join(f"{float(k):.1f} m {pct(h[k]['miou'])}" for k in keys) + "."]
    t = summary["timing"]
    lines += ["", f"Mean time per frame: {t['mean_seconds_per_frame']:.2f} s on {t['device']}.", ""]
    return "\n".join(lines)


_ROW_W = 13


def _fmt_pct(v: float | None) -> str:
    # the reference keeps its table in float32 and prints v * 100 with 5.2f; mirror that for identical digits
    if v is None:
        return f"{float('nan'):5.2f}"
    return f"{np.float32(v) * np.float32(100):5.2f}"


def results_markdown(report: dict[str, Any], name: str = "scenedino", include_weighted_row: bool = True) -> str:
    """Markdown tables of a report in the reference's ``results.md`` style, one per mode.

    Rows: IoU, Precision, Recall, mIoU, weighted mIoU (unless ``include_weighted_row`` is False, which gives the
    reference's exact layout), then the 15 classes; columns are the ranges. Percentages with 2 decimals. Below
    each table: (Hungarian) the reassignment, then mean and weighted mean IoU of the largest range.
    """
    out = ""
    for mode in M.MODES:
        if mode not in report:
            continue
        rep = report[mode]
        keys = M.range_keys(rep)
        if not keys:
            raise ValueError(f"report['{mode}'] has no range entries, got keys {sorted(rep)}")
        sep = "|" + "-" * (_ROW_W + 2) + "|" + "|".join("-------" for _ in keys) + "|\n"
        rows: list[tuple[str, list[float | None]]] = [
            ("IoU", [rep[k]["iou"] for k in keys]),
            ("Precision", [rep[k]["precision"] for k in keys]),
            ("Recall", [rep[k]["recall"] for k in keys]),
            ("mIoU", [rep[k]["miou"] for k in keys]),
        ]
        if include_weighted_row:
            rows.append(("weighted mIoU", [rep[k]["weighted_miou"] for k in keys]))
        rows += [(c, [rep[k]["per_class_iou"][c] for k in keys]) for c in M.CLASS_NAMES]
        out += f"\n# Benchmark Results for '{name}' / Mode: {mode}\n"
        out += "\n| " + " " * _ROW_W + " | " + " | ".join(f"{float(k):.1f}m" for k in keys) + " |\n"
        out += sep
        for i, (label, vals) in enumerate(rows):
            out += f"| {label:<{_ROW_W}} | " + " | ".join(_fmt_pct(v) for v in vals) + " |\n"
            if i == 2:
                out += sep
        out += "\n"
        if mode == "hungarian" and "reassignment_argsort" in rep:
            out += f"Reassignment: {np.asarray(rep['reassignment_argsort'], dtype=np.int64)}\n"
        last = rep[keys[-1]]
        out += f"Mean IoU: {last['miou'] * 100:.2f}\n"
        out += f"Weighted Mean IoU: {last['weighted_miou'] * 100:.2f}\n\n"
    return out


def write_plots(out: Path, summary: dict[str, Any]) -> list[Path]:
    """per_class_iou.png (bars per class and range, both reports) and sigma_sweep.png (precision/recall vs σ)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency of the evaluation extras
        logger.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        return []
    rep = summary["report"]
    keys = range_keys(rep["direct"])
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
    written.append(_save_png(fig, out / "per_class_iou.png"))

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
    written.append(_save_png(fig, out / "sigma_sweep.png"))
    return written


def _save_png(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def write_outputs(out: Path, summary: dict[str, Any]) -> None:
    """results.json (the summary), results.md (``results_text``) and the plots (``write_plots``) into ``out``."""
    atomic_write_text(out / "results.json", dumps(summary))
    atomic_write_text(out / "results.md", results_text(summary))
    plots = write_plots(out, summary)
    logger.info("wrote %s, %s%s", out / "results.json", out / "results.md",
                "".join(f", {p}" for p in plots))
