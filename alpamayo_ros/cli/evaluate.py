"""`alpamayo-eval`: run the planner over a bag offline (no DDS) and score it.

Writes an output bag with the plans, metrics (minADE / FDE at 0.5/1/3/5 s against the bag's own
odometry, with a constant-velocity baseline) as JSON and CSV, a picture per plan and a GIF.

Example:
    alpamayo-eval drive_bag --model /path/to/model --out eval_out --samples 6

Over a set of bags (a folder of bags, a glob, a list file; optionally on Ray) see `cli.fleet`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from alpamayo_ros.cli import fleet
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools.evaluate import EvalOptions, evaluate_bag
from alpamayo_ros.tools.metrics import format_summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpamayo-eval", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder (.mcap or .db3) with cameras and odometry, "
                        "or a set of bags (see 'many bags')")
    parser.add_argument("--model", required=True, help="model folder (config.json + weights)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--params-file", help="node parameters YAML (section 'alpamayo'); "
                        "the options below override it")
    parser.add_argument("--rate", type=float, default=2.0, help="plans per second of bag time")
    parser.add_argument("--samples", type=int, help="trajectory samples per plan (K)")
    parser.add_argument("--max-tokens", type=int, help="most reasoning tokens per plan")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (-1 = random)")
    parser.add_argument("--max-plans", type=int, default=0, help="stop after N ticks (0 = all)")
    parser.add_argument("--no-render", action="store_true", help="no pictures and no GIF")
    parser.add_argument("--no-gif", action="store_true", help="pictures but no GIF")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    fleet.add_arguments(parser)
    return parser


def node_params(args: argparse.Namespace) -> NodeParams:
    """NodeParams from the params file (if any) with the command-line overrides."""
    values: dict = {}
    if args.params_file:
        content = yaml.safe_load(Path(args.params_file).read_text(encoding="utf-8")) or {}
        for section in ("/**", "alpamayo", "/alpamayo"):
            values.update((content.get(section) or {}).get("ros__parameters", {}))
        values.pop("use_sim_time", None)
    values.update(model_dir=args.model, plan_rate_hz=args.rate, seed=args.seed)
    if args.samples is not None:
        values["num_traj_samples"] = args.samples
    if args.max_tokens is not None:
        values["max_generation_tokens"] = args.max_tokens
    return NodeParams.from_values(values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if fleet.wants_fleet(args):
        try:
            return fleet.run(args, node_params)
        except (ValueError, FileExistsError, FileNotFoundError, ImportError) as exc:
            print(f"alpamayo-eval: error: {exc}", file=sys.stderr)
            return 2
    try:
        options = EvalOptions(node_params(args), render=not args.no_render,
                              animation=not (args.no_render or args.no_gif),
                              max_plans=args.max_plans)
        result = evaluate_bag(args.bag, args.out, options, progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"alpamayo-eval: error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.status_counts.items()))
    print(f"evaluated {args.bag} in {result.seconds:.1f} s: {counts}")
    print(format_summary(result.summary))
    print(f"plans bag:  {result.plans_bag}")
    print(f"metrics:    {result.metrics_json}, {result.metrics_csv}")
    if result.pictures:
        print(f"pictures:   {len(result.pictures)} in {result.pictures[0].parent}")
    if result.animation:
        print(f"animation:  {result.animation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
