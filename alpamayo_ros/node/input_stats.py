"""Receive statistics of one input stream (a camera or odometry) for /diagnostics.

Rates are measured two ways over a sliding window: by header stamps (what the sensor claims)
and by arrival time on a monotonic clock (what reaches the node). A gap between the two points
at transport trouble (drops, bursts). Drop and reset counters are cumulative.
"""

from __future__ import annotations

import enum
import time
from collections import Counter, deque
from dataclasses import dataclass

#: Counter names used by the buffers.
ACCEPTED = "accepted"
DROPPED_OUT_OF_ORDER = "dropped_out_of_order"
DROPPED_DUPLICATE = "dropped_duplicate"
DROPPED_INVALID = "dropped_invalid"
CLOCK_RESETS = "clock_resets"
DROPPED_WRONG_FRAME = "dropped_wrong_frame"
NONFINITE_TWIST_OR_COVARIANCE = "nonfinite_twist_or_covariance"
DECODE_FAILURES = "decode_failures"


class AddResult(enum.Enum):
    """What a buffer did with one incoming message."""

    ACCEPTED = "accepted"
    RESET = "accepted after a clock jump backwards reset the buffer"
    DROPPED_INVALID = "dropped: invalid content"
    DROPPED_OUT_OF_ORDER = "dropped: older than the newest stamp"
    DROPPED_DUPLICATE = "dropped: same stamp as the newest"
    DROPPED_WRONG_FRAME = "dropped: in another frame than the configured one"

    @property
    def kept(self) -> bool:
        """True when the message went into the buffer."""
        return self in (AddResult.ACCEPTED, AddResult.RESET)


def classify_stamp(stamp_ns: int, newest_ns: int | None, clock_jump_s: float) -> AddResult:
    """Order check of a new stamp against the newest buffered one.

    ACCEPTED if newer (or first), DROPPED_DUPLICATE if equal, RESET if older by more than
    `clock_jump_s` (bag loop, sim-time restart: the caller clears its buffer), otherwise
    DROPPED_OUT_OF_ORDER.
    """
    if newest_ns is None or stamp_ns > newest_ns:
        return AddResult.ACCEPTED
    if stamp_ns == newest_ns:
        return AddResult.DROPPED_DUPLICATE
    if newest_ns - stamp_ns > clock_jump_s * 1e9:
        return AddResult.RESET
    return AddResult.DROPPED_OUT_OF_ORDER


_COUNTER_OF = {
    AddResult.RESET: "clock_resets",
    AddResult.DROPPED_INVALID: "dropped_invalid",
    AddResult.DROPPED_OUT_OF_ORDER: "dropped_out_of_order",
    AddResult.DROPPED_DUPLICATE: "dropped_duplicate",
    AddResult.DROPPED_WRONG_FRAME: "dropped_wrong_frame",
}


@dataclass(frozen=True)
class RateSnapshot:
    """Statistics of one input at one moment.

    Attributes:
        rate_hz_by_stamp: messages per second over the window, from header stamps.
        rate_hz_by_arrival: messages per second over the window, from arrival times.
        newest_stamp_ns: header stamp of the newest accepted message (None if none yet).
        counters: cumulative counts (accepted, dropped_out_of_order, dropped_duplicate,
            dropped_invalid, clock_resets, ...).
    """

    rate_hz_by_stamp: float
    rate_hz_by_arrival: float
    newest_stamp_ns: int | None
    counters: dict[str, int]

    @property
    def dropped(self) -> int:
        """All messages dropped for any reason."""
        return sum(v for k, v in self.counters.items() if k.startswith("dropped"))

    def as_dict(self) -> dict[str, float | int]:
        """Flat dict for diagnostics key/values."""
        out: dict[str, float | int] = {
            "rate_hz_by_stamp": round(self.rate_hz_by_stamp, 3),
            "rate_hz_by_arrival": round(self.rate_hz_by_arrival, 3),
            "dropped": self.dropped,
        }
        out.update(self.counters)
        return out


class InputStats:
    """Sliding-window rates and cumulative counters for one stream (not thread-safe on its own;
    the owning buffer holds the lock)."""

    def __init__(self, window_s: float = 2.0, max_events: int = 1024) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._window_ns = int(window_s * 1e9)
        self._events: deque[tuple[int, int]] = deque(maxlen=max_events)  # (stamp_ns, arrival_ns)
        self._counters: Counter[str] = Counter()

    def record_accepted(self, stamp_ns: int, arrival_ns: int | None = None) -> None:
        """Count one accepted message; `arrival_ns` defaults to time.monotonic_ns()."""
        arrival = time.monotonic_ns() if arrival_ns is None else int(arrival_ns)
        self._events.append((int(stamp_ns), arrival))
        self._counters[ACCEPTED] += 1

    def count(self, event: str, n: int = 1) -> None:
        """Add `n` to a named counter (e.g. DROPPED_DUPLICATE)."""
        self._counters[event] += n

    def count_result(self, result: AddResult) -> None:
        """Count a drop or reset (ACCEPTED is counted by record_accepted)."""
        if result in _COUNTER_OF:
            self._counters[_COUNTER_OF[result]] += 1
        if result is AddResult.RESET:
            self._events.clear()

    def snapshot(self, now_arrival_ns: int | None = None) -> RateSnapshot:
        """Rates over the last window (ending at `now_arrival_ns`, default monotonic now)."""
        now = time.monotonic_ns() if now_arrival_ns is None else int(now_arrival_ns)
        recent = [(s, a) for s, a in self._events if now - a <= self._window_ns]
        newest = self._events[-1][0] if self._events else None
        return RateSnapshot(
            rate_hz_by_stamp=_rate_hz([s for s, _ in recent]),
            rate_hz_by_arrival=_rate_hz([a for _, a in recent]),
            newest_stamp_ns=newest,
            counters={
                k: int(self._counters.get(k, 0))
                for k in (
                    ACCEPTED,
                    DROPPED_OUT_OF_ORDER,
                    DROPPED_DUPLICATE,
                    DROPPED_INVALID,
                    CLOCK_RESETS,
                    *sorted(self._counters),
                )
            },
        )


def _rate_hz(times_ns: list[int]) -> float:
    """(n - 1) / span of the times; 0.0 with fewer than two or a zero span."""
    if len(times_ns) < 2:
        return 0.0
    span_ns = max(times_ns) - min(times_ns)
    return (len(times_ns) - 1) * 1e9 / span_ns if span_ns > 0 else 0.0
