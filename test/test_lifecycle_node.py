"""The managed node with real rclpy, started as launch_ros would (as a subprocess) and driven through its lifecycle
transitions by the ``change_state`` service: unconfigured it neither subscribes nor publishes; configure loads the
model; activate subscribes and publishes the same outputs as the plain node; deactivate stops both; cleanup releases
the model; configure + activate work again; a bad checkpoint fails configure and leaves the node unconfigured.

Run through scripts/test.sh (loopback-only DDS, private network namespace).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')
pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated (scripts/build_msgs.sh)')

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

from test_ros_node import OUT, OUTPUTS, SMALL_GRID, Harness, NodeProcess, launch_command  # noqa: E402

TIMEOUT_S = 60.0


def lifecycle_executable() -> str:
    exe = Path(sys.executable).parent / 'scenedino_lifecycle_node'
    return str(exe) if exe.is_file() else shutil.which('scenedino_lifecycle_node') or 'scenedino_lifecycle_node'


class Lifecycle:
    """Client of the node's ``change_state`` / ``get_state`` services."""

    def __init__(self, harness: Harness):
        self.harness = harness
        self.change = harness.node.create_client(ChangeState, f'{OUT}/change_state')
        self.get = harness.node.create_client(GetState, f'{OUT}/get_state')
        assert self.change.wait_for_service(TIMEOUT_S) and self.get.wait_for_service(TIMEOUT_S)

    def _call(self, client, request):
        future = client.call_async(request)
        end = time.monotonic() + TIMEOUT_S
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        assert future.done(), f'{client.srv_name} did not answer'
        return future.result()

    def set(self, transition: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition))).success

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id


def _publishers(harness: Harness) -> int:
    return sum(harness.node.count_publishers(f'{OUT}/{name}') for name in OUTPUTS)


def _wait(predicate, what: str) -> None:
    end = time.monotonic() + TIMEOUT_S
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f'timed out waiting for {what}')


@pytest.fixture
def managed(tmp_path, ros_context, tiny_checkpoint):
    started = []

    def start(camera_ns: str, checkpoint: str | None = None):
        settings = {**SMALL_GRID, 'input.reliability': 'reliable', 'diagnostics.period_s': '0.5',
                    'checkpoint': checkpoint or str(tiny_checkpoint)}
        harness = Harness(ros_context, camera_ns)
        cmd = launch_command(harness.image_topic, harness.info_topic, settings)
        cmd[0] = lifecycle_executable()
        node = NodeProcess(cmd, tmp_path / f'lifecycle_{camera_ns.strip("/")}.log')
        started.append((node, harness))
        return node, harness, Lifecycle(harness)

    yield start
    for node, harness in started:
        node.stop()
        harness.close()


def test_transitions_gate_subscriptions_and_outputs(managed):
    node, harness, lifecycle = managed('/managed')
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    time.sleep(1.0)
    assert harness.pub_image.get_subscription_count() == 0 and _publishers(harness) == 0
    assert 'ready: ' not in node.log()

    assert lifecycle.set(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
    assert harness.pub_image.get_subscription_count() == 0 and _publishers(harness) == 0  # model loaded, no I/O

    for round_ in range(2):  # a second activation after deactivate + cleanup + configure works the same
        assert lifecycle.set(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_ACTIVE
        _wait(lambda: harness.pub_image.get_subscription_count() and harness.pub_info.get_subscription_count()
              and all(harness.node.count_publishers(f'{OUT}/{n}') for n in OUTPUTS), 'the node to connect')
        time.sleep(0.5)
        stamp = 2000_000_000_000 + round_ * 1_000_000_000
        harness.publish(stamp)
        out = harness.wait_all(stamp)
        assert set(out) == set(OUTPUTS)

        assert lifecycle.set(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        _wait(lambda: harness.pub_image.get_subscription_count() == 0 and _publishers(harness) == 0,
              'subscriptions and publishers to go away')
        assert lifecycle.set(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert lifecycle.set(Transition.TRANSITION_CONFIGURE)
    assert 'model released' in node.log()

    assert lifecycle.set(Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED
    assert node.proc.poll() is None  # finalized, still answering until stopped


def test_bad_checkpoint_fails_configure_and_stays_unconfigured(managed, tmp_path):
    missing = tmp_path / 'missing.pt'
    node, harness, lifecycle = managed('/managed_bad', checkpoint=str(missing))
    assert not lifecycle.set(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert 'missing.pt' in node.log() and node.proc.poll() is None
    assert harness.pub_image.get_subscription_count() == 0
