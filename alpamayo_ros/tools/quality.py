"""Quality of a model on held-out synthetic drives of every scene kind, through `alpamayo-eval`.

    python -m alpamayo_ros.tools.quality --model DIR --out DIR [--drives 2]

For each scene kind, `--drives` randomised drives with seeds from `HELD_OUT_SEED_START` (never
drawn by training) are written as bags (4 JPEG cameras at `--width`x`--height`, 50 Hz
odometry) and evaluated offline by `evaluate.evaluate_bag` (the node's buffers, `PlanStep` and
statuses) with the horizons 0.5/1/3/5/6.4 s. Per kind it reports:

* minADE at 6.4 s of the model (best of K) and of the constant-velocity baseline, means over
  the plans scored at 6.4 s, and their ratio (the bar: <= 0.5);
* the share of plans whose reasoning (the selected sample's, as published) names the scene's
  cause by `sim.labels.names_cause` (the bar: >= 90 %);
* plans made at a standstill (ground-truth speed at t0 below `STANDSTILL_MPS`) and how many of
  them have a sample going backwards (a waypoint more than `BACKWARDS_TOLERANCE_M` behind the
  t0 position; the bar: none). Plans are integrated as the node does by default
  (`forward_only`: the speed never below 0); `--reference-integration` scores the reference's
  integration instead.

Writes OUT/<kind>_<seed>/ (drive bag, evaluation), OUT/quality.json and prints a Markdown
table plus a few plans' reasoning.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message

from alpamayo_core.sim.drive import SCENE_KINDS, SyntheticDrive
from alpamayo_core.sim.labels import STANDSTILL_MPS, names_cause
from alpamayo_core.sim.randomize import HELD_OUT_SEED_START, random_scene
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.transforms import RigidTransform
from alpamayo_ros.tools import metrics
from alpamayo_ros.tools.bag_io import BagWriteOptions, iter_raw, write_drive_bag
from alpamayo_ros.tools.evaluate import EvalOptions, evaluate_bag, load_track, score_recorded_plans

HORIZONS_S = (*metrics.HORIZONS_S, 6.4)
#: A waypoint this far (m) behind the t0 position counts as going backwards.
BACKWARDS_TOLERANCE_M = 0.05
#: Node settings of the evaluation (the rest are the node's defaults).
EVAL_SETTINGS = {"num_traj_samples": 6, "max_generation_tokens": 64, "plan_rate_hz": 2.0,
                 "seed": 0, "camera_transport": ["compressed"]}


@dataclass
class KindQuality:
    """Accumulated results of one scene kind."""

    kind: str
    drives: int = 0
    plans: int = 0
    model_ade: list[float] = field(default_factory=list)
    baseline_ade: list[float] = field(default_factory=list)
    names_cause: int = 0
    standstill: int = 0
    backwards: int = 0
    examples: list[str] = field(default_factory=list)

    def row(self) -> dict:
        model = float(np.mean(self.model_ade)) if self.model_ade else float("nan")
        base = float(np.mean(self.baseline_ade)) if self.baseline_ade else float("nan")
        return {"kind": self.kind, "drives": self.drives, "plans": self.plans,
                "scored_6.4s": len(self.model_ade), "model_minade_6.4s_m": model,
                "cv_minade_6.4s_m": base, "ratio": model / base,
                "reasoning_names_cause": self.names_cause / max(self.plans, 1),
                "standstill_plans": self.standstill, "backwards_at_standstill": self.backwards}


def _plan_checks(plans_bag: Path, drive: SyntheticDrive, result: KindQuality) -> None:
    """Reasoning keyword rule and the standstill check for every plan with trajectories."""
    from alpamayo.msg import DrivingPlan

    for raw in iter_raw(plans_bag, ["/alpamayo/plan"]):
        plan = deserialize_message(raw.data, DrivingPlan)
        if not plan.trajectories:
            continue
        result.plans += 1
        result.names_cause += names_cause(drive.config.kind, plan.reasoning)
        t0_ns = plan.header.stamp.sec * 1_000_000_000 + plan.header.stamp.nanosec
        if len(result.examples) < 3 and result.plans % 4 == 1:
            result.examples.append(f"t0 {float(drive.to_scene_s(t0_ns)):5.2f} s: "
                                   f"{plan.reasoning!r} / {plan.meta_action!r}")
        if float(drive.ego_state(t0_ns).speed_mps[0]) >= STANDSTILL_MPS:
            continue
        result.standstill += 1
        ego_from_odom = RigidTransform.from_pose_msg(plan.ego_pose_t0).inverse()
        xyz = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                        for traj in plan.trajectories for p in traj.points])
        result.backwards += bool(ego_from_odom.apply(xyz)[:, 0].min() < -BACKWARDS_TOLERANCE_M)


def evaluate_drive(model: Path, kind: str, seed: int, out: Path, size: tuple[int, int],
                   result: KindQuality, settings: dict | None = None) -> None:
    """Write one held-out drive, evaluate it and add its results to `result` (`settings`:
    node parameters, default `EVAL_SETTINGS`)."""
    drive = SyntheticDrive(random_scene(kind, seed, width=size[0], height=size[1]))
    folder = out / f"{kind}_{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    write_drive_bag(drive, folder / "drive", BagWriteOptions(compressed=True))
    params = NodeParams.from_values({"model_dir": str(model), **(settings or EVAL_SETTINGS)})
    evaluation = evaluate_bag(folder / "drive", folder / "eval",
                              EvalOptions(params, render=False, animation=False,
                                          horizons_s=HORIZONS_S), progress=False)
    track = load_track(folder / "drive", "/odom")
    rows, _ = score_recorded_plans(evaluation.plans_bag, track, horizons_s=HORIZONS_S)
    for row in rows:
        model_score, base_score = row.model.get(6.4), row.constant_velocity.get(6.4)
        if model_score is not None and base_score is not None:
            result.model_ade.append(model_score.min_ade_m)
            result.baseline_ade.append(base_score.min_ade_m)
    _plan_checks(evaluation.plans_bag, drive, result)
    result.drives += 1


def markdown_table(rows: list[dict]) -> str:
    lines = ["| scene kind | drives | plans (scored at 6.4 s) | minADE@6.4 s model / CV (m) "
             "| ratio (bar <= 0.5) | reasoning names the cause (bar >= 90 %) "
             "| backwards at standstill (bar 0) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['drives']} | {r['plans']} ({r['scored_6.4s']}) | "
                     f"{r['model_minade_6.4s_m']:.2f} / {r['cv_minade_6.4s_m']:.2f} | "
                     f"{r['ratio']:.2f} | {100 * r['reasoning_names_cause']:.0f} % | "
                     f"{r['backwards_at_standstill']} of {r['standstill_plans']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--drives", type=int, default=2, help="held-out drives per kind")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=270)
    parser.add_argument("--reference-integration", action="store_true",
                        help="integrate as the reference does (forward_only false: the start "
                             "speed may be negative) instead of the node's default")
    args = parser.parse_args(argv)
    settings = {**EVAL_SETTINGS, "forward_only": not args.reference_integration}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for kind in SCENE_KINDS:
        result = KindQuality(kind)
        for i in range(args.drives):
            evaluate_drive(Path(args.model), kind, HELD_OUT_SEED_START + i, out,
                           (args.width, args.height), result, settings)
            print(f"[quality] {kind} drive {i + 1}/{args.drives} done", flush=True)
        results.append(result)
    rows = [r.row() for r in results]
    (out / "quality.json").write_text(json.dumps(
        {"rows": rows, "examples": {r.kind: r.examples for r in results},
         "settings": {**settings, "drives": args.drives, "size": [args.width, args.height],
                      "first_seed": HELD_OUT_SEED_START}}, indent=2) + "\n")
    print(markdown_table(rows))
    for r in results:
        print(f"\n{r.kind}:\n  " + "\n  ".join(r.examples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
