"""ROS-free parts of the node: the inference pipeline, frames and frame flow (no rclpy needed)."""
import logging
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import tiny_config, tiny_model
from scenedino_core import images, voxels
from scenedino_core.config import to_dict
from scenedino_core.labels import TRAINID_TO_SSC, class_table
from scenedino_core.pipeline import (
    FREE,
    OCCUPANCY_UNKNOWN,
    UNKNOWN,
    FrameResult,
    Pipeline,
    PipelineConfig,
    PipelineError,
    bird_eye_view,
)
from scenedino_ros import frames
from scenedino_ros.sync import LatencyWindow, LatestSlot, RateMeter, StampSync

GRID = voxels.VoxelGrid(origin=(0.0, -6.0, -0.5), voxel_size=0.5, dims=(24, 24, 7))
CAM_IN_GRID = frames.camera_pose_from_rpy([0.0, 0.0, 1.5], [0.0, 3.0, 0.0])


def z_major(mask: np.ndarray) -> np.ndarray:
    """(N, 3) [x, y, z] indices of the True voxels of an (X, Y, Z) mask, x fastest (z slowest)."""
    return np.argwhere(mask.transpose(2, 1, 0))[:, ::-1]


def _frame(h=240, w=320):
    rgb = images.synthetic_street_image((h, w))
    K = np.array([[w * 0.6, 0, w / 2], [0, w * 0.6, h / 2], [0, 0, 1.0]])
    return rgb, K


@pytest.fixture(scope='module')
def pipeline():
    return Pipeline(PipelineConfig(grid=GRID), model=tiny_model())


@pytest.fixture(scope='module')
def result(pipeline) -> FrameResult:
    rgb, K = _frame()
    cam_from_grid = frames.invert(CAM_IN_GRID)
    return pipeline.process(rgb, K, cam_from_grid)


def test_pipeline_imports_no_ros():
    import subprocess  # other test modules import rclpy: check in a fresh interpreter
    code = 'import scenedino_core.pipeline, scenedino_ros.sync, scenedino_ros.frames, sys; ' \
           'assert not [m for m in sys.modules if m.startswith(("rclpy", "sensor_msgs"))]'
    subprocess.run([sys.executable, '-c', code], check=True)


def test_result_shapes_and_ranges(result):
    X, Y, Z = GRID.dims
    n = len(result.points)
    assert result.points.shape == (n, 3) and result.points.dtype == np.float32
    assert result.point_labels.shape == (n,) and result.point_labels.dtype == np.uint8
    assert result.point_confidence.dtype == np.float32
    assert np.all((result.point_confidence >= 0) & (result.point_confidence <= 1))
    assert np.all((result.point_labels >= 1) & (result.point_labels <= 15))
    assert result.voxel_labels.shape == (X, Y, Z) and result.voxel_occupancy.shape == (X, Y, Z)
    assert result.bev.shape == (Y, X) and result.bev.dtype == np.int8
    assert set(np.unique(result.bev)) <= {-1, 0, 100}
    assert result.depth.shape == result.semantics.shape == (16, 32)  # 32x64 model input, stride 2
    assert np.all(np.isfinite(result.depth)) and result.depth.min() > 0
    assert result.semantics.max() <= 15
    assert set(result.timings_ms) == {'fit', 'encode', 'voxels', 'render', 'outputs', 'total'}
    assert n > 0, 'the tiny random model should occupy some voxels'


def test_outputs_are_consistent_with_each_other(result):
    occ = (result.voxel_labels != FREE) & (result.voxel_labels != UNKNOWN)
    assert occ.sum() == len(result.points)
    np.testing.assert_array_equal(z_major(occ), result.point_index)  # the voxel grid message's order
    np.testing.assert_array_equal(result.voxel_labels[tuple(result.point_index.T)], result.point_labels)
    unknown = result.voxel_labels == UNKNOWN
    assert np.all(result.voxel_occupancy[unknown] == OCCUPANCY_UNKNOWN)
    assert np.all(result.voxel_occupancy[~unknown] <= 100)
    # camera-frame output: every point is in front of the camera
    assert result.points[:, 2].min() > 0


