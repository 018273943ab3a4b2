"""Helpers for tests that run ROS nodes in this process: spin them on threads, wait for a condition."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.executors import SingleThreadedExecutor


def spin_in_threads(context, *nodes) -> list[SingleThreadedExecutor]:
    """One single-threaded executor per node, each spinning on a daemon thread (as ``rclpy.spin`` in a process);
    shut them down with ``executor.shutdown``."""
    executors = []
    for node in nodes:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        executors.append(executor)
    return executors


def wait_until(condition: Callable[[], object], what: str, timeout: float) -> None:
    """Poll ``condition`` every 20 ms; ``AssertionError`` naming ``what`` when it is still false after ``timeout``."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.02)
