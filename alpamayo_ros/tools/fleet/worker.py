"""A fleet worker: loads the model once, then evaluates bag after bag exactly as `alpamayo-eval`.

The same class runs in-process (sequential engine) and as a Ray actor (one per worker). Each
bag goes through `evaluate.evaluate_bag` with the worker's planner (its frame cache cleared per
bag), and comes back as a `BagRecord`: plain data (per-plan metrics, statuses, latency,
reasoning, picture paths) that pickles across machines. A bag that fails is a record with its
error; it never ends the worker.

No ROS graph is involved: evaluation deserialises bag messages with rclpy's serializer without
`rclpy.init` (no DDS participant), so a worker needs no ROS domain of its own.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from alpamayo_ros.tools import metrics
from alpamayo_ros.tools.evaluate import EvalOptions, evaluate_bag
from alpamayo_ros.tools.fleet.bag_set import BagEntry
from alpamayo_ros.tools.fleet.plan_log import PlanNote, read_plan_notes

LOG = logging.getLogger(__name__)

#: Model loads in this process (a worker loads once; a per-bag reload would show here).
_MODEL_LOADS = 0


@dataclass(frozen=True)
class BagRecord:
    """What one bag's evaluation gave (or why it failed).

    Attributes:
        entry: the bag.
        out_dir: its evaluation folder (plans bag, metrics.json/csv, frames/).
        error: None on success, else the exception line (the traceback is logged).
        rows: per-plan metrics (plans with trajectories), in plan order.
        notes: per-plan latency, reasoning and picture, aligned with `rows`.
        status_counts: OK / DEGRADED / INVALID counts over every planning tick.
        model_id: the loaded model's id.
        worker: "host:pid" of the process that evaluated it.
        model_loads: model loads in that process when the bag finished (1 = loaded once).
        seconds: wall time of this bag's evaluation.
    """

    entry: BagEntry
    out_dir: Path
    error: str | None = None
    rows: tuple[metrics.PlanMetrics, ...] = ()
    notes: tuple[PlanNote, ...] = ()
    status_counts: dict[str, int] = field(default_factory=dict)
    model_id: str = ""
    worker: str = ""
    model_loads: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker of a run does the same way.

    Attributes:
        options: the evaluation options (node parameters, pictures, max plans).
        threads: torch intra-op threads per worker (fixed, so every engine computes alike).
    """

    options: EvalOptions
    threads: int = 1

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"WorkerSpec.threads: must be >= 1, got {self.threads}")


class FleetWorker:
    """Holds one loaded planner and evaluates bags with it."""

    def __init__(self, spec: WorkerSpec) -> None:
        global _MODEL_LOADS
        import torch

        from alpamayo_ros.node.pipeline import load_planner

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        start = time.perf_counter()
        self.planner = load_planner(spec.options.params)
        _MODEL_LOADS += 1
        self.load_seconds = time.perf_counter() - start
        LOG.info("worker %s loaded %s in %.1f s (load %d in this process)", self.worker,
                 self.planner.model_id, self.load_seconds, _MODEL_LOADS)

    def evaluate(self, entry: BagEntry, out_dir: Path | str) -> BagRecord:
        """Evaluate one bag into `out_dir`; a failure is returned as a record, never raised."""
        out_dir, start = Path(out_dir), time.perf_counter()
        common = {"entry": entry, "out_dir": out_dir, "model_id": self.planner.model_id,
                  "worker": self.worker}
        try:
            result = evaluate_bag(entry.path, out_dir, self.spec.options, progress=False,
                                  planner=self.planner)
            rows = metrics.read_json_rows(result.metrics_json)
            notes = read_plan_notes(result.plans_bag, out_dir, self.spec.options.namespace,
                                    [row.t0_ns for row in rows])
        except Exception as exc:  # a bad bag is data for the report, not the end of the run
            LOG.error("bag %s failed:\n%s", entry.path, traceback.format_exc())
            return BagRecord(**common, error=f"{type(exc).__name__}: {exc}",
                             model_loads=_MODEL_LOADS, seconds=time.perf_counter() - start)
        return BagRecord(**common, rows=tuple(rows), notes=tuple(notes),
                         status_counts=dict(result.status_counts), model_loads=_MODEL_LOADS,
                         seconds=time.perf_counter() - start)
