"""Local semantic map: fuse every frame's voxel prediction into one rolling voxel map over odometry (no ROS).

``SemanticMap`` holds the map; ``ObservationBuilder`` turns a frame's dense prediction into a ``FrameObservation``;
``MapConfig`` has every parameter. See ``docs/mapping.md``.
"""
from .config import MapConfig
from .observation import DenseObservation, FrameObservation, ObservationBuilder, PackedObservation
from .semantic_map import BirdEyeView, DenseMap, IntegrationStats, OccupiedVoxels, SemanticMap

__all__ = ["BirdEyeView", "DenseMap", "DenseObservation", "FrameObservation", "IntegrationStats", "MapConfig",
           "ObservationBuilder", "OccupiedVoxels", "PackedObservation", "SemanticMap"]
