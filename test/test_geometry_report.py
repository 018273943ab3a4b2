"""training/geometry_report.py on one synthetic SSCBench frame: exact geometry scores 100 % without the growth, the
reference row equals what scenedino-eval-sscbench reports, and the picture is drawn."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import cv2
import pytest
import torch

from conftest import tiny_model
from scenedino_core.checkpoint import save_checkpoint
from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_sscbench
from scenedino_core.sscbench.evaluate import EvalOptions, evaluate_sscbench

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "geometry_report.py"
FRAME = 12


def load_script():
    spec = importlib.util.spec_from_file_location("geometry_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks the module up while it is being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic_frame(tmp_path_factory):
    """One written SSCBench-format frame of a synthetic street and a tiny random checkpoint."""
    tmp = tmp_path_factory.mktemp("geometry")
    write_sscbench(StreetWorld.generate(1, StreetConfig(num_frames=40)), tmp / "ssc", tmp / "vgt", 9, [FRAME])
    ckpt = save_checkpoint(tmp / "tiny.pt", tiny_model(), meta={"note": "tests"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tmp, ckpt
    finally:
        torch.set_num_threads(threads)


def rows(text: str) -> dict[str, list[tuple[float, float, float]]]:
    """Table rows -> per range (IoU, precision, recall) in %."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1][:1].isdigit():
            out[cells[0]] = [tuple(float(v) for v in re.findall(r"[\d.]+", c)) for c in cells[1:]]
    return out


def test_exact_geometry_and_the_reference_row(synthetic_frame, capsys):
    tmp, ckpt = synthetic_frame
    figure = tmp / "geometry.png"
    script = load_script()
    script.main(["--sscbench", str(tmp / "ssc"), "--voxel-gt", str(tmp / "vgt"), "--checkpoint", str(ckpt),
                 "--figure", str(figure)])
    table = rows(capsys.readouterr().out)
    assert set(table) == {script.REFERENCE, script.GROWN, script.FIELD, script.EXACT_GROWN, script.EXACT}
    assert table[script.EXACT] == [(100.0, 100.0, 100.0)] * 3  # GT and metric code agree exactly
    for iou, precision, recall in table[script.EXACT_GROWN]:
        assert recall == 100.0 and 20.0 < precision < 90.0 and iou == precision  # growth only adds free voxels
    for grown, field in zip(table[script.GROWN], table[script.FIELD]):
        assert grown[2] >= field[2]  # the growth can only add occupied voxels
    summary = evaluate_sscbench(EvalOptions(sscbench=tmp / "ssc", voxel_gt=tmp / "vgt", checkpoint=ckpt,
                                            out=tmp / "eval", fast_sweep=True))
    for (iou, precision, recall), size in zip(table[script.REFERENCE], ("12.8", "25.6", "51.2")):
        geo = summary["report"]["direct"][size]
        assert (iou, precision, recall) == pytest.approx(
            (100 * geo["iou"], 100 * geo["precision"], 100 * geo["recall"]), abs=0.051)  # printed to 0.1 %
    picture = cv2.imread(str(figure))
    assert picture is not None and picture.shape[0] > 500 and picture.std() > 20
