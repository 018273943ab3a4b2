"""The node's real-time behaviour with real rclpy, in-process (run inside ``unshare -n`` like the other ROS tests):
outputs nobody subscribes to are not built, and ``max_rate_hz`` drops and counts frames. Counts only, no timings."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')

import ros_spin  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_spin import spin_in_threads  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from scenedino_core.images import synthetic_street_image  # noqa: E402
from scenedino_core.pipeline import Pipeline  # noqa: E402
from scenedino_ros import messages  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE_PARAMS = REPO / 'config' / 'scenedino.yaml'
SMALL_GRID = ['grid.voxel_size_m:=0.5', 'grid.min_m:=[0.0,-6.0,-0.5]', 'grid.max_m:=[12.0,6.0,3.0]']
H, W = 96, 128
TIMEOUT_S = 60.0  # generous: only a hang trips it
BUILDERS = ('semantic_cloud', 'occupancy_grid', 'voxel_markers', 'semantic_voxel_grid', 'depth_image', 'rgb_image')
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def camera_messages(stamp_ns: int) -> tuple[Image, CameraInfo]:
    rgb = synthetic_street_image((H, W))
    image = Image(height=H, width=W, encoding='rgb8', step=W * 3, data=rgb.tobytes())
    info = CameraInfo(width=W, height=H, distortion_model='plumb_bob')
    info.k = [0.6 * W, 0.0, W / 2, 0.0, 0.6 * W, H / 2, 0.0, 0.0, 1.0]
    for msg in (image, info):
        msg.header.stamp = Time(sec=stamp_ns // 10 ** 9, nanosec=stamp_ns % 10 ** 9)
        msg.header.frame_id = 'cam_optical'
    return image, info


def wait_until(condition, what: str) -> None:
    ros_spin.wait_until(condition, what, TIMEOUT_S)


class InProcessNode:
    """SceneDinoNode and a tester node spun in this process; message builds and pipeline requests are counted."""

    def __init__(self, context, ns: str, overrides: list[str], monkeypatch):
        from scenedino_ros.node import SceneDinoNode

        self.builds: Counter[str] = Counter()
        for name in BUILDERS:
            monkeypatch.setattr(messages, name, self._counting(name, getattr(messages, name)))
        self.requests: list[dict] = []
        process = Pipeline.process

        def recording_process(pipeline, *args, **kwargs):
            self.requests.append({k: kwargs.get(k, True) for k in ('dense_grid', 'render')})
            return process(pipeline, *args, **kwargs)

        args = ['--ros-args', '--params-file', str(BASE_PARAMS)]
        for o in overrides:
            args += ['-p', o]
        args += ['-r', f'image:={ns}/image_raw', '-r', f'camera_info:={ns}/camera_info', '-r', f'__ns:={ns}']
        self.node = SceneDinoNode('scenedino', context=context, cli_args=args)
        monkeypatch.setattr(Pipeline, 'process', recording_process)  # after the start-up warm-up
        self.ns = ns
        self.tester = Node(f'tester_{ns.strip("/")}', context=context)
        self.pub_image = self.tester.create_publisher(Image, f'{ns}/image_raw', RELIABLE)
        self.pub_info = self.tester.create_publisher(CameraInfo, f'{ns}/camera_info', RELIABLE)
        self.executors = spin_in_threads(context, self.node, self.tester)
        wait_until(lambda: self.pub_image.get_subscription_count() and self.pub_info.get_subscription_count(),
                   'the node to subscribe to the camera')

    def _counting(self, name, builder):
        def wrapper(*args, **kwargs):
            self.builds[name] += 1
            return builder(*args, **kwargs)
        return wrapper

    def publish(self, stamp_ns: int) -> None:
        image, info = camera_messages(stamp_ns)
        self.pub_image.publish(image)
        self.pub_info.publish(info)

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        self.tester.destroy_node()


@pytest.fixture
def start(ros_context, tiny_checkpoint, monkeypatch):
    nodes = []

    def make(ns: str, overrides: list[str] = ()) -> InProcessNode:
        n = InProcessNode(ros_context, ns, [f'checkpoint:={tiny_checkpoint}', *SMALL_GRID,
                                             'input.reliability:=reliable', *overrides], monkeypatch)
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.close()


def test_unsubscribed_outputs_are_not_built(start):
    live = start('/rt_subs')
    # no subscribers: only the latched bird's-eye view (late joiners get the last one) is built
    live.publish(1_000_000_000)
    wait_until(lambda: live.node.counts['processed'] == 1, 'the first frame')
    assert live.builds == Counter({'occupancy_grid': 1})
    assert live.requests == [{'dense_grid': False, 'render': False}]  # no dense grid, no rendered view either

    clouds, depths = [], []
    live.tester.create_subscription(PointCloud2, f'{live.ns}/scenedino/semantic_points', clouds.append, RELIABLE)
    live.tester.create_subscription(Image, f'{live.ns}/scenedino/depth', depths.append, RELIABLE)
    pubs = live.node.publishers_by_output
    wait_until(lambda: pubs['semantic_points'].get_subscription_count() and pubs['depth'].get_subscription_count(),
               'the subscriptions to match')
    live.publish(2_000_000_000)
    wait_until(lambda: clouds and depths, 'the subscribed outputs')
    assert live.node.counts['processed'] == 2
    assert live.builds == Counter({'occupancy_grid': 2, 'semantic_cloud': 1, 'depth_image': 1})
    assert live.requests[1] == {'dense_grid': False, 'render': True}
    assert clouds[0].width > 0 and np.frombuffer(depths[0].data, '<f4').size == depths[0].width * depths[0].height


def test_max_rate_drops_and_counts(start):
    live = start('/rt_rate', ['max_rate_hz:=0.001'])  # at most one frame every 1000 s
    for i in range(3):
        live.publish((i + 1) * 1_000_000_000)
        wait_until(lambda n=i + 1: live.node.counts['processed'] + live.node.rate_limit.dropped == n,
                   f'frame {i + 1} to be processed or dropped')
    assert live.node.counts['processed'] == 1 and live.node.rate_limit.dropped == 2
    assert live.node.diagnostics()[2]['frames_rate_limited'] == 2
