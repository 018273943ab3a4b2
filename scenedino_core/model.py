"""SceneDINO: image -> feature volume -> density, DINO features and semantics at any 3D point.

The model is stateless between calls: ``encode`` returns a ``FeatureVolume`` and every query takes it explicitly.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import geometry
from .backbone import DinoBackbone
from .config import SceneDINOConfig
from .decoder import DPTDecoder
from .downsampler import SalienceDownsampler
from .field import FeatureExpansion, FieldMLP, PositionalEncoding
from .rendering import composite_weights, sample_distances
from .semantics import Classification, PredictionMode, SemanticHead
from .types import FeatureVolume, FieldOutput, RenderOutput

#: Points per chunk in ``query`` (bounds peak memory; results do not depend on it).
DEFAULT_CHUNK = 65536


def _sample(maps: Tensor, uv: Tensor) -> Tensor:
    """Bilinear, border-padded lookup of (B, C, H, W) maps at (B, N, 2) normalised coords -> (B, N, C)."""
    out = F.grid_sample(maps, uv.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


class SceneDINO(nn.Module):
    """Feed-forward SceneDINO (DINO ViT + DPT + field MLP + expansion + unsupervised semantic head)."""

    def __init__(self, config: SceneDINOConfig):
        super().__init__()
        self.config = config
        self.backbone = DinoBackbone(config.backbone, config.image_size)
        dim = self.backbone.embed_dim
        self.decoder = DPTDecoder(dim, config.decoder)
        self.encoding = PositionalEncoding(config.field.num_freqs, config.field.freq_factor)
        self.mlp = FieldMLP(config.decoder.out_dim + self.encoding.d_out, config.field)
        self.expansion = FeatureExpansion(config.field.feature_dim, config.field.expansion_hidden_dim, dim)
        self.head = SemanticHead(dim, config.semantic)
        stride = self.backbone.spec.feature_stride
        self.downsampler = SalienceDownsampler(dim, stride)
        if config.artifact_field:
            h, w = config.image_size
            self.artifact_field = nn.Parameter(0.001 * torch.randn(dim, h // stride, w // stride))

    # ------------------------------------------------------------------ encoding
    def encode(self, images: Tensor, intrinsics: Tensor, *, normalized: bool = False, flip: bool = False,
               image_features: Callable[[Tensor], Tensor] | None = None) -> FeatureVolume:
        """Encode images.

        Args:
            images: (B, 3, H, W) RGB in [0, 1] with (H, W) = ``config.image_size``.
            intrinsics: (B, 3, 3) or (3, 3) pixel intrinsics of those images, or normalised intrinsics
                (``geometry.normalize_intrinsics``) when ``normalized`` is set (as KITTI-360 loaders produce them).
            flip: encode the mirrored images and mirror the features back (training augmentation).
            image_features: computes the decoder features in place of ``self.image_features`` (a compiled copy of
                it).

        Returns:
            The feature volume to query.
        """
        images, K = self._check_inputs(images, intrinsics)
        features = (image_features or self.image_features)(images.flip(-1) if flip else images)
        if flip:
            features = features.flip(-1)
        # channels-last makes the per-point bilinear lookups ~8x faster on CPU (same values)
        features = features.contiguous(memory_format=torch.channels_last)
        K_norm = K if normalized else geometry.normalize_intrinsics(K, self.config.image_size)
        return FeatureVolume(features=features, intrinsics=K_norm.to(images), images=images)

    def image_features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, C, H, W) pixel-aligned decoder features (ViT + DPT, inputs unchecked)."""
        return self.decoder(self.backbone(images))

    def _check_inputs(self, images: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
        h, w = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (h, w):
            raise ValueError(f"images must have shape (B, 3, {h}, {w}) for this model, got {tuple(images.shape)}; "
                             "resize/crop with scenedino_core.images.fit_to_model first")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"images must be RGB in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        K = torch.as_tensor(intrinsics, device=images.device).double()
        if K.shape == (3, 3):
            K = K.expand(images.shape[0], 3, 3)
        if K.shape != (images.shape[0], 3, 3):
            raise ValueError(f"intrinsics must have shape (3, 3) or ({images.shape[0]}, 3, 3) to match the images, "
                             f"got {tuple(intrinsics.shape)}")
        if not torch.isfinite(K).all() or (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
            raise ValueError(f"intrinsics need finite values and fx, fy > 0, got {K.tolist()}")
        return images, K

    # ------------------------------------------------------------------ points
    def field_inputs(self, volume: FeatureVolume, points: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """What the field MLP sees for camera-frame points (its input is ``[features | code]``).

        Args:
            volume: encoded images.
            points: (B, N, 3) points in the camera frame of the encoded images.

        Returns:
            features (B, N, C) sampled at the projection, positional code (B, N, 39) of (u, v, inverse depth),
            outside (B, N) bool, clamped normalised image coordinates (B, N, 2).
        """
        uv, code, outside = self._code(volume, points)
        return _sample(volume.features, uv), code, outside, uv

    def _code(self, volume: FeatureVolume, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Clamped normalised coords (B, N, 2), positional code (B, N, 39) and outside flags (B, N).

        Always float32, also under autocast: bf16 would round a 50 m coordinate to 0.25 m and a sine of the code
        by up to 1 %.
        """
        with torch.autocast(points.device.type, enabled=False):
            points = points.float()
            uv, z, outside = geometry.project(points, volume.intrinsics.float())
            uv = uv.clamp(-2.0, 2.0)
            zn = geometry.normalized_inverse_depth(z, self.config.field.z_near, self.config.field.z_far)
            b, n = z.shape
            code = self.encoding(torch.cat([uv, zn.unsqueeze(-1)], dim=-1).reshape(b * n, 3)).reshape(b, n, -1)
        return uv, code, outside

    def query(self, volume: FeatureVolume, points: Tensor, *, expand: bool = False,
              mode: PredictionMode | str | None = None, chunk_size: int = DEFAULT_CHUNK) -> FieldOutput:
        """Density, features and (optionally) semantics at camera-frame points.

        Args:
            volume: from ``encode``.
            points: (B, N, 3) camera-frame points (x right, y down, z forward, metres).
            expand: also return the expanded D-dim unit features.
            mode: prediction mode for trainIds (implies the expansion), or None for no semantics.
            chunk_size: points per chunk.

        Returns:
            ``FieldOutput`` with (B, N, ...) tensors.
        """
        if points.ndim != 3 or points.shape[0] != volume.batch_size or points.shape[-1] != 3:
            raise ValueError(f"points must have shape ({volume.batch_size}, N, 3), got {tuple(points.shape)}")
        points = points.to(volume.features)
        parts = [self._query_chunk(volume, points[:, i:i + chunk_size], expand, mode)
                 for i in range(0, points.shape[1], chunk_size)] or [self._query_chunk(volume, points, expand, mode)]
        return FieldOutput(**{k: (torch.cat([getattr(p, k) for p in parts], dim=1)
                                  if getattr(parts[0], k) is not None else None)
                              for k in FieldOutput.__dataclass_fields__})

    def for_dense_queries(self, volume: FeatureVolume) -> FeatureVolume:
        """The same volume with the field MLP's first layer pre-applied to the decoder map (one 1x1 convolution).

        Worth it for dense queries (a voxel grid: millions of points); queries then sample ``hidden`` instead of
        ``C`` channels and skip the per-point C x hidden product. Results equal ``query`` on ``volume`` up to float
        rounding.
        """
        with torch.autocast(volume.features.device.type, enabled=False):  # sampled at float32 coordinates
            projected = self.mlp.project_features(volume.features.float())
        return dataclasses.replace(volume, projected=projected.contiguous(memory_format=torch.channels_last))

    def field(self, volume: FeatureVolume, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Density (B, N), reduced features (B, N, F) and outside flags (B, N) at (B, N, 3) camera-frame points.

        One piece (no chunking) and no colour lookup: the per-chunk step of a voxel query.
        """
        b, n, _ = points.shape
        sigma, feats, outside, _ = self._field(volume, points)
        return sigma.reshape(b, n), feats.reshape(b, n, -1), outside

    def semantics(self, features: Tensor, mode: PredictionMode | str = PredictionMode.STEGO_KMEANS) -> Tensor:
        """Reduced (N, F) features -> (N,) int64 trainIds: the 64 -> D expansion, then the semantic head.

        In eval mode without autograd the D-wide activations are rectified and normalised in place (the same values
        with two D-wide buffers instead of seven).
        """
        if self.training or torch.is_grad_enabled():
            return self.head.classify(self.expansion(features), mode).classes
        return self.head.classify(self.expansion.forward_inplace(features), mode, inplace=True).classes

    def _field(self, volume: FeatureVolume, points: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """sigma (B*N,), features (B*N, F), outside (B, N), clamped uv (B, N, 2)."""
        b, n, _ = points.shape
        if volume.projected is None:
            sampled, code, outside, uv = self.field_inputs(volume, points)
            sigma, feats = self.mlp(sampled.reshape(b * n, -1), code.reshape(b * n, -1))
        else:
            uv, code, outside = self._code(volume, points)
            hidden = _sample(volume.projected, uv)
            sigma, feats = self.mlp.forward_projected(hidden.reshape(b * n, -1), code.reshape(b * n, -1))
        return sigma, feats, outside, uv

    def _query_chunk(self, volume: FeatureVolume, points: Tensor, expand: bool,
                     mode: PredictionMode | str | None) -> FieldOutput:
        b, n, _ = points.shape
        sigma, feats, outside, uv = self._field(volume, points)
        rgb = _sample(volume.images, uv)
        expanded = classes = None
        if expand or mode is not None:
            expanded = self.expansion(feats)
            if mode is not None:
                classes = self.head.classify(expanded, mode).classes.reshape(b, n)
            expanded = expanded.reshape(b, n, -1) if expand else None
        return FieldOutput(sigma=sigma.reshape(b, n), features=feats.reshape(b, n, -1), outside=outside, rgb=rgb,
                           expanded=expanded, classes=classes)

    def classify(self, features: Tensor, mode: PredictionMode | str = PredictionMode.STEGO_KMEANS) -> Classification:
        """Expanded (N, D) features -> trainIds with scores (see ``SemanticHead.classify``)."""
        return self.head.classify(features, mode)

    # ------------------------------------------------------------------ rays
    def render(self, volume: FeatureVolume, origins: Tensor, directions: Tensor, *, near: float | None = None,
               far: float | None = None, expand: bool = False, mode: PredictionMode | str | None = None,
               generator: torch.Generator | None = None, chunk_size: int = DEFAULT_CHUNK) -> RenderOutput:
        """Volume-render rays given in the camera frame of the encoded images.

        Args:
            origins, directions: (B, R, 3); directions should be unit length (depth is then distance).
            near, far: sampling bounds in metres (default: the field's z_near / z_far).
            expand, mode: as in ``query``, applied to the rendered reduced feature.
            generator: RNG for the stratified jitter (only used when ``config.render.jitter``).
        """
        if origins.shape != directions.shape or origins.ndim != 3 or origins.shape[0] != volume.batch_size:
            raise ValueError(f"origins and directions must both be ({volume.batch_size}, R, 3), "
                             f"got {tuple(origins.shape)} and {tuple(directions.shape)}")
        cfg = self.config.render
        s = cfg.n_samples
        rays_per_chunk = max(1, chunk_size // s)
        parts = []
        for i in range(0, origins.shape[1], rays_per_chunk):
            o, d = origins[:, i:i + rays_per_chunk].to(volume.features), directions[:, i:i + rays_per_chunk]
            parts.append(self._render_chunk(volume, o, d.to(o), near, far, expand, mode, generator))
        return RenderOutput(**{k: (torch.cat([getattr(p, k) for p in parts], dim=1)
                                   if getattr(parts[0], k) is not None else None)
                               for k in RenderOutput.__dataclass_fields__})

    def _render_chunk(self, volume: FeatureVolume, o: Tensor, d: Tensor, near: float | None, far: float | None,
                      expand: bool, mode: PredictionMode | str | None,
                      generator: torch.Generator | None) -> RenderOutput:
        cfg = self.config.render
        b, r, _ = o.shape
        near_t = torch.full((b * r, 1), self.config.field.z_near if near is None else near).to(o)
        far_t = torch.full((b * r, 1), self.config.field.z_far if far is None else far).to(o)
        z = sample_distances(near_t, far_t, cfg.n_samples, jitter=cfg.jitter, generator=generator)
        z = z.reshape(b, r, -1)
        pts = o.unsqueeze(2) + z.unsqueeze(-1) * d.unsqueeze(2)
        out = self.query(volume, pts.reshape(b, -1, 3))
        s = cfg.n_samples
        weights, alphas = composite_weights(out.sigma.float().reshape(b * r, s), z.reshape(b * r, s),
                                            hard_alpha_cap=cfg.hard_alpha_cap)
        weights, alphas = weights.reshape(b, r, s), alphas.reshape(b, r, s)
        feats = (weights.unsqueeze(-1) * out.features.reshape(b, r, s, -1)).sum(dim=2)
        rgb = (weights.unsqueeze(-1) * out.rgb.reshape(b, r, s, 3)).sum(dim=2)
        expanded = classes = None
        if expand or mode is not None:
            expanded = self.expansion(feats)
            if mode is not None:
                classes = self.head.classify(expanded.reshape(b * r, -1), mode).classes.reshape(b, r)
            expanded = expanded if expand else None
        return RenderOutput(depth=(weights * z).sum(dim=-1), features=feats, rgb=rgb, weights=weights, alphas=alphas,
                            distances=z, outside=out.outside.reshape(b, r, s), expanded=expanded, classes=classes)

    def image_rays(self, volume: FeatureVolume, stride: int = 1) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Rays through every ``stride``-th pixel centre of the encoded images.

        Returns origins (B, R, 3), unit directions (B, R, 3) and the (h, w) of the ray grid (R = h * w).
        """
        h, w = self.config.image_size
        xy = geometry.pixel_centers(h, w, device=volume.features.device)[stride // 2::stride, stride // 2::stride]
        gh, gw = xy.shape[:2]
        xy = xy.reshape(1, -1, 2).expand(volume.batch_size, -1, -1)
        dirs = geometry.ray_directions(xy, volume.intrinsics)
        return torch.zeros_like(dirs), dirs, (gh, gw)
