"""The report of ``scenedino-process-bag``: frames processed and skipped, time per stage, occupancy statistics, as
JSON (``summary.json``) and Markdown (``summary.md``)."""
from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .salvage import Damage, describe_losses, messages_lost

STAGES = ("decode", "inference", "build", "write", "other")


@dataclass(frozen=True)
class SkippedFrame:
    """An input image that produced no outputs."""

    stamp_ns: int
    """Header stamp, or the bag time when the message could not be deserialised."""
    reason: str
    """Kind of problem: an exception name (``UnsupportedEncodingError``, ``CameraInfoError``, ...),
    ``CorruptMessage`` or ``NoCameraInfo``."""
    detail: str


@dataclass(frozen=True)
class BagSummary:
    """What ``process_bag`` did: frames, time per stage, occupancy statistics."""

    input_path: str
    output_path: str
    storage: str
    image_topic: str
    camera_info_topic: str
    model: str
    device: str
    random_weights: bool
    images: int
    """Image messages read."""
    camera_infos: int
    """CameraInfo messages read (corrupt ones included)."""
    frames_processed: int
    skipped: tuple[SkippedFrame, ...]
    setup_s: float
    """Opening the bags and building the pipeline (model load)."""
    wall_s: float
    """The processing loop (everything after setup)."""
    stage_s: Mapping[str, float]
    """Seconds per stage (``STAGES``): decode (bag read + deserialisation + image conversion), inference (pose +
    ``Pipeline.process``), build (output messages), write (serialisation + bag writes, input copies included),
    other (the rest of the loop); they add up to ``wall_s``."""
    occupied_voxels: tuple[int, ...]
    """Occupied voxels of each processed frame."""
    class_voxels: Mapping[str, int]
    """Occupied voxels per SSC class over all frames."""
    messages_written: Mapping[str, int]
    """Messages per output topic (copied inputs included)."""
    input_damage: tuple[Damage, ...] = ()
    """Problems found in the input bag (empty: read completely)."""
    interrupted: str = ""
    """Why the run stopped before the end of the input (``SIGINT``, ...; empty: it did not)."""
    frames_resumed: int = 0
    """Frames done (processed or skipped) by the interrupted run(s) this one continued."""
    frames_pending: int = 0
    """Images read but not yet paired when the run was interrupted."""
    map_statistics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The local semantic map (``mapping.enabled``): frames fused and without a pose, voxels, the saved files;
    empty when mapping is off."""

    @property
    def messages_lost(self) -> int | None:
        """Input messages that could not be read (None: the bag does not say how many)."""
        return messages_lost(self.input_damage)

    @property
    def frames_skipped(self) -> int:
        return len(self.skipped)

    @property
    def skip_reasons(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped).most_common())

    @property
    def stage_share(self) -> dict[str, float]:
        """Fraction of ``wall_s`` per stage (sums to 1)."""
        return {k: (v / self.wall_s if self.wall_s > 0 else 0.0) for k, v in self.stage_s.items()}

    @property
    def mean_frame_ms(self) -> float:
        """Loop time per processed frame (ms)."""
        return self.wall_s / self.frames_processed * 1e3 if self.frames_processed else float("nan")

    @property
    def frames_per_s(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else float("nan")

    def occupancy_stats(self) -> dict[str, float]:
        """Mean, min, max of occupied voxels per frame (NaN without frames)."""
        v = np.asarray(self.occupied_voxels, dtype=np.float64)
        if v.size == 0:
            return {"mean": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``summary.json``)."""
        d = dataclasses.asdict(self)
        d.update(frames_skipped=self.frames_skipped, skip_reasons=self.skip_reasons, stage_share=self.stage_share,
                 messages_lost=self.messages_lost,
                 mean_frame_ms=self.mean_frame_ms, frames_per_s=self.frames_per_s,
                 occupied_voxels_per_frame=self.occupancy_stats())
        return d

    def to_markdown(self) -> str:
        """Human-readable summary (``summary.md``)."""
        occ = self.occupancy_stats()
        lines = [
            "# scenedino-process-bag summary", "",
            f"- input: `{self.input_path}` (images `{self.image_topic}`, CameraInfo `{self.camera_info_topic}`)",
            f"- output: `{self.output_path}` ({self.storage}; "
            f"{sum(self.messages_written.values())} messages on {len(self.messages_written)} topics)",
            f"- model: {self.model} on {self.device}" + (" -- RANDOM WEIGHTS, outputs are meaningless"
                                                        if self.random_weights else ""),
            f"- frames: {self.images} images, {self.frames_processed} processed, {self.frames_skipped} skipped; "
            f"{self.camera_infos} CameraInfo messages",
        ]
        if self.interrupted:
            lines.append(f"- **interrupted** ({self.interrupted}): this bag holds the frames done so far"
                         + (f"; {self.frames_pending} images were waiting for their CameraInfo"
                            if self.frames_pending else "") + "; continue with --resume")
        if self.frames_resumed:
            lines.append(f"- resumed: {self.frames_resumed} frames were done by the interrupted run(s)")
        if self.map_statistics:
            m = self.map_statistics
            files = m.get("files") or []
            lines.append(f"- map in `{m['map_frame']}`: {m['frames_fused']} frames fused, {m['frames_without_pose']} "
                         f"without a pose, {m['map_resets']} resets; {m['occupied_voxels']} occupied voxels at the end"
                         + (f"; saved as {', '.join(f'`{f}`' for f in files)}" if files else ""))
        if self.input_damage:
            lines.append(f"- **damaged input**: {describe_losses(self.input_damage)}")
            lines += [f"  - {d.describe()}" for d in self.input_damage]
        if self.skipped:
            lines += ["", "| skip reason | frames | first stamp (s) | first detail |", "|---|---|---|---|"]
            for reason, n in self.skip_reasons.items():
                first = next(s for s in self.skipped if s.reason == reason)
                lines.append(f"| {reason} | {n} | {first.stamp_ns * 1e-9:.3f} | {first.detail} |")
        lines += ["", f"Time: setup {self.setup_s:.2f} s, processing {self.wall_s:.2f} s = "
                      f"{self.mean_frame_ms:.1f} ms per frame ({self.frames_per_s:.2f} frames/s)", "",
                  "| stage | s | ms per frame | share |", "|---|---|---|---|"]
        n = max(self.frames_processed, 1)
        for stage, seconds in self.stage_s.items():
            lines.append(f"| {stage} | {seconds:.3f} | {seconds / n * 1e3:.1f} | {self.stage_share[stage]:.1%} |")
        lines += ["", f"Occupied voxels per frame: mean {occ['mean']:.1f}, min {occ['min']:.0f}, "
                      f"max {occ['max']:.0f}", "", "| class | occupied voxels | share |", "|---|---|---|"]
        total = max(sum(self.class_voxels.values()), 1)
        for name, count in sorted(self.class_voxels.items(), key=lambda kv: -kv[1]):
            if count:
                lines.append(f"| {name} | {count} | {count / total:.1%} |")
        lines += ["", "| output topic | messages |", "|---|---|"]
        lines += [f"| `{topic}` | {count} |" for topic, count in self.messages_written.items()]
        return "\n".join(lines) + "\n"
