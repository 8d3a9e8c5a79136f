"""Per-plan facts the metrics file does not hold, read back from an evaluation's plans bag.

For each plan that has trajectories (the plans `metrics.json` scores, in the same order): the
total latency (ms, wall clock, the plan's "total" stage), the selected sample's reasoning and
meta-action, and the plan's picture (`frames/plan_NNNN.png`) when one was rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message

from alpamayo_ros.tools.bag_io import iter_raw


@dataclass(frozen=True)
class PlanNote:
    """One plan: t0 (ns), total latency (ms), reasoning, meta-action, picture (or None)."""

    t0_ns: int
    latency_ms: float
    reasoning: str
    meta_action: str
    picture: Path | None


def read_plan_notes(plans_bag: Path, out_dir: Path, namespace: str,
                    t0s_ns: list[int]) -> list[PlanNote]:
    """Notes for the plans with trajectories, checked against the metrics rows' t0 (ns)."""
    from alpamayo.msg import DrivingPlan

    notes = []
    for raw in iter_raw(plans_bag, [f"{namespace}/plan"]):
        plan = deserialize_message(raw.data, DrivingPlan)
        if not plan.trajectories:
            continue
        t0_ns = plan.header.stamp.sec * 1_000_000_000 + plan.header.stamp.nanosec
        total = [s.latency_ms for s in plan.latencies if s.stage == "total"]
        picture = out_dir / "frames" / f"plan_{len(notes):04d}.png"
        notes.append(PlanNote(t0_ns, float(total[0]) if total else float("nan"),
                              plan.reasoning, plan.meta_action,
                              picture if picture.is_file() else None))
    if [n.t0_ns for n in notes] != list(t0s_ns):
        raise ValueError(f"{plans_bag}: {len(notes)} plans with trajectories do not match the "
                         f"{len(t0s_ns)} scored plans of metrics.json")
    return notes
