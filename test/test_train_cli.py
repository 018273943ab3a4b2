"""scenedino-train end to end on the tiny recipe and the synthetic world: stage 1, stage 2, and the result used
by inference (load_model + the SSC voxel query through scenedino-infer)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scenedino_core.checkpoint import load_model, read_checkpoint_file
from scenedino_core.cli.infer import main as infer_main
from scenedino_core.cli.train import main as train_main
from scenedino_core.config import ConfigError
from scenedino_core.train.config import load_train_config
from scenedino_core.train.data import make_datasets

RECIPE = Path(__file__).resolve().parents[1] / "training" / "tiny_ci.yaml"


def test_both_stages_and_inference(tmp_path):
    assert train_main([str(RECIPE), "--out", str(tmp_path / "s1"), "--no-progress"]) == 0
    assert train_main([str(RECIPE), "stage=2", f"init_checkpoint={tmp_path / 's1' / 'final.pt'}",
                       "best_metric=val/stego_kmeans_miou", "--out", str(tmp_path / "s2"), "--no-progress"]) == 0
    rows = [json.loads(r) for r in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    assert any("val/stego_kmeans_miou" in r for r in rows) and any("train/stego_self" in r for r in rows)
    s1, s2 = read_checkpoint_file(tmp_path / "s1" / "final.pt"), read_checkpoint_file(tmp_path / "s2" / "final.pt")
    for k, v in s1["model"].items():  # stage 2 trains only the semantic head
        assert torch.equal(v, s2["model"][k]) == (not k.startswith("head.")) or k.endswith("assignment"), k
    assert (tmp_path / "s2" / "best.pt").is_file()
    model = load_model(tmp_path / "s2" / "final.pt")
    assert model.config.backbone.name == "tiny"
    out = tmp_path / "infer" / "r.npz"
    assert infer_main(["--checkpoint", str(tmp_path / "s2" / "final.pt"), "--sample-image", "--grid",
                       "--out", str(out)]) == 0
    assert np.load(out)["ssc_labels"].shape == (256, 256, 32)


def test_synthetic_items_follow_the_recipe():
    cfg = load_train_config(str(RECIPE))
    train, val = make_datasets(cfg, "train"), make_datasets(cfg, "val")
    assert len(train) == 8 and len(val) == 2 and len(list(val)) == 2
    item = train[0]
    assert item.images.shape == (8, 3, 32, 64) and item.poses.shape == (8, 4, 4)
    torch.testing.assert_close(item.poses[0], torch.eye(4))
    assert item.poses[2, 0, 3].item() == pytest.approx(0.6, abs=1e-3)  # stereo baseline along camera x
    assert item.labels.shape == (32, 64) and item.depth.shape == (32, 64) and (item.depth > 0).any()
    with pytest.raises(IndexError):
        train[8]


def test_bad_recipe_values():
    with pytest.raises(ConfigError, match="unknown key"):
        load_train_config(str(RECIPE), ["stage1.patches=3"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_train_config(str(RECIPE), ["steps"])
    assert train_main([str(RECIPE), "stage=2", "--out", "/tmp/never"]) == 2  # stage 2 needs init_checkpoint


@pytest.mark.parametrize("recipe", sorted(RECIPE.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    cfg = load_train_config(str(recipe))  # unknown keys or bad values would raise ConfigError naming the file
    assert cfg.stage in (1, 2)
    assert cfg.stage == 1 or cfg.init_checkpoint, "stage-2 recipes start from a stage-1 checkpoint"
