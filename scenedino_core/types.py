"""Typed values that cross module boundaries."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class FeatureVolume:
    """What ``SceneDINO.encode`` returns: everything a point query needs about the encoded images."""

    features: Tensor
    """(B, C, Hf, Wf) pixel-aligned decoder features."""
    intrinsics: Tensor
    """(B, 3, 3) normalised intrinsics of the encoded images (see ``geometry.normalize_intrinsics``)."""
    images: Tensor
    """(B, 3, H, W) the encoded RGB images in [0, 1] (for colour sampling)."""
    projected: Tensor | None = None
    """(B, hidden, Hf, Wf) features already multiplied by the field MLP's first layer (``SceneDINO.for_dense_queries``);
    sampling these instead of ``features`` gives the same hidden activations at half the per-point cost."""

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    def item(self, i: int) -> FeatureVolume:
        """The volume of batch item ``i`` (batch size 1)."""
        return FeatureVolume(self.features[i:i + 1], self.intrinsics[i:i + 1], self.images[i:i + 1],
                             None if self.projected is None else self.projected[i:i + 1])


@dataclass(frozen=True)
class FieldOutput:
    """Per-point results of ``SceneDINO.query``; leading dims (B, N)."""

    sigma: Tensor
    """(B, N) density (1/m)."""
    features: Tensor
    """(B, N, 64) reduced DINO features."""
    outside: Tensor
    """(B, N) bool: behind the camera or outside the input view."""
    rgb: Tensor
    """(B, N, 3) input-image colour at the projection, [0, 1]."""
    expanded: Tensor | None = None
    """(B, N, D) unit DINO-space features (when requested)."""
    classes: Tensor | None = None
    """(B, N) int64 trainIds (when a prediction mode was given)."""


@dataclass(frozen=True)
class RenderOutput:
    """Per-ray results of ``SceneDINO.render``; leading dims (B, R)."""

    depth: Tensor
    """(B, R) expected distance along the ray (m)."""
    features: Tensor
    """(B, R, 64) rendered reduced features."""
    rgb: Tensor
    """(B, R, 3) rendered input-image colour."""
    weights: Tensor
    """(B, R, S) compositing weights."""
    alphas: Tensor
    """(B, R, S) per-sample opacities."""
    distances: Tensor
    """(B, R, S) sample distances along the ray."""
    outside: Tensor
    """(B, R, S) bool per-sample outside-view flags."""
    expanded: Tensor | None = None
    """(B, R, D) expanded unit features of the rendered reduced features (when requested)."""
    classes: Tensor | None = None
    """(B, R) int64 trainIds (when a prediction mode was given)."""
