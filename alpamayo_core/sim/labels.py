"""Reasoning labels of synthetic drives: a chain-of-causation sentence and a meta-action per
scene and moment, and the keyword rule that says whether a reasoning names the scene's cause.

A label is written from what the scene holds at t0 (scene time) and what the ego does next:

    straight              the road is straight and clear -> keep lane and speed
    curve_left/right      the curve ahead (or the one being driven) -> steer along it
    lead_vehicle_braking  the lead vehicle: ahead (keep the gap), braking (slow down),
                          slowed down (follow it)
    stop                  the stopped traffic ahead (a stopped car): slow down, brake, stay stopped

Keyword rule (`names_cause`): a reasoning names its scene's cause when it contains every
keyword of `CAUSE_KEYWORDS[kind]` as a whole word or phrase, case-insensitively. Each label
written here passes the rule for its own kind, and no label of another kind contains all of
them (checked by the tests), so the rule tells the causes apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from alpamayo_core.sim.drive import SyntheticDrive

#: Keywords a reasoning must contain to name the cause of each scene kind.
CAUSE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "straight": ("straight", "clear"),
    "curve_left": ("curve", "left"),
    "curve_right": ("curve", "right"),
    "lead_vehicle_braking": ("lead vehicle",),
    "stop": ("stopped traffic",),
}
#: A curve starting within this distance ahead (m) is named (and visible in the cameras).
CURVE_LOOKAHEAD_M = 90.0
#: Below this speed (m/s) the ego is at a standstill.
STANDSTILL_MPS = 0.1


@dataclass(frozen=True)
class ReasoningLabel:
    """What the model should say at one moment: the chain of causation and the meta-action."""

    cot: str
    meta_action: str

    def __post_init__(self) -> None:
        if not self.cot or not self.meta_action:
            raise ValueError("ReasoningLabel.cot and meta_action: must not be empty")


def names_cause(kind: str, reasoning: str) -> bool:
    """True when `reasoning` contains every keyword of `CAUSE_KEYWORDS[kind]`."""
    if kind not in CAUSE_KEYWORDS:
        raise ValueError(f"kind: must be one of {sorted(CAUSE_KEYWORDS)}, got {kind!r}")
    text = reasoning.lower()
    return all(re.search(rf"\b{re.escape(word)}\b", text) for word in CAUSE_KEYWORDS[kind])


def reasoning_label(drive: SyntheticDrive, t0_ns: int) -> ReasoningLabel:
    """The label of `drive` at plan time `t0_ns`."""
    kind = drive.config.kind
    t_s = float(drive.to_scene_s(t0_ns))
    if kind in ("curve_left", "curve_right"):
        return _curve_label(drive, t_s, kind.split("_")[1])
    if kind == "lead_vehicle_braking":
        return _lead_label(drive, t_s)
    if kind == "stop":
        return _stop_label(drive, t_s)
    return _STRAIGHT


_STRAIGHT = ReasoningLabel("The road ahead is straight and clear, so keep the lane and the "
                           "current speed.", "Keep lane, keep speed")


def _curve_label(drive: SyntheticDrive, t_s: float, side: str) -> ReasoningLabel:
    ahead_m = drive.config.curve_start_m - float(drive.ego_speed.distance(t_s))
    if ahead_m > CURVE_LOOKAHEAD_M:
        return _STRAIGHT
    if ahead_m > 0.0:
        return ReasoningLabel(f"The road curves to the {side} ahead, so steer {side} to follow "
                              "the curve.", f"Turn {side}, keep speed")
    return ReasoningLabel(f"We are in a curve to the {side}, so keep steering {side} along "
                          "the curve.", f"Turn {side}, keep speed")


def _lead_label(drive: SyntheticDrive, t_s: float) -> ReasoningLabel:
    lead = drive.lead_speed
    if t_s < lead.t_start_s:
        return ReasoningLabel("A lead vehicle is ahead in our lane, so keep a safe following "
                              "distance.", "Keep lane, keep speed")
    if t_s < lead.t_start_s + lead.duration_s:
        return ReasoningLabel("The lead vehicle ahead is braking, so slow down to keep a safe "
                              "gap.", "Slow down")
    return ReasoningLabel("The lead vehicle ahead has slowed down, so follow it at its "
                          "speed.", "Keep lane, follow")


def _stop_label(drive: SyntheticDrive, t_s: float) -> ReasoningLabel:
    ramp = drive.ego_speed
    if float(np.asarray(ramp.speed(t_s))) < STANDSTILL_MPS:
        return ReasoningLabel("We wait behind the stopped traffic ahead, so stay stopped.",
                              "Stay stopped")
    if t_s < ramp.t_start_s:
        return ReasoningLabel("There is stopped traffic ahead in our lane, so prepare to slow "
                              "down.", "Keep lane, keep speed")
    return ReasoningLabel("There is stopped traffic ahead in our lane, so brake to stop behind "
                          "it.", "Slow down, stop")
