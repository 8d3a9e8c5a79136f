"""Helpers for multi-process ROS 2 tests: isolated environments and managed child processes.

Every test process gets `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` (never multicast), its own
`ROS_DOMAIN_ID` (60-99: 10 per pytest-xdist worker, so parallel workers never share a domain),
a temporary `ROS_LOG_DIR` and the shipped Fast DDS profile (large images, fast discovery).
`RosProcess` starts a child in its own process group, collects its output lines on a thread,
waits for marker lines (e.g. "READY") with timeouts, and stops the whole group on exit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from alpamayo_ros.tools.processes import ChildProcess, node_params_file
from alpamayo_ros.tools.processes import ros_env as _ros_env

__all__ = ["Collector", "NodeStack", "RosProcess", "next_domain_id", "node_params_file",
           "ros_env", "stamp_ns", "status_values", "tiny_checkpoint"]

ROOT = Path(__file__).resolve().parents[1]
DOMAIN_FIRST, DOMAIN_LAST = 60, 99
_DOMAINS_PER_WORKER = 10
# Start at a per-process offset so that two pytest sessions running at once on a shared machine
# rarely pick the same domain (CI runs one session; developers may run several).
_counter = itertools.count(os.getpid() % _DOMAINS_PER_WORKER)


def next_domain_id() -> int:
    """A domain id no other test of this session (any xdist worker) uses at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    span = DOMAIN_LAST - DOMAIN_FIRST + 1
    workers = max(1, span // _DOMAINS_PER_WORKER)
    base = DOMAIN_FIRST + (index % workers) * _DOMAINS_PER_WORKER
    return base + next(_counter) % _DOMAINS_PER_WORKER


def ros_env(domain_id: int, log_dir: Path | str, **extra: str) -> dict[str, str]:
    """Environment for one ROS test process (`alpamayo_ros.tools.processes.ros_env`: LOCALHOST
    discovery, own domain, the shipped Fast DDS profile), one torch thread unless set."""
    return _ros_env(domain_id, Path(log_dir),
                    **{"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **extra})


def init_in_process(monkeypatch, log_dir: Path | str, params: dict[str, str]):
    """rclpy initialised in this test process on a context of its own: the ROS environment
    (own domain, LOCALHOST discovery) set through `monkeypatch`, node parameters as `-p`
    arguments. Returns the context; the caller shuts it down."""
    import rclpy

    domain = next_domain_id()
    for key, value in ros_env(domain, log_dir).items():
        if key.startswith("ROS_"):
            monkeypatch.setenv(key, value)
    context = rclpy.Context()
    args = ["--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    rclpy.init(args=args, context=context, domain_id=domain)
    return context


class RosProcess(ChildProcess):
    """A child process with stdin for commands; output collected in memory (no log file)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], name: str) -> None:
        super().__init__(args, env, name=name, stdin=True, cwd=ROOT)


_TINY_CHECKPOINTS: dict[str, Path] = {}


def tiny_checkpoint(base_dir: Path, preset: str = "tiny") -> Path:
    """The tiny random-init model folder (seed 0) of `preset`, built once per test session.

    The first call builds it under its `base_dir` (in this process, with torch's global RNG
    state restored afterwards); later calls return that folder whatever their `base_dir`: the
    node processes only read it, so every stack and test shares one build.
    """
    built = _TINY_CHECKPOINTS.get(preset)
    if built is not None and (built / "config.json").is_file():
        return built
    import torch

    from alpamayo_core.cli.make_tiny import make_tiny

    out = Path(base_dir) / ("tiny_model" if preset == "tiny" else f"tiny_model_{preset}")
    if not (out / "config.json").is_file():
        with torch.random.fork_rng(devices=[]):
            make_tiny(out, seed=0, preset_name=preset)
    _TINY_CHECKPOINTS[preset] = out
    return out


class Collector:
    """An in-test rclpy node (own context, own domain) recording messages on a spin thread.

    `subscribe(topic, type)` records every message with its monotonic arrival time;
    `messages(topic)` returns the messages, `received(topic)` the (arrival s, message) pairs;
    `wait_for(predicate, timeout_s)` polls a predicate, `wait_count` a message count;
    `call(client, request)` calls a service.
    """

    def __init__(self, domain_id: int, log_dir: Path | str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        for key, value in ros_env(domain_id, log_dir).items():
            if key.startswith(("ROS_", "FASTDDS_")):
                os.environ[key] = value
        self.domain_id, self.log_dir = domain_id, Path(log_dir)
        self._lock = threading.Lock()
        self._received: dict[str, list[tuple[float, object]]] = {}
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("test_collector", context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException, Exception):
            self._executor.spin()

    def subscribe(self, topic: str, msg_type: type, depth: int = 50,
                  reliable: bool = False) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self._received.setdefault(topic, [])

        def record(msg, topic=topic):
            now = time.monotonic()
            with self._lock:
                self._received[topic].append((now, msg))

        policy = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        self.node.create_subscription(msg_type, topic, record,
                                      QoSProfile(depth=depth, reliability=policy))

    def received(self, topic: str) -> list[tuple[float, object]]:
        with self._lock:
            return list(self._received.get(topic, []))

    def messages(self, topic: str) -> list:
        return [msg for _, msg in self.received(topic)]

    def clear(self) -> None:
        with self._lock:
            for msgs in self._received.values():
                msgs.clear()

    def wait_for(self, predicate, timeout_s: float, what: str = "condition"):
        """Poll `predicate()` every 50 ms until truthy; returns its value or raises."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{what} not met within {timeout_s} s")

    def wait_count(self, topic: str, count: int, timeout_s: float) -> list[tuple[float, object]]:
        """Block until `count` messages arrived on `topic`; returns (arrival, message) pairs."""
        return self.wait_for(lambda: (got := self.received(topic)) and len(got) >= count and got,
                             timeout_s, f"{count} messages on {topic}")

    def call(self, client, request, timeout_s: float = 120.0, resend_every_s: float = 0.0):
        """Send `request` on `client` and return the response; raises TimeoutError.

        `wait_for_service` only proves that the server's request reader is matched. The server's
        reply writer may not yet have matched this client's reply reader, and the reply is then
        lost (seen under CI load). With `resend_every_s` > 0 an unanswered request is sent again
        at that period: use it only for requests that are safe to repeat (queries).
        """
        if not client.wait_for_service(timeout_sec=min(timeout_s, 60.0)):
            raise TimeoutError(f"service {client.srv_name} did not appear")
        deadline = time.monotonic() + timeout_s
        while True:
            future = client.call_async(request)
            attempt_end = deadline if resend_every_s <= 0 else min(
                deadline, time.monotonic() + resend_every_s)
            while not future.done() and time.monotonic() < attempt_end:
                time.sleep(0.02)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{client.srv_name} did not answer within {timeout_s} s")

    def close(self) -> None:
        import rclpy

        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


class NodeStack:
    """Sensor publisher process + alpamayo node process (tiny model) + an in-test collector.

    Args:
        base_dir: folder for logs, params file and the tiny checkpoint.
        transport: camera_transport list (1 entry or one per camera).
        params: extra node parameter overrides.
        publisher_args: extra sensor_publisher.py arguments.
        node_command: how to start the node (python arguments before `--ros-args`).
    """

    OUTPUTS = ("plan", "trajectory", "history", "reasoning", "markers")

    def __init__(self, base_dir: Path, transport: list[str], *, width: int = 1920,
                 height: int = 1080, params: dict | None = None,
                 publisher_args: Sequence[str] = (),
                 node_command: Sequence[str] = ("-m", "alpamayo_ros")) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path as PathMsg
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        from alpamayo.msg import DrivingPlan

        self.domain_id = next_domain_id()
        log_dir = Path(base_dir) / f"roslog_{self.domain_id}"
        env = ros_env(self.domain_id, log_dir, RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self.collector = Collector(self.domain_id, log_dir)
        types = (DrivingPlan, PathMsg, PathMsg, String, MarkerArray)
        for name, msg_type in zip(self.OUTPUTS, types, strict=True):
            self.collector.subscribe(f"/alpamayo/{name}", msg_type)
        self.collector.subscribe("/diagnostics", DiagnosticArray)
        self.params = {"model_dir": str(tiny_checkpoint(base_dir)),
                       "camera_transport": list(transport), **(params or {})}
        reference = self.params.get("reference_camera", "camera_front_wide_120fov")
        self.publisher = RosProcess(
            ["test/sensor_publisher.py", "--transport", *transport, "--width", str(width),
             "--height", str(height), "--print-stamps", reference, *publisher_args],
            env, "sensor_publisher")
        self.node: RosProcess | None = None
        try:
            self.publisher.wait_for("^READY", 60.0)
            params_file = node_params_file(Path(base_dir) / f"params_{self.domain_id}.yaml",
                                           **self.params)
            self.node = RosProcess([*node_command, "--ros-args", "--params-file",
                                    str(params_file)], env, "alpamayo_node")
            self.node.wait_for("active: planning", 180.0)
        except BaseException:
            self.close()
            raise

    def plans(self, level: int | None = None) -> list:
        plans = self.collector.messages("/alpamayo/plan")
        return [p for p in plans if level is None or p.status.level == level]

    def wait_plans(self, count: int, level: int, timeout_s: float, after: int = 0) -> list:
        """Block until `count` plans of `level` with t0 > `after` (ns) arrived; returns them."""
        def ready():
            found = [p for p in self.plans(level) if stamp_ns(p.header.stamp) > after]
            return found if len(found) >= count else None
        return self.collector.wait_for(ready, timeout_s,
                                       f"{count} plans of level {level} (node log:\n"
                                       f"{self.node.tail() if self.node else ''})")

    def newest_diagnostic(self, name: str, message: str = "") -> tuple[float, object] | None:
        """(arrival monotonic s, status) of the newest /diagnostics status called `name` (whose
        message contains `message`), else None."""
        for arrival, array in reversed(self.collector.received("/diagnostics")):
            for status in array.status:
                if status.name == name and message in status.message:
                    return arrival, status
        return None

    def reference_stamps_ns(self) -> set[int]:
        return {int(line.split()[1]) for line in self.publisher.lines
                if line.startswith("STAMP ")}

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()
        self.publisher.stop()
        self.collector.close()


def status_values(status) -> dict[str, str]:
    """A `diagnostic_msgs/DiagnosticStatus`'s key/values as a dict."""
    return {kv.key: kv.value for kv in status.values}


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time -> int nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
