"""`alpamayo-replay`: play a ROS 2 bag (.mcap or .db3) onto live topics.

Original timing, a rate factor, loops (time keeps increasing across loops), /clock for nodes
with use_sim_time, topic remaps and QoS from the bag. Prints "MATCHED" (or the topics nobody
subscribed to) before playing and "DONE ..." with the statistics at the end.

Example:
    alpamayo-replay drive_bag --clock --rate 0.5 --loop --remap /odom:=/localization/odom
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from tqdm import tqdm

from alpamayo_ros.node.shutdown import until_shutdown
from alpamayo_ros.tools.replay import RELIABILITY_CHOICES, BagPlayer, ReplayOptions, parse_remap


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpamayo-replay", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder or .mcap file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--loop", action="store_true", help="play until stopped (Ctrl-C)")
    group.add_argument("--loops", type=int, default=1, help="play the bag this many times")
    parser.add_argument("--clock", action="store_true", help="publish /clock (use_sim_time)")
    parser.add_argument("--remap", action="append", default=[], metavar="/FROM:=/TO",
                        help="rename a topic (repeatable)")
    parser.add_argument("--topics", nargs="+", default=[], help="play only these topics")
    parser.add_argument("--qos", choices=RELIABILITY_CHOICES, default="bag",
                        help="publisher reliability (bag = the bag's QoS, else reliable)")
    parser.add_argument("--wait-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a subscriber on every topic")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Our options come before --ros-args, ROS arguments after it (not remove_ros_args: it
    # would take "--remap /a:=/b" for a legacy ROS remapping rule).
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    try:
        options = ReplayOptions(
            rate=args.rate, loops=0 if args.loop else args.loops, clock=args.clock,
            remaps=tuple(parse_remap(r) for r in args.remap), topics=tuple(args.topics),
            reliability=args.qos)
    except ValueError as exc:
        print(f"alpamayo-replay: error: {exc}", file=sys.stderr)
        return 2
    rclpy.init(args=["alpamayo-replay", *argv[split:]])
    node = rclpy.create_node("alpamayo_replay")
    player = None
    try:
        player = BagPlayer(node, args.bag, options)
        with until_shutdown():
            return _play(player, options, args.wait_subscribers, args.quiet)
        return 0  # shutdown requested (SIGINT/SIGTERM) while playing
    except (ValueError, ImportError, FileNotFoundError) as exc:
        print(f"alpamayo-replay: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        rclpy.try_shutdown()


def _play(player: BagPlayer, options: ReplayOptions, wait_s: float, quiet: bool) -> int:
    print(f"playing {player.num_messages} messages on {len(player.counts)} topics, "
          f"{(player.end_ns - player.start_ns) * 1e-9:.2f} s of bag time, rate {options.rate}"
          + (", looping" if options.loops == 0 else f", {options.loops} loop(s)"), flush=True)
    total = None if options.loops == 0 else player.num_messages * options.loops
    with tqdm(total=total, unit="msg", desc="replay", disable=quiet) as bar:
        def progress(t_ns: int) -> None:
            bar.update()
            bar.set_postfix(bag_s=f"{(t_ns - player.start_ns) * 1e-9:.1f}", refresh=False)

        if wait_s > 0:
            missing = player.wait_for_subscribers(wait_s)
            print("MATCHED" if not missing else f"UNMATCHED {' '.join(missing)}", flush=True)
        stats = player.play(progress)
    player.flush()
    print(f"DONE published={stats.published} loops={stats.loops_done} "
          f"max_lag_ms={stats.max_lag_ms:.1f} wall_s={stats.wall_s:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
