"""A fleet evaluation end to end: bags -> engine -> per-bag folders, fleet.json, report.html.

Output folder layout:
    bags/<name>/   each bag's evaluation, exactly what `alpamayo-eval BAG` writes
    fleet.json     meta, metrics (per bag / scene / overall), timing, worst moments, reasoning
    report.html    the self-contained report (`report_html`)
A comparison writes one such folder per side (`a/`, `b/`) plus compare.json and a report.html
with both side by side.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from alpamayo_ros.tools.fleet import compare, report_html
from alpamayo_ros.tools.fleet.aggregate import AggregateOptions, aggregate
from alpamayo_ros.tools.fleet.bag_set import BagEntry
from alpamayo_ros.tools.fleet.engines import RayOptions, run_ray, run_sequential
from alpamayo_ros.tools.fleet.worker import BagRecord, WorkerSpec

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetOptions:
    """How to run: `ray` None = sequential in this process; what to aggregate; progress bar."""

    ray: RayOptions | None = None
    aggregate: AggregateOptions = field(default_factory=AggregateOptions)
    progress: bool = True


@dataclass(frozen=True)
class FleetResult:
    """Where the outputs are, the fleet.json content and the per-bag records."""

    out_dir: Path
    fleet_json: Path
    report_html: Path
    data: dict
    records: tuple[BagRecord, ...]


def evaluate_fleet(entries: Sequence[BagEntry], out_dir: Path | str, spec: WorkerSpec,
                   options: FleetOptions, label: str = "") -> FleetResult:
    """Evaluate every bag, aggregate, write fleet.json and report.html into `out_dir` (new)."""
    out_dir = Path(out_dir)
    bags_dir = out_dir / "bags"
    if bags_dir.exists():
        raise FileExistsError(f"{bags_dir} exists; choose a new output folder")
    bags_dir.mkdir(parents=True)
    if spec.options.params.seed < 0:
        LOG.warning("seed %d: every plan draws a new seed, so no two runs (or engines) agree",
                    spec.options.params.seed)
    start = time.perf_counter()
    records = _run(entries, bags_dir, spec, options, label)
    data = {"meta": _meta(records, spec, options, label), **aggregate(records, options.aggregate)}
    data["timing"]["wall_s"] = time.perf_counter() - start
    fleet_json = _write_json(out_dir / "fleet.json", data)
    report = report_html.write_report(out_dir / "report.html", data)
    return FleetResult(out_dir, fleet_json, report, data, tuple(records))


def compare_fleets(entries: Sequence[BagEntry], out_dir: Path | str, spec_a: WorkerSpec,
                   spec_b: WorkerSpec, options: FleetOptions) -> tuple[Path, dict]:
    """Both runs over the same bags (`a/`, `b/`), then compare.json and the side-by-side
    report.html; returns the report path and the comparison."""
    out_dir = Path(out_dir)
    run_a = evaluate_fleet(entries, out_dir / "a", spec_a, options, label="A")
    run_b = evaluate_fleet(entries, out_dir / "b", spec_b, options, label="B")
    data = {"meta": {"a": run_a.data["meta"], "b": run_b.data["meta"]},
            "side_by_side": compare.side_by_side(run_a.data["metrics"], run_b.data["metrics"]),
            "differences": compare.largest_differences(run_a.records, run_b.records,
                                                       options.aggregate),
            "failed": {"a": run_a.data["metrics"]["failed"],
                       "b": run_b.data["metrics"]["failed"]}}
    _write_json(out_dir / "compare.json", data)
    return report_html.write_comparison(out_dir / "report.html", data), data


def _run(entries: Sequence[BagEntry], bags_dir: Path, spec: WorkerSpec,
         options: FleetOptions, label: str) -> list[BagRecord]:
    desc = f"bags {label}".strip()
    with tqdm(total=len(entries), unit="bag", desc=desc, disable=not options.progress) as bar:
        failed = 0

        def on_done(record: BagRecord) -> None:
            nonlocal failed
            failed += not record.ok
            if not record.ok:
                LOG.warning("bag %s failed: %s", record.entry.name, record.error)
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()

        if options.ray is None:
            return run_sequential(entries, bags_dir, spec, on_done)
        return run_ray(entries, bags_dir, spec, options.ray, on_done)


def _meta(records: Sequence[BagRecord], spec: WorkerSpec, options: FleetOptions,
          label: str) -> dict:
    p = spec.options.params
    engine = "sequential" if options.ray is None else f"ray ({options.ray.address})"
    return {"label": label, "engine": engine, "threads_per_worker": spec.threads,
            "workers": len({r.worker for r in records if r.worker}),
            "model_dir": p.model_dir, "model_id": next((r.model_id for r in records if r.ok), ""),
            "backend": p.backend, "plan_rate_hz": p.plan_rate_hz,
            "num_traj_samples": p.num_traj_samples, "num_flow_steps": p.num_flow_steps,
            "temperature": p.temperature, "seed": p.seed,
            "max_generation_tokens": p.max_generation_tokens,
            "horizons_s": list(options.aggregate.horizons_s),
            "rank_horizon_s": options.aggregate.rank_horizon_s,
            "num_bags": len(records), "num_failed": sum(not r.ok for r in records)}


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path
