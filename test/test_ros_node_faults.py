"""Failures inside the node, in-process with real rclpy: a stand-in pipeline (the tiny model behind a wrapper) raises
on chosen frames (a RuntimeError, torch.OutOfMemoryError) or blocks, and the node must skip, count, free memory,
escalate, report a stuck frame while it runs, and keep answering parameter requests.

Run inside a private network namespace (scripts/test.sh does): DDS stays on loopback.
"""
from __future__ import annotations

import re
import threading
import time

import pytest
import torch

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh installs the ROS 2 wheels)')

import ros_spin  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_spin import spin_in_threads  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from conftest import tiny_model  # noqa: E402
from scenedino_core.images import synthetic_street_image  # noqa: E402
from scenedino_core.pipeline import Pipeline, PipelineConfig  # noqa: E402
from scenedino_core.voxels import VoxelGrid  # noqa: E402
from scenedino_ros import node as node_module  # noqa: E402

H, W = 240, 320
WAIT_S = 60.0  # generous: only a hang trips it
SMALL_GRID = [Parameter('grid.voxel_size_m', value=0.5), Parameter('grid.min_m', value=[0.0, -6.0, -0.5]),
              Parameter('grid.max_m', value=[12.0, 6.0, 3.0])]
S = 1_000_000_000


