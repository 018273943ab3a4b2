"""The picture helpers of scenedino_core.visualize: colours at known places, legends, empty and NaN inputs, and
every picture titled, not blank and with its text on the canvas."""
from __future__ import annotations

import numpy as np
import pytest

from picture_checks import assert_legible, outside_canvas, titles
from scenedino_core import visualize as viz
from scenedino_core.labels import SSC_CLASSES, ssc_palette

NAMES = tuple(c.name for c in SSC_CLASSES)
PALETTE = ssc_palette()
CAR, ROAD, BUILDING = 1, 7, 9
#: A 20 x 10 x 4 m grid of 0.5 m cells: X = 40 cells forward, Y = 20 cells across.
GRID_MIN, GRID_MAX = (0.0, -5.0, 0.0), (20.0, 5.0, 4.0)
X, Y = 40, 20


def camera_pose(x: float = 0.0, y: float = 0.0, z: float = 1.5) -> np.ndarray:
    """Camera optical frame (x right, y down, z forward) looking along +x of a z-up frame."""
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pose[:3, 3] = (x, y, z)
    return pose


def pixel(fig, ax, x_data: float, y_data: float) -> np.ndarray:
    """RGB of the rendered figure at a data point of ``ax``."""
    rgb = viz.figure_rgb(fig)
    col, row = ax.transData.transform((x_data, y_data))
    return rgb[int(round(rgb.shape[0] - row)), int(round(col))]


