"""Evaluation entry points (thin re-export; the implementations live in ``scenedino_core.sscbench``)."""
from __future__ import annotations

from scenedino_core.sscbench.metrics import (
    SSCBenchAccumulator,
    accumulate_frame,
    report_from_accumulator,
    results_markdown,
    sigma_sweep,
    sscbench_report,
)

__all__ = [
    "SSCBenchAccumulator",
    "accumulate_frame",
    "report_from_accumulator",
    "results_markdown",
    "sigma_sweep",
    "sscbench_report",
]
