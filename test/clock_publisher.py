"""Test helper: messages before any /clock, then /clock from 1000 s with more messages.

    python test/clock_publisher.py   (stdin: "go" starts the clocked phase)

Phase 1 publishes std_msgs/String "early-<i>" on /chatter (5, reliable) once a subscriber
matched, prints "EARLY_DONE" and waits for "go" on stdin. Phase 2 publishes /clock at
1000 s + i * 0.05 s followed by "late-<i>" (20 of each), then prints "DONE".
"""

import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

CLOCK_START_S = 1000


def _wait_subscribers(node: Node, publisher, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no subscriber on {publisher.topic_name}")
        rclpy.spin_once(node, timeout_sec=0.05)


def main() -> int:
    rclpy.init(args=sys.argv)
    node = Node("clock_publisher")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    chatter = node.create_publisher(String, "/chatter", qos)
    clock = node.create_publisher(Clock, "/clock", 10)
    _wait_subscribers(node, chatter)
    _wait_subscribers(node, clock)
    for i in range(5):
        chatter.publish(String(data=f"early-{i}"))
    print("EARLY_DONE", flush=True)
    sys.stdin.readline()
    for i in range(20):
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = CLOCK_START_S, i * 50_000_000
        clock.publish(msg)
        time.sleep(0.02)
        chatter.publish(String(data=f"late-{i}"))
        time.sleep(0.03)
    print("DONE", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
