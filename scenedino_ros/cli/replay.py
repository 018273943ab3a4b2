"""``scenedino-replay``: play a rosbag2 (MCAP or SQLite 3) on live topics with ``/clock``, for machines without
``ros2 bag`` (the PyPI ROS 2 wheels have no rosbag2).

    scenedino-replay BAG [--rate R] [--loop] [--remap FROM:=TO ...] [--topics T ...] [--clock-hz HZ]
                         [--wait-for-subscribers S] [--ros-args ...]

How messages are scheduled and which QoS they get: ``scenedino_ros.bag.replay``.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.signals import SignalHandlerOptions

from ..bag.replay import Player, ReplayError, ReplayOptions, parse_remap

_logger = logging.getLogger("scenedino-replay")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-replay", description=__doc__.split("\n\n")[0],
                                epilog="ROS arguments go after --ros-args (e.g. --ros-args -r __node:=player).")
    p.add_argument("bag", type=Path, help="rosbag2 folder (metadata.yaml + .mcap or .db3) or a single .mcap file")
    p.add_argument("--rate", "-r", type=float, default=1.0, help="playback speed factor (default 1: real time)")
    p.add_argument("--loop", "-l", action="store_true", help="start over at the end until Ctrl-C")
    p.add_argument("--remap", "-m", action="append", default=[], metavar="FROM:=TO",
                   help="publish bag topic FROM as TO (repeatable)")
    p.add_argument("--topics", nargs="+", default=[], metavar="TOPIC",
                   help="play only these bag topics (give BAG before this option)")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate in Hz of wall time (0: no /clock)")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds until every topic has a subscriber before playing")
    return p


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(own arguments, ``--ros-args ... [--]`` blocks). Unlike rclpy's ``remove_ros_args``, ``FROM:=TO`` outside
    ``--ros-args`` stays ours (it is the value of ``--remap``, not rcl's deprecated remap syntax)."""
    own: list[str] = []
    ros: list[str] = []
    inside = False
    for arg in argv:
        if arg == "--ros-args":
            inside = True
            ros.append(arg)
        elif inside and arg == "--":
            inside = False
        elif inside:
            ros.append(arg)
        else:
            own.append(arg)
    return own, ros


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scenedino-replay`` and ``ros2 run scenedino_ros scenedino_replay``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    own, ros = split_ros_args(argv)
    args = build_parser().parse_args(own)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        options = ReplayOptions(rate=args.rate, loop=args.loop, remaps=tuple(parse_remap(r) for r in args.remap),
                                topics=tuple(args.topics), clock_hz=args.clock_hz,
                                wait_for_subscribers_s=args.wait_for_subscribers)
    except ReplayError as exc:
        print(f"scenedino-replay: error: {exc}", file=sys.stderr)
        return 2
    # KeyboardInterrupt in the sleep on SIGINT and SIGTERM instead of rclpy's handlers (also where a shell started
    # the player in the background with SIGINT ignored).
    rclpy.init(args=["scenedino-replay", *ros], signal_handler_options=SignalHandlerOptions.NO)
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = player = None
    try:
        node = rclpy.create_node("scenedino_replay")
        player = Player(node, args.bag, options)
        _logger.info(player.describe())
        player.run()
        return 0
    except ReplayError as exc:
        print(f"scenedino-replay: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if player is not None:
            player.close()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
