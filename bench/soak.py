"""Soak benchmark: a looped synthetic drive replayed through the node for N minutes.

    python bench/soak.py --minutes 10 --out /tmp/alpamayo_soak

The node (tiny model unless --model, use_sim_time, JPEG cameras) and `alpamayo-replay --loop
--clock` run as separate processes; this process subscribes to ~/plan and /diagnostics. Reports
plans made per status, skipped ticks (from the node's diagnostics), the node's resident memory
(RSS) at the first plan and at the end (with samples every 30 s), and any error: the node or
the replay exiting, tracebacks or ERROR lines in the node log, INVALID reasons after the first
OK plan. Writes OUT/soak.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_ros.tools.demo import NODE_SETTINGS, make_drive
from alpamayo_ros.tools.processes import ChildProcess, node_params_file, ros_env

STATUS = {0: "OK", 1: "DEGRADED", 2: "INVALID"}


class Monitor:
    """In-process subscriber: plan statuses, INVALID reasons, the latest skipped_ticks."""

    def __init__(self, domain_id: int, log_dir: Path) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from alpamayo.msg import DrivingPlan

        for key, value in ros_env(domain_id, log_dir).items():
            if key.startswith(("ROS_", "FASTDDS_")):
                os.environ[key] = value
        rclpy.init()
        self.node = rclpy.create_node("soak_monitor")
        self.statuses: Counter[str] = Counter()
        self.invalid_after_ok: Counter[str] = Counter()
        self.skipped_ticks = 0
        self.latency_ms_mean = 0.0
        self.first_ok_wall: float | None = None
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(DrivingPlan, "/alpamayo/plan", self._on_plan, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos)

    def _on_plan(self, msg) -> None:
        status = STATUS.get(msg.status.level, str(msg.status.level))
        self.statuses[status] += 1
        if status == "OK" and self.first_ok_wall is None:
            self.first_ok_wall = time.monotonic()
        if status == "INVALID" and self.first_ok_wall is not None:
            self.invalid_after_ok[msg.status.reason[:120]] += 1

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == "alpamayo: planner":
                values = {kv.key: kv.value for kv in status.values}
                self.skipped_ticks = int(values.get("skipped_ticks", self.skipped_ticks))
                self.latency_ms_mean = float(values.get("latency_ms_mean", 0.0))

    def spin_for(self, seconds: float) -> None:
        import rclpy

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=min(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _log_errors(log: Path) -> list[str]:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if "Traceback" in line or "[ERROR]" in line
            or "[FATAL]" in line][:20]


def soak(args: argparse.Namespace) -> dict:
    out = Path(args.out).resolve()
    for name in ("drive", "run"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "run").mkdir(parents=True)
    model = Path(args.model) if args.model else out / "model"
    if not (model / "config.json").is_file():
        make_tiny(model)
    drive = make_drive(out / "drive", args.scene, args.seconds, args.width, args.height)
    env = ros_env(args.domain_id, out / "run" / "ros_logs")
    params = node_params_file(out / "run" / "node_params.yaml", model_dir=str(model),
                              **NODE_SETTINGS)
    node = ChildProcess(["-m", "alpamayo_ros", "--ros-args", "--params-file", str(params),
                         "-p", "use_sim_time:=true"], env, out / "run" / "node.log")
    replay = None
    monitor = Monitor(args.domain_id, out / "run" / "ros_logs")
    report: dict = {"minutes": args.minutes, "drive_s": args.seconds, "scene": args.scene,
                    "image_size": f"{args.width}x{args.height}", "replay_rate": args.rate,
                    "errors": []}
    try:
        node.wait_for("active: planning", 300.0)
        replay = ChildProcess(["-m", "alpamayo_ros.cli.replay", str(drive), "--clock", "--loop",
                               "--rate", str(args.rate), "--wait-subscribers", "30", "--quiet"],
                              env, out / "run" / "replay.log")
        replay.wait_for("^MATCHED", 60.0)
        report.update(_run(args, node, replay, monitor))
    except RuntimeError as err:
        report["errors"].append(str(err))
    finally:
        if replay is not None:
            replay.stop()
        node_code = node.stop()
        monitor.close()
    report["node_exit_code"] = node_code
    report["errors"] += _log_errors(out / "run" / "node.log")
    report["plans"] = dict(monitor.statuses)
    report["invalid_after_first_ok"] = dict(monitor.invalid_after_ok)
    report["skipped_ticks"] = monitor.skipped_ticks
    report["latency_ms_mean_last50"] = monitor.latency_ms_mean
    (out / "soak.json").write_text(json.dumps(report, indent=2))
    return report


def _run(args, node: ChildProcess, replay: ChildProcess, monitor: Monitor) -> dict:
    """Spin the monitor for the duration; sample the node's RSS every 30 s."""
    start = time.monotonic()
    while monitor.first_ok_wall is None and time.monotonic() - start < 120.0:
        monitor.spin_for(0.5)
    rss_start = _rss_mb(node.proc.pid)
    samples = [(0.0, round(rss_start, 1))]
    deadline = start + args.minutes * 60.0
    errors = []
    while time.monotonic() < deadline:
        monitor.spin_for(min(30.0, deadline - time.monotonic()))
        if not node.alive() or not replay.alive():
            errors.append(f"{'node' if not node.alive() else 'replay'} exited early")
            break
        samples.append((round(time.monotonic() - start, 1), round(_rss_mb(node.proc.pid), 1)))
    return {"wall_s": round(time.monotonic() - start, 1), "rss_mb_start": round(rss_start, 1),
            "rss_mb_end": samples[-1][1], "rss_mb_max": max(s[1] for s in samples),
            "rss_samples_s_mb": samples, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", default="/tmp/alpamayo_soak")
    parser.add_argument("--model", help="model folder (default: the tiny model in OUT/model)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the looped drive")
    parser.add_argument("--scene", default="curve_left")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--domain-id", type=int, default=120 + os.getpid() % 20)
    report = soak(parser.parse_args(argv))
    print(json.dumps(report, indent=2))
    return 0 if not report["errors"] and report.get("node_exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
