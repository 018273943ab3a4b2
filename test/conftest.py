"""Shared fixtures: a tiny SceneDINO configuration (seconds on a CPU) and the reference-fixture location."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scenedino_core.config import BackboneConfig, DecoderConfig, FieldConfig, SceneDINOConfig, SemanticConfig

#: ../shared/reference beside the clone (CI has it; a user's clone does not).
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def tiny_config(**overrides) -> SceneDINOConfig:
    """A 4-block, 48-d ViT at 32x64 with narrow decoder/field/head; same code paths as the full model."""
    cfg = dict(
        image_size=(32, 64),
        backbone=BackboneConfig(name="tiny", intermediate_layers=(0, 1, 2)),
        decoder=DecoderConfig(post_process_channels=(8, 8, 16, 16), out_dim=16),
        field=FieldConfig(hidden_dim=16, feature_dim=8, expansion_hidden_dim=16),
        semantic=SemanticConfig(code_dim=8),
    )
    cfg.update(overrides)
    return SceneDINOConfig(**cfg)


def tiny_model(seed: int = 0, **overrides):
    from scenedino_core.model import SceneDINO

    torch.manual_seed(seed)
    return SceneDINO(tiny_config(**overrides)).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """A project-format checkpoint of a tiny random model."""
    from scenedino_core.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / "tiny.pt", tiny_model(), meta={"note": "random tiny model for tests"})


@pytest.fixture(scope="session")
def official_v1_checkpoint(tmp_path_factory) -> Path:
    """The upstream_v1 fixture's weights in the official checkpoint layout (760 MB), written once per session."""
    from fixture_weights import write_official_checkpoint

    return write_official_checkpoint(reference_dir("upstream_v1"), tmp_path_factory.mktemp("official_v1"))


def reference_dir(name: str) -> Path:
    """Path of a reference fixture folder, or skip the test with the reason."""
    path = REFERENCE / name
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path} (CI has ../shared beside the clone; a user's clone "
                    "does not)")
    return path


@pytest.fixture(scope="module")
def ros_context():
    """An rclpy context of its own for one test module (the ROS tests run inside ``unshare -n``)."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (scripts/setup.sh installs the ROS 2 wheels)")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)
