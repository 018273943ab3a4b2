"""The multi-view batch both training stages consume, and the colour lookup into other views."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import geometry


@dataclass(frozen=True)
class ViewBatch:
    """B items of V views; view 0 is the encoded view and defines the world frame (its pose is identity)."""

    images: Tensor
    """(B, V, 3, H, W) RGB in [0, 1]."""
    intrinsics: Tensor
    """(B, V, 3, 3) normalised intrinsics."""
    poses: Tensor
    """(B, V, 4, 4) camera-to-world (world = camera of view 0)."""
    labels: Tensor | None = None
    """(B, H, W) int64 trainIds of view 0, -1 where unknown (stage-2 linear probes only)."""

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    @property
    def num_views(self) -> int:
        return self.images.shape[1]

    def to(self, device: torch.device | str) -> ViewBatch:
        return ViewBatch(self.images.to(device), self.intrinsics.to(device), self.poses.to(device),
                         None if self.labels is None else self.labels.to(device))


def view_rays(xy: Tensor, K: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
    """World-frame rays through normalised image points of one view per batch item.

    Args:
        xy: (B, N, 2) normalised image coordinates.
        K: (B, 3, 3) normalised intrinsics; pose: (B, 4, 4) camera-to-world.

    Returns:
        origins (B, N, 3) and unit directions (B, N, 3).
    """
    d = geometry.ray_directions(xy, K) @ pose[:, :3, :3].transpose(1, 2)
    return pose[:, None, :3, 3].expand_as(d), d


def sample_views(points: Tensor, images: Tensor, K: Tensor, poses: Tensor) -> tuple[Tensor, Tensor]:
    """Colour of world points in each of R views.

    Args:
        points: (B, N, 3) world points.
        images: (B, R, 3, H, W); K: (B, R, 3, 3) normalised; poses: (B, R, 4, 4) camera-to-world.

    Returns:
        colours (B, R, N, 3) (bilinear, border) and outside (B, R, N) bool.
    """
    b, r = images.shape[:2]
    n = points.shape[1]
    world_to_cam = torch.linalg.inv(poses.flatten(0, 1))
    pts = geometry.transform_points(world_to_cam, points[:, None].expand(b, r, n, 3).flatten(0, 1))
    uv, _, outside = geometry.project(pts, K.flatten(0, 1))
    colours = F.grid_sample(images.flatten(0, 1), uv.clamp(-2, 2).unsqueeze(1), mode="bilinear",
                            padding_mode="border", align_corners=False)
    return colours[:, :, 0].transpose(1, 2).reshape(b, r, n, 3), outside.reshape(b, r, n)
