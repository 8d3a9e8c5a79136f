"""Bag replay onto live topics: rosbags reader -> rclpy publishers of the raw CDR bytes.

Hand-written because `ros2 bag play` (rosbag2) is not available from PyPI; rosbags reads both
storage formats and hands out CDR bytes that rclpy publishes without decoding them.

Timing: message i is published at wall time w0 + (t_i - t_start) / rate on a monotonic
schedule (no drift accumulates; when publishing falls behind, the lag is measured and the next
messages go out at once). With `clock`, a `rosgraph_msgs/Clock` with the bag time is published
before each message that advances it, so nodes with use_sim_time follow the bag.

Loops: loop n (from 0) is shifted by n x `loop_period_ns` (bag duration + the fastest topic's
mean period), both in the schedule, in /clock and in the header stamps of messages whose first
field is a std_msgs/Header (patched in place in the CDR bytes: no deserialisation). Time thus
keeps increasing and a node never sees a clock jump; only stamps nested deeper (e.g. the poses
of a nav_msgs/Path) keep their recorded values. The recorded poses repeat, so odometry jumps
back to the first pose at each loop boundary (a consumer sees a "teleport", not a time jump).

QoS: each topic's publisher uses the first QoS profile offered in the bag's metadata, or
RELIABLE / VOLATILE / keep-last 10 when the bag has none (reliable publishers match both
reliable and best-effort subscribers).
"""

from __future__ import annotations

import importlib
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock

LOG = logging.getLogger(__name__)

