"""``SemanticMap``: a rolling, gravity-aligned voxel map in a fixed odometry frame that fuses every frame's prediction.

The map frame is a fixed, gravity-aligned odometry frame (z up). Its voxel lattice is fixed in that frame (voxel
``(i, j, k)`` is ``[i, i + 1) x [j, j + 1) x [k, k + 1)`` times the voxel size), and the map holds a window of
``MapConfig.dims`` voxels around the camera, stored as a ring buffer (``window.RingWindow``): moving the window
clears the voxels that leave and copies nothing.

Per voxel (state ``MapConfig.bytes_per_voxel`` bytes, 20 with the defaults; 42 MB for the default 256 x 256 x 32
window): float32 clamped log-odds of occupancy, a uint8 count of the frames that observed it (saturating at 255;
0 = unknown), ``num_classes`` uint8 class-evidence counts (``semantics``), and with decay a float32 time of the last
observation.

``integrate`` takes the frame's pose and ``FrameObservation``: every window voxel whose centre falls in an observed
voxel of the frame grid takes that voxel's evidence (``correspondence``): log-odds increment from the frame's
probability (``occupancy``), times ``occluded_weight`` for completed voxels; class evidence for voxels the frame
labels. A stamp earlier than the previous one (a bag played again) resets the map first.

Typical use::

    fusion = SemanticMap(MapConfig())
    builder = ObservationBuilder(result.grid, fusion.config)
    stats = fusion.integrate(stamp_ns, map_from_grid, builder.from_result(result, cam_from_grid, render_stride))
    cloud = fusion.occupied_voxels()   # centres in the map frame, labels, confidences
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenedino_core.files import atomic_path
from scenedino_core.labels import ssc_palette
from scenedino_core.voxels import VoxelGrid

from . import occupancy, semantics
from .config import MapConfig
from .correspondence import correspond
from .observation import FREE, NOT_OBSERVED, UNKNOWN, FrameObservation, _rigid
from .occupancy import LEVELS
from .window import RingWindow

#: Version of the ``save`` file layout.
FILE_VERSION = 1


@dataclass(frozen=True)
class IntegrationStats:
    """What one ``integrate`` call did."""

    stamp_ns: int
    reset: bool
    """The stamp went backwards: the map was cleared first."""
    window_moved: bool
    voxels_evicted: int
    """Voxels cleared because they left the window (counted per cleared slab; slabs may overlap at corners)."""
    voxels_decayed: int
    """Voxels returned to unknown by ``decay_s``."""
    voxels_updated: int
    """Window voxels that took evidence from an observed frame voxel."""
    evidence_halved: int
    """Voxels whose class counts were halved to make room."""
    elapsed_ms: float


@dataclass(frozen=True)
class OccupiedVoxels:
    """The occupied voxels of the window (N of them)."""

    points: np.ndarray
    """(N, 3) float32 voxel centres in the map frame."""
    index: np.ndarray
    """(N, 3) int64 map voxel indices."""
    labels: np.ndarray
    """(N,) uint8 fused class (1..C), 0 where no class evidence."""
    confidence: np.ndarray
    """(N,) float32 fused class confidence (Dirichlet mean of the arg-max class)."""
    probability: np.ndarray
    """(N,) float32 fused occupancy probability."""


@dataclass(frozen=True)
class DenseMap:
    """The window as dense arrays (X, Y, Z), index [x, y, z] from the window's lowest voxel ``origin_index``."""

    origin_index: tuple[int, int, int]
    voxel_size: float
    log_odds: np.ndarray
    """float32 clamped log-odds (0 where never observed)."""
    observations: np.ndarray
    """uint8 frames that observed each voxel (saturating at 255; 0 = unknown)."""
    labels: np.ndarray
    """uint8: class 1..C of occupied voxels (0 if an occupied voxel has no class evidence), FREE (254) observed and
    not occupied, UNKNOWN (255) never observed."""
    confidence: np.ndarray
    """float32 class confidence of occupied voxels, 0 elsewhere."""

    @property
    def grid(self) -> VoxelGrid:
        """The window as a ``VoxelGrid`` in the map frame."""
        return VoxelGrid(origin=tuple(float(i * self.voxel_size) for i in self.origin_index),  # type: ignore
                         voxel_size=self.voxel_size, dims=self.log_odds.shape)

    @property
    def observed(self) -> np.ndarray:
        return self.observations > 0

    @property
    def occupied(self) -> np.ndarray:
        return (self.labels != FREE) & (self.labels != UNKNOWN)

    @property
    def probability(self) -> np.ndarray:
        """float32 occupancy probability, 0.5 where never observed."""
        return occupancy.probability(self.log_odds)


