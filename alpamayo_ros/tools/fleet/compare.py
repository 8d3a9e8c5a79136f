"""Two runs over the same bags (two models, or two parameter sets): side by side, and the
moments where they differ most.

Plans are matched by (bag, t0): the same reference frame planned by both runs. The difference
of a moment is ADE(B) - ADE(A) (m) of the selected samples at the ranking horizon; the list is
ordered by its magnitude. Plans that only one run scored (e.g. a status that differs) are
counted, not ranked.
"""

from __future__ import annotations

from collections.abc import Sequence

from alpamayo_ros.tools.fleet.aggregate import AggregateOptions, moment
from alpamayo_ros.tools.fleet.worker import BagRecord


def side_by_side(metrics_a: dict, metrics_b: dict) -> dict:
    """{"overall": {"a", "b"}, "scenes": {scene: {"a", "b"}}} of two aggregates' "metrics"."""
    scenes = sorted(set(metrics_a["scenes"]) | set(metrics_b["scenes"]))
    return {"overall": {"a": metrics_a["overall"], "b": metrics_b["overall"]},
            "scenes": {s: {"a": metrics_a["scenes"].get(s), "b": metrics_b["scenes"].get(s)}
                       for s in scenes}}


def largest_differences(records_a: Sequence[BagRecord], records_b: Sequence[BagRecord],
                        options: AggregateOptions) -> dict:
    """{"moments": [{"a", "b", "delta_ade_m"}...] (largest |delta| first), "num_matched",
    "num_unmatched"} over the plans both runs scored at the ranking horizon."""
    h = options.rank_horizon_s
    plans_b = {(r.entry.name, row.t0_ns): (r, i, row, r.notes[i])
               for r in records_b if r.ok for i, row in enumerate(r.rows)}
    pairs, unmatched = [], 0
    for r in (r for r in records_a if r.ok):
        for i, row in enumerate(r.rows):
            other = plans_b.get((r.entry.name, row.t0_ns))
            score_a = row.model.get(h)
            score_b = other[2].model.get(h) if other else None
            if score_a is None or score_b is None:
                unmatched += 1
                continue
            pairs.append((score_b.ade_m - score_a.ade_m, (r, i, row, r.notes[i]), other))
    pairs.sort(key=lambda p: (-abs(p[0]), p[1][0].entry.name, p[1][1]))
    return {"num_matched": len(pairs), "num_unmatched": unmatched, "horizon_s": h,
            "moments": [{"delta_ade_m": delta, "a": moment(*a, h), "b": moment(*b, h)}
                        for delta, a, b in pairs[:options.worst_n]]}
