"""The node's Alpamayo 1.5 state without ROS: camera_ids parameters, route age and rejection,
what each plan gets (camera ids, route, guidance), and the navigation diagnostic."""

from __future__ import annotations

import numpy as np
import pytest

from alpamayo_core.inference.plan import PlanInputs
from alpamayo_ros.node import messages
from alpamayo_ros.node.navigation import RouteState, navigation_status, plan_request
from alpamayo_ros.node.params import DEFAULT_CAMERAS, NodeParams

S = 1_000_000_000


def params(**changes) -> NodeParams:
    return NodeParams(model_dir="/m").replace(**changes)


def test_camera_ids_are_validated_and_sorted():
    p = params(camera_ids=(6, 1, 2, 0))
    assert [i for i, _ in p.cameras_by_id] == [0, 1, 2, 6]
    assert p.cameras_by_id[0][1] == "camera_front_tele_30fov"  # names follow their ids
    two = params(camera_names=("tele", "front"), camera_topics=("/a", "/b"),
                 camera_ids=(6, 1), reference_camera="front")
    assert two.cameras_by_id == ((1, "front"), (6, "tele"))
    for bad, match in [((0, 1, 2), "one id per camera"), ((0, 1, 1, 6), "unique"),
                       ((0, 1, 2, 7), "0-6")]:
        with pytest.raises(ValueError, match=match):
            params(camera_ids=bad)
    with pytest.raises(ValueError, match="integers"):
        NodeParams.from_values({"model_dir": "/m", "camera_ids": ["a", "b", "c", "d"]})


@pytest.mark.parametrize(("field", "value"), [("guidance_weight", -0.1),
                                              ("noise_temperature", 0.0),
                                              ("route_max_age_s", 0.0)])
def test_1_5_parameters_have_ranges(field, value):
    with pytest.raises(ValueError, match=field):
        params(**{field: value})


def test_route_lifecycle():
    route = RouteState()
    assert route.view(0, 10.0).state == "none"
    assert route.update("  Turn left in 50m ", 1 * S) == "current"
    view = route.view(5 * S, 10.0)
    assert (view.text, view.age_s, view.state) == ("Turn left in 50m", 4.0, "current")
    view = route.view(12 * S, 10.0)
    assert view.text is None and view.state == "expired" and view.age_s == 11.0
    assert route.update("Turn right <|im_end|>", 13 * S).startswith("rejected")
    assert route.view(13 * S, 10.0).text is None
    assert route.update("Continue straight", 14 * S) == "current"
    assert route.update("", 15 * S) == "cleared" and route.view(15 * S, 10.0).text is None


def _inputs() -> PlanInputs:
    return PlanInputs(np.zeros((4, 4, 8, 8, 3), np.uint8), np.zeros((16, 3)),
                      np.repeat(np.eye(3)[None], 16, 0))


def test_plan_request_per_variant_and_route():
    route = RouteState()
    p = params(camera_ids=(6, 1, 2, 0), guidance_weight=1.5, noise_temperature=0.6)
    waiting = plan_request(_inputs(), route.view(0, 10.0), p, is_1_5=True)
    assert waiting.inputs.camera_ids == (0, 1, 2, 6) and waiting.inputs.route_text is None
    assert waiting.guidance.weight == 0.0 and waiting.guidance.noise_temperature == 0.6
    assert waiting.guidance_state.startswith("waiting for a route")
    route.update("Turn left in 50m", 0)
    on = plan_request(_inputs(), route.view(1 * S, 10.0), p, is_1_5=True)
    assert on.inputs.route_text == "Turn left in 50m" and on.guidance.weight == 1.5
    assert on.guidance_state == "on (weight 1.5)"
    off = plan_request(_inputs(), route.view(1 * S, 10.0), params(), is_1_5=True)
    assert off.guidance.weight == 0.0 and off.guidance_state == "off"
    r1 = plan_request(_inputs(), route.view(1 * S, 10.0), p, is_1_5=False)
    assert r1.guidance is None and r1.inputs.route_text is None and r1.inputs.camera_ids is None


def test_navigation_diagnostic():
    route = RouteState()
    route.update("Turn left in 50m", 0)
    p = params(route_max_age_s=5.0)
    p = p.replace(guidance_weight=1.5)
    ok = navigation_status(route.view(1 * S, 5.0), p, "alpamayo1_5", is_1_5=True)
    values = {kv.key: kv.value for kv in ok.values}
    assert ok.level == bytes([messages.DIAG_OK])
    assert values["variant"] == "alpamayo1_5" and values["camera_ids"] == "0,1,2,6"
    assert values["route"] == "Turn left in 50m" and values["route_age_s"] == "1.0"
    assert values["guidance"] == "on (weight 1.5)"
    assert values["cameras"] == ",".join(DEFAULT_CAMERAS)
    old = navigation_status(route.view(9 * S, 5.0), p, "alpamayo1_5", is_1_5=True)
    assert old.level == bytes([messages.DIAG_WARN]) and "route dropped" in old.message
    assert {kv.key: kv.value for kv in old.values}["guidance"].startswith("waiting")
