"""Alpamayo 1.5 inputs of the node: the route text, camera ids, guidance state. No ROS node.

`RouteState` holds the last `~/route` text (std_msgs/String, transient-local) and when it
arrived; a text older than `route_max_age_s` is dropped (reported, not used) until a new one
arrives; an empty string clears the route; a text the prompt cannot carry (special-token
markers) is rejected with the reason. `plan_request` turns the node's state into what one plan
gets: camera ids, the route text, and the guidance weight actually applied (guidance needs a
current route; an R1 model takes neither). `navigation_status` is the `/diagnostics` entry.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from alpamayo_core.inference.guidance import GuidanceConfig
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inputs.prompt import PromptLayout
from alpamayo_ros.node import messages
from alpamayo_ros.node.params import NodeParams

STATUS_NAME = "alpamayo: navigation"


@dataclass(frozen=True)
class RouteView:
    """The route as one plan sees it: `text` None unless current."""

    text: str | None
    age_s: float | None  # since received; None if nothing was received
    state: str  # none | current | expired | cleared | rejected: <why>


class RouteState:
    """Last route text and its receive time (node clock); thread-safe (executor + worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text: str | None = None
        self._received_ns: int | None = None
        self._state = "none"

    def update(self, text: str, now_ns: int) -> str:
        """Store a received text; returns the resulting state ("" clears the route)."""
        text = text.strip()
        state = "current" if text else "cleared"
        if text:
            try:
                PromptLayout(route_text=text)
            except ValueError as err:
                text, state = "", f"rejected: {err}"
        with self._lock:
            self._text, self._received_ns, self._state = text or None, now_ns, state
        return state

    def view(self, now_ns: int, max_age_s: float) -> RouteView:
        with self._lock:
            text, received_ns, state = self._text, self._received_ns, self._state
        if received_ns is None:
            return RouteView(None, None, "none")
        age_s = (now_ns - received_ns) * 1e-9
        if text is not None and age_s > max_age_s:
            return RouteView(None, age_s, "expired")
        return RouteView(text, age_s, state)


@dataclass(frozen=True)
class PlanRequest:
    """What one plan gets from the node's 1.5 state."""

    inputs: PlanInputs
    guidance: GuidanceConfig | None  # None: leave the planner as it is (R1)
    guidance_state: str


def guidance_state(route: RouteView, params: NodeParams, is_1_5: bool) -> tuple[float, str]:
    """(weight applied, state text) of the next plan: guidance needs a current route."""
    if not is_1_5:
        return 0.0, "R1 model: no route, guidance or camera headers"
    if params.guidance_weight == 0:
        return 0.0, "off"
    if route.text is None:
        return 0.0, f"waiting for a route (weight {params.guidance_weight:g})"
    return params.guidance_weight, f"on (weight {params.guidance_weight:g})"


def plan_request(inputs: PlanInputs, route: RouteView, params: NodeParams,
                 is_1_5: bool) -> PlanRequest:
    """Camera ids (sorted) and the current route for 1.5 models, and the guidance to apply."""
    weight, state = guidance_state(route, params, is_1_5)
    if not is_1_5:
        return PlanRequest(inputs, None, state)
    ids = tuple(i for i, _ in params.cameras_by_id)
    inputs = dataclasses.replace(inputs, camera_ids=ids, route_text=route.text)
    return PlanRequest(inputs, GuidanceConfig(weight, params.noise_temperature), state)


def navigation_status(route: RouteView, params: NodeParams, variant: str, is_1_5: bool):
    """`/diagnostics` entry: variant, camera ids, route text and age, and the guidance state
    the next plan gets. WARN when a route was dropped for age or rejected; OK otherwise.
    """
    _, guidance = guidance_state(route, params, is_1_5)
    values = {
        "variant": variant,
        "camera_ids": ",".join(str(i) for i, _ in params.cameras_by_id),
        "cameras": ",".join(name for _, name in params.cameras_by_id),
        "route": route.text or "", "route_state": route.state,
        "route_age_s": "" if route.age_s is None else f"{route.age_s:.1f}",
        "route_max_age_s": params.route_max_age_s, "guidance": guidance,
        "noise_temperature": params.noise_temperature,
    }
    if route.state == "expired":
        return messages.diagnostic_status(
            STATUS_NAME, messages.DIAG_WARN,
            f"route dropped: {route.age_s:.1f} s old (route_max_age_s "
            f"{params.route_max_age_s:g}); publish a new one on ~/route", values)
    if route.state.startswith("rejected"):
        return messages.diagnostic_status(STATUS_NAME, messages.DIAG_WARN,
                                          f"route {route.state}", values)
    message = f"route {route.state}, guidance {guidance}"
    return messages.diagnostic_status(STATUS_NAME, messages.DIAG_OK, message, values)
