"""Checks that a picture is fit to be looked at: something is drawn, and every text lies on the canvas."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from scenedino_core import visualize


def outside_canvas(fig: Figure, tolerance_px: float = 1.0) -> list[str]:
    """The parts of ``fig`` that stick out of its canvas: the figure's tight bounding box, each axes with its
    title, labels, drawn ticks and legends, each figure text (suptitle) and figure legend."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    parts = [("figure", fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans))]
    parts += [(f"axes titled {ax.get_title()!r}", ax.get_tightbbox(renderer)) for ax in fig.axes]
    parts += [(f"text {t.get_text()!r}", t.get_window_extent(renderer)) for t in fig.texts if t.get_text()]
    parts += [(f"figure legend {i}", legend.get_window_extent(renderer)) for i, legend in enumerate(fig.legends)]
    return [f"{name}: {tuple(round(v) for v in box.extents)} outside (0, 0, {width:.0f}, {height:.0f})"
            for name, box in parts
            if box is not None and (box.x0 < -tolerance_px or box.y0 < -tolerance_px
                                    or box.x1 > width + tolerance_px or box.y1 > height + tolerance_px)]


def titles(fig: Figure) -> str:
    """Every title of ``fig`` (suptitle and axes titles), one per line."""
    texts = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
    return "\n".join(t for t in texts if t)


def assert_legible(fig: Figure, name: str = "picture") -> None:
    """``fig`` is titled, not blank (many colours, contrast) and every text lies on its canvas."""
    assert titles(fig).strip(), f"{name} has no title"
    rgb = visualize.figure_rgb(fig)
    colours = np.unique(rgb.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1]))
    assert rgb.std() > 15 and len(colours) > 50, f"{name} looks blank"
    problems = outside_canvas(fig)
    assert not problems, f"{name}: text off the canvas: {problems}"
