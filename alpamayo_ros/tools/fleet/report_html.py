"""The fleet report: one self-contained HTML file (no server, no network, no script).

Plots and the worst moments' pictures (the per-plan PNG `alpamayo-eval` writes: camera mosaic,
bird's-eye view, errors, reasoning) are embedded as data URIs, the pictures scaled down to
`PICTURE_WIDTH_PX` and linked to the full-size files by relative paths (those links work while
the report stays beside its `bags/` folders).
"""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path

import jinja2
from PIL import Image

from alpamayo_ros.tools.fleet import report_plots, report_template

PICTURE_WIDTH_PX = 640
STATUSES = ("OK", "DEGRADED", "INVALID")
LATENCY_FIELDS = ("p50_ms", "p90_ms", "p99_ms", "max_ms")
_STATUS_BY_LEVEL = dict(enumerate(STATUSES))


def fmt(value: float | None, digits: int = 3) -> str:
    """A number as the report prints it ("-" for none or not finite)."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(fmt=fmt, hkey=lambda h: f"{h:g}s", style=report_template.STYLE,
                       status_name=lambda level: _STATUS_BY_LEVEL.get(level, str(level)),
                       diff=_diff)
    return env


def _diff(a: dict | None, b: dict | None, name: str) -> float | None:
    if not a or not b or a[name] is None or b[name] is None:
        return None
    return b[name] - a[name]


def picture_card(picture: str | None, report_dir: Path) -> tuple[str | None, str | None]:
    """(embedded JPEG data URI scaled to PICTURE_WIDTH_PX, relative link) of a plan picture."""
    if not picture or not Path(picture).is_file():
        return None, None
    with Image.open(picture) as image:
        rgb = image.convert("RGB")
        height = round(rgb.height * PICTURE_WIDTH_PX / rgb.width)
        small = rgb.resize((PICTURE_WIDTH_PX, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return uri, Path(os.path.relpath(picture, report_dir)).as_posix()


def write_report(path: Path, data: dict) -> Path:
    """The report of one fleet run (`data` = fleet.json's content)."""
    metrics, timing = data["metrics"], data["timing"]
    groups = [("overall", metrics["overall"], timing["overall"])] + [
        (f"scene:{s}", g, timing["scenes"][s]) for s, g in metrics["scenes"].items()]
    plots = {"errors": report_plots.scene_errors(metrics["scenes"], data["meta"]["horizons_s"]),
             "statuses": report_plots.scene_statuses(metrics["scenes"])}
    cards = [(mo, *picture_card(mo["picture"], path.parent)) for mo in data["moments"]]
    html = _environment().from_string(report_template.FLEET).render(
        meta=data["meta"], metrics=metrics, timing=timing, groups=groups, plots=plots,
        moments=data["moments"], moment_cards=cards, reasoning=data["reasoning"],
        statuses=STATUSES, latency_fields=LATENCY_FIELDS)
    path.write_text(html, encoding="utf-8")
    return path


def write_comparison(path: Path, data: dict) -> Path:
    """The side-by-side report of two runs (`data` = compare.json's content)."""
    side = data["side_by_side"]
    groups = [("overall", side["overall"])] + [(f"scene:{s}", pair)
                                                for s, pair in side["scenes"].items()]
    cards = [(d, picture_card(d["a"]["picture"], path.parent),
              picture_card(d["b"]["picture"], path.parent))
             for d in data["differences"]["moments"]]
    html = _environment().from_string(report_template.COMPARISON).render(
        meta=data["meta"], groups=groups, horizons=data["meta"]["a"]["horizons_s"],
        differences=data["differences"], diff_cards=cards)
    path.write_text(html, encoding="utf-8")
    return path
