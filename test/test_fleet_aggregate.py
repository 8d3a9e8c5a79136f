"""Fleet tables from hand-made bag records: pooling, groups, failures, ranking, comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpamayo_ros.tools import metrics
from alpamayo_ros.tools.fleet.aggregate import AggregateOptions, aggregate, latency_percentiles
from alpamayo_ros.tools.fleet.bag_set import BagEntry
from alpamayo_ros.tools.fleet.compare import largest_differences
from alpamayo_ros.tools.fleet.plan_log import PlanNote
from alpamayo_ros.tools.fleet.worker import BagRecord

OPTIONS = AggregateOptions(horizons_s=(1.0, 3.0), rank_horizon_s=1.0, worst_n=2,
                           reasoning_samples=2)


def _record(name: str, scene: str, ades_m: list[float | None], latency_ms: float = 100.0,
            reasoning: str = "") -> BagRecord:
    rows, notes = [], []
    for i, ade in enumerate(ades_m):
        score = None if ade is None else metrics.HorizonScore(ade / 2, ade, ade, 2 * ade)
        cv = metrics.HorizonScore(1.0, 2.0, 1.0, 2.0)
        rows.append(metrics.PlanMetrics(t0_ns=i * 10**9, status=0, model={1.0: score, 3.0: None},
                                        constant_velocity={1.0: cv, 3.0: None}))
        notes.append(PlanNote(i * 10**9, latency_ms + i, reasoning, "keep lane", None))
    return BagRecord(BagEntry(Path(name), name, scene), Path("out") / name, rows=tuple(rows),
                     notes=tuple(notes), status_counts={"OK": len(rows), "INVALID": 1},
                     worker="host:1", model_loads=1)


RECORDS = [_record("a", "city", [1.0, 3.0], reasoning="slow down"),
           _record("b", "city", [2.0, None], reasoning="slow down"),
           _record("c", "highway", [5.0], latency_ms=300.0, reasoning="merge"),
           BagRecord(BagEntry(Path("d"), "d", "highway"), Path("out/d"), error="OSError: bad")]


def test_groups_pool_the_plans_of_their_bags():
    data = aggregate(RECORDS, OPTIONS)["metrics"]
    city = data["scenes"]["city"]
    assert city["num_bags"] == 2 and city["status_counts"] == {"INVALID": 2, "OK": 4}
    assert city["summary"]["model"]["1s"]["ade_m"] == pytest.approx((1 + 3 + 2) / 3)
    assert city["summary"]["model"]["1s"]["num_excluded"] == 1
    assert data["overall"]["summary"]["model"]["1s"]["num_scored"] == 4
    assert data["overall"]["num_bags"] == 3, "the failed bag adds nothing"
    assert data["scenes"]["highway"]["num_bags"] == 1
    assert data["bags"]["a"]["summary"] == metrics.summarize(RECORDS[0].rows, (1.0, 3.0))
    assert data["failed"] == {"d": "OSError: bad"} and data["bags"]["d"]["error"] == "OSError: bad"
    assert data["overall"]["summary"]["constant_velocity"]["3s"]["num_scored"] == 0


def test_worst_moments_latency_and_reasoning_samples():
    data = aggregate(RECORDS, OPTIONS)
    assert [(m["bag"], m["plan_index"], m["ade_m"]) for m in data["moments"]] == [
        ("c", 0, 5.0), ("a", 1, 3.0)]
    assert data["moments"][0]["cv_ade_m"] == 1.0 and data["moments"][0]["meta_action"]
    assert [r["reasoning"] for r in data["reasoning"]] == ["slow down", "merge"]
    timing = latency_percentiles(RECORDS[:2])
    assert timing["num_plans"] == 4 and timing["max_ms"] == 101.0
    assert timing["p50_ms"] == pytest.approx(100.5)
    assert latency_percentiles(RECORDS[3:])["p90_ms"] is None


def test_largest_differences_match_plans_by_bag_and_t0():
    other = [_record("a", "city", [1.5, 1.0]), _record("b", "city", [2.0, 4.0]),
             _record("c", "highway", [])]
    diff = largest_differences(RECORDS, other, OPTIONS)
    assert diff["num_matched"] == 3 and diff["num_unmatched"] == 2
    assert [(m["a"]["bag"], m["a"]["t0_ns"], m["delta_ade_m"]) for m in diff["moments"]] == [
        ("a", 10**9, -2.0), ("a", 0, 0.5)]
