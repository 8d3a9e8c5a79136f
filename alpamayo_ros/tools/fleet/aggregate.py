"""Fleet tables from per-bag records: per bag, per scene tag and overall.

Plans are pooled: a scene's (or the fleet's) minADE at a horizon is the mean over every scored
plan of its bags (`metrics.summarize` over the pooled rows, so a one-bag group equals that bag's
metrics.json summary). Status counts add up over planning ticks. Latency percentiles (ms, wall
clock, the plan's "total" stage) are over plans with trajectories. Failed bags are listed with
their error and contribute nothing else.

The result is JSON-ready: "metrics" holds what the model computed (identical whichever engine
ran it), "timing" what the clock measured, "moments" the worst plans, "reasoning" samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.tools import metrics
from alpamayo_ros.tools.fleet.plan_log import PlanNote
from alpamayo_ros.tools.fleet.worker import BagRecord

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class AggregateOptions:
    """Horizons scored, the horizon that ranks moments, how many worst moments and samples."""

    horizons_s: tuple[float, ...] = metrics.HORIZONS_S
    rank_horizon_s: float = 3.0
    worst_n: int = 10
    reasoning_samples: int = 5

    def __post_init__(self) -> None:
        if self.rank_horizon_s not in self.horizons_s:
            raise ValueError(f"AggregateOptions.rank_horizon_s: {self.rank_horizon_s} is not one "
                             f"of the horizons {self.horizons_s}")
        if self.worst_n < 0 or self.reasoning_samples < 0:
            raise ValueError("AggregateOptions.worst_n, reasoning_samples: must be >= 0")


def aggregate(records: Sequence[BagRecord], options: AggregateOptions) -> dict:
    """{"metrics", "timing", "moments", "reasoning"} over the records (see module doc)."""
    ok = [r for r in records if r.ok]
    scenes = sorted({r.entry.scene for r in records})
    groups = {"overall": ok, **{f"scene:{s}": [r for r in ok if r.entry.scene == s]
                                for s in scenes}}
    return {
        "metrics": {
            "overall": _group_metrics(ok, options),
            "scenes": {s: _group_metrics(groups[f"scene:{s}"], options) for s in scenes},
            "bags": {r.entry.name: _bag_metrics(r, options) for r in records},
            "failed": {r.entry.name: r.error for r in records if not r.ok},
        },
        "timing": {
            "overall": latency_percentiles(ok),
            "scenes": {s: latency_percentiles(groups[f"scene:{s}"]) for s in scenes},
            "bags": {r.entry.name: {**latency_percentiles([r]), "seconds": r.seconds,
                                    "worker": r.worker, "model_loads": r.model_loads}
                     for r in records},
        },
        "moments": worst_moments(ok, options.rank_horizon_s, options.worst_n),
        "reasoning": reasoning_samples(ok, options.reasoning_samples),
    }


def _group_metrics(records: Sequence[BagRecord], options: AggregateOptions) -> dict:
    rows = [row for r in records for row in r.rows]
    counts: Counter[str] = Counter()
    for r in records:
        counts.update(r.status_counts)
    return {"num_bags": len(records), "status_counts": dict(sorted(counts.items())),
            "summary": metrics.summarize(rows, options.horizons_s)}


def _bag_metrics(record: BagRecord, options: AggregateOptions) -> dict:
    base = {"bag": str(record.entry.path), "scene": record.entry.scene, "error": record.error}
    if not record.ok:
        return base
    return {**base, "status_counts": dict(sorted(record.status_counts.items())),
            "summary": metrics.summarize(record.rows, options.horizons_s)}


def latency_percentiles(records: Sequence[BagRecord]) -> dict:
    """{"num_plans", "p50_ms", "p90_ms", "p99_ms", "max_ms"} over the plans (None if none)."""
    values = np.array([n.latency_ms for r in records for n in r.notes
                       if math.isfinite(n.latency_ms)])
    out: dict = {"num_plans": int(values.size)}
    for p in PERCENTILES:
        out[f"p{p}_ms"] = float(np.percentile(values, p)) if values.size else None
    out["max_ms"] = float(values.max()) if values.size else None
    return out


def worst_moments(records: Sequence[BagRecord], horizon_s: float, n: int) -> list[dict]:
    """The `n` plans with the largest ADE (m) of the selected sample at `horizon_s`."""
    scored = []
    for r in records:
        for index, (row, note) in enumerate(zip(r.rows, r.notes, strict=True)):
            score = row.model.get(horizon_s)
            if score is not None:
                scored.append((score.ade_m, r, index, row, note))
    scored.sort(key=lambda item: (-item[0], item[1].entry.name, item[2]))
    return [moment(r, index, row, note, horizon_s) for _, r, index, row, note in scored[:n]]


def moment(record: BagRecord, index: int, row: metrics.PlanMetrics, note: PlanNote,
           horizon_s: float) -> dict:
    """One plan as the report shows it: where, what the model said, its errors (m)."""
    model, cv = row.model.get(horizon_s), row.constant_velocity.get(horizon_s)
    return {
        "bag": record.entry.name, "scene": record.entry.scene, "plan_index": index,
        "t0_ns": row.t0_ns, "status": row.status, "horizon_s": horizon_s,
        "ade_m": model.ade_m if model else None, "fde_m": model.fde_m if model else None,
        "min_ade_m": model.min_ade_m if model else None,
        "cv_ade_m": cv.ade_m if cv else None, "cv_fde_m": cv.fde_m if cv else None,
        "latency_ms": note.latency_ms, "reasoning": note.reasoning,
        "meta_action": note.meta_action,
        "picture": str(note.picture) if note.picture else None,
    }


def reasoning_samples(records: Sequence[BagRecord], n: int) -> list[dict]:
    """Up to `n` distinct non-empty reasoning texts, in bag order, with where they were said."""
    seen, out = set(), []
    for r in records:
        for note in r.notes:
            text = note.reasoning.strip()
            if text and text not in seen and len(out) < n:
                seen.add(text)
                out.append({"bag": r.entry.name, "t0_ns": note.t0_ns, "reasoning": text,
                            "meta_action": note.meta_action})
    return out
