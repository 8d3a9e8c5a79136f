"""`alpamayo-plan`: one plan from image files + an ego history, printed (and optionally saved).

    alpamayo-plan --model DIR --images CAM0_F0.jpg ... CAM3_F3.jpg --history history.csv
    alpamayo-plan --model DIR --synthetic curve_left          # a rendered synthetic scene
    alpamayo-plan --config plan.yaml                          # the same keys as the flags
    alpamayo-plan --model DIR --synthetic curve_left --route "Turn left in 50m" --guidance 1.5
    alpamayo-plan --model DIR --synthetic straight --question "Is there a pedestrian?"

Alpamayo 1.5 only: `--camera-ids` (one id 0-6 per camera, ascending; any frames per camera),
`--route`, `--guidance` (classifier-free guidance weight, needs --route), `--noise-temperature`
and `--question` (prints the answer instead of a plan).

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

from alpamayo_core.inference.guidance import GuidanceConfig
from alpamayo_core.inference.plan import Plan, PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig
from alpamayo_core.inputs.cameras import CAMERAS
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
    p.add_argument("--forward-only", action="store_true",
                   help="integrate with the speed clamped at >= 0 (the node's default; the "
                        "demo model is trained for it) instead of the reference's way")
    p.add_argument("--camera-ids", type=int, nargs="+",
                   help="1.5: camera id per camera (0-6, ascending); default: the model's rig")
    p.add_argument("--route", help='1.5: navigation text, e.g. "Turn left in 50m"')
    p.add_argument("--guidance", type=float, default=0.0,
                   help="1.5: classifier-free guidance weight (0 = off; needs --route)")
    p.add_argument("--noise-temperature", type=float, default=1.0,
                   help="1.5: initial flow noise = randn x this")
    p.add_argument("--question", help="1.5: ask this about the images; prints the answer")
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


def synthetic_inputs(scene: str, planner: Planner, t_s: float = 3.0,
                     camera_ids: tuple[int, ...] | None = None) -> PlanInputs:
    """Inputs rendered from a synthetic drive at scene time `t_s` (the renderer draws the
    four-camera rig; `camera_ids` picks a subset of it)."""
    from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive

    drive = SyntheticDrive(SceneConfig(kind=scene, seconds=t_s + 1.0))
    t0_ns = int(drive.to_ns(t_s))
    offsets = planner.cfg.images.frame_offsets_s
    cameras = ([CAMERAS[i][0] for i in camera_ids] if camera_ids is not None
               else planner.cfg.images.cameras)
    images = np.stack([
        np.stack([drive.render(cam, t0_ns + round(o * 1e9)) for o in offsets])
        for cam in cameras])
    n = planner.cfg.history_tokenizer.num_steps
    history = drive.history(t0_ns, n=n, dt_s=planner.cfg.action_space.dt_s)
    return PlanInputs(images, history.xyz_m, history.rot, t0_ns=t0_ns, camera_ids=camera_ids)


def format_plan(plan: Plan) -> str:
    """Human-readable summary: texts, the selected trajectory every 0.5 s, timings."""
    lines = [f"model {plan.model_id}  backend {plan.backend}  t0 {plan.t0_ns} ns  "
             f"samples {plan.num_samples}  selected {plan.selected}"]
    for k in range(plan.num_samples):
        lines.append(f"reasoning[{k}]: {plan.cot[k]!r}")
    if plan.route_text:
        lines.append(f"route: {plan.route_text!r}  guidance weight {plan.guidance_weight:g}")
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


def _inputs(args: argparse.Namespace, planner: Planner) -> PlanInputs:
    ids = tuple(args.camera_ids) if args.camera_ids else None
    if args.synthetic:
        inputs = synthetic_inputs(args.synthetic, planner, camera_ids=ids)
    else:
        cams = len(ids) if ids else len(planner.cfg.images.cameras)
        frames = len(args.images) // cams if ids else len(planner.cfg.images.frame_offsets_s)
        xyz, rot = read_history_csv(args.history)
        inputs = PlanInputs(read_images(args.images, cams, frames), xyz, rot, camera_ids=ids)
    return dataclasses.replace(inputs, route_text=args.route)


def _planner(args: argparse.Namespace) -> Planner:
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_tokens, num_traj_samples=args.samples,
                              num_traj_sets=args.sets, greedy=args.greedy)
    guidance = GuidanceConfig(weight=args.guidance, noise_temperature=args.noise_temperature)
    planner = Planner.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                      sampling=sampling, guidance=guidance,
                                      forward_only=args.forward_only)
    if args.steps or args.solver:
        flow = FlowConfig(num_steps=args.steps or planner.flow.num_steps,
                          solver=args.solver or planner.flow.solver,
                          sigma_min=planner.flow.sigma_min)
        planner = planner.with_settings(flow=flow)
    return planner


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    planner = _planner(args)
    inputs = _inputs(args, planner)
    if args.question:
        answer = planner.ask(inputs.images_rgb, args.question, inputs.camera_ids,
                             seed=args.seed, t0_ns=inputs.t0_ns)
        print(f"model {answer.model_id}  t0 {answer.t0_ns} ns\nquestion: {args.question}\n"
              f"answer: {answer.text!r}\ngenerated: {answer.generated!r}")
        return 0
    plan = planner.plan(inputs, seed=args.seed)
    print(format_plan(plan))
    if args.json:
        args.json.write_text(json.dumps(plan_to_json(plan), indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
