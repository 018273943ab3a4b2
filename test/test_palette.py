"""One palette: each class has the same colour in every writer.

Writers: the ROS messages of a frame (PointCloud2 ``rgb``, MarkerArray cubes, ``SemanticVoxelGrid.class_colors``,
the rgb8 ``~/semantics`` image; the Foxglove live view sends these same messages, checked on the wire in
test_first_run.py), the first run's pictures (rendered semantics, bird's-eye view, 3D voxels and their legends) and
scenedino-infer's pictures, whose trainIds are drawn in the colour of their SSC class.
"""
from __future__ import annotations

import numpy as np
import pytest

from scenedino_core import visualize as viz
from scenedino_core.cli import infer
from scenedino_core.labels import (
    NUM_SSC_CLASSES,
    NUM_TRAIN_CLASSES,
    SSC_CLASSES,
    TRAINID_TO_SSC,
    class_table,
    ssc_palette,
    train_palette,
)
from scenedino_core.pipeline import FrameResult, RenderedView
from scenedino_core.voxels import VoxelGrid

PALETTE = ssc_palette()
NAMES = tuple(c.name for c in SSC_CLASSES)
CLASSES = np.arange(1, NUM_SSC_CLASSES)  # every SSC class but "empty"


def image_pixel(fig, ax, col: int, row: int) -> np.ndarray:
    """RGB of the rendered figure at pixel (col, row) of the image shown in ``ax``."""
    rgb = viz.figure_rgb(fig)
    x, y = ax.transData.transform((col, row))
    return rgb[int(round(rgb.shape[0] - y)), int(round(x))]


def legend_colours(legend) -> dict[str, tuple[int, int, int]]:
    return {text.get_text(): tuple(np.rint(np.asarray(patch.get_facecolor()[:3]) * 255).astype(int))
            for text, patch in zip(legend.get_texts(), legend.legend_handles)}


def test_the_table_has_one_palette():
    names, palette = class_table()
    np.testing.assert_array_equal(palette, PALETTE)
    assert names == NAMES
    np.testing.assert_array_equal(train_palette(), PALETTE[TRAINID_TO_SSC])  # trainIds: their SSC class's colour
    assert train_palette().shape == (NUM_TRAIN_CLASSES, 3)


def test_pictures_draw_each_class_in_its_colour():
    labels = np.tile(np.arange(NUM_SSC_CLASSES), (2, 1))  # (2, 16): column c is class c
    fig = viz.new_figure(8, 5)
    ax = fig.add_subplot()
    legend = viz.plot_semantics(ax, labels, NAMES, PALETTE)
    for c in range(NUM_SSC_CLASSES):
        np.testing.assert_array_equal(image_pixel(fig, ax, c, 0), PALETTE[c], err_msg=NAMES[c])
    assert legend_colours(legend) == {NAMES[c]: tuple(PALETTE[c]) for c in range(NUM_SSC_CLASSES)}

    bev = np.full((1, len(CLASSES)), 100, np.int8)
    np.testing.assert_array_equal(viz.bev_rgb(bev, CLASSES[None], PALETTE)[0], PALETTE[CLASSES])

    fig3 = viz.new_figure(6, 5)
    ax3 = fig3.add_subplot(projection="3d")
    points = np.stack([CLASSES * 1.0, np.zeros(len(CLASSES)), np.ones(len(CLASSES))], axis=1)
    viz.plot_voxels_3d(ax3, points, CLASSES, PALETTE, (0, -2, 0), (16, 2, 3), 0.5)
    assert legend_colours(viz.class_legend(ax3, CLASSES, NAMES, PALETTE)) == {
        NAMES[c]: tuple(PALETTE[c]) for c in CLASSES}


def test_infer_pictures_draw_train_ids_in_their_ssc_colour():
    train_ids = np.tile(np.arange(NUM_TRAIN_CLASSES, dtype=np.uint8), (2, 1))  # column t is trainId t
    view = RenderedView(depth=np.full(train_ids.shape, 10.0, np.float32), train_ids=train_ids,
                        features=np.random.default_rng(0).normal(size=(*train_ids.shape, 8)).astype(np.float32))
    rgb = np.full((32, 64, 3), 128, np.uint8)
    figs = infer.pictures(rgb, "test", view)
    fig = figs["semantics"]
    ax = fig.axes[0]
    for t in range(NUM_TRAIN_CLASSES):
        np.testing.assert_array_equal(image_pixel(fig, ax, t, 0), PALETTE[TRAINID_TO_SSC[t]], err_msg=f"trainId {t}")
    shown = set(TRAINID_TO_SSC.tolist())
    assert legend_colours(ax.get_legend()) == {NAMES[c]: tuple(PALETTE[c]) for c in sorted(shown)}


def _result() -> FrameResult:
    """One occupied voxel of each class (1..15) along x, and a rendered view with every class."""
    grid = VoxelGrid(origin=(0.0, 0.0, 0.0), voxel_size=1.0, dims=(len(CLASSES), 1, 1))
    index = np.stack([np.arange(len(CLASSES)), np.zeros(len(CLASSES)), np.zeros(len(CLASSES))], 1).astype(np.int32)
    labels = CLASSES.astype(np.uint8).reshape(-1, 1, 1)
    return FrameResult(
        grid=grid, out_from_grid=np.eye(4), points=(index + 0.5).astype(np.float32),
        point_labels=CLASSES.astype(np.uint8), point_confidence=np.full(len(CLASSES), 0.9, np.float32),
        point_index=index, voxel_labels=labels, voxel_occupancy=np.full(labels.shape, 90, np.uint8),
        bev=np.full((1, len(CLASSES)), 100, np.int8), depth=np.ones((2, NUM_SSC_CLASSES), np.float32),
        semantics=np.tile(np.arange(NUM_SSC_CLASSES, dtype=np.uint8), (2, 1)), intrinsics=np.eye(3))


def test_messages_carry_each_class_in_its_colour():
    pytest.importorskip("rclpy", reason="ROS 2 Python packages are not installed")
    from builtin_interfaces.msg import Time

    from scenedino_ros import outputs
    from scenedino_ros.params import NodeParams

    names, palette = class_table()
    built = dict(outputs.build_messages(_result(), Time(sec=1), "grid", "cam", NodeParams(), names, palette))
    cloud = built["semantic_points"]
    points = np.frombuffer(bytes(cloud.data), dtype=np.dtype({"names": ["rgb", "label"], "formats": ["<u4", "<u4"],
                                                               "offsets": [12, 16], "itemsize": 24}))
    rgb = np.stack([points["rgb"] >> 16 & 0xFF, points["rgb"] >> 8 & 0xFF, points["rgb"] & 0xFF], 1)
    np.testing.assert_array_equal(points["label"], CLASSES)
    np.testing.assert_array_equal(rgb, PALETTE[CLASSES])

    cubes = {m.id: m for m in built["voxels"].markers[1:]}
    assert sorted(cubes) == CLASSES.tolist()
    for c, m in cubes.items():
        assert np.rint(np.array([m.color.r, m.color.g, m.color.b]) * 255).tolist() == PALETTE[c].tolist(), NAMES[c]

    image = built["semantics"]
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
    np.testing.assert_array_equal(pixels[0], PALETTE)  # column c is class c

    if "voxel_grid" in built:  # needs the generated scenedino_ros.msg
        grid = built["voxel_grid"]
        colours = np.rint([[c.r * 255, c.g * 255, c.b * 255] for c in grid.class_colors]).astype(int)
        np.testing.assert_array_equal(colours, PALETTE)
        assert list(grid.class_names) == list(NAMES)
