"""2D unsupervised segmentation evaluation: label table, preprocessing, Hungarian matching, metrics, CLI end to end."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import tiny_model
from scenedino_core import eval2d, labels
from scenedino_core.checkpoint import save_checkpoint
from scenedino_core.cli import eval_2d
from scenedino_core.data.kitti360_labels import LABEL_ID_TO_TRAINID, label_ids_to_trainids
from scenedino_core.data.semantics2d import Cityscapes2D, Kitti360Semantics2D, cityscapes_preprocess
from scenedino_core.images import synthetic_street_image
from scenedino_core.metrics import hungarian_match, segmentation_metrics
from scenedino_core.semantics import PredictionMode

SEQ = "2013_05_28_drive_0009_sync"
PERSPECTIVE_TXT = """calib_time: 09-Jan-2013 15:40:53
P_rect_00: 5.525542e+02 0.000000e+00 6.820495e+02 0.000000e+00 0.000000e+00 5.525542e+02 2.387695e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_00: 1.408000e+03 3.760000e+02
"""
#: label ids painted into the synthetic GT: sky, building, garage, road, sidewalk, car, unlabeled, parking
PAINT_IDS = (23, 11, 34, 7, 8, 26, 0, 9)


def label_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.zeros((h, w), np.uint8)
    bands = np.linspace(0, h, len(PAINT_IDS) + 1).astype(int)
    for k, lid in enumerate(PAINT_IDS):
        ids[bands[k]:bands[k + 1]] = lid
    ids[rng.random((h, w)) < 0.02] = 0
    return ids


def write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr if arr.ndim == 2 else arr[..., ::-1])


def kitti360_tree(root: Path, frames=(250, 251)) -> Path:
    (root / "calibration").mkdir(parents=True)
    (root / "calibration" / "perspective.txt").write_text(PERSPECTIVE_TXT)
    for i, f in enumerate(frames):
        rgb = cv2.resize(synthetic_street_image((192, 640), seed=i), (1408, 376))
        write_png(root / "data_2d_raw" / SEQ / "image_00" / "data_rect" / f"{f:010d}.png", rgb)
        write_png(root / "data_2d_semantics" / "train" / SEQ / "image_00" / "semantic" / f"{f:010d}.png",
                  label_image(376, 1408, i))
    return root


def cityscapes_tree(root: Path) -> Path:
    for city, stems in (("frankfurt", ("frankfurt_000000_000294",)), ("lindau", ("lindau_000001_000019",))):
        for j, stem in enumerate(stems):
            write_png(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png",
                      cv2.resize(synthetic_street_image((192, 640), seed=j), (512, 256)))
            write_png(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", label_image(256, 512, j))
            write_png(root / "gtFine" / "val" / city / f"{stem}_gtFine_color.png",
                      np.zeros((256, 512, 3), np.uint8))  # ignored: only *_labelIds.png are GT
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_model())


# ---------------------------------------------------------------------------------------------- labels
def test_label_table():
    assert LABEL_ID_TO_TRAINID[7] == 0 and LABEL_ID_TO_TRAINID[26] == 13 and LABEL_ID_TO_TRAINID[33] == 18
    assert LABEL_ID_TO_TRAINID[34] == 2 and LABEL_ID_TO_TRAINID[35] == 4 and LABEL_ID_TO_TRAINID[37] == 5
    for ignored in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 36, 38, 42, 44, 255):
        assert LABEL_ID_TO_TRAINID[ignored] == labels.UNKNOWN, ignored
    # every trainId is reachable, with the class of the same name
    for lid in range(34):
        t = LABEL_ID_TO_TRAINID[lid]
        if t != labels.UNKNOWN:
            assert labels.TRAIN_CLASSES[t].id == t
    assert set(LABEL_ID_TO_TRAINID.tolist()) - {255} == set(range(19))
    with pytest.raises(ValueError, match="0..255"):
        label_ids_to_trainids(np.array([300]))


# ---------------------------------------------------------------------------------------------- matching
def test_hungarian_recovers_known_permutation():
    rng = np.random.default_rng(1)
    perm = rng.permutation(19)  # predicted id p stands for class perm[p]
    conf = rng.integers(0, 40, (19, 19))
    conf[np.arange(19), perm] += 5000
    mapping = hungarian_match(conf)
    np.testing.assert_array_equal(mapping, perm)
    # more predicted ids than classes: the extra ids stay unmatched
    conf_extra = np.vstack([conf, rng.integers(0, 40, (3, 19))])
    m = hungarian_match(conf_extra)
    np.testing.assert_array_equal(m[:19], perm)
    assert (m[19:] == -1).all()


def test_metrics_on_a_permuted_perfect_prediction():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 19, (40, 60)).astype(np.uint8)
    target[:3] = labels.UNKNOWN
    perm = rng.permutation(19)
    raw = np.argsort(perm)[target.clip(0, 18)]  # raw id r means class perm[r]
    direct = raw  # as if the checkpoint's assignment were the identity
    acc = eval2d.ConfusionAccumulator([PredictionMode.STEGO_KMEANS], {PredictionMode.STEGO_KMEANS: 19})
    acc.add(target, {PredictionMode.STEGO_KMEANS: (raw, direct)})
    rep = acc.report()["stego_kmeans"]
    assert rep["hungarian"]["miou"] == pytest.approx(1.0) and rep["hungarian"]["accuracy"] == pytest.approx(1.0)
    assert rep["hungarian"]["assignment"] == perm.tolist()
    assert rep["direct"]["miou"] < 0.2
    assert rep["hungarian"]["n_pixels"] == int((target != labels.UNKNOWN).sum())


def test_segmentation_metrics_by_hand():
    conf = np.zeros((19, 19), np.int64)  # rows prediction, cols GT
    conf[0, 0], conf[0, 1], conf[1, 1], conf[2, 0] = 6, 2, 3, 1
    m = segmentation_metrics(conf, eval2d.CLASS_NAMES, labels.TRAIN_CLASS_WEIGHTS)
    # road: tp 6, gt 7, pred 8 -> 6 / 9; sidewalk: tp 3, gt 5, pred 3 -> 3 / 5; building: tp 0, pred 1 -> 0
    assert m["per_class_iou"]["road"] == pytest.approx(6 / 9)
    assert m["per_class_iou"]["sidewalk"] == pytest.approx(3 / 5)
    assert m["per_class_iou"]["building"] == 0.0 and m["per_class_iou"]["sky"] is None
    assert m["miou"] == pytest.approx((6 / 9 + 3 / 5 + 0) / 3)
    w = labels.TRAIN_CLASS_WEIGHTS
    assert m["weighted_miou"] == pytest.approx((w[0] * 6 / 9 + w[1] * 3 / 5) / (w[0] + w[1] + w[2]))
    assert m["accuracy"] == pytest.approx(9 / 12)


def test_cityscapes_preprocess_resize_then_centre_crop():
    h, w = 1024, 2048
    rows = np.repeat(np.arange(h, dtype=np.float64)[:, None], w, axis=1)
    ids = (rows // 64).astype(np.uint8)  # 16 horizontal bands of label ids
    rgb = np.zeros((h, w, 3), np.uint8)
    out_rgb, out_ids = cityscapes_preprocess(rgb, ids, (192, 640))
    assert out_rgb.shape == (192, 640, 3) and out_ids.shape == (192, 640)
    # 1024 -> 320 rows (scale 3.2), crop rows 64..255: output row r shows source row floor((r + 64 + 0.5) * 3.2)
    r = np.arange(192)
    expected = (np.floor((r + 64 + 0.5) * 3.2) // 64).astype(np.uint8)
    np.testing.assert_array_equal(out_ids[:, 0], expected)
    with pytest.raises(ValueError, match="less than the model height"):
        cityscapes_preprocess(rgb[:100], ids[:100], (192, 640))


def test_stride_target_matches_image_rays():
    model = tiny_model()
    vol = model.encode(torch.rand(1, 3, 32, 64), torch.eye(3), normalized=True)
    _, _, (gh, gw) = model.image_rays(vol, stride=4)
    t = np.arange(32 * 64).reshape(32, 64)
    st = eval2d.stride_target(t, 4)
    assert st.shape == (gh, gw) and st[0, 0] == t[2, 2] and st[1, 1] == t[6, 6]


# ------------------------------------------------------------------------------------------ datasets + CLI
def test_kitti360_dataset_and_cli(tmp_path, ckpt):
    root = kitti360_tree(tmp_path / "kitti360")
    ds = Kitti360Semantics2D(root, (32, 64), "09")
    assert ds.frames == [250, 251] and len(ds) == 2
    s = ds.load(0)
    assert s.image.shape == (1, 3, 32, 64) and s.target.shape == (32, 64)
    assert set(np.unique(s.target).tolist()) <= {10, 2, 0, 1, 13, 255}
    torch.testing.assert_close(s.K_norm[0, 0], torch.tensor(2 * 552.5542 / 1408))
    out = tmp_path / "out"
    assert eval_2d.main(["--dataset", "kitti360", "--root", str(root), "--checkpoint", str(ckpt), "--out", str(out),
                         "--stride", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_images"] == 2 and set(res["modes"]) == {m.value for m in PredictionMode}
    for rep in res["modes"].values():
        for r in ("direct", "hungarian"):
            assert 0 <= rep[r]["accuracy"] <= 1 and set(rep[r]["per_class_iou"]) == set(eval2d.CLASS_NAMES)
        # the tiny model's assignment is a bijection, so the Hungarian matching can only do better
        assert rep["hungarian"]["accuracy"] >= rep["direct"]["accuracy"] - 1e-12
        assert rep["hungarian"]["n_pixels"] == rep["direct"]["n_pixels"] > 0
    assert "| stego_kmeans | hungarian |" in (out / "results.md").read_text()


def test_cityscapes_dataset_and_cli(tmp_path, ckpt):
    root = cityscapes_tree(tmp_path / "cityscapes")
    ds = Cityscapes2D(root, (32, 64))
    assert len(ds) == 2
    s = ds.load(1)
    assert s.image.shape == (1, 3, 32, 64) and s.target.shape == (32, 64)
    torch.testing.assert_close(s.K_norm, torch.eye(3))
    out = tmp_path / "out"
    assert eval_2d.main(["--dataset", "cityscapes", "--root", str(root), "--checkpoint", str(ckpt), "--out", str(out),
                         "--modes", "stego_kmeans", "direct_linear", "--stride", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["modes"]) == {"stego_kmeans", "direct_linear"} and res["modes"]["stego_kmeans"]["raw_ids"] == \
        "cluster ids"


def test_missing_and_broken_2d_files_name_the_file(tmp_path, ckpt, capsys):
    root = kitti360_tree(tmp_path / "kitti360")
    gt = root / "data_2d_semantics" / "train" / SEQ / "image_00" / "semantic" / "0000000250.png"
    img = root / "data_2d_raw" / SEQ / "image_00" / "data_rect" / "0000000251.png"
    img.unlink()
    ds = Kitti360Semantics2D(root, (32, 64), 9)
    with pytest.raises(FileNotFoundError, match=str(img)):
        ds.load(1)
    gt.write_bytes(gt.read_bytes()[:50])
    with pytest.raises(ValueError, match=str(gt)):
        ds.load(0)
    write_png(gt, np.zeros((376, 1408, 3), np.uint8))
    with pytest.raises(ValueError, match="single-channel"):
        ds.load(0)
    with pytest.raises(FileNotFoundError, match="semantic GT"):
        Kitti360Semantics2D(root, (32, 64), 9, frames=[7])
    with pytest.raises(FileNotFoundError, match="gtFine split folder"):
        Cityscapes2D(tmp_path, (32, 64))
    assert eval_2d.main(["--dataset", "cityscapes", "--root", str(tmp_path / "nope"), "--checkpoint", str(ckpt),
                         "--out", str(tmp_path / "o")]) == 2
    assert "Cityscapes root not found" in capsys.readouterr().err
