"""``MapConfig``: every parameter of the local semantic map, with its default and the anchors' values.

Anchors: OctoMap (``OcTree`` defaults: hit 0.7, miss 0.4, clamping 0.1192 / 0.971, occupancy threshold 0.5) and
nvblox's occupancy layer (log-odds with the same kind of clamping; 0.05 m voxels for depth cameras, a window
around the robot). The map's own defaults are OctoMap's for the log-odds model and SSCBench's for the window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from scenedino_core.voxels import SIGMA_THRESHOLD


def logit(p: float) -> float:
    """log(p / (1 - p)) of a probability in (0, 1)."""
    return math.log(p / (1.0 - p))


#: Per-frame occupancy probability at the SSC cut-off: 1 - exp(-voxel_size * σ) with σ = 0.2 /m, 0.2 m voxels.
FRAME_THRESHOLD_PROBABILITY = 1.0 - math.exp(-0.2 * SIGMA_THRESHOLD)


@dataclass(frozen=True)
class MapConfig:
    """The map's window, occupancy model, semantic evidence and decay.

    Occupancy (per voxel, clamped log-odds ``L``; ``L > logit(occupied_probability)`` is occupied):
    a frame that observes a voxel with occupancy probability ``p`` adds
    ``weight * clip(probability_gain * (logit(p) - logit(frame_threshold_probability)), logit(p_miss), logit(p_hit))``
    and ``L`` is clamped to ``[logit(p_min), logit(p_max)]``. The frame's own occupied / empty boundary
    (``frame_threshold_probability``) maps to no change, so a single frame reproduces the per-frame occupancy;
    ``p_hit`` / ``p_miss`` bound what one frame can add, as OctoMap's hit/miss probabilities do for a range sensor.
    """

    # ---- window
    voxel_size_m: float = 0.2
    """Voxel edge (m). Map voxel (i, j, k) is the cube [i, i+1) x [j, j+1) x [k, k+1) times this size in the map
    frame: the lattice is fixed in the map frame, so voxels never move or resample when the window does."""
    size_m: tuple[float, float, float] = (51.2, 51.2, 6.4)
    """Window extent (x, y, z) in metres; each must be a multiple of ``voxel_size_m`` (default 256 x 256 x 32)."""
    center_offset_m: tuple[float, float, float] = (0.0, 0.0, 1.4)
    """Window centre relative to the camera, map-frame axes (m). z = 1.4 m puts a 6.4 m window 1.8 m below and
    4.6 m above a camera 1.55 m above the road, the SSCBench box (-0.27 .. 6.13 m above the road)."""
    recenter_distance_m: tuple[float, float, float] = (2.0, 2.0, 1.0)
    """The window re-centres on the camera once the camera is further than this from the window's (offset)
    centre along any axis; hysteresis so that a camera bobbing across a voxel boundary does not evict slabs."""

    # ---- occupancy (log-odds)
    p_hit: float = 0.7
    """Largest probability one frame can assert (OctoMap ``prob_hit`` 0.7)."""
    p_miss: float = 0.4
    """Smallest probability one frame can assert (OctoMap ``prob_miss`` 0.4)."""
    p_min: float = 0.12
    """Lower clamp of the fused probability (OctoMap ``clamping_thres_min`` 0.1192)."""
    p_max: float = 0.97
    """Upper clamp of the fused probability (OctoMap ``clamping_thres_max`` 0.971)."""
    occupied_probability: float = 0.5
    """Fused probability above which a voxel is occupied (OctoMap ``occupancy_thres`` 0.5)."""
    frame_threshold_probability: float = FRAME_THRESHOLD_PROBABILITY
    """Per-frame occupancy probability at which a frame adds nothing: the per-frame occupied / empty boundary
    (SSCBench cut-off σ = 0.2 /m at 0.2 m voxels: 1 - exp(-0.04) = 0.0392)."""
    probability_gain: float = 1.0
    """Slope of the frame's log-odds around that boundary; large values turn the update into OctoMap's binary
    hit / miss."""
    occluded_weight: float = 0.25
    """Weight of voxels a frame completes behind the visible surface, relative to directly visible ones (1.0)."""
    occlusion_margin_m: float = 0.4
    """A voxel counts as completed (occluded) when its camera z exceeds the frame's rendered depth at its pixel by
    more than this (m); nearer voxels, and voxels without a rendered depth, count as visible."""
    free_in_front_of_depth: bool = True
    """Voxels more than ``occlusion_margin_m`` in front of the rendered depth count as free (probability 0, no class
    evidence): the rendered ray passed through them, as a depth camera's ray does in OctoMap or nvblox."""

    # ---- semantics
    num_classes: int = 15
    """Classes with evidence: labels 1..num_classes (the SSC labels; 0 = empty has none)."""
    class_unit: int = 8
    """Evidence counts (uint8) one full-weight observation adds to its class; counts are halved, all classes of a
    voxel together, before one would exceed 255 (the ratios stay, the oldest evidence fades)."""
    class_prior: float = 0.1
    """Dirichlet prior per class, in full-weight observations: fused confidence of class c =
    (n_c + prior) / (sum n + num_classes * prior), n in observations."""

    # ---- decay
    decay_s: float = 0.0
    """A voxel not observed for longer than this returns to unknown (moving objects); 0 = off (the default)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.voxel_size_m) and self.voxel_size_m > 0):
            raise ValueError(f"voxel_size_m must be > 0, got {self.voxel_size_m}")
        for name in ("size_m", "center_offset_m", "recenter_distance_m"):
            value = getattr(self, name)
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name} must be 3 finite values, got {value}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        for axis, size in zip("xyz", self.size_m):
            n = size / self.voxel_size_m
            if size <= 0 or abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise ValueError(f"size_m {axis} = {size} is not a positive multiple of voxel_size_m = "
                                 f"{self.voxel_size_m}")
        if any(d < 0 for d in self.recenter_distance_m):
            raise ValueError(f"recenter_distance_m must be >= 0, got {self.recenter_distance_m}")
        for name in ("p_hit", "p_miss", "p_min", "p_max", "occupied_probability", "frame_threshold_probability"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {value}")
        if not self.p_miss < 0.5 < self.p_hit:
            raise ValueError(f"need p_miss < 0.5 < p_hit, got p_miss={self.p_miss}, p_hit={self.p_hit}")
        if not self.p_min < self.occupied_probability < self.p_max:
            raise ValueError(f"need p_min < occupied_probability < p_max, got {self.p_min}, "
                             f"{self.occupied_probability}, {self.p_max}")
        if not self.probability_gain > 0:
            raise ValueError(f"probability_gain must be > 0, got {self.probability_gain}")
        if not 0.0 <= self.occluded_weight <= 1.0:
            raise ValueError(f"occluded_weight must lie in [0, 1], got {self.occluded_weight}")
        if not (math.isfinite(self.occlusion_margin_m) and self.occlusion_margin_m >= 0):
            raise ValueError(f"occlusion_margin_m must be >= 0, got {self.occlusion_margin_m}")
        if not 1 <= self.num_classes <= 254:
            raise ValueError(f"num_classes must lie in [1, 254], got {self.num_classes}")
        if not 1 <= self.class_unit <= 128:
            raise ValueError(f"class_unit must lie in [1, 128], got {self.class_unit}")
        if not self.class_prior >= 0:
            raise ValueError(f"class_prior must be >= 0, got {self.class_prior}")
        if not (math.isfinite(self.decay_s) and self.decay_s >= 0):
            raise ValueError(f"decay_s must be >= 0 (0 = off), got {self.decay_s}")

    @property
    def dims(self) -> tuple[int, int, int]:
        """Window size in voxels (X, Y, Z)."""
        return tuple(round(s / self.voxel_size_m) for s in self.size_m)  # type: ignore[return-value]

    @property
    def num_voxels(self) -> int:
        return self.dims[0] * self.dims[1] * self.dims[2]

    @property
    def l_hit(self) -> float:
        return logit(self.p_hit)

    @property
    def l_miss(self) -> float:
        return logit(self.p_miss)

    @property
    def l_min(self) -> float:
        return logit(self.p_min)

    @property
    def l_max(self) -> float:
        return logit(self.p_max)

    @property
    def l_occupied(self) -> float:
        return logit(self.occupied_probability)

    @property
    def bytes_per_voxel(self) -> int:
        """State bytes per voxel: float32 log-odds, uint8 observation count, ``num_classes`` uint8 class counts,
        and a float32 last-observed time when decay is on."""
        return 4 + 1 + self.num_classes + (4 if self.decay_s > 0 else 0)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @staticmethod
    def from_dict(values: dict) -> MapConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in fields(MapConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MapConfig keys: {', '.join(unknown)}")
        return MapConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
