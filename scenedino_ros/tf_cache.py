"""A small TF buffer without ``tf2_ros``: the transforms of ``/tf`` and ``/tf_static`` messages, looked up at a stamp.

``tf2_ros`` is not on PyPI, so wheel-only setups and offline bag processing fill a ``TransformCache`` from
``tf2_msgs/TFMessage`` messages (live subscriptions, or a bag's ``/tf`` and ``/tf_static``) instead. Like tf2:

* every transform names a parent (``header.frame_id``) and a child frame; a frame has one parent;
* dynamic transforms are kept for ``cache_s`` seconds of stamps and interpolated between the two neighbours of the
  asked stamp (linear translation, spherical-linear rotation); a stamp outside a chain's history is an
  extrapolation error (``max_extrapolation_s`` tolerance, default 0);
* static transforms hold at every stamp;
* a lookup composes the chain through the frames' common ancestor.

Stamps are integer nanoseconds; transforms are (4, 4) float64 matrices ``parent_from_child``.
"""
from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from .frames import invert, transform_to_matrix


class TransformLookupError(LookupError):
    """The transform is not known at that stamp (unknown frame, no common ancestor, or outside the history)."""


@dataclass
class _Edge:
    """The transforms from one child frame to its parent."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _interpolate(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """(4, 4) between rigid ``a`` (w = 0) and ``b`` (w = 1)."""
    out = np.eye(4)
    out[:3, 3] = (1.0 - w) * a[:3, 3] + w * b[:3, 3]
    out[:3, :3] = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))(w).as_matrix()
    return out


class TransformCache:
    """Transforms by (parent, child) with a time history; thread-safe.

    Args:
        cache_s: seconds of dynamic transforms kept per frame (older ones are dropped when newer ones arrive).
        max_extrapolation_s: how far (s) a lookup may lie outside a dynamic transform's history, answered with the
            nearest transform.
    """

    def __init__(self, cache_s: float = 10.0, max_extrapolation_s: float = 0.0):
        if cache_s <= 0:
            raise ValueError(f"cache_s must be > 0, got {cache_s}")
        self.cache_ns = int(cache_s * 1e9)
        self.max_extrapolation_ns = int(max_extrapolation_s * 1e9)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget the dynamic transforms (after a jump back in time); static ones stay."""
        with self._lock:
            self._edges = {k: e for k, e in self._edges.items() if e.static}

    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def set_transform(self, parent: str, child: str, stamp_ns: int, parent_from_child: np.ndarray,
                      static: bool = False) -> None:
        """Add one transform; ``ValueError`` for empty or equal frame names or a non-finite matrix."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different frame names, got {parent!r} -> {child!r}")
        m = np.asarray(parent_from_child, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise ValueError(f"transform {parent} -> {child} is not a finite (4, 4) matrix")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps, edge.matrices = [stamp_ns], [m]
                return
            i = bisect.bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                edge.matrices[i] = m
            else:
                edge.stamps.insert(i, stamp_ns)
                edge.matrices.insert(i, m)
            cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
            if cut:
                del edge.stamps[:cut], edge.matrices[:cut]

    def add_message(self, msg: Any, static: bool = False) -> int:
        """Add every ``geometry_msgs/TransformStamped`` of a ``tf2_msgs/TFMessage`` (rclpy or rosbags); returns how
        many were added."""
        for t in msg.transforms:
            self.set_transform(t.header.frame_id, t.child_frame_id, _stamp_ns(t.header.stamp),
                               transform_to_matrix(t.transform), static=static)
        return len(msg.transforms)

    def add_messages(self, msgs: Iterable[Any], static: bool = False) -> int:
        return sum(self.add_message(m, static) for m in msgs)

    def _edge_at(self, child: str, edge: _Edge, stamp_ns: int) -> np.ndarray:
        if edge.static:
            return edge.matrices[0]
        stamps = edge.stamps
        if stamp_ns < stamps[0] - self.max_extrapolation_ns or stamp_ns > stamps[-1] + self.max_extrapolation_ns:
            raise TransformLookupError(
                f"{edge.parent} -> {child} is known from {stamps[0] * 1e-9:.3f} to {stamps[-1] * 1e-9:.3f} s, "
                f"not at {stamp_ns * 1e-9:.3f} s (extrapolation)")
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return edge.matrices[i]
        if i == 0:
            return edge.matrices[0]
        if i == len(stamps):
            return edge.matrices[-1]
        w = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        return _interpolate(edge.matrices[i - 1], edge.matrices[i], w)

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            parent = self._edges[chain[-1]].parent
            if parent in chain:
                raise TransformLookupError(f"the TF tree has a loop through {parent}")
            chain.append(parent)
        return chain

    def _root_from(self, chain: list[str], stop: str, stamp_ns: int) -> np.ndarray:
        """(4, 4) ``stop <- chain[0]`` along ``chain`` (which reaches ``stop``)."""
        T = np.eye(4)
        for child in chain[:chain.index(stop)]:
            T = self._edge_at(child, self._edges[child], stamp_ns) @ T
        return T

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """(4, 4) ``target_from_source`` at ``stamp_ns``; ``TransformLookupError`` naming what is missing."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for name in (target, source):
                if name not in known:
                    raise TransformLookupError(f"frame {name!r} has not been received (known frames: "
                                               f"{', '.join(sorted(known)) or 'none'})")
            up_source, up_target = self._chain(source), self._chain(target)
            common = next((f for f in up_source if f in up_target), None)
            if common is None:
                raise TransformLookupError(f"{target!r} and {source!r} are not connected (their roots are "
                                           f"{up_target[-1]!r} and {up_source[-1]!r})")
            common_from_source = self._root_from(up_source, common, stamp_ns)
            common_from_target = self._root_from(up_target, common, stamp_ns)
        return invert(common_from_target) @ common_from_source
