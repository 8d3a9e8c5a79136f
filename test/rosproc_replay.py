"""Helpers for the replay / demo tests: their own ROS domain ids and a timed raw recorder.

Domain ids 21-39 (the node tests in rosproc.py use 60-99), 10 per pytest-xdist worker.
`TimedCollector` is an in-test rclpy node that stores, per topic, (monotonic arrival time,
deserialised message) pairs, for timing assertions.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path

from rosproc import ros_env

DOMAIN_FIRST, DOMAIN_LAST = 21, 39
_counter = itertools.count()


def replay_domain_id() -> int:
    """A domain id in 21-39 not shared with another xdist worker at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base = DOMAIN_FIRST + (index % 2) * 10
    span = 10 if base + 9 <= DOMAIN_LAST else DOMAIN_LAST - base + 1
    return base + next(_counter) % span


class TimedCollector:
    """Subscribes in this process (own context and domain) and timestamps every arrival."""

    def __init__(self, domain_id: int, log_dir: Path | str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        for key, value in ros_env(domain_id, log_dir).items():
            if key.startswith(("ROS_", "FASTDDS_")):
                os.environ[key] = value
        self._lock = threading.Lock()
        self._received: dict[str, list[tuple[float, object]]] = {}
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("replay_test_collector", context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException, Exception):
            self._executor.spin()

    def subscribe(self, topic: str, msg_type: type, reliable: bool = True) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self._received.setdefault(topic, [])

        def record(msg, topic=topic):
            now = time.monotonic()
            with self._lock:
                self._received[topic].append((now, msg))

        policy = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        self.node.create_subscription(msg_type, topic, record, QoSProfile(depth=200,
                                                                          reliability=policy))

    def received(self, topic: str) -> list[tuple[float, object]]:
        with self._lock:
            return list(self._received.get(topic, []))

    def wait_count(self, topic: str, count: int, timeout_s: float) -> list[tuple[float, object]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.received(topic)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{topic}: {len(self.received(topic))} of {count} messages within "
                           f"{timeout_s} s")

    def close(self) -> None:
        import rclpy

        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
