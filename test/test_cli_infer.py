"""scenedino-infer end to end on a tiny checkpoint, its error messages, and the fixture numbers through the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import reference_dir
from picture_checks import assert_legible, titles
from scenedino_core import geometry, images
from scenedino_core.checkpoint import load_model
from scenedino_core.cli import infer
from scenedino_core.cli.infer import main
from scenedino_core.pipeline import RenderedView
from scenedino_core.sscbench import grid as sscgrid


@pytest.fixture
def image_file(tmp_path):
    return images.write_rgb(tmp_path / "street.png", images.synthetic_street_image((48, 120), seed=3))


@pytest.fixture
def points_file(tmp_path):
    pts = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32) * [4, 1, 8] + [0, 0, 15]
    np.save(tmp_path / "pts.npy", pts.astype(np.float32))
    return tmp_path / "pts.npy"


def test_points_match_python_api(tiny_checkpoint, image_file, points_file, tmp_path, capsys):
    out = tmp_path / "out" / "res.npz"
    args = ["--checkpoint", str(tiny_checkpoint), "--image", str(image_file), "--points", str(points_file),
            "--intrinsics", "60", "60", "60", "24", "--mode", "direct_linear", "--out", str(out)]
    assert main(args) == 0
    res = np.load(out)
    assert res["sigma"].shape == (40,) and res["features"].shape == (40, 8)
    assert res["invalid"].shape == (40,) and res["classes"].shape == (40,) and res["classes"].dtype == np.uint8
    model = load_model(tiny_checkpoint)
    fitted = images.fit_to_model(images.read_rgb(image_file), images.intrinsics_matrix(60, 60, 60, 24), (32, 64))
    with torch.no_grad():
        vol = model.encode(images.to_tensor_image(fitted.rgb), torch.from_numpy(fitted.intrinsics))
        q = model.query(vol, torch.from_numpy(np.load(points_file))[None], mode="direct_linear")
    np.testing.assert_array_equal(res["sigma"], q.sigma[0].numpy())
    np.testing.assert_array_equal(res["features"], q.features[0].numpy())
    np.testing.assert_array_equal(res["invalid"], q.outside[0].numpy())
    np.testing.assert_array_equal(res["classes"], q.classes[0].numpy())
    assert main(args) == 0  # deterministic: a second run writes the same numbers
    np.testing.assert_array_equal(np.load(out)["sigma"], res["sigma"])


def test_render_and_grid_outputs(tiny_checkpoint, tmp_path):
    out = tmp_path / "r.npz"
    assert main(["--checkpoint", str(tiny_checkpoint), "--sample-image", "--render", "--grid", "--out", str(out)]) == 0
    res = np.load(out)
    assert res["render_depth"].shape == (32, 64) and res["render_classes"].max() < 19
    assert res["ssc_labels"].shape == (256, 256, 32) and res["ssc_labels"].max() <= 15
    assert res["fov_mask"].shape == (256, 256, 32) and res["fov_mask"].dtype == bool
    assert not res["ssc_labels"][~res["fov_mask"]].any()
    for name in ("input", "depth", "semantics", "features", "bev", "overview"):
        pic = images.read_rgb(tmp_path / f"r_{name}.png")
        assert pic.ndim == 3 and min(pic.shape[:2]) >= 300 and pic.std() > 15, name


@pytest.mark.parametrize("size", [(32, 64), (192, 640)])
def test_pictures_are_legible(size):
    """Every picture scenedino-infer writes: titled with what it shows, not blank, its text on the canvas."""
    rng = np.random.default_rng(0)
    h, w = size
    view = RenderedView(depth=rng.uniform(3, 60, (h // 2, w // 2)).astype(np.float32),
                        train_ids=rng.integers(0, 19, (h // 2, w // 2)).astype(np.uint8),
                        features=rng.normal(size=(h // 2, w // 2, 8)).astype(np.float32))
    fov = sscgrid.fov_mask()
    labels = np.where(fov & (rng.random(fov.shape) < 0.05), rng.integers(1, 16, fov.shape), 0).astype(np.uint8)
    title = ("RANDOM WEIGHTS: untrained model, the outputs are noise\nscenedino-infer: street.png  |  "
             "vit_base_patch8_224.dino 192x640 (checkpoint.pt)  |  mode stego_kmeans")
    figs = infer.pictures(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), title, view, (labels, fov))
    assert sorted(figs) == ["bev", "depth", "features", "input", "overview", "semantics"]
    for name, fig in figs.items():
        assert_legible(fig, name)
        assert title in titles(fig)
    assert "depth" in titles(figs["depth"]) and "principal components" in titles(figs["features"])
    assert "SSCBench classes" in titles(figs["semantics"]) and "outside the camera view" in titles(figs["bev"])
    assert figs["bev"].axes[0].get_xlabel() == "y (m, left +)"
    assert sorted(infer.pictures(np.zeros((h, w, 3), np.uint8), "t")) == ["input"]  # no --render, no --grid


@pytest.mark.parametrize("make, match", [
    (lambda d, ck: ["--checkpoint", str(d / "missing.pt"), "--sample-image"], "checkpoint not found"),
    (lambda d, ck: ["--checkpoint", str(d / "bad.pt"), "--sample-image"], "not a readable PyTorch checkpoint"),
    (lambda d, ck: ["--checkpoint", str(ck), "--image", str(d / "broken.png")], "broken.png is not a readable image"),
    (lambda d, ck: ["--checkpoint", str(ck), "--image", str(d / "nope.png")], "image not found"),
    (lambda d, ck: ["--checkpoint", str(ck), "--sample-image", "--intrinsics", "0", "50", "10", "10"], "fx, fy > 0"),
    (lambda d, ck: ["--checkpoint", str(ck), "--sample-image", "--points", str(d / "bad_pts.npy")],
     r"points must be an \(N, 3\)"),
])
def test_errors_are_clear(tiny_checkpoint, tmp_path, capsys, make, match):
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 100)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    np.save(tmp_path / "bad_pts.npy", np.zeros((5, 2)))
    assert main(make(tmp_path, tiny_checkpoint) + ["--out", str(tmp_path / "o.npz")]) == 2
    assert pytest.importorskip("re").search(match, capsys.readouterr().err)


def test_fixture_numbers_through_the_cli(official_v1_checkpoint, tmp_path):
    """Acceptance: the fixture's point arrays come out of scenedino-infer --points (full ViT-B/8)."""
    upstream = reference_dir("upstream_v1")
    inputs, expected = np.load(upstream / "inputs.npz"), np.load(upstream / "expected.npz")
    np.save(tmp_path / "points.npy", inputs["points"])
    K = geometry.denormalize_intrinsics(torch.from_numpy(inputs["K"]).double(), (192, 640))
    intr = [repr(float(v)) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])]
    out = tmp_path / "fixture.npz"
    assert main(["--checkpoint", str(official_v1_checkpoint), "--image", str(upstream / "image.png"),
                 "--intrinsics", *intr, "--points", str(tmp_path / "points.npy"), "--out", str(out)]) == 0
    res = np.load(out)
    normal = inputs["point_group"] != 3
    np.testing.assert_allclose(res["sigma"][normal], expected["point_sigma"][normal], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res["sigma"][~normal], expected["point_sigma"][~normal], rtol=1e-4, atol=0)
    np.testing.assert_allclose(res["features"][normal], expected["point_feat64"][normal], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(res["invalid"], expected["point_invalid"])
    decided = expected["point_class_margin_stego_kmeans"] >= 1e-4
    np.testing.assert_array_equal(res["classes"][decided], expected["point_class_stego_kmeans"][decided])


def test_help_imports_no_torch():
    """--help is instant: argument parsing needs neither torch nor the model."""
    import subprocess
    import sys
    code = ("import sys\nfrom scenedino_core.cli import infer\ntry:\n    infer.main(['--help'])\nexcept SystemExit:\n"
            "    pass\nheavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'cv2'))\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--mode" in proc.stdout and "semantic head" in proc.stdout


def test_mode_choices_are_the_prediction_modes():
    from scenedino_core.cli.infer import MODES
    from scenedino_core.semantics import PredictionMode
    assert sorted(MODES) == sorted(m.value for m in PredictionMode) and MODES[0] == PredictionMode.STEGO_KMEANS.value
