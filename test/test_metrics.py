"""The shared Hungarian matching and IoU of confusion matrices (``scenedino_core.metrics``), checked by hand."""
from __future__ import annotations

import numpy as np
import pytest

from scenedino_core.metrics import hungarian_match, iou_per_class, mean_iou, relabel, segmentation_metrics


def test_hungarian_match_unmatched_rows():
    conf = np.array([[0, 9, 1],
                     [8, 0, 0],
                     [0, 1, 7],
                     [5, 0, 6]])  # row 3 loses to rows 1 and 2; its majority is column 2
    np.testing.assert_array_equal(hungarian_match(conf), [1, 0, 2, -1])
    np.testing.assert_array_equal(hungarian_match(conf, unmatched="majority"), [1, 0, 2, 2])
    assert hungarian_match(conf).dtype == np.int64
    with pytest.raises(ValueError, match="unmatched"):
        hungarian_match(conf, unmatched="drop")
    with pytest.raises(ValueError, match="2-D"):
        hungarian_match(np.zeros(3))


def test_relabel_keeps_unmatched_counts_in_the_last_row():
    conf = np.array([[1, 2], [3, 4], [5, 6]])
    out = relabel(conf, np.array([1, 1, -1]), 2)
    np.testing.assert_array_equal(out, [[0, 0], [4, 6], [5, 6]])
    with pytest.raises(ValueError, match="mapping"):
        relabel(conf, np.array([0, 2, 1]), 2)
    with pytest.raises(ValueError, match="confusion"):
        relabel(conf, np.array([0, 1, 1]), 3)


def test_iou_per_class_by_hand():
    # rows prediction (last row: predicted as no class), cols truth
    conf = np.array([[6, 2, 0],
                     [0, 3, 0],
                     [1, 0, 0],
                     [0, 4, 0]])
    iou = iou_per_class(conf)
    # class 0: tp 6, truth 7, predicted 8 -> 6 / 9; class 1: tp 3, truth 9, predicted 3 -> 3 / 9; class 2: 0 / 1
    np.testing.assert_allclose(iou[:2], [6 / 9, 3 / 9])
    assert iou[2] == 0.0
    assert np.isnan(iou_per_class(np.zeros((2, 2)))).all()
    square = np.array([[5, 1], [2, 7]])
    np.testing.assert_array_equal(iou_per_class(square), iou_per_class(square.T))
    with pytest.raises(ValueError, match="confusion"):
        iou_per_class(np.zeros((2, 3)))


def test_mean_iou_conventions():
    iou = np.array([0.5, np.nan, 1.0])
    assert mean_iou(iou, "zero") == pytest.approx(0.5)
    assert mean_iou(iou, "skip") == pytest.approx(0.75)
    w = np.array([1.0, 2.0, 3.0])
    assert mean_iou(iou, "zero", w) == pytest.approx((0.5 + 3.0) / 6)
    assert mean_iou(iou, "skip", w) == pytest.approx((0.5 + 3.0) / 4)
    assert mean_iou(np.full(3, np.nan), "skip") is None and mean_iou(np.full(3, np.nan), "zero") == 0.0
    with pytest.raises(ValueError, match="absent"):
        mean_iou(iou, "ignore")
    with pytest.raises(ValueError, match="weights"):
        mean_iou(iou, "zero", np.ones(2))


def test_segmentation_metrics_counts_unmatched_ids_as_wrong():
    conf = np.array([[4, 0], [0, 3], [2, 1]])  # three predicted ids, two classes
    m = segmentation_metrics(conf, ("a", "b"), np.ones(2), hungarian_match(conf))
    assert m["per_class_iou"] == {"a": pytest.approx(4 / 6), "b": pytest.approx(3 / 4)}
    assert m["accuracy"] == pytest.approx(7 / 10) and m["n_pixels"] == 10
    with pytest.raises(ValueError, match="class names"):
        segmentation_metrics(conf, ("a",), np.ones(2), hungarian_match(conf))
