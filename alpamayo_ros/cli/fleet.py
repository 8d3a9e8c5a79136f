"""`alpamayo-eval` over a set of bags: its extra options and the fleet run.

`alpamayo-eval BAGS --model DIR --out OUT` takes this path when BAGS is a folder of bags, a glob
or a list file (or when --ray / --compare-* is given): every bag is evaluated exactly as
`alpamayo-eval BAG` would, then aggregated into OUT/fleet.json and OUT/report.html.

Examples:
    alpamayo-eval 'drives/*' --model m --out fleet                  # in-process, one by one
    alpamayo-eval drives/ --model m --out fleet --ray auto          # local Ray, sized to the CPUs
    alpamayo-eval bags.txt --model m --out fleet --ray head:6379    # join a Ray cluster
    alpamayo-eval drives/ --model m --out cmp --compare-model m2    # A vs B, side by side
"""

from __future__ import annotations

import argparse
import dataclasses

from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools.evaluate import EvalOptions
from alpamayo_ros.tools.fleet import bag_set
from alpamayo_ros.tools.fleet.aggregate import AggregateOptions
from alpamayo_ros.tools.fleet.engines import RayOptions
from alpamayo_ros.tools.fleet.run import FleetOptions, compare_fleets, evaluate_fleet
from alpamayo_ros.tools.fleet.worker import WorkerSpec
from alpamayo_ros.tools.metrics import format_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fleet options of `alpamayo-eval`."""
    group = parser.add_argument_group(
        "many bags", "BAG may be a folder of bags, a glob ('drives/*') or a list file")
    group.add_argument("--ray", metavar="ADDRESS", help="run on Ray: 'auto' = a local instance "
                       "sized to this machine, else a cluster address (needs .[fleet]); "
                       "default: one bag after another in this process")
    group.add_argument("--workers", type=int, default=0,
                       help="Ray workers (0 = CPUs / threads); each loads the model once")
    group.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray GPUs per worker")
    group.add_argument("--backend", help="expert backend (pin one for identical results on "
                       "every worker: 'auto' times the backends in each worker)")
    group.add_argument("--compare-model", help="model folder B: compare A (--model) with B")
    group.add_argument("--compare-params-file", help="parameters YAML for B (compare mode)")
    group.add_argument("--worst", type=int, default=10, help="worst moments in the report")
    group.add_argument("--rank-horizon", type=float, default=3.0,
                       help="horizon (s) at which moments are ranked")


def wants_fleet(args: argparse.Namespace) -> bool:
    """True when the command line asks for a fleet evaluation rather than one bag."""
    return bool(bag_set.is_bag_set(args.bag) or args.ray or args.compare_model
                or args.compare_params_file)


def run(args: argparse.Namespace, params_of) -> int:
    """Run the fleet evaluation; `params_of(args)` builds NodeParams like `alpamayo-eval`."""
    entries = bag_set.resolve(args.bag)
    spec_a = _spec(args, params_of(args))
    options = FleetOptions(
        ray=RayOptions(args.ray, args.workers, args.gpus_per_worker) if args.ray else None,
        aggregate=AggregateOptions(rank_horizon_s=args.rank_horizon, worst_n=args.worst),
        progress=not args.quiet)
    if args.compare_model or args.compare_params_file:
        other = argparse.Namespace(**{**vars(args), "model": args.compare_model or args.model,
                                      "params_file": args.compare_params_file or args.params_file})
        report, data = compare_fleets(entries, args.out, spec_a, _spec(other, params_of(other)),
                                      options)
        d = data["differences"]
        print(f"compared {len(entries)} bags: {d['num_matched']} plans matched; largest "
              f"|B - A| ADE at {d['horizon_s']:g} s: "
              f"{abs(d['moments'][0]['delta_ade_m']) if d['moments'] else 0:.3f} m")
        print(f"report:     {report}")
        return 0
    result = evaluate_fleet(entries, args.out, spec_a, options)
    meta = result.data["meta"]
    print(f"evaluated {meta['num_bags']} bags ({meta['num_failed']} failed) on {meta['engine']} "
          f"in {result.data['timing']['wall_s']:.1f} s")
    for name, error in result.data["metrics"]["failed"].items():
        print(f"  failed: {name}: {error}")
    print(format_summary(result.data["metrics"]["overall"]["summary"]))
    print(f"fleet:      {result.fleet_json}")
    print(f"report:     {result.report_html}")
    return 0


def _spec(args: argparse.Namespace, params: NodeParams) -> WorkerSpec:
    if args.backend:
        params = dataclasses.replace(params, backend=args.backend)
    options = EvalOptions(params, render=not args.no_render,
                          animation=not (args.no_render or args.no_gif), max_plans=args.max_plans)
    return WorkerSpec(options, threads=args.threads)
