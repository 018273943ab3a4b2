"""SceneDINO: unsupervised semantic scene completion from one image, as a ROS-free PyTorch package.

The public API, loaded on first use (``import scenedino_core`` itself does not import torch)::

    from scenedino_core import load_model, predict_voxels
    model = load_model("checkpoint.pt")                       # SceneDINO with its SceneDINOConfig
    volume = model.encode(image, K_norm, normalized=True)     # FeatureVolume
    pred = predict_voxels(model, volume, centres, voxel_size)  # VoxelPrediction
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> module that defines it.
_EXPORTS = {
    "SceneDINO": "scenedino_core.model",
    "SceneDINOConfig": "scenedino_core.config",
    "load_model": "scenedino_core.checkpoint",
    "predict_voxels": "scenedino_core.voxels",
    "FeatureVolume": "scenedino_core.types",
    "VoxelPrediction": "scenedino_core.voxels",
}

__all__ = ["FeatureVolume", "SceneDINO", "SceneDINOConfig", "VoxelPrediction", "load_model", "predict_voxels"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from scenedino_core.checkpoint import load_model
    from scenedino_core.config import SceneDINOConfig
    from scenedino_core.model import SceneDINO
    from scenedino_core.types import FeatureVolume
    from scenedino_core.voxels import VoxelPrediction, predict_voxels


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scenedino_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
