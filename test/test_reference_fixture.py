"""The model reproduces the original implementation on the upstream_v1 fixture (full ViT-B/8, synthetic weights).

Tolerances follow shared/reference/upstream_v1/README.md §6. The checkpoint is generated from the manifest and the
weight formula (every tensor's SHA-256 verified), written in the official layout with the fixture's
training_config.yaml beside it, and loaded through the public ``load_model``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import reference_dir
from fixture_weights import read_manifest, synthetic_state_dict
from scenedino_core import geometry
from scenedino_core.checkpoint import OFFICIAL_RULES, CheckpointError, load_model, map_official_key
from scenedino_core.config import from_reference_config
from scenedino_core.model import SceneDINO
from scenedino_core.semantics import PredictionMode

MODES = [m.value for m in PredictionMode]


@pytest.fixture(scope="module")
def upstream():
    return reference_dir("upstream_v1")


@pytest.fixture(scope="module")
def inputs(upstream):
    return dict(np.load(upstream / "inputs.npz"))


@pytest.fixture(scope="module")
def expected(upstream):
    return dict(np.load(upstream / "expected.npz"))


@pytest.fixture(scope="module")
def model(official_v1_checkpoint):
    return load_model(official_v1_checkpoint)


def pixel_intrinsics(inputs) -> torch.Tensor:
    """Pixel intrinsics of the 640x192 fixture image (float64: the round trip to normalised K is exact)."""
    return geometry.denormalize_intrinsics(torch.from_numpy(inputs["K"]).double(), (192, 640))


@pytest.fixture(scope="module")
def image(inputs):
    return torch.from_numpy(inputs["image_input"])[None] / 2 + 0.5


@pytest.fixture(scope="module")
def volume(model, image, inputs):
    with torch.no_grad():
        return model.encode(image, pixel_intrinsics(inputs))


@pytest.fixture(scope="module")
def points_out(model, volume, inputs):
    with torch.no_grad():
        return model.query(volume, torch.from_numpy(inputs["points"])[None], expand=True)


@pytest.fixture(scope="module")
def rendered(model, volume, inputs):
    rays = torch.from_numpy(inputs["rays"])[None]
    with torch.no_grad():
        return model.render(volume, rays[..., :3], rays[..., 3:6], expand=True)


def close(ours, ref, atol=1e-4, rtol=1e-4):
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=rtol, atol=atol)


def test_intrinsics_round_trip_is_exact(volume, inputs):
    np.testing.assert_array_equal(volume.intrinsics[0].numpy(), inputs["K"])


def test_vit_maps(model, image, expected):
    with torch.no_grad():
        maps = model.backbone(image)
    assert [list(m.shape) for m in maps] == expected["vit_shapes"].tolist()
    for j, m in enumerate(maps):
        idx = expected[f"vit{j}_sample_idx"]
        close(m[0].numpy()[idx[:, 0], idx[:, 1], idx[:, 2]], expected[f"vit{j}_sample_val"], atol=1e-4, rtol=1e-5)
        flat = m[0].reshape(m.shape[1], -1)
        close(flat.mean(1).numpy(), expected[f"vit{j}_channel_mean"], atol=1e-5)
        close(flat.std(1).numpy(), expected[f"vit{j}_channel_std"], atol=1e-5)


def test_dpt_map(volume, expected):
    f = volume.features
    assert [1, 1, *f.shape[1:]] == expected["dpt_shape"].tolist()
    idx = expected["dpt_sample_idx"]
    close(f[0].numpy()[idx[:, 0], idx[:, 1], idx[:, 2]], expected["dpt_sample_val"])
    flat = f[0].reshape(f.shape[1], -1)  # statistics in torch float32, as the reference computed them
    for name, val in [("mean", flat.mean(1)), ("std", flat.std(1)), ("min", flat.amin(1)), ("max", flat.amax(1))]:
        close(val.numpy(), expected[f"dpt_channel_{name}"])


def test_mlp_inputs(model, volume, inputs, expected):
    with torch.no_grad():
        feats, code, _, _ = model.field_inputs(volume, torch.from_numpy(inputs["points"][:256])[None])
    close(torch.cat([feats, code], dim=-1)[0].numpy(), expected["point_mlp_input_first256"])


def test_point_density_features_and_flags(points_out, inputs, expected):
    group = inputs["point_group"]
    sigma = points_out.sigma[0].numpy()
    normal = group != 3
    close(sigma[normal], expected["point_sigma"][normal])
    # behind-camera points are ill-conditioned (sines of ~3e5 rad in float32): compare relatively (README §6)
    close(sigma[~normal], expected["point_sigma"][~normal], atol=0, rtol=1e-4)
    close(points_out.features[0].numpy()[normal], expected["point_feat64"][normal])
    close(points_out.features[0].numpy()[~normal], expected["point_feat64"][~normal], atol=1e-3, rtol=1e-4)
    np.testing.assert_array_equal(points_out.outside[0].numpy().astype(np.uint8), expected["point_invalid"])
    close(points_out.rgb[0].numpy(), expected["point_rgb"])


def test_point_expanded_features_and_codes(model, points_out, expected):
    feat = points_out.expanded[0, :1024]
    close(feat.numpy(), expected["point_feat768_first"], atol=1e-5, rtol=0)
    with torch.no_grad():
        code = model.head.stego(feat)
    close(code.numpy(), expected["point_stego_code64_first"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_point_classes(model, points_out, expected, mode):
    with torch.no_grad():
        classes = model.classify(points_out.expanded[0], mode).classes.numpy()
    decided = expected[f"point_class_margin_{mode}"] >= 1e-4
    np.testing.assert_array_equal(classes[decided], expected[f"point_class_{mode}"][decided])
    assert (classes != expected[f"point_class_{mode}"]).sum() <= 5


def test_point_classes_through_query(model, volume, inputs, expected):
    with torch.no_grad():
        out = model.query(volume, torch.from_numpy(inputs["points"])[None], mode="stego_kmeans")
    decided = expected["point_class_margin_stego_kmeans"] >= 1e-4
    np.testing.assert_array_equal(out.classes[0].numpy()[decided], expected["point_class_stego_kmeans"][decided])


def test_render_rays(rendered, expected):
    np.testing.assert_array_equal(rendered.distances[0].numpy(), expected["render_z_samps"])
    close(rendered.depth[0].numpy(), expected["render_depth"])
    close(rendered.weights[0].numpy(), expected["render_weights"])
    close(rendered.alphas[0].numpy(), expected["render_alphas"])
    close(rendered.features[0].numpy(), expected["render_feat64"])
    close(rendered.rgb[0].numpy(), expected["render_rgb"])
    close(rendered.expanded[0].numpy(), expected["render_feat768"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(rendered.outside[0].numpy().astype(np.uint8), expected["render_invalid"])


@pytest.mark.parametrize("mode", MODES)
def test_render_classes(model, rendered, expected, mode):
    with torch.no_grad():
        classes = model.classify(rendered.expanded[0], mode).classes.numpy()
    decided = expected[f"render_class_margin_{mode}"] >= 1e-4
    np.testing.assert_array_equal(classes[decided], expected[f"render_class_{mode}"][decided])


def test_render_hard_alpha_cap(official_v1_checkpoint, volume, inputs, expected):
    import dataclasses

    capped = load_model(official_v1_checkpoint)
    cfg = dataclasses.replace(capped.config, render=dataclasses.replace(capped.config.render, hard_alpha_cap=True))
    capped.config = cfg
    rays = torch.from_numpy(inputs["rays"])[None]
    with torch.no_grad():
        out = capped.render(volume, rays[..., :3], rays[..., 3:6])
    close(out.depth[0].numpy(), expected["render_depth_hardcap"])
    close(out.features[0].numpy(), expected["render_feat64_hardcap"])


def test_every_v1_key_is_mapped(upstream, model):
    expected_keys = set(model.state_dict())
    for row in read_manifest(upstream / "manifest_v1.tsv"):
        target = map_official_key(row.key)
        if target is None or target == "artifact_field":
            assert not row.used_in_inference, f"{row.key} is needed for inference but dropped"
        else:
            assert target in expected_keys, f"{row.key} -> {target} is not a model key"
        if row.used_in_inference:
            assert target in expected_keys


def test_dinov2_layout_loads_strictly_and_runs(upstream, tmp_path):
    manifest = upstream / "manifest_dinov2.tsv"
    config_text = (upstream / "training_config.yaml").read_text()
    config_text = config_text.replace("version: v1", "version: v2").replace("separate_gt_version: v1",
                                                                           "separate_gt_version: v2")
    (tmp_path / "training_config.yaml").write_text(config_text)
    state = synthetic_state_dict(manifest)
    torch.save(state, tmp_path / "checkpoint.pt")
    cfg = from_reference_config(tmp_path / "training_config.yaml")
    assert cfg.backbone.name == "vit_base_patch14_dinov2.lvd142m"
    expected_keys = set(SceneDINO(cfg).state_dict())
    for row in read_manifest(manifest):
        target = map_official_key(row.key)
        assert target is None or target == "artifact_field" or target in expected_keys, row.key
    model = load_model(tmp_path / "checkpoint.pt")
    assert model.backbone.vit_size == (168, 560)
    image = torch.rand(1, 3, 192, 640, generator=torch.Generator().manual_seed(0))
    K = geometry.denormalize_intrinsics(torch.tensor([[0.78488, 0, -0.03118], [0, 2.93912, 0.27005], [0, 0, 1]],
                                                     dtype=torch.float64), (192, 640))
    with torch.no_grad():
        vol = model.encode(image, K)
        assert vol.features.shape == (1, 256, 192, 640)
        pts = torch.tensor([[[0.0, 0.5, 10.0], [2.0, 1.0, 25.0], [-3.0, 0.0, 5.0]]])
        out = model.query(vol, pts, mode="stego_kmeans")
    assert torch.isfinite(out.sigma).all() and (out.sigma >= 0).all()
    assert out.classes.shape == (1, 3) and int(out.classes.max()) < 19


def test_variant_mismatch_is_reported(official_v1_checkpoint, upstream, tmp_path):
    text = (upstream / "training_config.yaml").read_text().replace("version: v1", "version: v2")
    (tmp_path / "v2.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="pos_embed.*different model variants"):
        load_model(official_v1_checkpoint, config=tmp_path / "v2.yaml")


def test_official_rules_have_no_dead_entries(upstream):
    keys = [r.key for r in read_manifest(upstream / "manifest_v1.tsv")]
    for rule in OFFICIAL_RULES:
        assert any(k.startswith(rule.prefix) for k in keys), f"rule {rule.prefix} matches no official key"


@pytest.fixture(scope="module")
def ssc_all_voxels(model, volume):
    """Every voxel of the SSCBench grid through every head (the reference protocol, no shortcuts)."""
    from scenedino_core.sscbench import grid
    from scenedino_core.voxels import predict_voxels

    everything = np.ones(grid.GRID_DIMS, bool)
    return predict_voxels(model, volume, grid.voxel_centers_camera(), 0.2, semantic_mask=everything,
                          occupied_only=False)


def test_ssc_voxels_match_reference(ssc_all_voxels, inputs, expected):
    from scenedino_core.sscbench import grid

    b = inputs["ssc_box"]
    box = (slice(*b[0]), slice(*b[1]), slice(*b[2]))
    np.testing.assert_array_equal(grid.voxel_centers_camera()[box], expected["ssc_voxel_centers_box"])
    np.testing.assert_array_equal(grid.fov_mask(), expected["ssc_fov_mask_full"].astype(bool))
    close(ssc_all_voxels.sigma[box], expected["ssc_sigma_raw_box"])
    close(ssc_all_voxels.sigma_grown[box], expected["ssc_sigma_grown_box"])
    np.testing.assert_array_equal(ssc_all_voxels.train_ids[box], expected["ssc_trainid_box"])
    agree = (ssc_all_voxels.labels == expected["ssc_label_full"]).mean()
    assert agree >= 0.9999, f"only {agree:.6f} of the SSC labels agree"


def test_ssc_occupied_only_path_is_identical(model, volume, ssc_all_voxels, expected):
    from scenedino_core.sscbench import grid
    from scenedino_core.voxels import predict_voxels

    fov = grid.fov_mask()
    fast = predict_voxels(model, volume, grid.voxel_centers_camera(), 0.2, semantic_mask=fov)
    np.testing.assert_array_equal(fast.labels, np.where(fov, ssc_all_voxels.labels, 0))
    assert (fast.labels[fov] == expected["ssc_label_full"][fov]).mean() >= 0.9999
    assert (fast.train_ids != 255).sum() < fov.sum()
