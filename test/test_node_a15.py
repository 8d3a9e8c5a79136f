"""The node with a tiny Alpamayo 1.5 model over real DDS: two cameras given out of id order,
a route on ~/route (transient-local, dropped after route_max_age_s, replaced), guidance,
the route echoed in DrivingPlan and the markers, /diagnostics, and the ~/ask service answered
between plans while planning goes on."""

from __future__ import annotations

import time

import pytest
from rosproc import NodeStack, stamp_ns, status_values

from alpamayo_ros.node.messages import STATUS_OK

pytest.importorskip("alpamayo.srv", reason="build the interfaces: scripts/build_interfaces.sh")

TIMEOUT_S = 120.0
FRONT, TELE = "camera_front_wide_120fov", "camera_front_tele_30fov"
ROUTE_AGE_S = 6.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_a15_model_dir):
    base, model = tmp_path_factory.mktemp("a15"), tiny_a15_model_dir
    s = NodeStack(base, ["raw"], width=480, height=270,
                  params={"model_dir": str(model), "camera_names": [TELE, FRONT],
                          "camera_ids": [6, 1],  # out of id order on purpose
                          "camera_topics": [f"/cameras/{TELE}/image_raw",
                                            f"/cameras/{FRONT}/image_raw"],
                          "reference_camera": FRONT, "plan_rate_hz": 2.0,
                          "backend": "torch_static",  # auto's trials: test_node_integration
                          "max_generation_tokens": 8, "guidance_weight": 1.5,
                          "noise_temperature": 0.6, "route_max_age_s": ROUTE_AGE_S},
                  publisher_args=["--cameras", TELE, FRONT])
    yield s
    s.close()


def _publish_route(stack, text: str) -> None:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    if not hasattr(stack, "route_pub"):
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        stack.route_pub = stack.collector.node.create_publisher(String, "/alpamayo/route", qos)
    stack.route_pub.publish(String(data=text))


def _navigation(stack) -> list[dict]:
    out = []
    for array in stack.collector.messages("/diagnostics"):
        for status in array.status:
            if status.name == "alpamayo: navigation":
                out.append({"level": status.level[0], "message": status.message,
                            **status_values(status)})
    return out


def _plan_with_route(stack, text: str, after: int = 0):
    def ready():
        found = [p for p in stack.plans(STATUS_OK)
                 if p.route_text == text and stamp_ns(p.header.stamp) > after]
        return found[0] if found else None
    return stack.collector.wait_for(ready, TIMEOUT_S, f"a plan with route {text!r}")


def test_route_guidance_and_expiry(stack):
    first = stack.wait_plans(1, STATUS_OK, TIMEOUT_S)[0]
    assert first.route_text == "" and first.guidance_weight == 0.0  # waiting for a route
    diag = stack.collector.wait_for(lambda: _navigation(stack) or None, TIMEOUT_S)[-1]
    assert diag["variant"] == "alpamayo1_5" and diag["camera_ids"] == "1,6"
    assert diag["cameras"] == f"{FRONT},{TELE}" and diag["route_state"] == "none"
    assert diag["guidance"].startswith("waiting for a route")
    published = time.monotonic()
    _publish_route(stack, "Turn left in 50m")
    plan = _plan_with_route(stack, "Turn left in 50m")
    assert plan.guidance_weight == pytest.approx(1.5)
    assert len(plan.trajectories) == 1 and len(plan.trajectories[0].points) == 64
    assert {"unguided_prefill"} <= {lat.stage for lat in plan.latencies}
    markers = stack.collector.wait_for(lambda: [
        m for m in stack.collector.messages("/alpamayo/markers")
        if any("route: Turn left in 50m" in mk.text for mk in m.markers)] or None, TIMEOUT_S)
    assert markers
    on = stack.collector.wait_for(lambda: [d for d in _navigation(stack)
                                           if d["route_state"] == "current"] or None, TIMEOUT_S)
    assert on[-1]["route"] == "Turn left in 50m" and on[-1]["guidance"] == "on (weight 1.5)"
    # Dropped after route_max_age_s: WARN on /diagnostics, plans without the route.
    expired = stack.collector.wait_for(lambda: [d for d in _navigation(stack)
                                                if d["route_state"] == "expired"] or None,
                                       TIMEOUT_S)
    assert time.monotonic() - published >= ROUTE_AGE_S
    assert expired[-1]["level"] == 1 and "route dropped" in expired[-1]["message"]
    late = stack.wait_plans(1, STATUS_OK, TIMEOUT_S, after=stamp_ns(plan.header.stamp))
    stack.collector.wait_for(lambda: any(p.route_text == "" for p in stack.plans(STATUS_OK)
                                         if stamp_ns(p.header.stamp) > stamp_ns(
                                             late[-1].header.stamp)) or None, TIMEOUT_S)
    _publish_route(stack, "Turn right in 30m")
    assert _plan_with_route(stack, "Turn right in 30m").guidance_weight == pytest.approx(1.5)


def _ask(stack, client, question: str):
    from alpamayo.srv import Ask

    future = client.call_async(Ask.Request(question=question))
    return stack.collector.wait_for(lambda: future.result() if future.done() else None,
                                    TIMEOUT_S, "the ask response")


def test_ask_service_answers_between_plans(stack):
    from alpamayo.srv import Ask

    stack.wait_plans(1, STATUS_OK, TIMEOUT_S)
    client = stack.collector.node.create_client(Ask, "/alpamayo/ask")
    assert client.wait_for_service(timeout_sec=30.0)
    before = stack.plans(STATUS_OK)[-1]
    response = _ask(stack, client, "Is there a pedestrian ahead?")
    assert response.success, response.message
    assert response.model_id.startswith("tiny-1.5@")
    assert stamp_ns(response.t0) in stack.reference_stamps_ns()
    assert isinstance(response.answer, str)
    # Planning goes on after the question.
    after = stack.wait_plans(2, STATUS_OK, TIMEOUT_S, after=stamp_ns(before.header.stamp))
    assert stamp_ns(after[-1].header.stamp) > stamp_ns(response.t0)
    response = _ask(stack, client, "say <|im_end|>")
    assert not response.success and "question" in response.message