class FaultyPipeline:
    """The real tiny pipeline, except on chosen calls (0-based): an exception is raised, an Event is waited on."""

    def __init__(self, real: Pipeline, plan: dict[int, object]):
        self.real, self.plan = real, plan
        self.calls = 0
        self.blocked = threading.Event()

    def process(self, *args, **kwargs):
        action = self.plan.get(self.calls)
        self.calls += 1
        if isinstance(action, BaseException):
            raise action
        if isinstance(action, threading.Event):
            self.blocked.set()
            action.wait(WAIT_S)
        return self.real.process(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def wait_until(condition, what: str, timeout: float = WAIT_S):
    ros_spin.wait_until(condition, what, timeout)


class Rig:
    """The node under test (its own executor thread, as `rclpy.spin`) and a tester node (camera, output listener)."""

    def __init__(self, context, namespace: str, plan: dict[int, object], overrides: list[Parameter]):
        self.tester = Node(f'tester{namespace.replace("/", "_")}', context=context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.tester.create_publisher(Image, f'{namespace}/image', reliable)
        self.pub_info = self.tester.create_publisher(CameraInfo, f'{namespace}/camera_info', reliable)
        self.outputs: list[int] = []
        self.diagnostics: list[DiagnosticStatus] = []
        self.tester.create_subscription(PointCloud2, f'{namespace}/scenedino/semantic_points',
                                        lambda m: self.outputs.append(m.header.stamp.sec), reliable)
        self.tester.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        grid = VoxelGrid(origin=(0.0, -6.0, -0.5), voxel_size=0.5, dims=(24, 24, 7))
        self.pipeline = FaultyPipeline(Pipeline(PipelineConfig(grid=grid), model=tiny_model()), plan)
        self.node = node_module.SceneDinoNode(
            'scenedino', pipeline=self.pipeline, context=context, namespace=namespace,
            parameter_overrides=SMALL_GRID + [Parameter('log_throttle_s', value=0.0)] + overrides)
        self.executors = spin_in_threads(context, self.node, self.tester)
        wait_until(lambda: self.pub_image.get_subscription_count() and self.pub_info.get_subscription_count()
                   and self.node.count_subscribers(f'{namespace}/scenedino/semantic_points'), 'matching')
        time.sleep(0.5)  # let the reliable endpoints finish matching
        self.rgb = synthetic_street_image((H, W))

    def _on_diag(self, msg):
        self.diagnostics += [s for s in msg.status if s.name == 'scenedino: inference']

    def publish(self, sec: int):
        image = Image(height=H, width=W, encoding='rgb8', step=W * 3, data=self.rgb.tobytes())
        image.header.stamp, image.header.frame_id = Time(sec=sec), 'camera_optical_frame'
        info = CameraInfo(width=W, height=H, k=[192.0, 0.0, 160.0, 0.0, 192.0, 120.0, 0.0, 0.0, 1.0])
        info.header = image.header
        self.pub_image.publish(image)
        self.pub_info.publish(info)

    def done(self) -> int:
        c = self.node.counts
        return c['processed'] + c['failed']

    def close(self):
        for executor in self.executors:
            executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        self.tester.destroy_node()


@pytest.fixture
def rig(ros_context):
    made = []

    def make(namespace, plan, overrides=()):
        made.append(Rig(ros_context, namespace, plan, list(overrides)))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_failed_frames_are_skipped_counted_freed_and_escalated(rig, monkeypatch, capfd):
    released = []
    monkeypatch.setattr(node_module, 'release_device_memory', released.append)
    oom = torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 9.00 GiB (injected)')
    r = rig('/faults1', {1: RuntimeError('injected model error'), 3: oom, 4: oom},
            [Parameter('max_consecutive_failures', value=2)])
    assert r.node._image_sub.reliability == 'reliable'  # auto: the tester's publishers are reliable
    levels = []
    for i in range(6):
        r.publish(100 + i)
        wait_until(lambda n=i + 1: r.done() == n, f'frame {i}')  # one at a time: nothing is dropped
        levels.append(r.node.diagnostics()[:2])
    wait_until(lambda: len(r.outputs) == 3, 'outputs of the good frames')
    assert sorted(r.outputs) == [100, 102, 105]  # failed frames skipped, the next ones processed
    assert r.node.counts['failed'] == 3 and r.node.counts['processed'] == 3
    assert released == [r.pipeline.device] * 3  # after every failure

    assert levels[0] == ('ok', 'running')
    assert levels[1][0] == 'warn' and levels[1][1].startswith('1 frame(s) failed')
    assert levels[2][0] == 'warn'  # recovered, but the failure is recent
    assert levels[3][0] == 'warn' and levels[3][1].endswith('out of memory')
    assert levels[4] == ('error', '2 frames in a row failed; last: out of memory')
    assert levels[5][0] == 'warn'
    values = r.node.diagnostics()[2]
    assert values['frames_failed'] == 3 and values['consecutive_failures'] == 0
    assert values['last_failure'].startswith('out of memory: OutOfMemoryError: CUDA out of memory')

    log = capfd.readouterr().err
    assert re.search(r'\[WARN\].*frame at 101\.000 s failed \(error\): RuntimeError: injected model error; skipped '
                     r'it \[1 in a row, 1 in all\]', log), log[-3000:]
    assert re.search(r'\[WARN\].*frame at 103\.000 s failed \(out of memory\): OutOfMemoryError: .*device memory '
                     r'released', log)
    assert re.search(r'\[ERROR\].*2 frames in a row failed \(max_consecutive_failures = 2\); the latest: frame at '
                     r'104\.000 s failed \(out of memory\)', log)
    assert 'frames are processed again after 2 failed frames in a row' in log


def test_stuck_frame_is_reported_while_it_runs_and_the_node_stays_responsive(rig, capfd):
    release = threading.Event()
    r = rig('/faults2', {0: release}, [Parameter('max_frame_s', value=0.3),
                                       Parameter('diagnostics.period_s', value=0.1)])
    try:
        r.publish(200)
        wait_until(r.pipeline.blocked.is_set, 'the model to start')
        # the diagnostics timer publishes ERROR while the frame still runs
        wait_until(lambda: any(s.level == DiagnosticStatus.ERROR and 'has been running for' in s.message
                               for s in r.diagnostics), 'a stuck-frame diagnostic')
        stuck = next(s for s in r.diagnostics if s.level == DiagnosticStatus.ERROR)
        assert re.match(r'frame at 200\.000 s has been running for [\d.]+ s \(max_frame_s = 0\.3 s\): model stuck\?',
                        stuck.message)
        running = float(next(kv.value for kv in stuck.values if kv.key == 'frame_running_s'))
        assert running > 0.3
        # parameter services answer meanwhile
        client = r.tester.create_client(GetParameters, '/faults2/scenedino/get_parameters')
        assert client.wait_for_service(timeout_sec=WAIT_S)
        future = client.call_async(GetParameters.Request(names=['max_frame_s', 'input.reliability']))
        wait_until(future.done, 'the get_parameters response')
        values = future.result().values
        assert values[0].double_value == 0.3 and values[1].string_value == 'auto'
        # and subscription callbacks still run: a new frame is received (it waits in the slot)
        r.publish(201)
        wait_until(lambda: r.node.counts['received'] == 2, 'the second image')
        assert not release.is_set() and r.node.counts['processed'] == 0
    finally:
        release.set()
    wait_until(lambda: sorted(r.outputs) == [200, 201], 'both frames once the model returns')
    wait_until(lambda: r.node.diagnostics()[0] == 'ok', 'diagnostics back to ok')
    assert re.search(r'\[WARN\].*frame at 200\.000 s took [\d.]+ s \(max_frame_s = 0\.3 s\)', capfd.readouterr().err)


def test_max_frame_s_and_failures_are_parameters():
    from scenedino_ros.params import NodeParams, from_values

    p = from_values({'max_frame_s': 2.5, 'max_consecutive_failures': 1})
    assert (p.max_frame_s, p.max_consecutive_failures) == (2.5, 1)
    assert NodeParams().reliability == 'auto'
