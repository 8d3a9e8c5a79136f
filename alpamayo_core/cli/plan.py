"""`alpamayo-plan`: one plan from image files + an ego history, printed (and optionally saved).

    alpamayo-plan --model DIR --images CAM0_F0.jpg ... CAM3_F3.jpg --history history.csv
    alpamayo-plan --model DIR --synthetic curve_left          # a rendered synthetic scene
    alpamayo-plan --config plan.yaml                          # the same keys as the flags

Images: C x F files, camera-major, oldest frame first (model camera order: cross_left,
front_wide, cross_right, front_tele). History: a CSV with a header `t_s,x_m,y_m,z_m,yaw_rad` and
16 rows at 10 Hz (last row = t0) in any world frame; it is expressed in the ego frame at t0 here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from alpamayo_core.inference.plan import Plan, PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig
from alpamayo_core.model.config import FlowConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alpamayo-plan", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="YAML file with any of the options below")
    p.add_argument("--model", help="model folder (config.json + safetensors + tokenizer)")
    p.add_argument("--images", nargs="+", help="C x F image files, camera-major, oldest first")
    p.add_argument("--history", help="CSV t_s,x_m,y_m,z_m,yaw_rad (16 rows, last = t0)")
    p.add_argument("--synthetic", metavar="SCENE", help="use a rendered synthetic scene instead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--samples", type=int, default=1, help="trajectory samples per set")
    p.add_argument("--sets", type=int, default=1, help="trajectory sets")
    p.add_argument("--steps", type=int, help="flow-matching steps (default: the model's)")
    p.add_argument("--solver", choices=["euler", "midpoint", "heun"])
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.98)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the plan as JSON here")
    return p


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config:
        values = yaml.safe_load(args.config.read_text()) or {}
        unknown = set(values) - {a.dest for a in parser._actions}
        if unknown:
            parser.error(f"{args.config}: unknown keys {sorted(unknown)}")
        parser.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})
        args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model is required (or 'model:' in --config)")
    if not args.synthetic and not (args.images and args.history):
        parser.error("give --images and --history, or --synthetic SCENE")
    return args


def read_history_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) positions and (N, 3, 3) rotations in the ego frame at the last row."""
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if table.shape[1] != 5:
        raise ValueError(f"{path}: expected columns t_s,x_m,y_m,z_m,yaw_rad, got "
                         f"{table.shape[1]} columns")
    xyz, yaw = table[:, 1:4], table[:, 4]
    rot_world = Rotation.from_euler("z", yaw[:, None]).as_matrix()  # (N, 3, 3)
    r0 = rot_world[-1]
    return (xyz - xyz[-1]) @ r0, r0.T @ rot_world


def read_images(paths: list[str], cameras: int, frames: int) -> np.ndarray:
    """(C, F, H, W, 3) uint8 RGB from C*F files, camera-major, oldest first."""
    import cv2

    if len(paths) != cameras * frames:
        raise ValueError(f"--images: expected {cameras} cameras x {frames} frames = "
                         f"{cameras * frames} files, got {len(paths)}")
    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {path}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if len({im.shape for im in images}) != 1:
        raise ValueError("--images: all images must have the same size")
    return np.stack(images).reshape(cameras, frames, *images[0].shape)


def synthetic_inputs(scene: str, planner: Planner, t_s: float = 3.0) -> PlanInputs:
    """Inputs rendered from a synthetic drive at scene time `t_s`."""
    from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive

    drive = SyntheticDrive(SceneConfig(kind=scene, seconds=t_s + 1.0))
    t0_ns = int(drive.to_ns(t_s))
    offsets = planner.cfg.images.frame_offsets_s
    images = np.stack([
        np.stack([drive.render(cam, t0_ns + round(o * 1e9)) for o in offsets])
        for cam in planner.cfg.images.cameras])
    n = planner.cfg.history_tokenizer.num_steps
    history = drive.history(t0_ns, n=n, dt_s=planner.cfg.action_space.dt_s)
    return PlanInputs(images, history.xyz_m, history.rot, t0_ns=t0_ns)


def format_plan(plan: Plan) -> str:
    """Human-readable summary: texts, the selected trajectory every 0.5 s, timings."""
    lines = [f"model {plan.model_id}  backend {plan.backend}  t0 {plan.t0_ns} ns  "
             f"samples {plan.num_samples}  selected {plan.selected}"]
    for k in range(plan.num_samples):
        lines.append(f"reasoning[{k}]: {plan.cot[k]!r}")
    lines.append("   t [s]    x [m]    y [m]  yaw [rad]  v [m/s]  a [m/s2]  kappa [1/m]")
    s = plan.selected
    for i in range(4, len(plan.time_from_start_s), 5):
        lines.append(f"{plan.time_from_start_s[i]:8.1f} {plan.xyz_m[s, i, 0]:8.2f} "
                     f"{plan.xyz_m[s, i, 1]:8.2f} {plan.yaw_rad[s, i]:10.3f} "
                     f"{plan.speed_mps[s, i]:8.2f} {plan.accel_mps2[s, i]:9.2f} "
                     f"{plan.curvature_1pm[s, i]:12.4f}")
    lines.append("timings [ms]: " + ", ".join(f"{k} {v:.1f}" for k, v in plan.timings_ms.items()))
    return "\n".join(lines)


def plan_to_json(plan: Plan) -> dict:
    out = {}
    for f in dataclasses.fields(plan):
        value = getattr(plan, f.name)
        out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_tokens, num_traj_samples=args.samples,
                              num_traj_sets=args.sets, greedy=args.greedy)
    planner = Planner.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                      sampling=sampling)
    if args.steps or args.solver:
        flow = FlowConfig(num_steps=args.steps or planner.flow.num_steps,
                          solver=args.solver or planner.flow.solver,
                          sigma_min=planner.flow.sigma_min)
        planner = planner.with_settings(flow=flow)
    if args.synthetic:
        inputs = synthetic_inputs(args.synthetic, planner)
    else:
        cams = planner.cfg.images
        xyz, rot = read_history_csv(args.history)
        inputs = PlanInputs(read_images(args.images, len(cams.cameras),
                                        len(cams.frame_offsets_s)), xyz, rot)
    plan = planner.plan(inputs, seed=args.seed)
    print(format_plan(plan))
    if args.json:
        args.json.write_text(json.dumps(plan_to_json(plan), indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
