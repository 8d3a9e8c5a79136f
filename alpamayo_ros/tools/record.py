"""Record live topics into a rosbag2 (MCAP) with rosbags: `python -m alpamayo_ros.tools.record`.

Hand-written because `ros2 bag record` (rosbag2) is not available from PyPI. Subscriptions are
raw (`raw=True`): the CDR bytes go into the bag undecoded. A message is stored at its receive
time on the node clock (sim time with `-p use_sim_time:=true`). Until that clock is valid (sim
time before the first /clock message reads 0) messages are dropped and counted, never written:
a bag starting at time 0 would claim a 54-year duration and stall `ros2 bag play`. Topic types
come from the command line (`TOPIC:=pkg/msg/Type`) or from the ROS graph (first publisher seen).

Prints "READY" once subscribed, "MATCHED" once every topic has a publisher, and at exit
"RECORDED {json counts}" and "DROPPED_BEFORE_CLOCK {json counts}". SIGINT / SIGTERM close the
bag cleanly.

    python -m alpamayo_ros.tools.record --out plans_bag /alpamayo/plan /alpamayo/trajectory \
        --ros-args -p use_sim_time:=true
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin

from alpamayo_ros.node.shutdown import ignore_exit_signals, until_shutdown
from alpamayo_ros.tools.bag_io import make_typestore
from alpamayo_ros.tools.bag_writer import BagWriter
from alpamayo_ros.tools.replay import message_class
from alpamayo_ros.tools.share import share_path


class Recorder(Node):
    """Subscribes to topics (types given or discovered) and writes every message to a bag."""

    def __init__(self, out: Path, topics: dict[str, str | None], depth: int = 100) -> None:
        super().__init__("alpamayo_record")
        self.writer = BagWriter(out, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.typestore = make_typestore(share_path("msg"))
        self.pending = dict(topics)
        self.connections: dict[str, object] = {}
        self.counts: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # received before the clock was valid
        self.qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.matched = False
        self._subscribe_known()
        # steady clock: with use_sim_time the node clock stands still until /clock arrives
        self.create_timer(0.1, self._discover, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _subscribe_known(self) -> None:
        for topic, msgtype in list(self.pending.items()):
            if msgtype is not None:
                self._subscribe(topic, msgtype)

    def _subscribe(self, topic: str, msgtype: str) -> None:
        del self.pending[topic]
        self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                             typestore=self.typestore)
        self.create_subscription(message_class(msgtype), topic,
                                 lambda data, t=topic: self._write(t, data), self.qos, raw=True)

    def _discover(self) -> None:
        """Subscribe to untyped topics once a publisher shows their type; report MATCHED."""
        if self.pending:
            graph = dict(self.get_topic_names_and_types())
            for topic in list(self.pending):
                if graph.get(topic):
                    self._subscribe(topic, graph[topic][0])
        if not self.matched and not self.pending and all(
                self.count_publishers(t) > 0 for t in self.connections):
            self.matched = True
            print("MATCHED", flush=True)

    def _write(self, topic: str, data: bytes) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if now_ns <= 0:  # sim time before the first /clock message
            if not self.dropped:
                self.get_logger().warning(
                    "the clock is not valid yet (use_sim_time without /clock): dropping "
                    "messages until it is")
            self.dropped[topic] += 1
            return
        self.writer.write(self.connections[topic], now_ns, data)
        self.counts[topic] += 1

    def close(self) -> None:
        self.writer.close()


def parse_topic(text: str) -> tuple[str, str | None]:
    """"/topic" or "/topic:=pkg/msg/Type"."""
    topic, _, msgtype = text.partition(":=")
    if not topic.startswith("/") or (msgtype and msgtype.count("/") != 2):
        raise ValueError(f"topic {text!r}: expected /absolute/topic[:=pkg/msg/Type]")
    return topic, msgtype or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many wall seconds (0 = until SIGINT/SIGTERM)")
    parser.add_argument("topics", nargs="+", help="/topic or /topic:=pkg/msg/Type")
    args = parser.parse_args(argv[:split])
    try:
        topics = dict(parse_topic(t) for t in args.topics)
    except ValueError as exc:
        print(f"record: error: {exc}", file=sys.stderr)
        return 2
    if Path(args.out).exists():
        print(f"record: error: {args.out} exists; choose a new bag folder", file=sys.stderr)
        return 2
    rclpy.init(args=["alpamayo-record", *argv[split:]])
    recorder = Recorder(Path(args.out), topics)
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    print("READY", flush=True)
    try:
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        with until_shutdown():
            while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
                executor.spin_once(timeout_sec=0.1)
    finally:
        ignore_exit_signals()  # a second SIGINT must not cut the bag short
        recorder.close()
        print(f"RECORDED {json.dumps(dict(recorder.counts))}", flush=True)
        print(f"DROPPED_BEFORE_CLOCK {json.dumps(dict(recorder.dropped))}", flush=True)
        executor.shutdown()
        recorder.destroy_node()
        rclpy.try_shutdown()
        ignore_exit_signals()
    return 0


if __name__ == "__main__":
    sys.exit(main())
