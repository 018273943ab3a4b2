"""The managed (lifecycle) variant of the SceneDINO node, for systems that bring perception up in steps.

Same parameters, topics and outputs as ``scenedino_ros.node.SceneDinoNode``; the work moves into the transitions:

* configure: read and check the parameters, load the model (a bad parameter or checkpoint fails the transition
  and the node stays unconfigured);
* activate: create the publishers and subscriptions, start the inference worker and the diagnostics;
* deactivate: remove subscriptions, publishers and timer; the worker finishes its frame and stops;
* cleanup: release the model and the GPU memory it held;
* shutdown: deactivate and clean up from whatever state the node is in.

Drive it with ``ros2 lifecycle set /scenedino configure`` then ``activate``, a lifecycle manager, or the launch file
(``lifecycle:=true``, which configures and activates it unless ``autostart:=false``).
"""
from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .node import STARTUP_ERRORS, SceneDinoNode, spin


class SceneDinoLifecycleNode(SceneDinoNode, LifecycleNode):
    """``SceneDinoNode`` whose configure/activate/deactivate/cleanup steps run on lifecycle transitions."""

    MANAGED = True

    def __init__(self, node_name: str = "scenedino", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._active = False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure()
        except STARTUP_ERRORS:
            return TransitionCallbackReturn.FAILURE  # logged by configure; the node stays unconfigured
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._active = False
            self.deactivate()
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in lifecycle state {state.label}: deactivating and releasing the model")
        return self.on_shutdown(state)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``scenedino_lifecycle_node``: starts unconfigured and waits for lifecycle transitions."""
    spin(SceneDinoLifecycleNode, args)


if __name__ == "__main__":
    main()
