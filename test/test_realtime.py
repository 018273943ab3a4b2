"""The real-time path without ROS: single-pass voxel query, output arrays on demand, confidence, bf16, compiled path,
warm-up and the rate limiter. No wall-clock thresholds: every check is about values and counts."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import reference_dir, tiny_model
from scenedino_core import images, voxels
from scenedino_core.labels import TRAINID_TO_SSC
from scenedino_core.pipeline import FREE, UNKNOWN, Pipeline, PipelineConfig, PipelineError, bird_eye_view
from scenedino_core.semantics import PredictionMode
from scenedino_ros.sync import RateLimiter

GRID = voxels.VoxelGrid(origin=(0.0, -6.0, -0.5), voxel_size=0.5, dims=(24, 24, 7))
# camera optical frame 1.5 m above the grid origin, looking along the grid's x axis
CAM_FROM_GRID = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.5], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _frame(seed: int = 0, h: int = 240, w: int = 320):
    rgb = np.ascontiguousarray(np.roll(images.synthetic_street_image((h, w)), 7 * seed, axis=1))
    K = np.array([[w * 0.6, 0, w / 2], [0, w * 0.6, h / 2], [0, 0, 1.0]])
    return rgb, K


@pytest.fixture(scope='module')
def eager():
    return Pipeline(PipelineConfig(grid=GRID), model=tiny_model())


@pytest.fixture(scope='module')
def result(eager):
    return eager.process(*_frame(), CAM_FROM_GRID)


# ----------------------------------------------------------------------------- the voxel query

def test_grow_density_is_the_max_pool():
    g = torch.Generator().manual_seed(0)
    for shape in [(5, 4, 3), (1, 4, 3), (7, 1, 1), (9, 16, 2)]:
        sigma = torch.rand(shape, generator=g)
        np.testing.assert_array_equal(voxels.grow_density(sigma), F.max_pool3d(sigma[None, None], 3, 1, 1)[0, 0])


def test_the_field_runs_once_per_point(eager):
    """Voxels that need semantics are classified from the density pass's features: one field call per point."""
    model = eager.model
    with torch.no_grad():
        volume = model.for_dense_queries(eager.encode(*_frame()).volume)
    centres = voxels.voxel_centers_camera(GRID, CAM_FROM_GRID)
    points_seen = []

    def counting_field(vol, pts):
        points_seen.append(pts.shape[1])
        return model.field(vol, pts)

    pred = voxels.query_voxels(model, volume, centres, GRID.voxel_size, sigma_threshold=0.1, chunk_size=1000,
                               field_fn=counting_field)
    assert sum(points_seen) == GRID.num_voxels and len(points_seen) > 1  # several slabs, each point once
    assert pred.occupied is not None and 0 < pred.occupied.numel() < GRID.num_voxels
    np.testing.assert_array_equal(pred.occupied.numpy(), np.flatnonzero(pred.labels.numpy()))
    # the same labels as the protocol computed in the most direct way: every in-view voxel through every head
    full = voxels.predict_voxels(model, volume, centres, GRID.voxel_size, sigma_threshold=0.1, occupied_only=False)
    np.testing.assert_array_equal(pred.labels.numpy(), full.labels)
    np.testing.assert_array_equal(pred.sigma_grown.numpy(), full.sigma_grown)


@pytest.mark.parametrize('mode', [m.value for m in PredictionMode])
def test_semantics_equals_the_modules(eager, mode):
    """SceneDINO.semantics (in-place activations) gives exactly the classes of expansion + SemanticHead.classify."""
    model = eager.model
    features = torch.randn(500, model.config.field.feature_dim, generator=torch.Generator().manual_seed(1))
    kept = features.clone()
    with torch.no_grad():
        expected = model.head.classify(model.expansion(features), mode).classes
        np.testing.assert_array_equal(model.semantics(features, mode), expected)
    np.testing.assert_array_equal(features, kept)  # the input is left alone
    with pytest.raises(ValueError, match='inplace'):
        model.head.classify(features, mode, inplace=True)  # autograd on: refused


def test_axis_order_does_not_change_the_query(eager):
    """The pipeline queries z-major (the voxel grid message's order): same values as the [x, y, z] query."""
    frame = eager.encode(*_frame())
    centres = voxels.voxel_centers_camera(GRID, CAM_FROM_GRID)
    with torch.no_grad():
        xyz = voxels.predict_voxels(eager.model, frame.volume, centres, GRID.voxel_size)
    zyx = eager.predict(frame, CAM_FROM_GRID)
    for name in ('labels', 'train_ids', 'in_view', 'sigma', 'sigma_grown'):
        np.testing.assert_array_equal(getattr(zyx, name), getattr(xyz, name), err_msg=name)


# ----------------------------------------------------------------------------- output arrays on demand

