"""Per-stage time of a full plan on the tiny model, next to the reference's CPU numbers.

Setup of performance_anchors.md §0b: tiny random-init model of the released topology, 4 cameras
x 4 frames of 320x576, a fixed 37-token reasoning (forced through a logits processor, so decode
runs the real sampling loop for 38 steps), 10 Euler flow steps, 1 sample, 1 thread, fp32.

    python bench/plan.py [--runs 15] [--model DIR] [--json out.json]

Prints min / median per stage and the ratio to the reference (lower is better). Targets: at
most half the reference end to end, at most 3 ms per flow step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from transformers import LogitsProcessor

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig

#: Reference implementation on the same model sizes and inputs (min ms, anchors §0b).
REFERENCE_MS = {"preprocess": 230.0, "prefill+decode": 536.0, "flow": 98.0, "total": 644.0}
REASONING_TOKENS = 37


class ForceTokens(LogitsProcessor):
    """Forces a fixed token sequence, one per decode step (a real logits processor)."""

    def __init__(self, tokens: torch.Tensor, prompt_len: int):
        self.tokens, self.prompt_len = tokens, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = min(input_ids.shape[1] - self.prompt_len, len(self.tokens) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[step]] = 0.0
        return forced


def reasoning_ids(planner: Planner) -> torch.Tensor:
    ids = planner.loaded.token_ids
    text = planner.loaded.tokenizer("The lead vehicle brakes so the ego car slows down and "
                                    "keeps a safe gap to the car ahead in its lane.")["input_ids"]
    body = (text * 4)[:REASONING_TOKENS - 2]
    return torch.tensor([*body, ids.cot_end, ids.traj_future_start], dtype=torch.int64)


def inputs() -> PlanInputs:
    images = np.random.default_rng(0).integers(0, 255, (4, 4, 320, 576, 3), dtype=np.uint8)
    xyz = np.zeros((16, 3))
    xyz[:, 0] = -np.arange(15, -1, -1)
    return PlanInputs(images, xyz, np.repeat(np.eye(3)[None], 16, 0))


def run(model_dir: Path, runs: int) -> dict[str, list[float]]:
    torch.set_num_threads(1)
    planner = Planner.from_pretrained(model_dir, sampling=SamplingConfig(max_new_tokens=64))
    plan_inputs = inputs()
    prompt_len = planner.preprocess(plan_inputs).length
    force = ForceTokens(reasoning_ids(planner), prompt_len)
    samples: dict[str, list[float]] = {}
    for i in range(runs + 2):
        plan = planner.plan(plan_inputs, seed=i, logits_processor=force)
        if i < 2:  # warm-up
            continue
        t = dict(plan.timings_ms)
        t["prefill+decode"] = t["prefill"] + t["decode"]
        t["flow/step"] = t["flow"] / planner.flow.num_steps
        for k, v in t.items():
            samples.setdefault(k, []).append(v)
    if plan.num_generated_tokens != REASONING_TOKENS + 1:
        raise RuntimeError(f"expected {REASONING_TOKENS + 1} decode steps, "
                           f"got {plan.num_generated_tokens}")
    print(f"prompt {prompt_len} tokens, reasoning {REASONING_TOKENS} tokens, "
          f"{planner.flow.num_steps} flow steps, backend {planner.backend_name}")
    return samples


def report(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    rows = {}
    print(f"{'stage':<16}{'min ms':>9}{'median':>9}{'reference':>11}{'ratio(min)':>12}")
    for stage in ("preprocess", "prefill", "decode", "prefill+decode", "flow", "flow/step",
                  "trajectory", "total"):
        lo, med = min(samples[stage]), statistics.median(samples[stage])
        ref = REFERENCE_MS.get(stage)
        ratio = f"{lo / ref:11.2f}x" if ref else ""
        print(f"{stage:<16}{lo:9.1f}{med:9.1f}{(f'{ref:.0f}' if ref else '-'):>11}{ratio}")
        rows[stage] = {"min_ms": lo, "median_ms": med, "reference_ms": ref}
    total = rows["total"]["min_ms"] / REFERENCE_MS["total"]
    print(f"\nend to end: {total:.2f}x the reference (target <= 0.5); flow step "
          f"{rows['flow/step']['min_ms']:.2f} ms (target <= 3)")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--model", type=Path, help="model folder (default: build the tiny one)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_tiny(Path(tmp) / "tiny")
        rows = report(run(model, args.runs))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
