"""Running fleet workers: one after another in this process, or as Ray actors.

Sequential (the default): one `FleetWorker` in this process evaluates the bags in order.

Ray: one actor per worker (each loads the model once, `num_cpus` = threads per worker); a bag
goes to whichever actor is free next (`ray.wait` on the bags in flight). A bag that fails comes
back as a record with its error; an actor that dies (e.g. killed for memory) fails only the bag
it held and leaves the pool. `RayOptions.address`: "auto" starts a private local Ray instance
sized to this machine (loopback only, no dashboard) and shuts it down at the end; anything else
is a cluster address to join (`ray://head:10001` or `head:6379`); the cluster stays up.

Both engines return the records in the order of the bags, so aggregates do not depend on
which worker finished first. Every engine reports each finished bag to `on_done` (progress).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alpamayo_ros.tools.fleet.bag_set import BagEntry
from alpamayo_ros.tools.fleet.worker import BagRecord, FleetWorker, WorkerSpec

LOG = logging.getLogger(__name__)

OnDone = Callable[[BagRecord], None]
#: Environment of every Ray worker process: no DDS discovery beyond this host, if ever started.
WORKER_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run on Ray.

    Attributes:
        address: "auto" = a new local instance on this machine; else a cluster to join.
        workers: actors (0 = as many as the instance's CPUs / threads per worker allow).
        gpus_per_worker: GPUs reserved per actor (0 on CPU; 1 with `device: cuda`).
    """

    address: str = "auto"
    workers: int = 0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("RayOptions.address: 'auto' or a cluster address, got ''")
        if self.workers < 0:
            raise ValueError(f"RayOptions.workers: must be >= 0, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"RayOptions.gpus_per_worker: must be >= 0, got "
                             f"{self.gpus_per_worker}")


def run_sequential(entries: Sequence[BagEntry], out_root: Path, spec: WorkerSpec,
                   on_done: OnDone) -> list[BagRecord]:
    """Every bag in this process, in order, with one model load."""
    worker = FleetWorker(spec)
    records = []
    for entry in entries:
        records.append(worker.evaluate(entry, out_root / entry.name))
        on_done(records[-1])
    return records


def run_ray(entries: Sequence[BagEntry], out_root: Path, spec: WorkerSpec, options: RayOptions,
            on_done: OnDone) -> list[BagRecord]:
    """Every bag on Ray actors (one model load each); records in the order of `entries`."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--ray needs Ray: pip install '.[fleet]' (ray==2.58.0)") from exc

    started = _init_ray(options, spec.threads)
    try:
        actors = _start_actors(ray, spec, options)
        by_name = _schedule(ray, actors, entries, out_root, on_done)
    finally:
        if started:
            ray.shutdown()
    return [by_name[entry.name] for entry in entries]


def _init_ray(options: RayOptions, threads: int) -> bool:
    """Connect to Ray; True when this call started a local instance (to shut down after)."""
    import ray

    runtime_env = {"env_vars": {**WORKER_ENV, "OMP_NUM_THREADS": str(threads)}}
    if options.address != "auto":
        ray.init(address=options.address, runtime_env=runtime_env, log_to_driver=False)
        return False
    cpus = max(options.workers * threads, 1) if options.workers else os.cpu_count() or 1
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", runtime_env=runtime_env, log_to_driver=False)
    LOG.info("started a local Ray instance with %d CPUs", cpus)
    return True


def _start_actors(ray, spec: WorkerSpec, options: RayOptions) -> list:
    workers = options.workers or max(int(ray.cluster_resources().get("CPU", 1)) // spec.threads,
                                     1)
    actor_class = ray.remote(num_cpus=spec.threads, num_gpus=options.gpus_per_worker,
                             max_restarts=0)(FleetWorker)
    LOG.info("starting %d Ray workers", workers)
    return [actor_class.remote(spec) for _ in range(workers)]


def _schedule(ray, actors: list, entries: Sequence[BagEntry], out_root: Path,
              on_done: OnDone) -> dict[str, BagRecord]:
    """Hand each bag to the next free actor until every bag has a record."""
    queue, idle = deque(entries), list(actors)
    in_flight: dict = {}  # ObjectRef -> (actor, entry)
    records: dict[str, BagRecord] = {}
    while queue or in_flight:
        while queue and idle:
            actor, entry = idle.pop(), queue.popleft()
            in_flight[actor.evaluate.remote(entry, out_root / entry.name)] = (actor, entry)
        if not in_flight:  # every actor died: the rest cannot run
            for entry in queue:
                records[entry.name] = BagRecord(entry, out_root / entry.name,
                                                error="no Ray worker left")
                on_done(records[entry.name])
            break
        [done], _ = ray.wait(list(in_flight), num_returns=1)
        actor, entry = in_flight.pop(done)
        try:
            records[entry.name] = ray.get(done)
            idle.append(actor)
        except ray.exceptions.RayError as exc:  # the actor died or could not load the model
            cause = (str(exc).strip().splitlines() or [""])[-1]  # Ray's last line: the cause
            records[entry.name] = BagRecord(entry, out_root / entry.name,
                                            error=f"{type(exc).__name__}: {cause}")
        on_done(records[entry.name])
    return records
