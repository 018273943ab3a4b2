"""What every benchmark script shares: this process's memory from ``/proc`` and writing the printed report."""
from __future__ import annotations

from pathlib import Path

from scenedino_core.files import atomic_write_text


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Resident set size of this process (MB)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB) since the start or the last ``peak_rss_reset``."""
    return _status_mb("VmHWM")


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process to its current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def emit(text: str, out: Path | None) -> None:
    """Print the report and, with ``out``, also write it there (atomically, folders created)."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text if text.endswith("\n") else text + "\n")
