"""Resumable per-frame results: one JSON file per frame, valid only for the settings (fingerprint) that wrote it.

An interrupted evaluation keeps the frames it finished; a rerun with the same settings computes only the rest.
A cache file written with other settings, or a corrupt one, is recomputed with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..files import atomic_write_text
from .dataset import SSCBenchKitti360, SSCBenchSample

logger = logging.getLogger(__name__)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    """JSON text with numpy scalars/arrays and paths converted (NaN allowed), one space indent."""
    return json.dumps(obj, indent=1, default=_json_default, allow_nan=True)


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """16 hex digits identifying a fingerprint dict (key order does not matter)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


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
        atomic_write_text(self.path(frame), dumps({"key": self.key, "frame": int(frame), "seconds": seconds,
                                                   "fingerprint": self.fingerprint, "payload": payload}))


def run_frames(dataset: SSCBenchKitti360, cache: FrameCache, compute: Callable[[SSCBenchSample], dict[str, Any]],
               desc: str) -> dict[int, dict[str, Any]]:
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
