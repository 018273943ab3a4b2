"""Checkpoint round trips and every failure mode names what was wrong."""
from __future__ import annotations

import argparse

import pytest
import torch
import yaml

from conftest import tiny_config, tiny_model
from scenedino_core.checkpoint import CheckpointError, atomic_torch_save, load_model, save_checkpoint
from scenedino_core.config import ConfigError, SceneDINOConfig, from_dict, from_reference_config, load_config, to_dict


def test_round_trip_is_exact(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    ref = tiny_model()
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert model.config == tiny_config() and not model.training


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt"):
        load_model(tmp_path / "nope.pt")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(tmp_path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes.pt \(\d+ bytes\) is not a readable PyTorch checkpoint"):
        load_model(path)


def test_truncated_checkpoint(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt .* not a readable PyTorch checkpoint"):
        load_model(cut)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "x", "obj": argparse.Namespace(command="rm -rf /")}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(path)


def test_missing_keys_are_named(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "m.pt", model)
    raw = torch.load(path, weights_only=True)
    del raw["model"]["mlp.lin_out.bias"], raw["model"]["head.stego.hidden.weight"]
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"2 model key\(s\) missing.*head.stego.hidden.weight.*mlp.lin_out.bias"):
        load_model(path)


def test_config_checkpoint_variant_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model())
    raw = torch.load(path, weights_only=True)
    raw["config"]["field"]["hidden_dim"] = 32
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="mlp.lin_in.weight has shape .* different model variants"):
        load_model(path)


def test_unknown_official_keys_are_errors(tmp_path):
    torch.save({"renderer.net.encoder.mystery.weight": torch.zeros(1)}, tmp_path / "checkpoint.pt")
    (tmp_path / "training_config.yaml").write_text(yaml.safe_dump({"model": {"encoder": {"type": "dinov2"}}}))
    with pytest.raises(CheckpointError, match="not known to the SceneDINO name mapping.*mystery"):
        load_model(tmp_path / "checkpoint.pt")


def test_official_checkpoint_needs_its_config(tmp_path):
    torch.save({"renderer.net.heads.normal_head.lin_in.weight": torch.zeros(1)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="training_config.yaml was not found"):
        load_model(tmp_path / "checkpoint.pt")


def test_foreign_state_dict(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="neither a scenedino-ros checkpoint nor an official"):
        load_model(tmp_path / "other.pt")


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = atomic_torch_save({"a": torch.ones(1)}, tmp_path / "ck.pt")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(1)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_config_yaml_overrides_and_unknown_keys(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("image_size: [96, 320]\nrender:\n  n_samples: 16\n")
    cfg = load_config(good)
    assert cfg.image_size == (96, 320) and cfg.render.n_samples == 16 and cfg.field == SceneDINOConfig().field
    bad = tmp_path / "bad.yaml"
    bad.write_text("render:\n  n_sample: 16\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: config.render: unknown key\(s\) \['n_sample'\]"):
        load_config(bad)
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text("render:\n  n_samples: many\n")
    with pytest.raises(ConfigError, match="config.render.n_samples: expected an integer"):
        load_config(wrong_type)
    assert from_dict(SceneDINOConfig, to_dict(tiny_config())) == tiny_config()


def test_reference_config_rejects_unsupported(tmp_path):
    path = tmp_path / "training_config.yaml"
    path.write_text(yaml.safe_dump({"model": {"encoder": {"type": "dinov2", "decoder_arch": "spf"}}}))
    with pytest.raises(ConfigError, match="decoder_arch 'spf' unsupported"):
        from_reference_config(path)
    path.write_text(yaml.safe_dump({"model": {"encoder": {"type": "dinov2", "version": "fit3d"}}}))
    with pytest.raises(ConfigError, match="version 'fit3d' unsupported"):
        from_reference_config(path)
    path.write_text(yaml.safe_dump({"model": {"encoder": {"type": "dinov2", "version": "v1",
                                                          "encoder_arch": "vit-s"}}}))
    assert from_reference_config(path).backbone.name == "vit_small_patch8_224.dino"
