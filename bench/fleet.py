"""Fleet evaluation wall time: one process, bags one after another, vs Ray with N workers.

12 synthetic bags (4 s each, 6 s for `stop`; 480x270 JPEG, scenes in turn), the tiny model, 2
samples, 8 reasoning tokens, torch backend, seed 0, 1 thread per worker; the same
`evaluate_fleet` call with `ray=None` (sequential) and with a local Ray instance of `--workers`
actors. Runs alternate which engine goes first per round; both must give identical metrics.
The model's load time is measured on its own (min of 3 loads) to state what loading once per
worker instead of once per bag saves: (bags - workers) x load time. "ray_not_evaluating_s" is
the Ray run's wall time minus its busiest worker's bag time (Ray and actor start, model load).

    python bench/fleet.py [--bags 12] [--workers 2] [--rounds 1] [--render] [--out fleet.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.sim.drive import SCENE_KINDS, SceneConfig, SyntheticDrive
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.pipeline import load_planner
from alpamayo_ros.tools.bag_io import BagWriteOptions, write_drive_bag
from alpamayo_ros.tools.evaluate import EvalOptions
from alpamayo_ros.tools.fleet import bag_set
from alpamayo_ros.tools.fleet.engines import RayOptions
from alpamayo_ros.tools.fleet.run import FleetOptions, evaluate_fleet
from alpamayo_ros.tools.fleet.worker import WorkerSpec

SECONDS = {"stop": 6.0}  # a stop from 10 m/s needs > 5.3 s


def make_bags(folder: Path, count: int) -> None:
    for i in range(count):
        kind = SCENE_KINDS[i % len(SCENE_KINDS)]
        config = SceneConfig(kind=kind, seconds=SECONDS.get(kind, 4.0), width=480, height=270,
                             seed=i)
        write_drive_bag(SyntheticDrive(config), folder / f"{i:02d}_{kind}",
                        BagWriteOptions(compressed=True))


def load_seconds(params: NodeParams, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_planner(params)
        times.append(time.perf_counter() - start)
    return min(times)


def ray_overhead_s(data: dict) -> float:
    """Wall time minus the busiest worker's bag time: Ray start, actor start, model load."""
    busy: dict[str, float] = {}
    for bag in data["timing"]["bags"].values():
        busy[bag["worker"]] = busy.get(bag["worker"], 0.0) + bag["seconds"]
    return data["timing"]["wall_s"] - max(busy.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--render", action="store_true", help="pictures per plan, as default")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    make_bags(work / "bags", args.bags)
    params = NodeParams(model_dir=str(make_tiny(work / "tiny", seed=0)), num_traj_samples=2,
                        max_generation_tokens=8, backend="torch", seed=0)
    spec = WorkerSpec(EvalOptions(params, render=args.render, animation=False), threads=1)
    entries = bag_set.resolve(str(work / "bags"))
    engines = {"sequential": None, "ray": RayOptions("auto", workers=args.workers)}
    walls: dict[str, list[float]] = {name: [] for name in engines}
    results = {}
    for r in range(args.rounds):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        for name in order:
            options = FleetOptions(ray=engines[name], progress=False)
            result = evaluate_fleet(entries, work / f"{name}_{r}", spec, options)
            walls[name].append(result.data["timing"]["wall_s"])
            results[name] = result.data
            print(f"round {r} {name}: {walls[name][-1]:.1f} s", flush=True)
    identical = results["sequential"]["metrics"] == results["ray"]["metrics"]
    load_s = load_seconds(params)
    figures = {
        "bags": args.bags, "workers": args.workers, "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0], "render": args.render,
        "sequential_wall_s": walls["sequential"], "ray_wall_s": walls["ray"],
        "speedup_min_over_min": min(walls["sequential"]) / min(walls["ray"]),
        "metrics_identical": identical, "model_load_s": load_s,
        "load_saving_s": (args.bags - args.workers) * load_s,
        "ray_model_loads": sorted({r["model_loads"] for r in
                                   results["ray"]["timing"]["bags"].values()}),
        "ray_not_evaluating_s": ray_overhead_s(results["ray"]),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