CLOCK_TOPIC = "/clock"
HEADER_TYPE = "std_msgs/msg/Header"
RELIABILITY_CHOICES = ("bag", "reliable", "best_effort")
_SLEEP_CHUNK_S = 0.1
_CDR_HEADER_BYTES = 4  # encapsulation id (2 bytes) + options (2 bytes)


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay.

    Attributes:
        rate: playback speed factor (2.0 = twice as fast).
        loops: how many times to play the bag (0 = until stopped).
        clock: publish /clock with the (loop-shifted) bag time.
        remaps: (from, to) topic pairs applied to the published topic names.
        topics: topics to play (empty = all).
        reliability: "bag" (the bag's QoS, else reliable), "reliable" or "best_effort".
    """

    rate: float = 1.0
    loops: int = 1
    clock: bool = False
    remaps: tuple[tuple[str, str], ...] = ()
    topics: tuple[str, ...] = ()
    reliability: str = "bag"

    def __post_init__(self) -> None:
        if not 0.01 <= self.rate <= 100.0:
            raise ValueError(f"ReplayOptions.rate: must be in [0.01, 100], got {self.rate}")
        if self.loops < 0:
            raise ValueError(f"ReplayOptions.loops: must be >= 0 (0 = forever), got {self.loops}")
        if self.reliability not in RELIABILITY_CHOICES:
            raise ValueError(f"ReplayOptions.reliability: must be one of {RELIABILITY_CHOICES}, "
                             f"got {self.reliability!r}")
        for src, dst in self.remaps:
            if not (src.startswith("/") and dst.startswith("/")):
                raise ValueError(f"ReplayOptions.remaps: topics must be absolute, got "
                                 f"{src}:={dst}")

    def remap(self, topic: str) -> str:
        return dict(self.remaps).get(topic, topic)


def parse_remap(text: str) -> tuple[str, str]:
    """"/a:=/b" -> ("/a", "/b")."""
    src, sep, dst = text.partition(":=")
    if not sep or not src or not dst:
        raise ValueError(f"remap {text!r}: expected /from:=/to")
    return src, dst


@dataclass
class ReplayStats:
    """What a replay did (lag = how late a message went out against its schedule)."""

    published: int = 0
    loops_done: int = 0
    max_lag_ms: float = 0.0
    wall_s: float = 0.0
    bag_start_ns: int = 0
    last_time_ns: int = 0


def message_class(msgtype: str) -> type:
    """rclpy message class for "pkg/msg/Name"; ImportError says what to install."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as err:
        pip_name = "ros-" + package.replace("_", "-")
        raise ImportError(f"no Python message class for {msgtype}: install or build the "
                          f"{package} interfaces (e.g. pip install {pip_name})") from err


def qos_from_bag(offered: list, reliability: str) -> QoSProfile:
    """rclpy QoS from a rosbags offered-QoS list (enum values match rclpy's)."""
    if offered and reliability == "bag":
        q = offered[0]
        return QoSProfile(history=HistoryPolicy(q.history.value), depth=max(int(q.depth), 1),
                          reliability=ReliabilityPolicy(q.reliability.value),
                          durability=DurabilityPolicy(q.durability.value))
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else (
        ReliabilityPolicy.RELIABLE)
    return QoSProfile(depth=10, reliability=policy)


def shift_header_stamp(cdr: bytes, offset_ns: int) -> bytes:
    """CDR bytes of a message that starts with a std_msgs/Header, with the stamp + offset_ns.

    The stamp (int32 sec, uint32 nanosec) sits right after the 4-byte encapsulation header;
    byte 1 of it is 1 for little-endian CDR, 0 for big-endian.
    """
    if len(cdr) < _CDR_HEADER_BYTES + 8:
        raise ValueError(f"CDR message of {len(cdr)} bytes is too short for a header stamp")
    fmt = "<iI" if cdr[1] & 1 else ">iI"
    sec, nanosec = struct.unpack_from(fmt, cdr, _CDR_HEADER_BYTES)
    new_sec, new_nanosec = divmod(sec * 1_000_000_000 + nanosec + int(offset_ns), 1_000_000_000)
    out = bytearray(cdr)
    struct.pack_into(fmt, out, _CDR_HEADER_BYTES, new_sec, new_nanosec)
    return bytes(out)


def loop_period_ns(start_ns: int, end_ns: int, counts: dict[str, int]) -> int:
    """Bag duration plus the mean period of its fastest topic (the shift between loops)."""
    duration = max(end_ns - start_ns, 1)
    periods = [duration // (n - 1) for n in counts.values() if n >= 2]
    return duration + (min(periods) if periods else 1_000_000)


class BagPlayer:
    """Publishes one bag on `node` (create it, then `play()`; `stop()` from another thread)."""

    def __init__(self, node: Node, bag: Path | str, options: ReplayOptions) -> None:
        self.node, self.options = node, options
        self.reader = AnyReader([Path(bag)])
        self.reader.open()
        wanted = set(options.topics)
        self.connections = [c for c in self.reader.connections
                            if not wanted or c.topic in wanted]
        missing = wanted - {c.topic for c in self.connections}
        if missing:
            raise ValueError(f"topics {sorted(missing)} are not in the bag; it has "
                             f"{sorted({c.topic for c in self.reader.connections})}")
        self.publishers: dict[int, object] = {}
        self.restamp: dict[int, bool] = {}
        self._create_publishers()
        self.clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, 10) if options.clock else None
        counts: dict[str, int] = {}
        for c in self.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        self.counts = counts
        self.start_ns, self.end_ns = self.reader.start_time, self.reader.end_time - 1
        self.period_ns = loop_period_ns(self.start_ns, self.end_ns, counts)
        self._stop = threading.Event()

    def _create_publishers(self) -> None:
        fields = self.reader.typestore.fielddefs
        for conn in self.connections:
            cls = message_class(conn.msgtype)
            qos = qos_from_bag(conn.ext.offered_qos_profiles, self.options.reliability)
            self.publishers[conn.id] = self.node.create_publisher(
                cls, self.options.remap(conn.topic), qos)
            first = fields[conn.msgtype][1][0][1] if fields[conn.msgtype][1] else None
            self.restamp[conn.id] = bool(first) and first[0].name == "NAME" and (
                first[1] == HEADER_TYPE)

    @property
    def num_messages(self) -> int:
        return sum(self.counts.values())

    def wait_for_subscribers(self, timeout_s: float) -> list[str]:
        """Wait until every publisher has a subscriber; returns the topics still without one."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = sorted({p.topic_name for p in self.publishers.values()
                              if p.get_subscription_count() == 0})
            if not missing or time.monotonic() >= deadline or self._stop.is_set():
                return missing
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until reliable subscribers acknowledged everything (call before exiting)."""
        if not self.node.context.ok():
            return False
        timeout = Duration(nanoseconds=int(timeout_s * 1e9))
        pubs = [*self.publishers.values(), *([self.clock_pub] if self.clock_pub else [])]
        return all(pub.wait_for_all_acked(timeout) for pub in pubs)

    def close(self) -> None:
        self.reader.close()

    def play(self, on_message: Callable[[int], None] | None = None) -> ReplayStats:
        """Publish the bag (all loops); `on_message(bag_time_ns)` after each message."""
        stats = ReplayStats(bag_start_ns=self.start_ns)
        wall0 = time.monotonic()
        loop = 0
        while (self.options.loops == 0 or loop < self.options.loops) and not self._stop.is_set():
            self._play_once(loop, wall0, stats, on_message)
            loop += 1
            stats.loops_done = loop if not self._stop.is_set() else loop - 1
        stats.wall_s = time.monotonic() - wall0
        return stats

    def _play_once(self, loop: int, wall0: float, stats: ReplayStats,
                   on_message: Callable[[int], None] | None) -> None:
        offset_ns = loop * self.period_ns
        for conn, t_ns, raw in self.reader.messages(connections=self.connections):
            t_ns = int(t_ns) + offset_ns
            due = wall0 + (t_ns - self.start_ns) * 1e-9 / self.options.rate
            if not self._sleep_until(due):
                return
            stats.max_lag_ms = max(stats.max_lag_ms, (time.monotonic() - due) * 1e3)
            if self.clock_pub is not None and t_ns > stats.last_time_ns:
                self.clock_pub.publish(_clock(t_ns))
            data = bytes(raw)
            if offset_ns and self.restamp[conn.id]:
                data = shift_header_stamp(data, offset_ns)
            self.publishers[conn.id].publish(data)
            stats.published += 1
            stats.last_time_ns = max(stats.last_time_ns, t_ns)
            if on_message is not None:
                on_message(t_ns)

    def _sleep_until(self, due: float) -> bool:
        """Sleep to the monotonic time `due` in short chunks; False if stopped meanwhile."""
        while not self._stop.is_set():
            remaining = due - time.monotonic()
            if remaining <= 0:
                return self.node.context.ok()
            time.sleep(min(remaining, _SLEEP_CHUNK_S))
            if not self.node.context.ok():
                return False
        return False


def _clock(t_ns: int) -> Clock:
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
    return msg
