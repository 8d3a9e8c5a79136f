"""One planning attempt and its status: the single function the node and the offline
evaluation share, so that a bag replayed offline gets exactly the statuses the live node gives.

`PlanStep.run(now_ns)` assembles the inputs (`plan_assembly.assemble`: t0, frames, history and
the input checks there), adds what the input buffers dropped since the previous attempt, adds
the Alpamayo 1.5 inputs (camera ids, the current route text of `route` and the guidance weight
that applies: `navigation.plan_request`), runs the planner and checks its output:

* any exception (inputs, decoder, model, a cancelled plan) -> INVALID with the cause;
* non-finite trajectories -> INVALID;
* messages dropped since the previous attempt (out of order, duplicated, invalid pose, wrong
  frame, non-finite twist/covariance, undecodable frame) -> DEGRADED, with the counts;
* a sample whose reasoning hit max_generation_tokens without `<|traj_future_start|>`
  -> DEGRADED (its trajectory conditions on a truncated reasoning).

No ROS node here; `outcome_messages` builds the messages both publish or write.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from alpamayo_core.inference.plan import Plan
from alpamayo_core.inference.reasoning import PlanCancelled
from alpamayo_ros.node import messages
from alpamayo_ros.node.camera_buffer import CameraBuffer
from alpamayo_ros.node.ego_history import EgoHistoryBuffer
from alpamayo_ros.node.input_stats import (
    DECODE_FAILURES,
    DROPPED_DUPLICATE,
    DROPPED_INVALID,
    DROPPED_OUT_OF_ORDER,
    DROPPED_WRONG_FRAME,
    NONFINITE_TWIST_OR_COVARIANCE,
)
from alpamayo_ros.node.navigation import RouteState, plan_request
from alpamayo_ros.node.node_status import history_path
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.plan_assembly import (
    ODOMETRY,
    AssembledInputs,
    InputsUnavailable,
    assemble,
    input_ages_s,
)

if TYPE_CHECKING:
    from alpamayo_core.inference.planner import Planner

LOG = logging.getLogger(__name__)

#: Counter -> how the status says it ("{n} {text}").
_DROP_TEXT = {
    DROPPED_OUT_OF_ORDER: "out-of-order messages dropped",
    DROPPED_DUPLICATE: "duplicated stamps dropped",
    DROPPED_INVALID: "invalid poses dropped (NaN/inf or quaternion norm off 1)",
    NONFINITE_TWIST_OR_COVARIANCE: "messages with non-finite twist/covariance (unused)",
    DECODE_FAILURES: "frames could not be decoded",
}


@dataclass(frozen=True)
class PlanOutcome:
    """One planning attempt.

    Attributes:
        level: STATUS_OK, STATUS_DEGRADED or STATUS_INVALID.
        reason: "" when OK, else why (parts joined by "; ").
        t0_ns: the plan time (now when no camera frame exists yet).
        input_ages_s: input name -> now minus its newest stamp (s, node clock).
        assembled: the inputs (None when INVALID before a plan could be made).
        plan: the planner's answer with node timings (None when INVALID).
        cancelled: the plan was stopped through its cancel event (INVALID).
    """

    level: int
    reason: str
    t0_ns: int
    input_ages_s: dict[str, float] = field(default_factory=dict)
    assembled: AssembledInputs | None = None
    plan: Plan | None = None
    cancelled: bool = False


class PlanStep:
    """Plans from the node's buffers with the node's parameters (one attempt per `run`)."""

    def __init__(self, planner: Planner, cameras: CameraBuffer, odometry: EgoHistoryBuffer,
                 params: NodeParams, route: RouteState | None = None) -> None:
        """`route`: the `~/route` text the plans read (the node's or the bag's)."""
        self.planner, self.cameras, self.odometry, self.params = (
            planner, cameras, odometry, params)
        self.route = route if route is not None else RouteState()
        self._seen_counters: dict[str, dict[str, int]] = {}

    def run(self, now_ns: int, cancel: threading.Event | None = None) -> PlanOutcome:
        """One attempt at node-clock time `now_ns`; never raises (every failure is INVALID)."""
        start = time.perf_counter()
        drops = self._new_drops()
        try:
            assembled = self.assemble(now_ns)
        except InputsUnavailable as err:
            return self._invalid(err.t0_ns or now_ns, [err.reason, *drops], now_ns)
        except Exception as err:  # a bug in a helper must not kill planning
            LOG.exception("input assembly failed")
            return self._invalid(now_ns, [f"inputs: {type(err).__name__}: {err}"], now_ns)
        t0_ns = assembled.inputs.t0_ns
        try:
            plan = self._plan(assembled, now_ns, cancel)
        except Exception as err:
            outcome = self._invalid(t0_ns, [f"model: {type(err).__name__}: {err}", *drops],
                                    now_ns)
            return dataclasses.replace(outcome, cancelled=isinstance(err, PlanCancelled))
        reasons = [r for r in (assembled.reason, *drops, _truncation(plan, self.params)) if r]
        timings = {**assembled.timings_ms, **plan.timings_ms,
                   "node_total": (time.perf_counter() - start) * 1e3}
        plan = dataclasses.replace(plan, t0_ns=t0_ns, timings_ms=timings)
        level = messages.STATUS_DEGRADED if reasons else messages.STATUS_OK
        return PlanOutcome(level, "; ".join(reasons), t0_ns, assembled.input_ages_s,
                           assembled, plan)

    def assemble(self, now_ns: int) -> AssembledInputs:
        """The inputs of a plan at `now_ns` (`InputsUnavailable` when there are none)."""
        p = self.params
        return assemble(self.cameras, self.odometry, now_ns=now_ns,
                        tolerance_s=p.sync_tolerance_s, max_image_age_s=p.max_image_age_s,
                        odom_frame=p.odom_frame, max_future_stamp_s=p.max_future_stamp_s)

    def _plan(self, assembled: AssembledInputs, now_ns: int,
              cancel: threading.Event | None) -> Plan:
        p, planner = self.params, self.planner
        seed = None if p.seed < 0 else p.seed
        request = plan_request(assembled.inputs, self.route.view(now_ns, p.route_max_age_s), p,
                               planner.cfg.is_1_5)
        if request.guidance is not None and request.guidance != planner.guidance:
            planner = planner.with_settings(guidance=request.guidance)
        plan = planner.plan(request.inputs, seed=seed, cancel=cancel)
        if not all(np.all(np.isfinite(a)) for a in (plan.xyz_m, plan.yaw_rad, plan.speed_mps)):
            raise ValueError("non-finite values in the planned trajectories")
        return plan

    def _invalid(self, t0_ns: int, reasons: list[str], now_ns: int) -> PlanOutcome:
        ages = input_ages_s(self.cameras, self.odometry, now_ns)
        return PlanOutcome(messages.STATUS_INVALID, "; ".join(r for r in reasons if r),
                           t0_ns, ages)

    def _new_drops(self) -> list[str]:
        """One text per input and counter that grew since the previous attempt."""
        snapshots = {f"camera {name}": snap for name, snap in self.cameras.stats().items()}
        snapshots[ODOMETRY] = self.odometry.stats()
        out = []
        for name, snapshot in snapshots.items():
            seen = self._seen_counters.get(name, {})
            self._seen_counters[name] = dict(snapshot.counters)
            grown = {k: v - seen.get(k, 0) for k, v in snapshot.counters.items()
                     if v > seen.get(k, 0)}
            parts = [f"{n} {_DROP_TEXT[k]}" for k, n in grown.items() if k in _DROP_TEXT]
            if grown.get(DROPPED_WRONG_FRAME):
                parts.append(f"{grown[DROPPED_WRONG_FRAME]} messages in frame "
                             f"{self.odometry.wrong_frame_id!r} dropped (odom_frame is "
                             f"{self.params.odom_frame!r})")
            if parts:
                out.append(f"{name}: {', '.join(parts)} since the previous plan")
        return out


def _truncation(plan: Plan, params: NodeParams) -> str:
    """The DEGRADED reason for samples whose trajectory conditions on a reasoning without
    `<|traj_future_start|>`: cut at max_generation_tokens, or a turn the model closed."""
    parts = []
    if plan.num_truncated_reasoning:
        parts.append(f"{plan.num_truncated_reasoning} of {plan.num_samples} reasoning samples "
                     f"reached max_generation_tokens ({params.max_generation_tokens}) without "
                     f"<|traj_future_start|>")
    if plan.num_ended_without_future_start:
        parts.append(f"{plan.num_ended_without_future_start} of {plan.num_samples} reasoning "
                     f"samples ended (<|im_end|>) without <|traj_future_start|>")
    if not parts:
        return ""
    return f"model: {'; '.join(parts)}: trajectory conditioned on a truncated reasoning"


def outcome_messages(outcome: PlanOutcome, params: NodeParams, *, model_id: str,
                     backend: str) -> dict[str, object]:
    """Output name -> message: only "plan" for INVALID; plan, trajectory, history, reasoning
    and (with publish_markers) markers otherwise. Stamped t0, in `odom_frame`."""
    frame = params.odom_frame
    if outcome.plan is None:
        return {"plan": messages.invalid_driving_plan(
            outcome.t0_ns, outcome.reason, frame_id=frame, input_ages_s=outcome.input_ages_s,
            model_id=model_id, backend=backend)}
    plan, history = outcome.plan, outcome.assembled.history
    odom_from_ego = history.odom_from_ego_t0
    out = {
        "plan": messages.plan_to_driving_plan(
            plan, odom_from_ego, frame_id=frame, ego_frame_id=history.child_frame_id,
            status=(outcome.level, outcome.reason), input_ages_s=outcome.input_ages_s),
        "trajectory": messages.plan_to_path(plan, odom_from_ego, frame_id=frame),
        "history": history_path(history, frame),
        "reasoning": messages.reasoning_string(plan),
    }
    if params.publish_markers:
        out["markers"] = messages.plan_to_markers(plan, odom_from_ego, frame_id=frame)
    return out