def test_dense_grids_and_render_only_on_request(eager, result):
    lean = eager.process(*_frame(), CAM_FROM_GRID, dense_grid=False, render=False)
    assert lean.voxel_labels is None and lean.voxel_occupancy is None and lean.depth is None and lean.semantics is None
    for name in ('points', 'point_labels', 'point_confidence', 'point_index', 'bev'):
        np.testing.assert_array_equal(getattr(lean, name), getattr(result, name), err_msg=name)


def test_dense_grids_are_stored_in_message_order(result):
    """[x, y, z] views of x-fastest storage: the voxel grid message takes their bytes without a transposition."""
    for grid in (result.voxel_labels, result.voxel_occupancy):
        assert grid.shape == GRID.dims and grid.transpose(2, 1, 0).flags['C_CONTIGUOUS']


def test_bird_eye_view_matches_the_dense_labels(eager, result):
    labels = np.where(result.voxel_labels < FREE, result.voxel_labels, 0)
    cfg = eager.config
    np.testing.assert_array_equal(result.bev, bird_eye_view(labels, result.voxel_labels != UNKNOWN, GRID,
                                                            cfg.bev_min_height_m, cfg.bev_max_height_m,
                                                            cfg.ground_labels))


# ----------------------------------------------------------------------------- confidence agrees with the decision

def test_confidence_agrees_with_the_occupancy_decision(eager, result):
    """The cloud's confidence is the grown density's occupancy probability, the quantity the decision thresholds."""
    p_threshold = 1.0 - np.exp(-GRID.voxel_size * eager.config.density_threshold)
    assert result.decision_probability == pytest.approx(p_threshold)
    assert len(result.points) > 0
    assert result.point_confidence.min() >= np.float32(p_threshold) * (1 - 1e-6)
    # occupied = in view, grown density over the threshold, and a class that is not "empty" (e.g. sky)
    pred = eager.predict(eager.encode(*_frame()), CAM_FROM_GRID)
    passes = pred.in_view & (pred.sigma_grown >= eager.config.density_threshold)
    assert np.all(pred.train_ids[passes] != 255)
    not_empty = TRAINID_TO_SSC[np.where(pred.train_ids == 255, 0, pred.train_ids)] != 0
    np.testing.assert_array_equal(pred.occupied, passes & not_empty)
    # the dense grid's percentages are the same probabilities
    idx = tuple(result.point_index.T)
    np.testing.assert_array_equal(result.voxel_occupancy[idx], np.rint(result.point_confidence * 100))


# ----------------------------------------------------------------------------- precision, compiled path, warm-up

def test_bf16_agrees_with_fp32_on_the_tiny_model(result):
    p = Pipeline(PipelineConfig(grid=GRID, precision='bf16'), model=tiny_model())
    r = p.process(*_frame(), CAM_FROM_GRID)
    in_view = result.voxel_labels != UNKNOWN
    np.testing.assert_array_equal(r.voxel_labels != UNKNOWN, in_view)  # geometry stays float32
    np.testing.assert_array_equal(r.voxel_occupancy, result.voxel_occupancy)  # densities stay float32
    assert (r.voxel_labels[in_view] == result.voxel_labels[in_view]).mean() >= 0.95


def test_tf32_is_fp32_on_the_cpu(result):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    r = Pipeline(PipelineConfig(grid=GRID, precision='tf32'), model=tiny_model()).process(*_frame(), CAM_FROM_GRID)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before  # CPU: untouched
    np.testing.assert_array_equal(r.voxel_labels, result.voxel_labels)
    np.testing.assert_array_equal(r.point_confidence, result.point_confidence)
    with pytest.raises(PipelineError, match='fp32, tf32, bf16'):
        Pipeline(PipelineConfig(grid=GRID, precision='fp16'), model=tiny_model())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device (TF32 is a CUDA setting)')
def test_precision_sets_tf32_on_cuda():
    """fp32 on CUDA is strict float32, tf32 allows TF32 in matrix products and convolutions, bf16 leaves it off
    (its float32 densities stay exact); and the tiny model's labels on CUDA match the CPU's."""
    model = tiny_model()
    cpu = Pipeline(PipelineConfig(grid=GRID), model=model).process(*_frame(), CAM_FROM_GRID)
    for precision, allowed in (('tf32', True), ('bf16', False), ('fp32', False)):
        p = Pipeline(PipelineConfig(grid=GRID, device='cuda', precision=precision), model=tiny_model())
        assert torch.backends.cuda.matmul.allow_tf32 is allowed and torch.backends.cudnn.allow_tf32 is allowed
    r = p.process(*_frame(), CAM_FROM_GRID)  # fp32 on CUDA
    in_view = cpu.voxel_labels != UNKNOWN
    np.testing.assert_array_equal(r.voxel_labels != UNKNOWN, in_view)
    assert (r.voxel_labels[in_view] == cpu.voxel_labels[in_view]).mean() >= 0.999


