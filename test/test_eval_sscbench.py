"""scenedino-eval-sscbench end to end on a mini SSCBench-KITTI-360 tree written in the real on-disk formats."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_sscbench_io import PERSPECTIVE_TXT

from conftest import tiny_model
from scenedino_core import labels
from scenedino_core.checkpoint import save_checkpoint
from scenedino_core.cli import eval_sscbench as ev
from scenedino_core.cli._args import frame_list
from scenedino_core.model import SceneDINO
from scenedino_core.sscbench import grid
from scenedino_core.sscbench import io as sio
from scenedino_core.sscbench import metrics as M
from scenedino_core.sscbench.assignment import (
    assign_clusters,
    head_confusion,
    representative_trainids,
    ssc_confusion_from_heads,
)
from scenedino_core.sscbench.dataset import SSCBenchKitti360, model_input
from scenedino_core.sscbench.evaluate import EvalOptions, evaluate_sscbench
from scenedino_core.sscbench.frame_cache import FrameCache
from scenedino_core.voxels import VoxelPrediction, predict_voxels

TEST_SEQ = "2013_05_28_drive_0009_sync"
VAL_SEQ = "2013_05_28_drive_0006_sync"
TEST_FRAMES = (3, 10, 125)
VAL_FRAMES = (7, 8)
SHAPE = grid.GRID_DIMS


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The grid query is ~2M points per frame; one intra-op thread keeps it fast on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ mini dataset
def synthetic_gt(seed: int) -> np.ndarray:
    """(256, 256, 32) float32 GT in the SSCBench id space: ground, a few boxes, unknown patches, empty air."""
    rng = np.random.default_rng(seed)
    g = np.zeros(SHAPE, np.float32)
    g[:, :, :5] = rng.choice([7, 9, 14], size=(256, 256, 1))  # road / sidewalk / terrain ground
    for _ in range(25):
        x, y = rng.integers(0, 240, 2)
        w, h = rng.integers(3, 16, 2)
        g[x:x + w, y:y + h, 5:5 + rng.integers(2, 20)] = rng.choice([1, 4, 11, 13, 15, 17, 18])
    g[rng.random(SHAPE) < 0.05] = 255
    return g


def write_tree(root: Path, frames: dict[str, tuple[int, ...]], seed: int = 0) -> tuple[Path, Path]:
    """SSCBench root + voxel GT root with PNG images, calibration and S4C .npy GT; returns (ssc, vgt)."""
    ssc, vgt = root / "sscbench", root / "voxel_gt"
    (ssc / "calibration").mkdir(parents=True, exist_ok=True)
    (ssc / "calibration" / "perspective.txt").write_text(PERSPECTIVE_TXT)
    (ssc / "calibration" / "calib_cam_to_velo.txt").write_text(" ".join(repr(v) for v in grid.CAM_TO_VELO_3X4))
    rng = np.random.default_rng(seed)
    for seq, ids in frames.items():
        for i, f in enumerate(ids):
            img = sio.sscbench_image_path(ssc, seq, f)
            img.parent.mkdir(parents=True, exist_ok=True)
            street = cv2.resize(_street(seed + i), (1408, 376), interpolation=cv2.INTER_LINEAR)
            noise = rng.integers(-20, 20, street.shape)
            assert cv2.imwrite(str(img), np.clip(street + noise, 0, 255).astype(np.uint8)[..., ::-1])
            gt = sio.voxel_gt_path(vgt, seq, f)
            gt.parent.mkdir(parents=True, exist_ok=True)
            np.save(gt, synthetic_gt(seed * 100 + f))
    return ssc, vgt


def _street(seed: int) -> np.ndarray:
    from scenedino_core.images import synthetic_street_image

    return synthetic_street_image((192, 640), seed=seed)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sscbench")
    ssc, vgt = write_tree(root, {TEST_SEQ: TEST_FRAMES, VAL_SEQ: VAL_FRAMES})
    ckpt = save_checkpoint(root / "ckpt" / "tiny.pt", tiny_model(), meta={"note": "tiny random model"})
    return {"root": root, "ssc": ssc, "vgt": vgt, "ckpt": ckpt}


def argv(d: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--sscbench", str(d["ssc"]), "--voxel-gt", str(d["vgt"]), "--checkpoint", str(d["ckpt"]),
            "--out", str(out), "--sequence", "09", *extra]


class EncodeCounter:
    """Counts ``SceneDINO.encode`` calls; optionally raises KeyboardInterrupt on call number ``stop_at``."""

    def __init__(self, monkeypatch, stop_at: int | None = None):
        self.calls = 0
        self.stop_at = stop_at
        original = SceneDINO.encode

        def encode(model, *args, **kwargs):
            self.calls += 1
            if self.stop_at is not None and self.calls == self.stop_at:
                raise KeyboardInterrupt
            return original(model, *args, **kwargs)

        monkeypatch.setattr(SceneDINO, "encode", encode)


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("full") / "run"
    mp = pytest.MonkeyPatch()
    counter = EncodeCounter(mp)
    try:
        assert ev.main(argv(data, out)) == 0
    finally:
        mp.undo()
    assert counter.calls == len(TEST_FRAMES)
    return out, json.loads((out / "results.json").read_text())


def comparable(summary: dict) -> dict:
    return {k: summary[k] for k in ("report", "sweep", "accumulator", "frames", "n_frames", "protocol")}


# ---------------------------------------------------------------------------------------------- tests
def test_end_to_end_writes_all_outputs(full_run):
    out, s = full_run
    assert s["n_frames"] == 3 and s["frames"] == list(TEST_FRAMES) and s["sequence"] == TEST_SEQ
    for mode in ("direct", "hungarian"):
        for k in ("12.8", "25.6", "51.2"):
            r = s["report"][mode][k]
            assert set(r) == {"iou", "precision", "recall", "miou", "weighted_miou", "per_class_iou"}
            assert list(r["per_class_iou"]) == list(M.CLASS_NAMES)
            assert 0 <= r["miou"] <= 1 and 0 <= r["iou"] <= 1
    assert len(s["report"]["hungarian"]["reassignment_argsort"]) == 16
    assert s["protocol"]["assign_on"] == "test" and s["protocol"]["assign_on_default"] == "test"
    assert s["protocol"]["calibration"]["source"] == "files"
    assert [p["sigma"] for p in s["sweep"]] == list(M.SIGMA_SWEEP_VALUES)
    assert s["accumulator"]["n_frames"] == 3
    # the summed counts reproduce the report
    acc = M.SSCBenchAccumulator.from_dict(s["accumulator"])
    assert M.report_from_accumulator(acc) == s["report"]
    md = (out / "results.md").read_text()
    for needle in ("| Method | Checkpoint | Report | 12.8 m | 25.6 m | 51.2 m |", "| SceneDINO (stego_kmeans) |",
                   "Mode: direct", "Mode: hungarian", "assign_on", "Density-threshold sweep", "Precision"):
        assert needle in md, needle
    for png in ("per_class_iou.png", "sigma_sweep.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    cached = sorted((out / "frames" / "test" / TEST_SEQ).glob("*.json"))
    assert [p.name for p in cached] == [f"{f:06d}.json" for f in TEST_FRAMES]
    assert not list(out.rglob("*.tmp"))


def test_frame_matches_independent_full_path(data, full_run):
    """One frame recomputed by hand: own resize/K_norm, every FOV voxel through the heads (no 255 placeholders)."""
    out, _ = full_run
    model = tiny_model()
    f = TEST_FRAMES[1]
    rgb = cv2.imread(str(sio.sscbench_image_path(data["ssc"], TEST_SEQ, f)))[..., ::-1]
    small = cv2.resize(np.ascontiguousarray(rgb), (64, 32), interpolation=cv2.INTER_LINEAR)
    fx, cx, cy = 552.5542, 682.0495, 238.7695
    K_norm = torch.tensor([[2 * fx / 1408, 0, 2 * cx / 1408 - 1], [0, 2 * fx / 376, 2 * cy / 376 - 1], [0, 0, 1]])
    img = torch.from_numpy(small.copy()).permute(2, 0, 1)[None].float() / 255
    ours_img, ours_K = model_input(np.ascontiguousarray(rgb), np.array([[fx, 0, cx], [0, fx, cy], [0, 0, 1]]), (32, 64))
    torch.testing.assert_close(ours_img, img, rtol=0, atol=0)
    torch.testing.assert_close(ours_K, K_norm, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        vol = model.encode(img, K_norm, normalized=True)
    fov = grid.fov_mask()
    pred = predict_voxels(model, vol, grid.voxel_centers_camera(), 0.2, semantic_mask=fov, occupied_only=False)
    assert np.all(pred.train_ids[fov] != labels.UNKNOWN)
    train_ids = np.where(fov, pred.train_ids, 0)
    gt = np.load(sio.voxel_gt_path(data["vgt"], TEST_SEQ, f)).astype(np.uint8)
    expected = M.accumulate_frame(gt, train_ids, pred.sigma_grown, fov).to_dict()
    cached = json.loads((out / "frames" / "test" / TEST_SEQ / f"{f:06d}.json").read_text())
    assert cached["payload"]["accumulator"] == expected


def test_interrupted_run_resumes_without_recomputing(data, full_run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop = EncodeCounter(monkeypatch, stop_at=2)  # frame 1 finishes, frame 2 is "killed"
    assert ev.main(argv(data, out)) == 130
    assert stop.calls == 2
    assert [p.name for p in (out / "frames" / "test" / TEST_SEQ).glob("*.json")] == [f"{TEST_FRAMES[0]:06d}.json"]
    assert not (out / "results.json").exists()
    counter = EncodeCounter(monkeypatch)
    assert ev.main(argv(data, out)) == 0
    assert counter.calls == len(TEST_FRAMES) - 1
    assert comparable(json.loads((out / "results.json").read_text())) == comparable(full_run[1])
    # a rerun of a finished run recomputes nothing and never loads the model
    counter = EncodeCounter(monkeypatch)
    assert ev.main(argv(data, out)) == 0
    assert counter.calls == 0


def test_corrupt_cache_file_is_recomputed_with_warning(data, full_run, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    bad = out / "frames" / "test" / TEST_SEQ / f"{TEST_FRAMES[2]:06d}.json"
    bad.write_text(bad.read_text()[:100])  # truncated JSON
    counter = EncodeCounter(monkeypatch)
    with caplog.at_level(logging.WARNING):
        assert ev.main(argv(data, out)) == 0
    assert counter.calls == 1
    assert any(str(bad) in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    assert comparable(json.loads((out / "results.json").read_text())) == comparable(full_run[1])


def test_missing_and_broken_inputs_name_the_file(tmp_path, data, capsys):
    ssc, vgt = write_tree(tmp_path, {TEST_SEQ: (1, 2)}, seed=3)
    ckpt = data["ckpt"]

    def opts(**kw):
        base = dict(sscbench=ssc, voxel_gt=vgt, checkpoint=ckpt, out=tmp_path / "out")
        base.update(kw)
        return EvalOptions(**base)

    img = sio.sscbench_image_path(ssc, TEST_SEQ, 1)  # the first frame: errors come before any model work
    saved = img.read_bytes()
    img.unlink()
    with pytest.raises(FileNotFoundError, match=str(img)):
        evaluate_sscbench(opts())
    img.write_bytes(saved[: len(saved) // 3])  # truncated PNG
    with pytest.raises(ValueError, match=str(img)):
        evaluate_sscbench(opts(out=tmp_path / "out2"))
    img.write_bytes(saved)

    gt = sio.voxel_gt_path(vgt, TEST_SEQ, 1)
    gt_bytes = gt.read_bytes()
    gt.write_bytes(gt_bytes[: len(gt_bytes) // 2])  # truncated .npy
    with pytest.raises(ValueError, match=str(gt)):
        evaluate_sscbench(opts(out=tmp_path / "out3"))
    gt.write_bytes(gt_bytes)

    with pytest.raises(FileNotFoundError, match="requested frame"):
        evaluate_sscbench(opts(frames=(1, 99)))
    persp = ssc / "calibration" / "perspective.txt"
    persp.rename(persp.with_suffix(".bak"))
    with pytest.raises(FileNotFoundError, match=str(persp)):
        evaluate_sscbench(opts())
    persp.with_suffix(".bak").rename(persp)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        evaluate_sscbench(opts(checkpoint=tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="voxel GT root not found"):
        evaluate_sscbench(opts(voxel_gt=tmp_path / "nope"))
    # the CLI turns these into one clear line and exit status 2
    assert ev.main(["--sscbench", str(ssc), "--voxel-gt", str(tmp_path / "nope"), "--checkpoint", str(ckpt),
                    "--out", str(tmp_path / "o")]) == 2
    assert "voxel GT root not found" in capsys.readouterr().err


def test_builtin_calibration_fallback_when_folder_absent(tmp_path, caplog):
    ssc, vgt = write_tree(tmp_path, {TEST_SEQ: (4,)})
    shutil.rmtree(ssc / "calibration")
    with caplog.at_level(logging.WARNING):
        ds = SSCBenchKitti360(ssc, vgt, "09")
    assert ds.calibration.source == "builtin" and ds.frames == [4]
    np.testing.assert_array_equal(ds.calibration.K, grid.intrinsics_full())
    assert any("hard-coded" in r.getMessage() for r in caplog.records)
    sample = ds.load(4)
    assert sample.rgb.shape == (376, 1408, 3) and sample.gt.shape == SHAPE


def test_assign_on_val(data, tmp_path, monkeypatch):
    out = tmp_path / "val"
    counter = EncodeCounter(monkeypatch)
    args = argv(data, out, "--frames", "10", "--assign-on", "val", "--val-sequence", "06", "--val-frames", "8")
    assert ev.main(args) == 0
    assert counter.calls == 2
    s = json.loads((out / "results.json").read_text())
    assert s["protocol"]["assign_on"] == "val" and s["frames"] == [10]
    val = s["assignment"]["val"]
    assert val["sequence"] == VAL_SEQ and val["frames"] == [8]
    assignment = s["assignment"]["cluster_to_trainid"]
    assert len(assignment) == 19 and set(assignment) <= set(representative_trainids().tolist())
    assert s["report"]["hungarian"]["reassignment_argsort"] == val["reassignment_argsort"]
    assert "hungarian_on_test" in s["extra_reports"]
    md = (out / "results.md").read_text()
    assert "chosen on: **val**" in md and "cluster -> trainId (val)" in md
    # resume: nothing recomputed, val included
    counter = EncodeCounter(monkeypatch)
    assert ev.main(args) == 0
    assert counter.calls == 0


def test_head_confusion_reproduces_accumulate_frame_exactly():
    """The val-side bookkeeping (empty rows, α underflow row) equals accumulate_frame's 51.2 m confusion."""
    rng = np.random.default_rng(5)
    gt = synthetic_gt(11).astype(np.uint8)
    fov = grid.fov_mask()
    sigma = rng.choice(np.array([0.0, 1e-9, 0.05, 0.19, 0.2, 0.5, 3.0], np.float32), size=SHAPE)
    grown = np.maximum(sigma, rng.choice(np.array([0.0, 0.1, 0.3], np.float32), size=SHAPE))
    clusters = rng.integers(0, 19, SHAPE).astype(np.uint8)
    alpha0 = (1.0 - torch.exp(-0.2 * torch.from_numpy(sigma))).numpy() == 0
    assert alpha0.any() and (alpha0 & (grown >= np.float32(0.2)) & fov).any()
    computed = fov & (grown >= np.float32(0.001))
    head_ids = np.where(computed, np.where(alpha0, 0, clusters), labels.UNKNOWN).astype(np.uint8)
    pred = VoxelPrediction(sigma=sigma, sigma_grown=grown, train_ids=head_ids, labels=np.zeros(SHAPE, np.uint8),
                           in_view=fov, voxel_size=0.2)
    conf = head_confusion(gt, pred, fov, 19)
    _, assignment = assign_clusters(conf[:19])
    trainids = np.where(alpha0, 0, assignment[clusters])  # what predict_voxels yields under that assignment
    trainids = np.where(computed, trainids, 0)
    expected = M.accumulate_frame(gt, trainids, grown, fov).ranges["51.2"].confusion
    np.testing.assert_array_equal(ssc_confusion_from_heads(conf, assignment), expected)


