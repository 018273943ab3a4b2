"""Frozen configuration dataclasses. Defaults live only here; YAML files override them, unknown keys are errors.

``SceneDINOConfig`` describes everything needed to build the inference model. ``from_reference_config`` reads the
subset of the original implementation's Hydra dump (``training_config.yaml``) that inference depends on.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """A configuration file or mapping is invalid; the message names the offending key."""


@dataclass(frozen=True)
class BackboneConfig:
    """DINO ViT backbone (see ``scenedino_core.backbone.BACKBONES`` for the names)."""

    name: str = "vit_base_patch8_224.dino"
    """timm model name, or a from-scratch ViT of ``backbone.SCRATCH_VITS`` (``tiny`` for tests)."""
    intermediate_layers: tuple[int, ...] = (3, 6, 9)
    """0-based blocks whose raw outputs feed the decoder (the final normalised tokens are always added)."""
    pretrained: bool = False
    """Fetch the timm/Hugging Face weights when building (not needed when a checkpoint is loaded)."""
    weights_file: str | None = None
    """Local timm weights file used instead of a download when ``pretrained`` is set."""


@dataclass(frozen=True)
class DecoderConfig:
    """DPT decoder."""

    post_process_channels: tuple[int, int, int, int] = (64, 64, 128, 256)
    out_dim: int = 256


@dataclass(frozen=True)
class FieldConfig:
    """Density/feature field: positional code, MLP and 64 -> D expansion."""

    num_freqs: int = 6
    freq_factor: float = 1.5
    hidden_dim: int = 128
    feature_dim: int = 64
    expansion_hidden_dim: int = 128
    z_near: float = 3.0
    """Near end (m) of the depth range: rays are sampled from here, and the positional code maps it to +1."""
    z_far: float = 80.0
    """Far end (m) of the depth range: rays are sampled up to here, and the positional code maps it to -1."""


@dataclass(frozen=True)
class RenderConfig:
    """Volume rendering along rays."""

    n_samples: int = 32
    hard_alpha_cap: bool = False
    """Force the last sample's alpha to 1 (training configs); effectively a no-op because the last interval is 1e10."""
    jitter: bool = False
    """Stratified jitter of the sample positions (the original also jitters at evaluation; we default to off)."""


@dataclass(frozen=True)
class SemanticConfig:
    """Unsupervised semantic head (STEGO projection + cluster and linear probes)."""

    n_clusters: int = 19
    n_classes: int = 19
    code_dim: int = 64


@dataclass(frozen=True)
class SceneDINOConfig:
    """Everything needed to build a ``SceneDINO`` model."""

    image_size: tuple[int, int] = (192, 640)
    """(H, W) of the images the model encodes."""
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
    semantic: SemanticConfig = dataclasses.field(default_factory=SemanticConfig)
    artifact_field: bool = False
    """Build the training-only artifact field (stage-1 DINO loss); not used at inference."""


T = TypeVar("T")


def _convert(tp: Any, value: Any, where: str, base: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where, base=base)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config", base: T | None = None) -> T:
    """Build the frozen dataclass ``cls`` from a (partial) nested mapping on top of ``base`` (default: the class
    defaults); nested sections override field by field. Unknown keys raise ``ConfigError``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    base = cls() if base is None else base
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}", getattr(base, k)) for k, v in data.items()}
    return dataclasses.replace(base, **kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (lists for tuples) of a config dataclass, safe for YAML and ``torch.save``."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def load_config(path: str | Path, cls: type[T] = SceneDINOConfig) -> T:  # type: ignore[assignment]
    """Read a YAML file of overrides on top of the defaults of ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# version -> (timm name for ViT-B, timm name for ViT-S or None)
_REFERENCE_VERSIONS = {
    "v1": ("vit_base_patch8_224.dino", "vit_small_patch8_224.dino"),
    "v1_16": ("vit_base_patch16_224.dino", None),
    "v2": ("vit_base_patch14_dinov2.lvd142m", None),
    "reg": ("vit_base_patch14_reg4_dinov2.lvd142m", None),
}


def _require(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {message}")


def from_reference_config(path: str | Path) -> SceneDINOConfig:
    """Read what inference needs from an original SceneDINO ``training_config.yaml`` (Hydra dump).

    Only ``model``, ``renderer``, ``downstream``, ``dataset.image_size`` and ``training.ray_sampler`` are read.
    Settings this re-implementation does not support (other decoders, XYZ codes, ...) raise ``ConfigError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference training config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    _require(isinstance(raw, dict) and "model" in raw, path,
             "not a SceneDINO training_config.yaml (no 'model' section)")
    model = raw["model"]
    enc = model.get("encoder", {})
    _require(enc.get("type") == "dinov2", path, f"model.encoder.type {enc.get('type')!r} is not supported (dinov2)")
    _require(enc.get("decoder_arch", "dpt") == "dpt", path, f"decoder_arch {enc.get('decoder_arch')!r} unsupported")
    _require(enc.get("dim_reduction_arch", "mlp") == "mlp", path, "only dim_reduction_arch 'mlp' is supported")
    _require(model.get("code_mode", "z") == "z" and model.get("inv_z", True), path, "only code_mode z + inv_z")
    _require(not model.get("learn_empty", False), path, "learn_empty is not supported")
    version = enc.get("version", "v1")
    arch = enc.get("encoder_arch", "vit-b")
    _require(version in _REFERENCE_VERSIONS, path, f"model.encoder.version {version!r} unsupported "
             f"(supported: {sorted(_REFERENCE_VERSIONS)})")
    _require(arch in ("vit-b", "vit-s"), path, f"encoder_arch {arch!r} unsupported")
    base, small = _REFERENCE_VERSIONS[version]
    _require(arch == "vit-b" or small is not None, path, f"no ViT-S model for version {version!r}")
    name = base if arch == "vit-b" else small
    heads = model.get("decoder_heads", [{}])
    args = (heads[0] or {}).get("args", {}) or {}
    _require(args.get("n_blocks", 0) == 0, path, "only the n_blocks: 0 field MLP is supported")
    image_size = tuple(raw.get("dataset", {}).get("image_size", enc.get("image_size", (192, 640))))
    code = model.get("code", {})
    renderer = raw.get("renderer", {})
    sampler = raw.get("training", {}).get("ray_sampler", {})
    down = raw.get("downstream", {}) or {}
    return SceneDINOConfig(
        image_size=(int(image_size[0]), int(image_size[1])),
        backbone=BackboneConfig(name=name, intermediate_layers=tuple(enc.get("intermediate_features", (3, 6, 9)))),
        decoder=DecoderConfig(
            post_process_channels=tuple(min(int(enc.get("decoder_out_dim", 256)), int(c))
                                        for c in enc.get("num_ch_enc", (64, 64, 128, 256))),
            out_dim=int(enc.get("decoder_out_dim", 256)),
        ),
        field=FieldConfig(
            num_freqs=int(code.get("num_freqs", 6)),
            freq_factor=float(code.get("freq_factor", 1.5)),
            hidden_dim=int(args.get("d_hidden", 128)),
            feature_dim=int(model.get("dino_dims", enc.get("dino_pca_dim", 64))),
            z_near=float(sampler.get("z_near", FieldConfig.z_near)),
            z_far=float(sampler.get("z_far", FieldConfig.z_far)),
        ),
        render=RenderConfig(n_samples=int(renderer.get("n_coarse", 32))),
        semantic=SemanticConfig(
            n_clusters=int(down.get("n_classes", 19)),
            n_classes=int(down.get("gt_classes", 19)),
            code_dim=int(down.get("code_dim", 64)),
        ),
    )
