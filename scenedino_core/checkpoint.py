"""Checkpoint I/O: the project's own format (config embedded) and the official SceneDINO releases.

Official files are flat ``state_dict``s of the original training wrapper (``renderer.net.*`` names), or periodic
training checkpoints ``{"trainer": ..., "model": state_dict}``; their config is the ``training_config.yaml`` beside
them. Names are translated by an explicit table (``OFFICIAL_RULES``); keys the original stores but inference does
not need (frozen teacher ViT, LPIPS metric, renderer counters, artifact field) are dropped knowingly; anything else
unknown, and any missing model key, is an error. Loading never unpickles arbitrary objects (``weights_only=True``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import SceneDINOConfig, from_dict, from_reference_config, to_dict
from .files import atomic_path
from .model import SceneDINO

_logger = logging.getLogger(__name__)

FORMAT = "scenedino-ros"
FORMAT_VERSION = 1
REFERENCE_CONFIG_NAME = "training_config.yaml"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file and the problem."""


@dataclass(frozen=True)
class Rule:
    """Rename official keys starting with ``prefix`` to ``target + rest``; ``target`` None drops them."""

    prefix: str
    target: str | None
    why: str = ""


#: Official name -> project name. First match wins; order matters (specific before general).
OFFICIAL_RULES: tuple[Rule, ...] = (
    Rule("renderer.net.encoder.encoder.model.vit.", "backbone.vit."),
    Rule("renderer.net.encoder.gt_encoder.", None, "frozen teacher ViT: training targets only"),
    Rule("renderer.net.encoder.decoder.reassemble_blocks.", "decoder."),
    Rule("renderer.net.encoder.decoder.output_head.head_modules.", "decoder.output_head."),
    Rule("renderer.net.encoder.decoder.", "decoder."),
    Rule("renderer.net.encoder.downsampler.", "downsampler."),
    Rule("renderer.net.encoder.dim_reduction.", "expansion."),
    Rule("renderer.net.code_xyz._freqs", "encoding.freqs"),
    Rule("renderer.net.code_xyz._phases", "encoding.phases"),
    Rule("renderer.net.heads.normal_head.", "mlp."),
    Rule("renderer.net.downstream_head.direct_cluster_head.cluster_centers", "head.direct_clusters.centers"),
    Rule("renderer.net.downstream_head.direct_cluster_head.pseudo_assignment", "head.direct_clusters.assignment"),
    Rule("renderer.net.downstream_head.stego_cluster_head.cluster_centers", "head.stego_clusters.centers"),
    Rule("renderer.net.downstream_head.stego_cluster_head.pseudo_assignment", "head.stego_clusters.assignment"),
    Rule("renderer.net.downstream_head.stego_head.linear_path.0.", "head.stego.linear."),
    Rule("renderer.net.downstream_head.stego_head.nonlinear_path.0.", "head.stego.hidden."),
    Rule("renderer.net.downstream_head.stego_head.nonlinear_path.2.", "head.stego.out."),
    Rule("renderer.net.downstream_head.direct_linear_head.linear.", "head.direct_linear."),
    Rule("renderer.net.downstream_head.stego_linear_head.linear.", "head.stego_linear."),
    Rule("renderer.renderer.", None, "renderer iteration counters"),
    Rule("lpips.", None, "LPIPS metric network built by the training wrapper"),
    Rule("artifact_field", "artifact_field", "stage-1 artifact field (kept only if the model has one)"),
)


def map_official_key(key: str) -> str | None:
    """Project name for an official key, None if deliberately dropped; ``KeyError`` if no rule covers it."""
    for rule in OFFICIAL_RULES:
        if key.startswith(rule.prefix):
            return None if rule.target is None else rule.target + key[len(rule.prefix):]
    raise KeyError(key)


def is_official_state_dict(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("renderer.net.") for k in state)