def test_warm_up_runs_a_frame(eager):
    assert eager.warm_up() >= 0.0 and eager.warm_up(CAM_FROM_GRID) >= 0.0


def test_compiled_path_gives_the_eager_outputs(result):
    """torch.compile on the CPU: same labels and voxels, densities within float tolerance, and no recompilation
    from one frame to the next (fixed shapes)."""
    pytest.importorskip('torch._dynamo')
    from torch._dynamo.utils import counters

    p = Pipeline(PipelineConfig(grid=GRID, compile=True), model=tiny_model())
    p.warm_up(CAM_FROM_GRID)
    if not p.compiled:
        pytest.skip('torch.compile is not usable here (no C++ toolchain?): the fallback test covers this machine')
    r = p.process(*_frame(), CAM_FROM_GRID)
    graphs = dict(counters['stats'])
    r2 = p.process(*_frame(1), CAM_FROM_GRID)
    assert dict(counters['stats']).get('unique_graphs') == graphs.get('unique_graphs')  # nothing recompiled
    np.testing.assert_array_equal(r.point_index, result.point_index)
    np.testing.assert_array_equal(r.point_labels, result.point_labels)
    np.testing.assert_array_equal(r.voxel_labels, result.voxel_labels)
    np.testing.assert_allclose(r.point_confidence, result.point_confidence, atol=1e-5)
    np.testing.assert_allclose(r.depth, result.depth, rtol=1e-4, atol=1e-4)
    assert len(r2.points) > 0


def test_compile_failure_falls_back_to_eager(monkeypatch, result, caplog):
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError('no compiler here')
        return run

    monkeypatch.setattr(torch, 'compile', broken_compile)
    p = Pipeline(PipelineConfig(grid=GRID, compile=True), model=tiny_model())
    assert p.compiled
    with caplog.at_level(logging.WARNING):
        p.warm_up(CAM_FROM_GRID)
    assert not p.compiled and any('torch.compile failed' in r.message for r in caplog.records)
    r = p.process(*_frame(), CAM_FROM_GRID)
    np.testing.assert_array_equal(r.voxel_labels, result.voxel_labels)


def test_bf16_class_agreement_on_the_reference_fixture(official_v1_checkpoint):
    """Full ViT-B/8 with the upstream fixture's weights on the SSCBench grid: bf16 keeps >= 99 % of the in-view SSC
    labels of fp32 (the figure is in docs/ros_node.md)."""
    from scenedino_core import geometry
    from scenedino_core.checkpoint import load_model
    from scenedino_core.sscbench import grid

    upstream = reference_dir('upstream_v1')
    inputs = dict(np.load(upstream / 'inputs.npz'))
    rgb = np.round((inputs['image_input'].transpose(1, 2, 0) / 2 + 0.5) * 255).astype(np.uint8)
    K = geometry.denormalize_intrinsics(torch.from_numpy(inputs['K']).double(), (192, 640)).numpy()
    model = load_model(official_v1_checkpoint)
    centres, fov = grid.voxel_centers_camera(), grid.fov_mask()
    labels = {}
    for precision in ('fp32', 'bf16'):
        p = Pipeline(PipelineConfig(grid=grid.SSCBENCH_GRID, precision=precision), model=model)
        frame = p.encode_fitted(images.FittedImage(rgb, K, 1.0, (0, 0)))
        labels[precision] = p.predict(frame, centres=centres, semantic_mask=fov).labels
    agree = float((labels['bf16'][fov] == labels['fp32'][fov]).mean())
    print(f'bf16 vs fp32: {agree:.4%} of the in-view SSC labels identical')
    assert agree >= 0.99


# ----------------------------------------------------------------------------- rate limit

def test_rate_limiter_thins_to_the_maximum():
    now = [0.0]
    limit = RateLimiter(5.0, clock=lambda: now[0])
    passed = []
    for i in range(50):  # 10 Hz input with up to 30 % jitter of the 0.1 s spacing
        now[0] = 0.1 * i + 0.03 * ((-1) ** i)
        passed.append(limit.allow())
    assert sum(passed) == 25 and limit.dropped == 25
    exact = RateLimiter(10.0, clock=lambda: now[0])
    results = []
    for i in range(50):  # input at the maximum rate passes whole despite jitter (< half a period)
        now[0] = 100.0 + 0.1 * i + 0.02 * ((-1) ** i)
        results.append(exact.allow())
    assert all(results) and exact.dropped == 0
    unlimited = RateLimiter(0.0)
    assert all(unlimited.allow() for _ in range(100)) and unlimited.dropped == 0
    with pytest.raises(ValueError, match='max_hz'):
        RateLimiter(-1.0)
