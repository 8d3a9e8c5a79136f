"""The report's plots, drawn with matplotlib (Agg) and returned as PNG data URIs.

Per scene: the model's minADE at each horizon next to the constant-velocity baseline's ADE;
and the plan statuses per scene.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # (after choosing the headless backend)

STATUS_COLORS = {"OK": "#2e7d32", "DEGRADED": "#f9a825", "INVALID": "#c62828"}


def to_data_uri(fig) -> str:
    """The figure as a base64 PNG data URI (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def scene_errors(scenes: dict, horizons_s: list[float]) -> str:
    """One panel per scene: model minADE vs constant-velocity ADE (m) per horizon."""
    names = sorted(scenes) or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 3), squeeze=False)
    width, xs = 0.38, range(len(horizons_s))
    for ax, name in zip(axes[0], names, strict=True):
        summary = (scenes.get(name) or {}).get("summary")
        model = [_value(summary, "model", h, "min_ade_m") for h in horizons_s]
        cv = [_value(summary, "constant_velocity", h, "ade_m") for h in horizons_s]
        ax.bar([x - width / 2 for x in xs], model, width, label="model minADE", color="#1565c0")
        ax.bar([x + width / 2 for x in xs], cv, width, label="const. velocity ADE",
               color="#9e9e9e")
        ax.set_xticks(list(xs), [f"{h:g} s" for h in horizons_s])
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("m")
    axes[0][0].legend(fontsize=8)
    return to_data_uri(fig)


def scene_statuses(scenes: dict) -> str:
    """Stacked bars: OK / DEGRADED / INVALID planning ticks per scene."""
    names = sorted(scenes)
    fig, ax = plt.subplots(figsize=(max(3.0, 1.4 * len(names) + 1), 3))
    bottom = [0] * len(names)
    for status, color in STATUS_COLORS.items():
        counts = [scenes[n]["status_counts"].get(status, 0) for n in names]
        ax.bar(names, counts, bottom=bottom, color=color, label=status)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_ylabel("planning ticks")
    ax.legend(fontsize=8)
    return to_data_uri(fig)


def _value(summary: dict | None, method: str, h: float, name: str) -> float:
    if summary is None:
        return math.nan
    value = summary[method][f"{h:g}s"][name]
    return math.nan if value is None else value
