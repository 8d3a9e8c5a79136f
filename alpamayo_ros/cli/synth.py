"""`alpamayo-synth`: write a synthetic drive (cameras + odometry) as a ROS 2 bag.

Example:
    alpamayo-synth --out /tmp/curve --scene curve_left --seconds 20 --storage mcap --compressed
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tqdm import tqdm

from alpamayo_core.sim.drive import SCENE_KINDS, SceneConfig, SyntheticDrive
from alpamayo_ros.tools.bag_io import STORAGES, BagWriteOptions, write_drive_bag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpamayo-synth",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--scene", choices=SCENE_KINDS, default="straight")
    parser.add_argument("--seconds", type=float, default=10.0, help="drive duration")
    parser.add_argument("--speed", type=float, default=10.0, help="initial speed in m/s")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--compressed",
        dest="compressed",
        action="store_true",
        help="JPEG sensor_msgs/CompressedImage on .../image_raw/compressed",
    )
    group.add_argument(
        "--raw",
        dest="compressed",
        action="store_false",
        help="rgb8 sensor_msgs/Image on .../image_raw",
    )
    parser.set_defaults(compressed=False)
    parser.add_argument("--width", type=int, default=1920, help="image width in pixels")
    parser.add_argument("--height", type=int, default=1080, help="image height in pixels")
    parser.add_argument("--odom-rate", type=float, default=50.0, help="odometry rate in Hz")
    parser.add_argument("--camera-rate", type=float, default=10.0, help="camera rate in Hz")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--route", default="",
                        help='Alpamayo 1.5 navigation text stored on /alpamayo/route at the '
                        'start, e.g. "Turn left in 50m" before the curve_left junction')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        config = SceneConfig(
            kind=args.scene,
            seconds=args.seconds,
            speed_mps=args.speed,
            width=args.width,
            height=args.height,
            odom_rate_hz=args.odom_rate,
            camera_rate_hz=args.camera_rate,
            seed=args.seed,
        )
        options = BagWriteOptions(args.storage, args.compressed, args.jpeg_quality,
                                  route_text=args.route)
        drive = SyntheticDrive(config)
        start = time.perf_counter()
        with tqdm(total=drive.num_events(), unit="msg", desc=f"{args.scene} -> bag") as bar:
            summary = write_drive_bag(drive, args.out, options, on_event=bar.update)
    except (ValueError, FileExistsError) as exc:
        print(f"alpamayo-synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(
        f"wrote {summary.path} ({args.storage}, {sum(summary.counts.values())} messages, "
        f"{(summary.end_ns - summary.start_ns) * 1e-9:.2f} s of data, {elapsed:.1f} s)"
    )
    for topic, count in sorted(summary.counts.items()):
        print(f"  {topic}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