@dataclass(frozen=True)
class BirdEyeView:
    """Occupancy projected on the map's x-y plane: ``data[j, i]`` is the column (i, j) of the window."""

    data: np.ndarray
    """(Y, X) int8: 100 where a voxel of the height band is occupied by a non-ground class, 0 where the band is
    observed and free, -1 where it was never observed."""
    origin_xy_m: tuple[float, float]
    """Map-frame (x, y) of the outer corner of cell (0, 0)."""
    resolution_m: float


class SemanticMap:
    """Rolling local semantic voxel map (see the module docstring).

    Args:
        config: window, occupancy model, semantics and decay (default: ``MapConfig()``).
    """

    def __init__(self, config: MapConfig | None = None):
        self.config = config = MapConfig() if config is None else config
        dims = config.dims
        self._log_odds = np.zeros(dims, dtype=np.float32)
        self._hits = np.zeros(dims, dtype=np.uint8)
        self._counts = np.zeros(dims + (config.num_classes,), dtype=np.uint8)
        self._seen = np.zeros(dims, dtype=np.float32) if config.decay_s > 0 else None
        self._table = occupancy.increment_table(config)
        self._tables: dict[float, np.ndarray] = {}
        self._window = RingWindow(dims)
        self._placed = False
        self._epoch_ns: int | None = None
        self._last_ns: int | None = None
        self.frames_integrated = 0

    # ------------------------------------------------------------------ state
    @property
    def window_origin(self) -> tuple[int, int, int]:
        """Map index of the window's lowest voxel."""
        return self._window.origin

    @property
    def window_grid(self) -> VoxelGrid:
        """The window as a ``VoxelGrid`` in the map frame."""
        s = self.config.voxel_size_m
        return VoxelGrid(origin=tuple(float(o * s) for o in self._window.origin),  # type: ignore[arg-type]
                         voxel_size=s, dims=self.config.dims)

    @property
    def last_stamp_ns(self) -> int | None:
        return self._last_ns

    @property
    def nbytes(self) -> int:
        """Bytes of the per-voxel state (fixed by the window)."""
        return sum(a.nbytes for a in (self._log_odds, self._hits, self._counts, self._seen) if a is not None)

    def reset(self) -> None:
        """Forget everything (the window is placed again by the next frame)."""
        for a in (self._log_odds, self._hits, self._counts, self._seen):
            if a is not None:
                a.fill(0)
        self._placed = False
        self._epoch_ns = self._last_ns = None
        self.frames_integrated = 0

    def _clear(self, sl) -> None:
        self._log_odds[sl] = 0.0
        self._hits[sl] = 0
        self._counts[sl] = 0
        if self._seen is not None:
            self._seen[sl] = 0.0

    # ------------------------------------------------------------------ window
    def _desired_origin(self, centre_m: np.ndarray) -> tuple[int, int, int]:
        s = self.config.voxel_size_m
        return tuple(int(np.floor(c / s)) - d // 2 for c, d in zip(centre_m, self.config.dims))  # type: ignore

    def _place(self, camera_m: np.ndarray) -> tuple[bool, int]:
        """Re-centre the window on the camera when needed; returns (moved, voxels evicted)."""
        centre = camera_m + np.asarray(self.config.center_offset_m)
        if not self._placed:
            self._window.origin = self._desired_origin(centre)
            self._placed = True
            return True, 0
        s = self.config.voxel_size_m
        current = (np.asarray(self._window.origin) + np.asarray(self.config.dims) / 2.0) * s
        if np.all(np.abs(centre - current) <= np.asarray(self.config.recenter_distance_m)):
            return False, 0
        new = self._desired_origin(centre)
        if new == self._window.origin:
            return False, 0
        evicted = 0
        for sl in self._window.move(new):
            self._clear(sl)
            evicted += int(np.prod([len(range(*x.indices(n))) for x, n in zip(sl, self.config.dims)]))
        return True, evicted

    # ------------------------------------------------------------------ fusion
    def _decay(self, t_s: float) -> int:
        stale = (self._hits > 0) & (np.float32(t_s) - self._seen > np.float32(self.config.decay_s))
        n = int(np.count_nonzero(stale))
        if n:
            self._log_odds[stale] = 0.0
            self._hits[stale] = 0
            self._counts[stale] = 0
        return n

    def _increments(self, weight: float) -> np.ndarray:
        """(2 * LEVELS + 1,) float32 log-odds increment by ``FrameObservation.code`` for a frame of ``weight``."""
        table = self._tables.get(weight)
        if table is None:
            w = np.float32(weight)
            table = np.concatenate([self._table * w, self._table * (w * np.float32(self.config.occluded_weight)),
                                    np.zeros(1, np.float32)])
            self._tables = {weight: table}
        return table

    def _add_classes(self, lo: tuple[int, int, int], code: np.ndarray, cls: np.ndarray, conf: np.ndarray | None,
                     weight: float) -> int:
        """Class evidence of the labelled voxels of a box of map voxels starting at map index ``lo`` (``code``,
        ``cls``, ``conf`` cover the box); returns how many voxels had their counts halved."""
        local = np.flatnonzero(cls)
        if not local.size:
            return 0
        cfg = self.config
        _, by, bz = cls.shape
        X, Y, Z = cfg.dims
        # storage row of box voxel (ix, iy, iz): ring positions per axis, the (y, z) part from a table
        sx = np.mod(lo[0] + np.arange(cls.shape[0], dtype=np.int64), X) * (Y * Z)
        yz = (np.mod(lo[1] + np.arange(by, dtype=np.int64), Y)[:, None] * Z
              + np.mod(lo[2] + np.arange(bz, dtype=np.int64), Z)).reshape(-1)
        ix, rest = np.divmod(local, by * bz)
        storage = np.take(sx, ix) + np.take(yz, rest)
        classes = np.take(cls, local).astype(np.intp) - 1
        visible = np.take(code, local) < LEVELS
        if conf is None:
            u_vis = semantics.evidence_units(cfg.class_unit, weight)
            u_occ = semantics.evidence_units(cfg.class_unit, weight * cfg.occluded_weight)
            units = np.where(visible, u_vis, u_occ)
        else:
            w = np.where(visible, np.float32(weight), np.float32(weight * cfg.occluded_weight))
            units = semantics.evidence_units(cfg.class_unit, w, np.take(conf, local))
        return semantics.add_evidence_flat(self._counts.reshape(-1, cfg.num_classes), storage, classes, units)

    def integrate(self, stamp_ns: int, map_from_grid: np.ndarray, observation: FrameObservation, *,
                  weight: float = 1.0) -> IntegrationStats:
        """Fuse one frame.

        Args:
            stamp_ns: the frame's stamp (ns); earlier than the previous one: the map is reset first.
            map_from_grid: (4, 4) pose of the frame's grid frame in the map frame (rigid; the map frame must be
                gravity-aligned). From a camera pose: ``map_from_camera @ observation.cam_from_grid``.
            observation: the frame (``ObservationBuilder``).
            weight: scales the frame's evidence (occupancy increments and class evidence), in (0, 1000].

        Raises:
            ValueError: a transform that is not rigid, or a weight out of range.
        """
        t0 = time.perf_counter()
        T = _rigid(map_from_grid, "map_from_grid")
        if not (np.isfinite(weight) and 0 < weight <= 1e3):
            raise ValueError(f"weight must lie in (0, 1000], got {weight}")
        stamp_ns = int(stamp_ns)
        reset = self._last_ns is not None and stamp_ns < self._last_ns
        if reset:
            self.reset()
        if self._epoch_ns is None:
            self._epoch_ns = stamp_ns
        t_s = (stamp_ns - self._epoch_ns) * 1e-9
        camera_m = T[:3, :3] @ observation.camera_in_grid + T[:3, 3]
        moved, evicted = self._place(camera_m)
        decayed = self._decay(t_s) if self._seen is not None else 0

        updated = halved = 0
        corr = correspond(observation.grid, T, self.config.voxel_size_m, self._window.origin, self._window.hi)
        if corr is not None:
            table = self._increments(float(weight))
            l_min, l_max = self.config.l_min, self.config.l_max
            part = observation.packed(corr.frame_part())  # the whole box at once; the ring's blocks are views of it
            inc = np.take(table, part.code)
            seen = part.code != NOT_OBSERVED
            updated = int(np.count_nonzero(seen))
            for block in self._window.blocks(corr.lo, corr.hi):
                local, st = block.local(corr.lo), block.slices
                occupancy.update(self._log_odds[st], inc[local], l_min, l_max)
                hits = self._hits[st]
                np.add(hits, seen[local].view(np.uint8), out=hits, where=hits < 255)
                if self._seen is not None:
                    np.copyto(self._seen[st], np.float32(t_s), where=seen[local])
            if part.labels is not None:
                halved = self._add_classes(corr.lo, part.code, part.labels, part.confidence, float(weight))
        self._last_ns = stamp_ns
        self.frames_integrated += 1
        return IntegrationStats(stamp_ns=stamp_ns, reset=reset, window_moved=moved, voxels_evicted=evicted,
                                voxels_decayed=decayed, voxels_updated=updated, evidence_halved=halved,
                                elapsed_ms=(time.perf_counter() - t0) * 1e3)

    # ------------------------------------------------------------------ outputs
    def _canonical(self, storage: np.ndarray) -> np.ndarray:
        """Copy of a storage array in window order (index 0 = the window's lowest voxel)."""
        out = np.empty_like(storage)
        lo, hi = self._window.origin, self._window.hi
        for block in self._window.blocks(lo, hi):
            out[block.local(lo)] = storage[block.slices]
        return out

    def _occupied_storage(self) -> np.ndarray:
        return (self._log_odds > np.float32(self.config.l_occupied)) & (self._hits > 0)

    def occupied_voxels(self) -> OccupiedVoxels:
        """Occupied voxels of the window with their fused class and confidences (order: storage order)."""
        idx = np.nonzero(self._occupied_storage())
        index = self._window.storage_to_map(np.stack(idx, axis=1)) if idx[0].size else np.zeros((0, 3), np.int64)
        labels, conf = semantics.read_out(self._counts[idx], self.config.class_unit, self.config.class_prior)
        points = ((index + 0.5) * self.config.voxel_size_m).astype(np.float32)
        return OccupiedVoxels(points=points, index=index, labels=labels, confidence=conf,
                              probability=occupancy.probability(self._log_odds[idx]))

    def dense(self) -> DenseMap:
        """The window as dense arrays in window order (a copy)."""
        log_odds = self._canonical(self._log_odds)
        hits = self._canonical(self._hits)
        occupied = (log_odds > np.float32(self.config.l_occupied)) & (hits > 0)
        labels = np.where(hits > 0, np.uint8(FREE), np.uint8(UNKNOWN)).astype(np.uint8)
        confidence = np.zeros(log_odds.shape, dtype=np.float32)
        idx = np.nonzero(occupied)
        if idx[0].size:
            counts = self._canonical(self._counts)
            labels[idx], confidence[idx] = semantics.read_out(counts[idx], self.config.class_unit,
                                                              self.config.class_prior)
        return DenseMap(origin_index=self._window.origin, voxel_size=self.config.voxel_size_m, log_odds=log_odds,
                        observations=hits, labels=labels, confidence=confidence)

    def bev(self, min_z_m: float = 0.2, max_z_m: float = 2.0, ground_labels: tuple[int, ...] = (7, 8, 12),
            dense: DenseMap | None = None) -> BirdEyeView:
        """Bird's-eye view of the voxels whose centre z (map frame) lies in [min_z_m, max_z_m].

        ``ground_labels`` (default road, sidewalk, terrain) never make a cell occupied. With the odometry frame
        starting on the ground, z is the height above the start.
        """
        d = self.dense() if dense is None else dense
        s = d.voxel_size
        z = (d.origin_index[2] + np.arange(d.labels.shape[2]) + 0.5) * s
        band = (z >= min_z_m) & (z <= max_z_m)
        if not band.any():
            raise ValueError(f"no voxel centre of the window (z {z[0]:.2f} .. {z[-1]:.2f} m) lies in "
                             f"[{min_z_m}, {max_z_m}] m")
        lab = d.labels[:, :, band]
        occ = (lab != FREE) & (lab != UNKNOWN) & ~np.isin(lab, np.asarray(ground_labels, dtype=np.uint8))
        seen = lab != UNKNOWN
        data = np.where(occ.any(axis=2), 100, np.where(seen.any(axis=2), 0, -1)).astype(np.int8)
        return BirdEyeView(data=np.ascontiguousarray(data.T),
                           origin_xy_m=(d.origin_index[0] * s, d.origin_index[1] * s), resolution_m=s)

    def statistics(self) -> dict[str, float]:
        """Counts for diagnostics: observed and occupied voxels, frames, window origin (m), state bytes."""
        s = self.config.voxel_size_m
        ox, oy, oz = (o * s for o in self._window.origin)
        return {"frames": self.frames_integrated, "observed_voxels": int(np.count_nonzero(self._hits)),
                "occupied_voxels": int(np.count_nonzero(self._occupied_storage())),
                "window_origin_x_m": ox, "window_origin_y_m": oy, "window_origin_z_m": oz,
                "state_bytes": self.nbytes}

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, palette: np.ndarray | None = None) -> tuple[Path, Path]:
        """Write the map to ``path`` (.npz, reloadable with ``load``) and a coloured PLY point cloud of its occupied
        voxels beside it (same name, ``.ply``); both atomically. Returns (npz path, ply path).

        ``palette``: (num_classes + 1, 3) uint8 colours by label (default: the SSC palette for 15 classes, grey
        otherwise).
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays = {"log_odds": self._canonical(self._log_odds), "observations": self._canonical(self._hits),
                  "class_counts": self._canonical(self._counts)}
        if self._seen is not None:
            arrays["last_seen_s"] = self._canonical(self._seen)
        meta = {"version": FILE_VERSION, "config": self.config.to_dict(), "window_origin": list(self._window.origin),
                "placed": self._placed, "epoch_ns": self._epoch_ns, "last_stamp_ns": self._last_ns,
                "frames_integrated": self.frames_integrated}
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
        ply = path.with_suffix(".ply")
        with atomic_path(ply) as tmp:
            tmp.write_bytes(ply_bytes(self.occupied_voxels(), self._palette(palette)))
        return path, ply

    def _palette(self, palette: np.ndarray | None) -> np.ndarray:
        n = self.config.num_classes + 1
        if palette is None:
            palette = ssc_palette() if n == len(ssc_palette()) else np.full((n, 3), 160, np.uint8)
        palette = np.asarray(palette, dtype=np.uint8)
        if palette.shape != (n, 3):
            raise ValueError(f"palette must be ({n}, 3), got {palette.shape}")
        return palette

    @staticmethod
    def load(path: str | Path) -> SemanticMap:
        """A map written by ``save``.

        Raises:
            FileNotFoundError: no such file. ValueError: not a map file, or another layout version.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"map file not found: {path}")
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ValueError(f"{path} is not a semantic map file (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != FILE_VERSION:
                raise ValueError(f"{path}: map file version {meta.get('version')}, expected {FILE_VERSION}")
            m = SemanticMap(MapConfig.from_dict(meta["config"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
        m._window.origin = tuple(int(v) for v in meta["window_origin"])
        for name, storage in (("log_odds", m._log_odds), ("observations", m._hits), ("class_counts", m._counts),
                              ("last_seen_s", m._seen)):
            if storage is None:
                continue
            a = arrays.get(name)
            if a is None or a.shape != storage.shape or a.dtype != storage.dtype:
                raise ValueError(f"{path}: entry {name!r} missing or not {storage.shape} {storage.dtype}")
            lo, hi = m._window.origin, m._window.hi
            for block in m._window.blocks(lo, hi):
                storage[block.slices] = a[block.local(lo)]
        m._placed = bool(meta["placed"])
        m._epoch_ns, m._last_ns = meta["epoch_ns"], meta["last_stamp_ns"]
        m.frames_integrated = int(meta["frames_integrated"])
        return m


def ply_bytes(voxels: OccupiedVoxels, palette: np.ndarray) -> bytes:
    """Binary little-endian PLY of voxel centres: x, y, z (float32), red, green, blue, label (uint8),
    confidence, probability (float32)."""
    n = len(voxels.labels)
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                             ("blue", "u1"), ("label", "u1"), ("confidence", "<f4"), ("probability", "<f4")])
    rec["x"], rec["y"], rec["z"] = voxels.points[:, 0], voxels.points[:, 1], voxels.points[:, 2]
    rgb = palette[voxels.labels]
    rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    rec["label"], rec["confidence"], rec["probability"] = voxels.labels, voxels.confidence, voxels.probability
    header = ("ply\nformat binary_little_endian 1.0\ncomment scenedino semantic map, occupied voxel centres in the "
              f"map frame\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar label\n"
              "property float confidence\nproperty float probability\nend_header\n")
    return header.encode("ascii") + rec.tobytes()
