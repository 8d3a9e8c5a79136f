"""Where the prefill's time goes: torch.profiler over the tiny model's prefill (bench/plan.py's
model and inputs: 16 frames of 320x576, 3065-token prompt, 1 thread), as planned today:
mRoPE positions (`get_rope_index`), then `prefill.prefill_into` (text model into the static
cache), with the vision features computed beforehand. Prints the prefill time (min of
`--runs`), then the operators by self time, grouped by input shape, with their share.

    python bench/prefill_profile.py [--runs 5] [--rows 12]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from plan import setup

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.inference.decode_step import TextDecodeStep
from alpamayo_core.inference.frame_cache import encode_frames
from alpamayo_core.inference.prefill import prefill_into
from alpamayo_core.inference.reasoning import _prompt_positions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rows", type=int, default=12, help="operator rows to print")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        planner, plan_inputs, _ = setup(make_tiny(Path(tmp) / "tiny"))  # outside inference mode
    with torch.inference_mode():
        vlm, prompt = planner.loaded.model.vlm, planner.preprocess(plan_inputs)
        features = encode_frames(vlm.model.visual, prompt.pixel_values, prompt.image_grid_thw,
                                 None, None)
        step = TextDecodeStep(vlm)

        def prefill() -> None:
            positions = _prompt_positions(vlm, prompt.input_ids, prompt.image_grid_thw)
            cache = step.allocate(1, prompt.length + 64)
            prefill_into(vlm, prompt.input_ids, positions, features, cache)

        prefill()
        best = float("inf")
        for _ in range(args.runs):
            start = time.perf_counter()
            prefill()
            best = min(best, time.perf_counter() - start)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            prefill()
    print(f"prefill {best * 1e3:.1f} ms (min of {args.runs}), prompt {prompt.length} tokens, "
          f"load average {os.getloadavg()[0]:.1f}")
    events = sorted(prof.key_averages(group_by_input_shape=True),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    for e in events[:args.rows]:
        print(f"{100 * e.self_cpu_time_total / total:5.1f}%  {e.count:4d} x  {e.key:<45} "
              f"{str(e.input_shapes)[:70]}")


if __name__ == "__main__":
    main()
