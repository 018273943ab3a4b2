"""SSCBench metrics: reproduction of the reference fixture plus small hand-made cases."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from scenedino_core import labels
from scenedino_core.sscbench import metrics as M
from scenedino_core.sscbench.report_files import results_markdown
from scenedino_core.voxels import SIGMA_THRESHOLD

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
FIXTURE = REFERENCE / "sscbench_metrics"
SIZES = ("12.8", "25.6", "51.2")
SHAPE = (256, 256, 32)


# ------------------------------------------------------------------------------------------- fixture data
@pytest.fixture(scope="module")
def fixture_data():
    if not (FIXTURE / "frames.npz").is_file() or not (FIXTURE / "expected.json").is_file():
        pytest.skip(f"SSCBench metric fixture not found at {FIXTURE} (needs frames.npz and expected.json)")
    frames = np.load(FIXTURE / "frames.npz")
    data = {k: frames[k] for k in frames.files}
    # σ = (q + 0.5) / 64 computed in float32 (fixture README)
    data["sigma"] = (data["pred_sigma_q"].astype(np.float32) + np.float32(0.5)) / np.float32(64)
    expected = json.loads((FIXTURE / "expected.json").read_text())
    return data, expected


@pytest.fixture(scope="module")
def per_frame_acc(fixture_data):
    data, _ = fixture_data
    return [
        M.accumulate_frame(data["gt"][f], data["pred_trainid"][f], data["sigma"][f], data["fov_mask"])
        for f in range(data["gt"].shape[0])
    ]


@pytest.fixture(scope="module")
def total_acc(per_frame_acc):
    total = M.SSCBenchAccumulator.empty()
    for acc in per_frame_acc:
        total.add(acc)
    return total


@pytest.fixture(scope="module")
def report(total_acc):
    return M.report_from_accumulator(total_acc)


def test_fixture_sigma_never_at_cutoff(fixture_data):
    data, expected = fixture_data
    assert expected["sigma_cutoff"] == SIGMA_THRESHOLD
    assert not np.any(data["sigma"] == np.float32(0.2))
    assert list(expected["sizes_m"]) == list(M.SIZES_M)
    assert list(expected["class_names_1_15"]) == list(M.CLASS_NAMES)


def test_per_frame_counts_exact(fixture_data, per_frame_acc):
    _, expected = fixture_data
    assert len(per_frame_acc) == len(expected["per_frame"]) == 3
    for acc, exp in zip(per_frame_acc, expected["per_frame"]):
        assert acc.n_frames == 1
        assert acc.additional_invalids == exp["additional_invalids"]
        for s in SIZES:
            got = acc.ranges[s]
            assert (got.tp, got.fp, got.tn, got.fn) == (exp[s]["tp"], exp[s]["fp"], exp[s]["tn"], exp[s]["fn"]), s


def test_accumulators_exact(fixture_data, total_acc):
    _, expected = fixture_data
    assert total_acc.n_frames == 3
    assert total_acc.additional_invalids == sum(f["additional_invalids"] for f in expected["per_frame"])
    for s in SIZES:
        exp = expected["accumulators"][s]
        got = total_acc.ranges[s]
        assert (got.tp, got.fp, got.tn, got.fn) == (exp["tp"], exp["fp"], exp["tn"], exp["fn"]), s
        np.testing.assert_array_equal(got.confusion, np.asarray(exp["confusion_seg"], dtype=np.int64))
        for name in ("tp_seg", "fp_seg", "tn_seg", "fn_seg", "tp_recall_seg", "sum_recall_seg"):
            np.testing.assert_array_equal(getattr(got, name), np.asarray(exp[name], dtype=np.int64),
                                          err_msg=f"{s} {name}")


@pytest.mark.parametrize("mode", ["direct", "hungarian"])
def test_report_matches_expected(fixture_data, report, mode):
    _, expected = fixture_data
    for s in SIZES:
        exp = expected["modes"][mode][s]
        got = report[mode][s]
        for key in ("iou", "precision", "recall", "miou", "weighted_miou"):
            assert got[key] == pytest.approx(exp[key], abs=1e-12, rel=0), f"{mode} {s} {key}"
        assert list(got["per_class_iou"]) == list(exp["per_class_iou"])
        for cls, v in exp["per_class_iou"].items():
            if v is None:
                assert got["per_class_iou"][cls] is None, f"{mode} {s} {cls}"
            else:
                assert got["per_class_iou"][cls] == pytest.approx(v, abs=1e-12, rel=0), f"{mode} {s} {cls}"


def test_hungarian_assignment_matches(fixture_data, report):
    _, expected = fixture_data
    exp = expected["modes"]["hungarian"]
    assert report["hungarian"]["linear_sum_assignment_cols"] == exp["linear_sum_assignment_cols"]
    assert report["hungarian"]["reassignment_argsort"] == exp["reassignment_argsort"]
    # the fixture's swaps: building (9) <-> vegetation (11), car (1) -> truck (4)
    assert exp["reassignment_argsort"][9] == 11 and exp["reassignment_argsort"][11] == 9
    # geometry is untouched by the re-labelling
    for s in SIZES:
        for key in ("iou", "precision", "recall"):
            assert report["hungarian"][s][key] == report["direct"][s][key]


def test_reference_float32_tables(fixture_data, report):
    _, expected = fixture_data
    ref = expected["reference_tables_float32"]
    rows = ref["rows"]
    for mode in ("direct", "hungarian"):
        table = np.asarray(ref[mode], dtype=np.float64)
        for i, row in enumerate(rows):
            for j, s in enumerate(SIZES):
                r = report[mode][s]
                key = {"IoU": "iou", "Precision": "precision", "Recall": "recall", "mIoU": "miou"}.get(row)
                v = r[key] if key else r["per_class_iou"][row]
                assert v == pytest.approx(table[i, j], abs=1e-6), f"{mode} {row} {s}"
                assert np.float32(v) == pytest.approx(table[i, j], abs=1e-7), f"{mode} {row} {s}"


def test_results_markdown_matches_reference(fixture_data, report):
    _, expected = fixture_data
    assert results_markdown(report, name="fixture", include_weighted_row=False) == expected["results_md"]


def test_printed_numbers(fixture_data, report):
    _, expected = fixture_data
    printed_miou = re.findall(r"^Mean IoU: ([0-9.]+)$", expected["results_md"], flags=re.M)
    printed_wmiou = re.findall(r"^Weighted Mean IoU: ([0-9.]+)$", expected["results_md"], flags=re.M)
    assert len(printed_miou) == len(printed_wmiou) == 2
    for mode, miou, wmiou in zip(("direct", "hungarian"), printed_miou, printed_wmiou):
        # the README documents "printed_*_51.2" keys; this expected.json carries them only inside results_md
        for key, want in expected["modes"][mode].items():
            if key.startswith("printed_"):
                which = "weighted_miou" if "weighted" in key else "miou"
                want_pct = float(want) * (100 if float(want) < 1 else 1)  # stored as % or as a fraction
                assert f"{report[mode]['51.2'][which] * 100:.2f}" == f"{want_pct:.2f}", key
        assert f"{report[mode]['51.2']['miou'] * 100:.2f}" == miou
        assert f"{report[mode]['51.2']['weighted_miou'] * 100:.2f}" == wmiou


def test_sscbench_report_stack_and_per_frame_fov(fixture_data, report):
    data, _ = fixture_data
    got = M.sscbench_report(data["gt"], data["pred_trainid"], data["sigma"], data["fov_mask"])
    assert got == report
    fov_stack = np.broadcast_to(data["fov_mask"], data["gt"].shape)
    assert M.sscbench_report(data["gt"], data["pred_trainid"], data["sigma"], fov_stack) == report


def test_accumulator_json_roundtrip(per_frame_acc, total_acc, report):
    cached = [json.dumps(a.to_dict()) for a in per_frame_acc]
    total = M.SSCBenchAccumulator.empty()
    for text in cached:
        total.add(M.SSCBenchAccumulator.from_dict(json.loads(text)))
    assert total.to_dict() == total_acc.to_dict()
    assert M.report_from_accumulator(total) == report


def test_sweep_consistent_with_cutoff(fixture_data, total_acc):
    data, _ = fixture_data
    # at threshold 0.2 on the full grid, the sweep must give the 51.2 m geometry counts
    total = np.zeros(4, dtype=np.int64)
    for f in range(3):
        acc = M.accumulate_frame(data["gt"][f], data["pred_trainid"][f], data["sigma"][f], data["fov_mask"],
                                 sizes=(), sweep_thresholds=(0.2,))
        total += acc.sweep_counts[0]
    r = total_acc.ranges["51.2"]
    assert total.tolist() == [r.tp, r.fp, r.tn, r.fn]
    # sweep rows are [tp, fp, tn, fn] with constant tp+fn and fp+tn
    sc = total_acc.sweep_counts
    assert len(set((sc[:, 0] + sc[:, 3]).tolist())) == 1 and len(set((sc[:, 1] + sc[:, 2]).tolist())) == 1
    assert np.all(np.diff(sc[:, 0]) >= 0)  # thresholds decrease -> more predicted occupied


def test_sweep_matches_brute_force(fixture_data):
    data, _ = fixture_data
    gt_ssc, pred_ssc, _ = M.map_frame(data["gt"][0], data["pred_trainid"][0])
    sigma, fov = data["sigma"][0], data["fov_mask"] != 0
    thresholds = (0.5, 1.0, 0.2, 0.1953125, 0.2109375, 0.001, 0.2)  # unsorted, repeated, on-value thresholds
    got = M.sweep_counts(gt_ssc, pred_ssc, sigma, fov, thresholds)
    for i, t in enumerate(thresholds):
        p = pred_ssc.copy()
        p[sigma < t] = 0
        rc = M.range_counts(gt_ssc, p, fov)
        assert got[i].tolist() == [rc.tp, rc.fp, rc.tn, rc.fn], t
    metrics = M.sigma_sweep(data["gt"][:1], data["pred_trainid"][:1], data["sigma"][:1], data["fov_mask"], thresholds)
    assert [m["tp"] for m in metrics] == got[:, 0].tolist()
    assert metrics[0]["precision"] == got[0, 0] / (got[0, 0] + got[0, 1])


def test_one_frame_is_fast(fixture_data):
    data, _ = fixture_data
    start = time.perf_counter()
    M.accumulate_frame(data["gt"][0], data["pred_trainid"][0], data["sigma"][0], data["fov_mask"])
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------- hand-made cases
def _column_grid(column: list[int]) -> np.ndarray:
    g = np.zeros(SHAPE, dtype=np.uint8)
    g[...] = 11  # everything else occupied (building) -> no invalids elsewhere
    g[5, 7, :] = 0
    g[5, 7, : len(column)] = column
    return g


def test_additional_invalids_hand_built_column():
    col = [0, 0, 255, 0, 5, 0, 0, 0, 0, 0]
    g = _column_grid(col)
    g[1, 2, :] = 0  # an all-empty column: only z 0..6 become invalid
    mask = M.additional_invalid_mask(g)
    assert mask[5, 7, :].tolist()[:10] == [True, True, False, True, False, False, False, False, False, False]
    assert not mask[5, 7, 10:].any()
    assert mask[1, 2, :7].all() and not mask[1, 2, 7:].any()
    new, n = M.additional_invalids(g)
    assert n == 3 + 7 == int(mask.sum())
    assert new[5, 7, :4].tolist() == [255, 255, 255, 255] and new[5, 7, 4] == 5
    assert g[5, 7, 0] == 0  # input untouched


def test_additional_invalids_unknown_below_does_not_protect():
    g = _column_grid([255, 255, 0, 0, 0, 0, 0, 0, 13])
    mask = M.additional_invalid_mask(g)
    assert mask[5, 7, :9].tolist() == [False, False, True, True, True, True, True, False, False]


def test_additional_invalids_stack_matches_frames():
    rng = np.random.default_rng(0)
    g = rng.choice(np.array([0, 0, 0, 0, 3, 255], dtype=np.uint8), size=(2, 8, 9, 12))
    stacked = M.additional_invalid_mask(g)
    for f in range(2):
        np.testing.assert_array_equal(stacked[f], M.additional_invalid_mask(g[f]))
    # brute force
    want = np.zeros_like(stacked)
    for f, x, y, z in np.ndindex(*g.shape):
        below = g[f, x, y, :z]
        want[f, x, y, z] = z < 7 and g[f, x, y, z] == 0 and not np.any((below != 0) & (below != 255))
    np.testing.assert_array_equal(stacked, want)


def test_range_slices():
    assert M.range_slices(12.8) == (slice(0, 64), slice(96, 160))
    assert M.range_slices(25.6) == (slice(0, 128), slice(64, 192))
    assert M.range_slices(51.2) == (slice(0, 256), slice(0, 256))
    assert M.crop_range(np.zeros((2, *SHAPE)), 25.6).shape == (2, 128, 128, 32)
    with pytest.raises(ValueError, match="102.4"):
        M.range_slices(102.4)


def test_hungarian_recovers_permutation():
    rng = np.random.default_rng(3)
    perm = rng.permutation(16)
    gt = rng.integers(0, 16, size=20000)
    pred = perm[gt]
    noise = rng.random(gt.size) < 0.2
    pred[noise] = rng.integers(0, 16, size=int(noise.sum()))
    conf = np.bincount(gt * 16 + pred, minlength=256).reshape(16, 16)
    cols, order = M.hungarian_assignment(conf)
    assert cols.tolist() == perm.tolist()
    assert order.tolist() == np.argsort(perm).tolist()
    rc = M.RangeCounts(1, 0, 0, 0, conf)
    direct = M.range_metrics(rc)
    matched = M.range_metrics(rc, order)
    assert matched["miou"] > 0.6 > direct["miou"]


def test_hungarian_report_on_permuted_prediction():
    # GT car (ssc 1) everywhere in a small block, prediction "truck" (trainId 14 -> ssc 4), GT road predicted road
    gt = np.full(SHAPE, 255, dtype=np.uint8)
    pred = np.zeros(SHAPE, dtype=np.uint8)
    gt[:10, 120:130, 10:20] = 1   # car
    pred[:10, 120:130, 10:20] = 14  # truck
    gt[:10, 120:130, 5] = 7       # road
    pred[:10, 120:130, 5] = 0     # road
    sigma = np.ones(SHAPE, dtype=np.float32)
    fov = np.ones(SHAPE, dtype=bool)
    rep = M.sscbench_report(gt, pred, sigma, fov)
    d, h = rep["direct"]["12.8"], rep["hungarian"]["12.8"]
    assert d["per_class_iou"]["car"] == 0.0 and d["per_class_iou"]["truck"] == 0.0
    assert d["per_class_iou"]["road"] == 1.0
    assert h["per_class_iou"]["truck"] == 1.0 and h["per_class_iou"]["road"] == 1.0
    assert d["per_class_iou"]["pole"] is None and h["per_class_iou"]["pole"] is None
    assert d["iou"] == 1.0 and d["precision"] == 1.0 and d["recall"] == 1.0
    assert d["miou"] == pytest.approx(1 / 15)
    assert h["miou"] == pytest.approx(2 / 15)
    w = labels.SSC_CLASS_WEIGHTS
    assert d["weighted_miou"] == pytest.approx(w[6] / w.sum())
    assert h["weighted_miou"] == pytest.approx((w[3] + w[6]) / w.sum())
    md = results_markdown(rep, name="t")
    assert "| weighted mIoU |" in md and "  nan |" in md and "Reassignment:" in md


def test_sky_rider_are_free_space_and_cutoff_is_strict():
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[:, :, 0] = 7  # road floor -> no additional invalids above
    pred = np.zeros(SHAPE, dtype=np.uint8)
    sigma = np.zeros(SHAPE, dtype=np.float32)
    fov = np.zeros(SHAPE, dtype=bool)
    fov[0, 128, :3] = True
    pred[0, 128, 0] = 0      # road, σ below cut-off -> empty -> FN
    sigma[0, 128, 0] = 0.19
    pred[0, 128, 1] = 10     # sky with high σ -> empty -> TN
    sigma[0, 128, 1] = 5.0
    pred[0, 128, 2] = 13     # car exactly at the cut-off -> occupied -> FP
    sigma[0, 128, 2] = np.float32(0.2)
    acc = M.accumulate_frame(gt, pred, sigma, fov)
    r = acc.ranges["12.8"]
    assert (r.tp, r.fp, r.tn, r.fn) == (0, 1, 1, 1)
    assert r.confusion[7, 0] == 1 and r.confusion[0, 0] == 1 and r.confusion[0, 1] == 1
    assert acc.ranges["51.2"].to_dict() == r.to_dict()


def test_bad_inputs_raise():
    good = np.zeros(SHAPE, dtype=np.uint8)
    sig = np.ones(SHAPE, dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(256, 256, 31\)"):
        M.sscbench_report(np.zeros((256, 256, 31), np.uint8), good, sig, good)
    with pytest.raises(ValueError, match="shapes differ"):
        M.sscbench_report(np.zeros((2, *SHAPE), np.uint8), good, sig, good)
    with pytest.raises(ValueError, match="fov_mask"):
        M.sscbench_report(good, good, sig, np.zeros((128, 256, 32), bool))
    with pytest.raises(ValueError, match="3 frames"):
        stack = np.zeros((2, *SHAPE), np.uint8)
        M.sscbench_report(stack, stack, np.ones((2, *SHAPE), np.float32), np.zeros((3, *SHAPE), bool))
    bad_pred = good.copy()
    bad_pred[0, 0, 0] = 19
    with pytest.raises(ValueError, match="trainIds"):
        M.sscbench_report(good, bad_pred, sig, good)
    bad_gt = good.copy()
    bad_gt[0, 0, 0] = 20
    with pytest.raises(ValueError, match="20"):
        M.sscbench_report(bad_gt, good, sig, good)
    with pytest.raises(ValueError, match="confusion"):
        M.RangeCounts(0, 0, 0, 0, np.zeros((15, 16)))
    with pytest.raises(ValueError, match="ranges"):
        M.SSCBenchAccumulator.empty().add(M.SSCBenchAccumulator.empty(sizes=(51.2,)))
    with pytest.raises(ValueError, match="square"):
        M.hungarian_assignment(np.zeros((3, 4)))
