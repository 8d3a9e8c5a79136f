"""Classifier-free guidance: how to evaluate the unguided field, per expert backend.

Tiny 1.5 model, 4 cameras x 4 frames of 320x576 (~3k-token prefixes), a teacher-forced
reasoning, 10 Euler steps, B rows, 1 thread, fp32. Three ways to run the two fields per step:

    batched   guided + unguided prefixes padded and stacked (2B rows), one bind per plan
    two       two backend instances, each bound once to one prefix, two calls per step
    rebind    one backend, re-bound to the other prefix before every call

    python bench/guidance.py [--runs 7] [--rows 1 6] [--json out.json]

Prints the flow time per plan (min ms over runs) and, for reference, the unguided flow.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.inference.guidance import (
    GuidedVelocity,
    combine,
    replay_unguided,
    stack_prefixes,
)
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import prefill_with_reasoning
from alpamayo_core.inputs.prompt import without_route
from alpamayo_core.model import flow_matching
from alpamayo_core.model.config import FlowConfig

FLOW = FlowConfig(num_steps=10)
WEIGHT = 1.5


def _prefixes(planner: Planner, rows: int):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 4, 320, 576, 3), dtype=np.uint8)
    inputs = PlanInputs(images, np.zeros((16, 3)), np.repeat(np.eye(3)[None], 16, 0),
                        route_text="Turn left in 50m")
    ids, vlm = planner.loaded.token_ids, planner._model.vlm
    prompt = planner.preprocess(inputs)
    reasoning = torch.tensor([ids.cot_start + 1] * 36 + [ids.traj_future_start])
    guided = prefill_with_reasoning(vlm, prompt, reasoning, ids, num_rows=rows)
    unguided = replay_unguided(vlm, without_route(prompt, ids), guided)
    return planner._prefix(guided), planner._prefix(unguided)


def _timed(fn, runs: int) -> float:
    fn()  # warm-up (buffers, sessions)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _ways(planner: Planner, name: str, p_g, p_u, noise):
    a = Planner(planner.loaded, backend=name, backend_fallback=False)._expert
    b = Planner(planner.loaded, backend=name, backend_fallback=False)._expert

    def plain():
        a.bind(p_g)
        return a.sample(noise, FLOW)

    def batched():
        a.bind(stack_prefixes(p_g, p_u))
        return flow_matching.sample(GuidedVelocity(a, WEIGHT), noise, FLOW)

    def two():
        a.bind(p_g)
        b.bind(p_u)
        return flow_matching.sample(
            lambda x, t: combine(a.velocity(x, t), b.velocity(x, t), WEIGHT), noise, FLOW)

    def rebind():
        def field(x, t):
            a.bind(p_g)
            v_g = a.velocity(x, t)
            a.bind(p_u)
            return combine(v_g, a.velocity(x, t), WEIGHT)
        return flow_matching.sample(field, noise, FLOW)

    return {"unguided": plain, "batched": batched, "two": two, "rebind": rebind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--backends", nargs="+", default=["torch", "torch_static",
                                                          "onnxruntime"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        planner = Planner.from_pretrained(make_tiny(Path(tmp) / "m", preset_name="tiny-1.5"),
                                          backend="torch")
        results = []
        for rows in args.rows:
            p_g, p_u = _prefixes(planner, rows)
            noise = torch.randn(rows, 64, 2, generator=torch.Generator().manual_seed(0))
            for name in args.backends:
                times = {k: _timed(fn, args.runs)
                         for k, fn in _ways(planner, name, p_g, p_u, noise).items()}
                results.append({"backend": name, "rows": rows, "prefix": p_g.prefix_len,
                                **{f"{k}_ms": round(v, 1) for k, v in times.items()}})
                print(json.dumps(results[-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
