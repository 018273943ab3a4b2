"""Delivery of large camera images between two processes on one host: how many frames reach a subscriber.

A publisher process (a stand-in for a camera driver, with the default Fast DDS settings) sends ``--frames`` rgb8
images of each size at ``--rate-hz``, one size after the other; a subscriber process with the node's input QoS
(keep last ``--depth``, volatile) counts what arrives and the messages that Fast DDS reports lost
(the subscription's message-lost event). One trial per publisher reliability (reliable: keep last 10, the rclpy
default; best effort: SensorData QoS). The subscriber's reliability is ``--subscriber``:

* ``best_effort`` / ``reliable``: fixed, as ``input.reliability`` with those values;
* ``auto``: the node's default, ``scenedino_ros.input_qos.AdaptiveSubscription``: reliable when every publisher
  offers reliable, else best effort.

``--profile FILE`` gives the subscriber the Fast DDS XML profile FILE (``FASTDDS_DEFAULT_PROFILES_FILE``, as
``launch/scenedino.launch.py`` does for the node); ``--profile none`` runs it with the Fast DDS defaults. The
publisher always runs with the defaults: the node cannot change a camera driver's settings.

Run it inside a private network namespace so that no DDS traffic leaves the machine (``--unshare`` does it):

    python benchmarks/image_delivery.py --unshare [--frames 4] [--rate-hz 2] [--subscriber auto]
        [--profile config/fastdds_large_images.xml] [--out benchmarks/results/image_delivery.md]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from report import emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "/delivery/image"
SIZES = ((640, 192), (1408, 376), (1280, 720), (1920, 1080))
#: Seconds the publisher waits after the first match, so an adaptive subscriber has re-created itself.
SETTLE_S = 3.0
#: Pause between two sizes (s).
GAP_S = 1.0


def _qos(reliability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if reliability == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=qos_profile_sensor_data.durability)


# ----------------------------------------------------------------------------- publisher process

def run_publisher(args: argparse.Namespace) -> None:
    import numpy as np
    import rclpy
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("camera_standin")
    depth = 10 if args.reliability == "reliable" else 5
    pub = node.create_publisher(Image, TOPIC, _qos(args.reliability, depth))
    end = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    if pub.get_subscription_count() == 0:
        print("publisher: no subscriber matched within 30 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(SETTLE_S)
    rng = np.random.default_rng(0)
    period = 1.0 / args.rate_hz
    for size_index, (w, h) in enumerate(args.sizes):
        data = rng.integers(0, 256, size=h * w * 3, dtype=np.uint8)
        start = time.monotonic()
        for i in range(args.frames):
            msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=data)
            msg.header.stamp = Time(sec=size_index, nanosec=i)
            msg.header.frame_id = f"{w}x{h}"
            pub.publish(msg)
            time.sleep(max(0.0, start + (i + 1) * period - time.monotonic()))
        time.sleep(GAP_S)
        print(f"SIZE {w}x{h} {start} {time.monotonic()}", flush=True)  # monotonic clocks agree between processes
    time.sleep(1.0)  # let a reliable writer finish repairs before the process goes
    node.destroy_node()
    rclpy.try_shutdown()


# ----------------------------------------------------------------------------- subscriber process

def run_subscriber(args: argparse.Namespace) -> None:
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("delivery_subscriber")
    received: dict[str, set[int]] = {}
    lost: list[tuple[float, int]] = []
    chosen: list[str] = []

    def on_image(msg: Image) -> None:
        received.setdefault(msg.header.frame_id, set()).add(msg.header.stamp.nanosec)

    def on_lost(info) -> None:
        lost.append((time.monotonic(), int(info.total_count_change)))

    if args.subscriber == "auto":
        from scenedino_ros.input_qos import AdaptiveSubscription

        sub = AdaptiveSubscription(node, Image, TOPIC, on_image, depth=args.depth, mode="auto",
                                   on_message_lost=on_lost, on_change=lambda text: chosen.append(text))
    else:
        node.create_subscription(Image, TOPIC, on_image, _qos(args.subscriber, args.depth),
                                 event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))
        sub = None
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    print("READY", flush=True)
    sys.stdin.read()  # the orchestrator closes stdin when the publisher is done
    executor.shutdown(timeout_sec=2)
    thread.join(timeout=2)
    result = {"received": {k: len(v) for k, v in received.items()}, "lost_events": lost,
              "reliability": sub.reliability if sub is not None else args.subscriber, "choices": chosen}
    print("RESULT " + json.dumps(result), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# ----------------------------------------------------------------------------- orchestration

def trial(args: argparse.Namespace, publisher_reliability: str) -> dict:
    """One publisher reliability: start the subscriber, then the publisher; the subscriber's counts."""
    base_env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    ROS_AUTOMATIC_DISCOVERY_RANGE=args.discovery.upper(), PYTHONUNBUFFERED="1")
    base_env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    base_env.pop("RMW_FASTRTPS_USE_QOS_FROM_XML", None)
    sub_env = dict(base_env)
    if args.profile and args.profile != "none":
        sub_env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(args.profile).resolve())
    sub_env.update(kv.split("=", 1) for kv in args.sub_env)
    pub_env = dict(base_env)
    pub_env.update(kv.split("=", 1) for kv in args.pub_env)
    common = ["--frames", str(args.frames), "--rate-hz", str(args.rate_hz), "--depth", str(args.depth),
              "--sizes", ",".join(f"{w}x{h}" for w, h in args.sizes)]
    sub = subprocess.Popen([sys.executable, __file__, "--role", "sub", "--subscriber", args.subscriber, *common],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=sub_env, text=True)
    try:
        line = sub.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"subscriber did not start: {line!r}")
        pub = subprocess.run([sys.executable, __file__, "--role", "pub", "--reliability", publisher_reliability,
                              *common], env=pub_env, timeout=600, stdout=subprocess.PIPE, text=True, check=False)
        time.sleep(1.0)
        out, _ = sub.communicate("", timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    if pub.returncode != 0:
        raise RuntimeError(f"publisher failed with exit code {pub.returncode}")
    result = next(json.loads(x[len("RESULT "):]) for x in out.splitlines() if x.startswith("RESULT "))
    windows = [line.split()[1:] for line in pub.stdout.splitlines() if line.startswith("SIZE ")]
    result["lost"] = {size: sum(n for t, n in result["lost_events"] if float(t0) <= t < float(t1))
                      for size, t0, t1 in windows}
    result["lost_total"] = sum(n for _, n in result["lost_events"])
    return result


def table(args: argparse.Namespace, results: dict[str, dict]) -> str:
    profile = "none (Fast DDS defaults)" if not args.profile or args.profile == "none" else args.profile
    lines = [f"subscriber: {args.subscriber}, depth {args.depth}; subscriber profile: {profile}; "
             f"{args.frames} frames per size at {args.rate_hz:g} Hz; discovery range {args.discovery}", "",
             "| image | MB | " + " | ".join(f"{r} publisher: received (lost events)" for r in results) + " |",
             "|---|---|" + "---|" * len(results)]
    for w, h in args.sizes:
        cells = []
        for res in results.values():
            got = res["received"].get(f"{w}x{h}", 0)
            cells.append(f"{got}/{args.frames} ({res['lost'].get(f'{w}x{h}', 0)})")
        lines.append(f"| {w}x{h} | {w * h * 3 / 1e6:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    for r, res in results.items():
        lines.append(f"- {r} publisher: subscription {res['reliability']}, message-lost events {res['lost_total']}"
                     + (f"; {'; '.join(res['choices'])}" if res["choices"] else ""))
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(tuple(int(v) for v in s.split("x")) for s in text.split(","))  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 640x192,1408x376, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("main", "pub", "sub"), default="main", help=argparse.SUPPRESS)
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable",
                        help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=4, help="frames per size (default 4)")
    parser.add_argument("--rate-hz", type=float, default=2.0, help="publishing rate (default 2 Hz)")
    parser.add_argument("--depth", type=int, default=2, help="subscriber queue depth (default 2, input.queue_depth)")
    parser.add_argument("--sizes", type=parse_sizes, default=SIZES, help="WxH,WxH,... (default the four sizes)")
    parser.add_argument("--publishers", default="reliable,best_effort", help="publisher reliabilities to try")
    parser.add_argument("--subscriber", choices=("best_effort", "reliable", "auto"), default="auto")
    parser.add_argument("--profile", default="none", help="Fast DDS XML profile for the subscriber, or none")
    parser.add_argument("--sub-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the subscriber (experiments; repeatable)")
    parser.add_argument("--pub-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the publisher (experiments; repeatable)")
    parser.add_argument("--discovery", choices=("localhost", "subnet"), default="localhost",
                        help="ROS_AUTOMATIC_DISCOVERY_RANGE: localhost (as the tests) or subnet (ROS 2's default; "
                             "with --unshare, multicast runs on the private loopback)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--unshare", action="store_true", help="re-run inside `unshare -n` with loopback only")
    args = parser.parse_args(argv)
    if args.role == "pub":
        return run_publisher(args)
    if args.role == "sub":
        return run_subscriber(args)
    if args.unshare:
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--unshare"]
        env = dict(os.environ)
        env.setdefault("ROS_DOMAIN_ID", str(random.randint(40, 99)))
        setup = "ip link set lo up"
        if args.discovery == "subnet":
            setup += " && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"
        cmd = setup + " && exec " + shlex.join([sys.executable, __file__, *rest])
        sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", cmd], env=env, check=False).returncode)
    results = {r: trial(args, r) for r in args.publishers.split(",")}
    text = table(args, results)
    emit(text, args.out)


if __name__ == "__main__":
    main()
