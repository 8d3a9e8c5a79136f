"""plan_step.PlanStep (the node's and the evaluation's one plan-and-status function) with the
real tiny planner on buffers filled with messages built in memory (no DDS, no node)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 message packages")

from nav_msgs.msg import Odometry

from alpamayo_ros.node.image_conversion import array_to_image
from alpamayo_ros.node.messages import (
    STATUS_DEGRADED,
    STATUS_INVALID,
    STATUS_OK,
    time_msg,
)
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.pipeline import load_planner, make_buffers, with_node_settings
from alpamayo_ros.node.plan_step import PlanStep, outcome_messages

T0_NS = 1_800_000_000_000_000_000


@pytest.fixture(scope="module")
def params(tiny_model_dir) -> NodeParams:
    return NodeParams(model_dir=str(tiny_model_dir), max_generation_tokens=8, seed=0)


@pytest.fixture(scope="module")
def planner(params):
    return load_planner(params)


@pytest.mark.parametrize(("mode", "compiled", "graphed"),
                         [("eager", False, False), ("compile", True, False)])
def test_decode_mode_reaches_the_planner(tiny_model_dir, mode, compiled, graphed):
    params = NodeParams(model_dir=str(tiny_model_dir), decode_mode=mode)
    decode = load_planner(params).decode
    assert (decode.compile, decode.cuda_graph) == (compiled, graphed)


def _odometry(t_s: float, frame: str = "odom") -> Odometry:
    msg = Odometry()
    msg.header.stamp = time_msg(T0_NS + round(t_s * 1e9))
    msg.header.frame_id, msg.child_frame_id = frame, "base_link"
    msg.pose.pose.position.x = 5.0 * t_s
    msg.pose.pose.orientation.w = 1.0
    return msg


def _step(planner, params) -> PlanStep:
    cameras, odometry = make_buffers(params, planner.cfg)
    for name in params.camera_names:
        for t_s in np.arange(-0.6, 0.001, 0.1):
            cameras.add(name, array_to_image(np.full((54, 96, 3), 100, np.uint8), "rgb8",
                                             stamp_ns=T0_NS + round(t_s * 1e9)))
    for t_s in np.arange(-2.0, 0.001, 0.02):
        odometry.add_odometry(_odometry(t_s))
    return PlanStep(planner, cameras, odometry, params)


def test_the_node_integrates_forward_only_unless_told_otherwise(planner, params):
    assert params.forward_only and planner.forward_only
    reference = with_node_settings(planner, NodeParams(model_dir=params.model_dir,
                                                       forward_only=False))
    assert not reference.forward_only and reference.backend_name == planner.backend_name


def test_ok_plan_and_its_messages(planner, params):
    outcome = _step(planner, params).run(T0_NS + 50_000_000)
    assert (outcome.level, outcome.reason, outcome.t0_ns) == (STATUS_OK, "", T0_NS)
    msgs = outcome_messages(outcome, params, model_id="m", backend="b")
    assert set(msgs) == {"plan", "trajectory", "history", "reasoning", "markers"}
    assert msgs["plan"].status.level == STATUS_OK and len(msgs["plan"].trajectories) == 1


def test_drops_since_the_previous_plan_are_degraded_once(planner, params):
    step = _step(planner, params)
    step.run(T0_NS + 50_000_000)
    step.odometry.add_odometry(_odometry(-0.5))  # out of order
    step.odometry.add_odometry(_odometry(-0.3, frame="map"))
    outcome = step.run(T0_NS + 50_000_000)
    assert outcome.level == STATUS_DEGRADED
    assert outcome.reason == (
        "odometry: 1 out-of-order messages dropped, 1 messages in frame 'map' dropped "
        "(odom_frame is 'odom') since the previous plan")
    assert step.run(T0_NS + 50_000_000).level == STATUS_OK


def test_failures_become_invalid_with_the_cause(planner, params):
    step = _step(planner, params)
    cancel = threading.Event()
    cancel.set()
    outcome = step.run(T0_NS + 50_000_000, cancel)
    assert (outcome.level, outcome.cancelled) == (STATUS_INVALID, True)
    assert outcome.reason == "model: PlanCancelled: plan cancelled during preprocessing"
    msgs = outcome_messages(outcome, params, model_id="m", backend="b")
    assert list(msgs) == ["plan"] and msgs["plan"].trajectories == []
    future = step.run(T0_NS - 1_000_000_000)  # every stamp 1 s ahead of the clock
    assert future.level == STATUS_INVALID and "ahead of the node clock" in future.reason


def test_truncated_reasoning_is_degraded(planner, params):
    hot = params.replace(temperature=10.0, max_generation_tokens=16, seed=-1)
    step = _step(load_planner(hot), hot)
    outcomes = [step.run(T0_NS + 50_000_000) for _ in range(4)]
    truncated = [o for o in outcomes if o.plan.num_truncated_reasoning]
    assert truncated, [o.reason for o in outcomes]
    assert all(o.level == STATUS_DEGRADED and o.reason.startswith(
        "model: 1 of 1 reasoning samples reached max_generation_tokens (16)") for o in truncated)
    assert all(o.plan.num_generated_tokens == 16 for o in truncated)


def test_a_turn_closed_without_future_start_is_degraded_and_named(params):
    """A sample that ends its turn (<|im_end|>) before <|traj_future_start|> is not a
    truncation: the reason says it ended, and names no token limit it never reached.

    The tiny model is made to close its turn at once: a planner of its own whose lm_head
    carries a bias that puts `<|im_end|>` far above every other token."""
    params = params.replace(max_generation_tokens=16)
    planner = load_planner(params)
    lm_head = planner._model.vlm.lm_head
    bias = torch.zeros(lm_head.out_features, dtype=lm_head.weight.dtype)
    bias[planner.loaded.token_ids.im_end] = 1e4
    lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    outcome = _step(planner, params).run(T0_NS + 50_000_000)
    assert outcome.plan.num_ended_without_future_start == 1
    assert outcome.plan.num_generated_tokens == 1
    assert outcome.level == STATUS_DEGRADED
    assert "1 of 1 reasoning samples ended (<|im_end|>) without <|traj_future_start|>" in \
        outcome.reason
    assert "max_generation_tokens" not in outcome.reason


def test_a_1_5_plan_gets_the_current_route_and_guidance_until_it_expires(tiny_a15_model_dir):
    """The merged path (issues 10 + 15): PlanStep reads its RouteState per plan; guidance
    applies only while the route is current, and an expired route leaves the plan unguided."""
    from alpamayo_ros.node.navigation import RouteState

    params = NodeParams(model_dir=str(tiny_a15_model_dir), max_generation_tokens=6, seed=0,
                        guidance_weight=1.5, noise_temperature=0.6, route_max_age_s=1.0)
    planner = load_planner(params)
    route = RouteState()
    step = _step(planner, params)
    step.route = route
    now_ns = T0_NS + 50_000_000
    route.update("Turn left in 50m", now_ns - 500_000_000)  # 0.5 s old: current
    guided = step.run(now_ns)
    assert guided.level == STATUS_OK, guided.reason
    assert guided.plan.route_text == "Turn left in 50m"
    assert guided.plan.guidance_weight == pytest.approx(1.5)
    assert "unguided_prefill" in guided.plan.timings_ms
    msg = outcome_messages(guided, params, model_id="m", backend="b")["plan"]
    assert msg.route_text == "Turn left in 50m" and msg.guidance_weight == pytest.approx(1.5)
    route.update("Turn left in 50m", now_ns - 2_000_000_000)  # 2 s old: expired
    unguided = step.run(now_ns)
    assert unguided.level == STATUS_OK, unguided.reason
    assert unguided.plan.route_text == "" and unguided.plan.guidance_weight == 0.0
    assert "unguided_prefill" not in unguided.plan.timings_ms