def test_voxels_come_from_the_core_query(pipeline, result):
    """The pipeline uses predict_voxels (the SSCBench query) unchanged."""
    rgb, K = _frame()
    fitted = images.fit_to_model(rgb, K, pipeline.image_size)
    with torch.no_grad():
        vol = pipeline.model.encode(images.to_tensor_image(fitted.rgb), torch.from_numpy(fitted.intrinsics).float())
    pred = voxels.predict_voxels(pipeline.model, vol, voxels.voxel_centers_camera(GRID, frames.invert(CAM_IN_GRID)),
                                 GRID.voxel_size)
    np.testing.assert_array_equal(z_major(pred.occupied), result.point_index)
    np.testing.assert_array_equal(pred.labels[tuple(result.point_index.T)], result.point_labels)


def test_target_frame_outputs(pipeline, result):
    """out_from_grid = identity: points are the grid-frame voxel centres; same voxels as in the camera frame."""
    rgb, K = _frame()
    r = pipeline.process(rgb, K, frames.invert(CAM_IN_GRID), np.eye(4))
    np.testing.assert_array_equal(r.point_index, result.point_index)
    centres = np.asarray(GRID.origin) + (r.point_index + 0.5) * GRID.voxel_size
    np.testing.assert_allclose(r.points, centres, atol=1e-5)
    cam = (centres @ frames.invert(CAM_IN_GRID)[:3, :3].T + frames.invert(CAM_IN_GRID)[:3, 3])
    np.testing.assert_allclose(result.points, cam, atol=1e-4)


def test_bf16_autocast_runs(result):
    p = Pipeline(PipelineConfig(grid=GRID, precision='bf16', render_semantics=False), model=tiny_model())
    rgb, K = _frame()
    r = p.process(rgb, K, frames.invert(CAM_IN_GRID))
    assert r.voxel_labels.shape == result.voxel_labels.shape and r.semantics is None
    agree = np.mean((r.voxel_labels == UNKNOWN) == (result.voxel_labels == UNKNOWN))
    assert agree > 0.99  # the view mask is geometry: unaffected by bf16


def test_loads_a_checkpoint(tiny_checkpoint):
    p = Pipeline(PipelineConfig(grid=GRID, checkpoint=str(tiny_checkpoint)))
    assert not p.random_weights and 'tiny.pt' in p.describe() and p.image_size == (32, 64)


def test_refuses_without_checkpoint():
    with pytest.raises(PipelineError, match="set the 'checkpoint' parameter.*'allow_random_weights'"):
        Pipeline(PipelineConfig(grid=GRID))


def test_random_weights_say_so(tmp_path, caplog):
    import yaml
    cfg = tmp_path / 'tiny.yaml'
    cfg.write_text(yaml.safe_dump(to_dict(tiny_config())))
    with caplog.at_level(logging.WARNING):
        p = Pipeline(PipelineConfig(grid=GRID, allow_random_weights=True, model_config=str(cfg)))
    assert p.random_weights and 'RANDOM WEIGHTS' in p.describe()
    assert any('RANDOM WEIGHTS' in r.message for r in caplog.records)


def test_device_and_precision_are_checked():
    with pytest.raises(PipelineError, match="'gpu' is not cpu, cuda or cuda:N"):
        Pipeline(PipelineConfig(grid=GRID, device='gpu'), model=tiny_model())
    with pytest.raises(PipelineError, match='fp16'):
        Pipeline(PipelineConfig(grid=GRID, precision='fp16'), model=tiny_model())
    if not torch.cuda.is_available():
        with pytest.raises(PipelineError, match='CUDA is not available'):
            Pipeline(PipelineConfig(grid=GRID, device='cuda:0'), model=tiny_model())


def test_debug_delay_is_applied():
    p = Pipeline(PipelineConfig(grid=GRID, debug_delay_ms=150, render_depth=False, render_semantics=False),
                 model=tiny_model())
    rgb, K = _frame()
    r = p.process(rgb, K, frames.invert(CAM_IN_GRID))
    assert r.timings_ms['debug_delay'] >= 150 and r.timings_ms['total'] >= 150


def test_bird_eye_view_rules():
    grid = voxels.VoxelGrid(origin=(0.0, 0.0, 0.0), voxel_size=1.0, dims=(3, 2, 4))  # z centres 0.5 .. 3.5
    labels = np.zeros((3, 2, 4), np.uint8)
    seen = np.zeros((3, 2, 4), bool)
    seen[0, :, :] = True
    seen[1, 0, 3] = True  # observed only above the band
    labels[0, 0, 1] = 11  # vegetation in the band -> occupied
    labels[0, 1, 1] = 7   # road in the band -> ground, free
    labels[2, 1, 3] = 9   # building above the band -> ignored (and unobserved in the band)
    bev = bird_eye_view(labels, seen, grid, 1.0, 2.0, ground_labels=(7,))
    assert bev.shape == (2, 3)
    np.testing.assert_array_equal(bev, [[100, -1, -1], [0, -1, -1]])