def test_assign_clusters_recovers_a_known_matching():
    rng = np.random.default_rng(0)
    truth = rng.permutation(19)[:16]  # clusters matched to labels 0..15
    conf = rng.integers(0, 50, (19, 16))
    for label, cluster in enumerate(truth):
        conf[cluster, label] += 10_000
    label_of, trainid = assign_clusters(conf)
    np.testing.assert_array_equal(label_of[truth], np.arange(16))
    rep = representative_trainids()
    assert rep[0] == 10 and rep[9] == 2 and rep[5] == 15  # sky, building, bus
    np.testing.assert_array_equal(labels.TRAINID_TO_SSC[rep], np.arange(16))
    np.testing.assert_array_equal(trainid, rep[label_of])


def test_frame_list():
    assert frame_list(None) is None
    assert frame_list(["5", "10-12", "20,21", "5"]) == (5, 10, 11, 12, 20, 21)
    with pytest.raises(ValueError, match="bad frame spec"):
        frame_list(["x"])
    with pytest.raises(ValueError, match="bad frame spec"):
        frame_list(["9-3"])


def test_assign_on_val_linear_mode_has_no_cluster_assignment(data, tmp_path):
    out = tmp_path / "val_linear"
    assert ev.main(argv(data, out, "--frames", "10", "--mode", "direct_linear", "--assign-on", "val",
                        "--val-frames", "8")) == 0
    s = json.loads((out / "results.json").read_text())
    assert s["mode"] == "direct_linear" and s["assignment"]["cluster_to_trainid"] is None
    assert s["protocol"]["cluster_assignment"].startswith("none")
    assert s["report"]["hungarian"]["reassignment_argsort"] == s["assignment"]["val"]["reassignment_argsort"]


def test_frame_cache_rejects_other_settings(tmp_path, caplog):
    a = FrameCache(tmp_path, {"mode": "stego_kmeans"})
    a.store(5, {"x": 1}, 0.5)
    assert a.load(5)["payload"] == {"x": 1} and a.load(6) is None
    b = FrameCache(tmp_path, {"mode": "direct_linear"})
    with caplog.at_level(logging.WARNING):
        assert b.load(5) is None
    assert any("other settings" in r.getMessage() for r in caplog.records)