def convert_official_state_dict(state: Mapping[str, torch.Tensor], model: SceneDINO,
                                source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Translate an official flat state dict into ``model``'s names and shapes (1x1 convs become linear maps)."""
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        try:
            target = map_official_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if target is None or (target == "artifact_field" and target not in expected):
            continue
        if target in expected and value.ndim == 4 and expected[target].ndim == 2 and value.shape[2:] == (1, 1):
            value = value.reshape(value.shape[:2])
        out[target] = value
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} key(s) not known to the SceneDINO name mapping, e.g. "
                              f"{unknown[:5]}; is this a SceneDINO checkpoint?")
    return out


def _load_strict(model: SceneDINO, state: Mapping[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    variant = f"backbone {model.config.backbone.name!r}, image size {model.config.image_size}"
    for key, value in state.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)} but the model built from the config ({variant}) "
                f"expects {tuple(expected[key].shape)}; the config and the checkpoint belong to different model "
                "variants")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} model key(s) missing from the checkpoint "
                              f"(model built for {variant}): {missing[:8]}" + (" ..." if len(missing) > 8 else ""))
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key(s) {unexpected[:8]}")
    model.load_state_dict(state, strict=True)


def read_checkpoint_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the checkpoint file (e.g. {path / 'checkpoint.pt'})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in str(exc) and "Unsupported global" in str(exc):
            raise CheckpointError(f"{path}: refused to load: it contains pickled Python objects, and only tensors "
                                  f"and plain containers are accepted ({first})") from exc
        raise CheckpointError(f"{path} ({path.stat().st_size} bytes) is not a readable PyTorch checkpoint "
                              f"(truncated, corrupt or another format): {first}") from exc


def load_model(path: str | Path, *, device: str | torch.device = "cpu", config: SceneDINOConfig | str | Path |
               None = None, dtype: torch.dtype = torch.float32) -> SceneDINO:
    """Build a ``SceneDINO`` from a checkpoint and load its weights strictly; returns the model in eval mode.

    Args:
        path: an official ``checkpoint.pt`` (flat, or ``{"model": ...}``) or a checkpoint written by this project.
        device, dtype: where and in which precision the model lives.
        config: for official checkpoints, a ``SceneDINOConfig`` or the path of the original ``training_config.yaml``
            (default: ``training_config.yaml`` beside the checkpoint). Ignored for the project's own checkpoints,
            which embed their config.
    """
    path = Path(path)
    raw = read_checkpoint_file(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(raw).__name__}")
    if raw.get("format") == FORMAT:
        model = SceneDINO(from_dict(SceneDINOConfig, raw["config"], where=f"{path}:config"))
        _load_strict(model, raw["model"], str(path))
    else:
        state = raw["model"] if isinstance(raw.get("model"), Mapping) else raw
        if not is_official_state_dict(state):
            raise CheckpointError(f"{path}: neither a scenedino-ros checkpoint nor an official SceneDINO state dict "
                                  f"(first keys: {list(state)[:3]})")
        model = SceneDINO(_official_config(path, config))
        _load_strict(model, convert_official_state_dict(state, model, str(path)), str(path))
    _logger.info("loaded %s (%s, %s)", path, model.config.backbone.name, "x".join(map(str, model.config.image_size)))
    return model.to(device=device, dtype=dtype).eval()


def _official_config(path: Path, config: SceneDINOConfig | str | Path | None) -> SceneDINOConfig:
    if isinstance(config, SceneDINOConfig):
        return config
    cfg_path = Path(config) if config is not None else path.with_name(REFERENCE_CONFIG_NAME)
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} is an official SceneDINO checkpoint; its {REFERENCE_CONFIG_NAME} was not found "
                              f"at {cfg_path} (pass config=...)")
    return from_reference_config(cfg_path)


def save_checkpoint(path: str | Path, model: SceneDINO, meta: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{format, version, config, model, meta, **extra}`` atomically (temp file + rename)."""
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": to_dict(model.config),
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta or {})}
    payload.update(extra or {})
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path`` (``atomic_path``)."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)
    return path