def test_class_table():
    names, palette = class_table()
    assert names[0] == 'empty' and names[9] == 'building' and palette.shape == (16, 3)
    _, custom = class_table(tuple(range(48)))
    assert custom[1].tolist() == [3, 4, 5]


# ----------------------------------------------------------------------------- frames

def test_camera_pose_from_rpy():
    level = frames.camera_pose_from_rpy([0, 0, 1.5], [0, 0, 0])
    np.testing.assert_allclose(level[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # optical z = forward
    np.testing.assert_allclose(level[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)  # optical x = right
    np.testing.assert_allclose(level[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # optical y = down
    down = frames.camera_pose_from_rpy([0, 0, 1.5], [0, 10, 0])
    assert (down[:3, :3] @ [0, 0, 1])[2] == pytest.approx(-np.sin(np.radians(10)))
    np.testing.assert_allclose(frames.invert(down) @ down, np.eye(4), atol=1e-12)


def test_rigid_matrix_checks():
    with pytest.raises(ValueError, match='16 row-major'):
        frames.rigid_matrix([1.0] * 12)
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match='det'):
        frames.rigid_matrix(mirror.ravel())


class _FakeTf:
    def __init__(self, T=None):
        self.T = T
        self.calls = []

    def lookup_transform(self, target, source, time, timeout=None):
        self.calls.append((target, source))
        if self.T is None:
            raise RuntimeError('"base_link" passed to lookupTransform argument target_frame does not exist')
        from scipy.spatial.transform import Rotation
        q = Rotation.from_matrix(self.T[:3, :3]).as_quat()
        v = SimpleNamespace
        return v(transform=v(translation=v(x=self.T[0, 3], y=self.T[1, 3], z=self.T[2, 3]),
                             rotation=v(x=q[0], y=q[1], z=q[2], w=q[3])))


def test_frame_resolver_modes():
    static = frames.camera_pose_from_rpy([0, 0, 1.5], [0, 5, 0])
    cam = frames.FrameResolver('', static).resolve('cam_optical')
    assert cam.frame_id == 'cam_optical'
    np.testing.assert_allclose(cam.cam_from_grid, frames.invert(static))
    np.testing.assert_allclose(cam.out_from_grid, cam.cam_from_grid)

    fixed = frames.FrameResolver('base_link', static).resolve('cam_optical')
    assert fixed.frame_id == 'base_link'
    np.testing.assert_allclose(fixed.out_from_grid, np.eye(4))
    np.testing.assert_allclose(fixed.cam_from_grid, frames.invert(static))


def test_frame_resolver_tf():
    pytest.importorskip('rclpy', reason='TF lookups convert stamps with rclpy.time')
    from builtin_interfaces.msg import Time
    tf_pose = frames.camera_pose_from_rpy([0.3, 0.1, 1.2], [0, 8, 2])
    fake = _FakeTf(tf_pose)
    r = frames.FrameResolver('base_link', np.eye(4), tf_buffer=fake)
    assert r.uses_tf
    fs = r.resolve('cam_optical', Time(sec=5))
    assert fake.calls == [('base_link', 'cam_optical')]
    np.testing.assert_allclose(fs.cam_from_grid, frames.invert(tf_pose), atol=1e-9)
    with pytest.raises(frames.FrameError, match='use_tf:=false'):
        frames.FrameResolver('base_link', np.eye(4), tf_buffer=_FakeTf()).resolve('cam_optical', Time(sec=5))


# ----------------------------------------------------------------------------- frame flow

def test_stamp_sync_pairs_in_either_order():
    s = StampSync(queue_size=3)
    assert s.add_image(10, 'img10') is None
    p = s.add_info(10, 'info10')
    assert (p.stamp_ns, p.image, p.info) == (10, 'img10', 'info10')
    assert s.add_info(20, 'info20') is None
    p = s.add_image(20, 'img20')
    assert (p.image, p.info) == ('img20', 'info20')
    assert s.add_image(30, 'img30') is None and s.add_info(31, 'info31') is None  # exact match only
    tol = StampSync(max_diff_ns=2)
    tol.add_image(30, 'a')
    assert tol.add_info(31, 'b').image == 'a'


def test_stamp_sync_evicts_and_counts_unpaired():
    s = StampSync(queue_size=2)
    for t in (1, 2, 3):
        s.add_image(t, t)
    assert s.unpaired_images == 1 and s.pending_images == 2
    assert s.add_info(3, 'i').image == 3
    assert s.unpaired_images == 2 and s.pending_images == 0  # image 2 was older than the match


def test_stamp_sync_latest_info_and_time_jump():
    s = StampSync(use_latest_info=True)
    assert s.add_image(5, 'a') is None
    assert s.add_info(1, 'i1').image == 'a'
    assert s.add_image(6, 'b').info == 'i1'
    assert s.time_jump(7) == 0
    assert s.time_jump(2) == 4 and s.last_image_stamp_ns is None  # jump back resets the queues
    assert s.add_image(2, 'c').info == 'i1'  # CameraInfos up to the new stamp survive the jump


def test_stamp_sync_time_jump_keeps_infos_of_the_new_timeline():
    s = StampSync()
    s.add_image(100, 'old')
    s.add_info(120, 'old info')          # old timeline
    s.add_info(5, 'info5')               # the bag looped: CameraInfo first ...
    assert s.time_jump(5) == 95          # ... then its image
    assert s.pending_images == 0
    p = s.add_image(5, 'img5')
    assert (p.image, p.info) == ('img5', 'info5')
    assert s.add_image(120, 'img120') is None  # the old-timeline CameraInfo was dropped


def test_latest_slot_keeps_only_the_newest():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.dropped == 4 and slot.take(0) == 4 and slot.take(0) is None
    got = []

    def worker():
        while (item := slot.take(1.0)) is not None:
            got.append(item)
            time.sleep(0.05)

    t = threading.Thread(target=worker)
    t.start()
    for i in range(20):
        slot.put(i)
        time.sleep(0.005)
    t.join()
    assert got[-1] == 19 and got == sorted(got) and len(got) < 20
    assert slot.dropped == 4 + 20 - len(got)
    slot.close()
    assert slot.take(None) is None


def test_rate_meter_and_latency_window():
    now = [0.0]
    r = RateMeter(window_s=5.0, clock=lambda: now[0])
    for _ in range(11):
        r.tick()
        now[0] += 0.1
    now[0] -= 0.1
    assert r.rate_hz() == pytest.approx(10.0)
    now[0] += 10
    assert r.rate_hz() == 0.0
    w = LatencyWindow(size=100)
    assert np.isnan(w.percentiles(50)[0])
    for v in range(1, 201):
        w.add(v / 1000)
    p50, p95 = w.percentiles(50, 95)
    assert len(w) == 100 and p50 == pytest.approx(0.1505) and p95 == pytest.approx(0.19505)


def test_confidence_agrees_with_the_occupancy_decision(pipeline, result):
    """The cloud's confidence is the occupancy probability of the grown density, the quantity the occupied/free
    decision thresholds: every published voxel reaches the threshold's probability, and the dense grid's
    percentages are the same numbers."""
    p_threshold = 1.0 - np.exp(-GRID.voxel_size * pipeline.config.density_threshold)
    assert len(result.points) > 0
    assert result.point_confidence.min() >= np.float32(p_threshold) * (1 - 1e-6)
    idx = tuple(result.point_index.T)
    np.testing.assert_array_equal(result.voxel_occupancy[idx], np.rint(result.point_confidence * 100))
    # occupied = in view, grown density at or over the threshold, and a class that is not "empty" (sky)
    pred = pipeline.predict(pipeline.encode(*_frame()), frames.invert(CAM_IN_GRID))
    passes = pred.in_view & (pred.sigma_grown >= pipeline.config.density_threshold)
    not_empty = TRAINID_TO_SSC[np.where(pred.train_ids == 255, 0, pred.train_ids)] != 0
    np.testing.assert_array_equal(pred.occupied, passes & not_empty)
    occupied = np.zeros(pred.occupied.shape, bool)
    occupied[idx] = True  # the published voxels (in the voxel grid message's z-major order) are the occupied ones
    np.testing.assert_array_equal(occupied, pred.occupied)
    np.testing.assert_allclose(pred.occupancy_probability[idx], result.point_confidence, rtol=1e-6)