def scene(n_points: int = 50, size: tuple[int, int] = (60, 200), occupied_count: int | None = None) -> viz.SceneView:
    """A frame with every class in the rendered semantics, the bird's-eye view and the voxels."""
    rng = np.random.default_rng(0)
    bev = np.zeros((Y, X), np.int8)
    bev[:, 30:] = -1
    bev[rng.random((Y, X)) < 0.3] = 100
    labels = rng.integers(1, 16, (Y, X)).astype(np.uint8)
    points = rng.uniform(GRID_MIN, GRID_MAX, (n_points, 3))
    h, w = size
    return viz.SceneView(
        rgb=rng.integers(0, 255, (h, w, 3), dtype=np.uint8), depth=rng.uniform(2, 50, (h // 4, w // 4)),
        semantics=rng.integers(0, 16, (h // 4, w // 4)), bev=bev, bev_labels=labels, points=points,
        point_labels=rng.integers(1, 16, n_points), grid_min=GRID_MIN, grid_max=GRID_MAX, voxel_size=0.5,
        camera_pose=camera_pose(), class_names=NAMES, palette=PALETTE, occupied_count=occupied_count)


class TestBevRgb:
    def test_colours(self):
        bev = np.array([[100, 100, 0, 0, -1]], np.int8)
        labels = np.array([[CAR, 0, ROAD, 0, ROAD]], np.uint8)
        rgb = viz.bev_rgb(bev, labels, PALETTE)
        assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb[0, 0], PALETTE[CAR])  # occupied: class colour
        np.testing.assert_array_equal(rgb[0, 1], (0, 0, 0))  # occupied without a class: black
        tint = np.rint((1 - viz.BEV_GROUND_TINT) * 255 + viz.BEV_GROUND_TINT * PALETTE[ROAD].astype(float))
        np.testing.assert_array_equal(rgb[0, 2], tint)  # free road: white tinted by road
        np.testing.assert_array_equal(rgb[0, 3], viz.BEV_FREE)
        np.testing.assert_array_equal(rgb[0, 4], viz.BEV_UNKNOWN)  # never observed, whatever the label

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="same 2D shape"):
            viz.bev_rgb(np.zeros((3, 4), np.int8), np.zeros((4, 3), np.uint8), PALETTE)


def test_plot_bev_places_cells_in_metres():
    """A car block ahead-left and an unknown strip far ahead land where their metres are, forward up, left left."""
    bev = np.zeros((Y, X), np.int8)
    labels = np.zeros((Y, X), np.uint8)
    bev[14:19, 20:26] = 100  # y cells 14..18 -> y = 2..4.5 m (left), x cells 20..25 -> x = 10..13 m
    labels[14:19, 20:26] = CAR
    bev[:, 36:] = -1  # x >= 18 m never observed
    fig = viz.new_figure(5, 6)
    ax = fig.add_subplot()
    viz.plot_bev(ax, bev, labels, PALETTE, GRID_MIN, GRID_MAX, camera_pose())
    # data coordinates of the axes: horizontal = y (m), vertical = x (m)
    np.testing.assert_array_equal(pixel(fig, ax, 3.3, 11.5), PALETTE[CAR])
    np.testing.assert_array_equal(pixel(fig, ax, -3.3, 11.5), viz.BEV_FREE)  # mirrored to the right: free
    np.testing.assert_array_equal(pixel(fig, ax, 0.0, 19.0), viz.BEV_UNKNOWN)
    assert ax.get_xlim()[0] > ax.get_xlim()[1]  # +y (left) drawn on the left
    rgb = viz.figure_rgb(fig)
    col, row = ax.transData.transform((3.3, 11.5))
    assert col < rgb.shape[1] / 2 and rgb.shape[0] - row < rgb.shape[0] / 2  # left half, upper half
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["camera"]
    assert "m" in ax.get_xlabel() and "m" in ax.get_ylabel()


def test_camera_heading():
    pose = camera_pose(1.0, -2.0)
    x, y, yaw = viz.camera_heading(pose)
    assert (x, y) == (1.0, -2.0) and yaw == pytest.approx(0.0)
    turn = np.eye(4)
    turn[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # 90 deg to the left
    assert viz.camera_heading(turn @ pose)[2] == pytest.approx(np.pi / 2)


class TestSemantics:
    def test_legend_lists_present_classes(self):
        labels = np.array([[CAR, ROAD], [ROAD, BUILDING]])
        fig = viz.new_figure(4, 3)
        ax = fig.add_subplot()
        legend = viz.plot_semantics(ax, labels, NAMES, PALETTE)
        assert [t.get_text() for t in legend.get_texts()] == [NAMES[CAR], NAMES[ROAD], NAMES[BUILDING]]
        np.testing.assert_array_equal(pixel(fig, ax, 0.0, 0.0), PALETTE[CAR])  # imshow: (col, row) data coords
        np.testing.assert_array_equal(pixel(fig, ax, 1.0, 1.0), PALETTE[BUILDING])

    @pytest.mark.parametrize("labels", [None, np.zeros((0, 4), np.uint8)])
    def test_missing_is_a_placeholder(self, labels):
        fig = viz.new_figure(4, 3)
        ax = fig.add_subplot()
        assert viz.plot_semantics(ax, labels, NAMES, PALETTE) is None
        assert any(t.get_text() == "not rendered" for t in ax.texts)
        viz.figure_rgb(fig)


class TestDepth:
    def test_colour_bar_and_nan(self):
        depth = np.linspace(3.0, 40.0, 200).reshape(10, 20)
        depth[0, 0], depth[0, 1], depth[0, 2] = np.nan, np.inf, 0.0
        fig = viz.new_figure(4, 3)
        ax = fig.add_subplot()
        cbar = viz.plot_depth(ax, depth)
        assert cbar.ax.get_ylabel() == "depth (m)"
        ticks = [t.get_text() for t in cbar.ax.get_yticklabels()]
        assert ticks == ["5", "7", "10", "15", "20", "30"]  # plain metres inside the range (3.56 .. 40 m)
        ax_box, bar_box = ax.get_window_extent(), cbar.ax.get_window_extent()
        assert bar_box.height == pytest.approx(ax_box.height, abs=1) and bar_box.x0 > ax_box.x1  # beside the image
        grey = pixel(fig, ax, 0.0, 0.0)
        assert grey[0] == grey[1] == grey[2]  # invalid depth: grey, not a colour of the map
        near, far = pixel(fig, ax, 0.0, 9.0), pixel(fig, ax, 19.0, 9.0)
        assert near.astype(int).sum() > far.astype(int).sum()  # near = bright

    @pytest.mark.parametrize("depth", [np.full((4, 5), np.nan), np.zeros((0, 0)), None])
    def test_empty_inputs(self, depth):
        fig = viz.new_figure(4, 3)
        viz.plot_depth(fig.add_subplot(), depth)
        assert viz.figure_rgb(fig).shape == (300, 400, 3)


class TestVoxels3d:
    def test_cap_and_empty(self):
        rng = np.random.default_rng(1)
        fig = viz.new_figure(5, 4)
        ax = fig.add_subplot(projection="3d")
        n = viz.plot_voxels_3d(ax, rng.uniform(GRID_MIN, GRID_MAX, (500, 3)), rng.integers(1, 16, 500), PALETTE,
                               GRID_MIN, GRID_MAX, 0.5, camera_pose(), max_voxels=100)
        assert n == 100 and "100 of 500 occupied voxels drawn" in ax.get_title()
        assert ax.get_box_aspect() is not None
        np.testing.assert_allclose(ax.get_xlim(), (GRID_MIN[0], GRID_MAX[0]))
        fig2 = viz.new_figure(5, 4)
        ax2 = fig2.add_subplot(projection="3d")
        assert viz.plot_voxels_3d(ax2, np.zeros((0, 3)), np.zeros(0, np.uint8), PALETTE, GRID_MIN, GRID_MAX,
                                  0.5) == 0
        viz.figure_rgb(fig2)

    def test_voxel_colours_drawn(self):
        """A block of car voxels shows the car colour (depth shading darkens, so compare hue ratios)."""
        g = np.stack(np.meshgrid(np.arange(8, 12, 0.5), np.arange(-1, 1, 0.5), np.arange(0, 2, 0.5),
                                 indexing="ij"), -1).reshape(-1, 3) + 0.25
        fig = viz.new_figure(5, 4)
        ax = fig.add_subplot(projection="3d")
        viz.plot_voxels_3d(ax, g, np.full(len(g), CAR), PALETTE, GRID_MIN, GRID_MAX, 0.5)
        rgb = viz.figure_rgb(fig).astype(int)
        blueish = (rgb[..., 2] > rgb[..., 0] + 60) & (rgb[..., 2] > 150)
        assert blueish.sum() > 30

    def test_length_mismatch(self):
        fig = viz.new_figure(5, 4)
        with pytest.raises(ValueError, match="same length"):
            viz.plot_voxels_3d(fig.add_subplot(projection="3d"), np.zeros((3, 3)), np.zeros(2), PALETTE,
                               GRID_MIN, GRID_MAX, 0.5)


def test_voxel_count_text():
    assert viz.voxel_count_text(100, 500) == "100 of 500 occupied voxels drawn"
    assert viz.voxel_count_text(50, 50) == "50 occupied voxels"
    assert (viz.voxel_count_text(15000, 142265, 909000)
            == "15,000 of 142,265 surface voxels drawn; 909,000 occupied in all")
    assert viz.voxel_count_text(20, 20, 90) == "all 20 surface voxels drawn; 90 occupied in all"


def test_subsample():
    np.testing.assert_array_equal(viz.subsample(5, 10), np.arange(5))
    idx = viz.subsample(1000, 10)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 999 and np.all(np.diff(idx) > 0)


def test_frame_figures_and_atomic_save(tmp_path):
    figs = viz.frame_figures(scene(), "frame 1/1 | test")
    assert tuple(figs) == viz.FRAME_PICTURES == ("input", "depth", "semantics", "bev", "voxels")
    for name, fig in figs.items():
        path = viz.save_figure(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig.get_suptitle() == "frame 1/1 | test"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in figs)  # no temp files left


#: A first-run title as long as they come (random weights, full-size model name, four-digit timings).
LONG_TITLE = ("RANDOM WEIGHTS: untrained model, the outputs are meaningless\nframe 20/20, stamp 1369730764.000 s\n"
              "vit_base_patch8_224.dino 192x640 (scenedino_synthetic_demo.pt)\n"
              "12345 ms in the model (encode 3200, voxels 8888, render 1234)")


@pytest.mark.parametrize("size", [(376, 1408), (60, 200), (192, 640)])
def test_frame_pictures_are_legible(size):
    """Every picture of a frame: titled with what it shows, not blank, its text (long titles, legends of all 15
    classes, axis labels) on the canvas; the 3D panel says how many voxels it draws of how many."""
    view = scene(n_points=400, size=size, occupied_count=5000)
    figs = viz.frame_figures(view, LONG_TITLE)
    figs["overview"] = viz.overview_figure(view, LONG_TITLE, title_color="red")
    for name, fig in figs.items():
        assert_legible(fig, name)
        assert LONG_TITLE in titles(fig), name
    assert "depth" in titles(figs["depth"]) and "semantics" in titles(figs["semantics"])
    assert "free" in titles(figs["bev"]) and "never observed" in titles(figs["bev"])
    for fig in (figs["voxels"], figs["overview"]):
        assert "400 surface voxels drawn; 5,000 occupied in all" in titles(fig)
        assert any("taller" in ax.get_zlabel() for ax in fig.axes if ax.name == "3d")
    legend_names = [t.get_text() for t in figs["overview"].legends[0].get_texts()]
    assert legend_names == list(NAMES)  # every class shown (semantics has 0..15), in label order


@pytest.mark.filterwarnings("ignore:constrained_layout not applied")
def test_outside_canvas_finds_clipped_text():
    """The check can fail: a title wider than its figure, a legend beyond the right edge."""
    fig = viz.new_figure(3, 2)
    ax = fig.add_subplot()
    ax.set_title("a title far too long for a figure three inches wide, it runs off both sides")
    assert any("axes titled" in p for p in outside_canvas(fig))
    fig2 = viz.new_figure(3, 2)
    ax2 = fig2.add_subplot()
    ax2.set_title("short")
    ax2.legend(handles=viz.class_handles(np.arange(16), NAMES, PALETTE), loc="upper left", bbox_to_anchor=(2, 1))
    assert outside_canvas(fig2)
    fig3 = viz.new_figure(3, 2)
    fig3.add_subplot().set_title("fits")
    assert outside_canvas(fig3) == []


def test_overview_title_and_content():
    fig = viz.overview_figure(scene(), "RANDOM WEIGHTS\nframe 1/1", title_color="red")
    assert fig.get_suptitle() == "RANDOM WEIGHTS\nframe 1/1"
    assert fig._suptitle.get_color() == "red"
    assert len([ax for ax in fig.axes if ax.name == "3d"]) == 1
    rgb = viz.figure_rgb(fig)
    assert rgb.shape == (1000, 1800, 3) and rgb.std() > 20
    assert_legible(fig, "overview")
