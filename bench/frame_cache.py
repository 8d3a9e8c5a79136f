"""Steady-state plan time at 10 Hz with and without the frame cache, through the node's pipeline.

A synthetic drive (4 rendered 1080p cameras at 10 Hz, odometry at 50 Hz) is fed into the node's
camera and odometry buffers; every 100 ms `plan_assembly.assemble` builds the inputs (with
frame keys) as the node does, and the same planner plans twice: with the keys (frames seen in
the previous plan, 12 of 16, are neither resized nor encoded again: their model-size pixels and
vision-tower outputs come from the planner's frame caches) and without them (all 16 frames
resized and through the vision tower). The two run interleaved, alternating which goes
first; both plans of a tick must be identical. Tiny model, 1 thread.

    python bench/frame_cache.py [--ticks 12] [--model DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from node_overhead import CAMERA_DT_NS, START_NS, _camera_messages, _feed

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig
from alpamayo_ros.node.camera_buffer import CameraBuffer, CameraBufferConfig
from alpamayo_ros.node.ego_history import EgoHistoryBuffer
from alpamayo_ros.node.plan_assembly import assemble

STAGES = ("preprocess", "vision", "prefill", "decode", "flow", "total")


def run(planner: Planner, ticks: int) -> dict[str, dict[str, list[float]]]:
    frames = _camera_messages("raw")
    cameras = CameraBuffer(CameraBufferConfig(cameras=tuple(n for n, _ in frames),
                                              reference_camera=frames[1][0], window_s=1.5))
    odometry = EgoHistoryBuffer()
    t_ns = START_NS + 2_000_000_000
    _feed(cameras, odometry, frames, START_NS, t_ns)
    samples: dict[str, dict[str, list[float]]] = {"cached": {}, "uncached": {}}
    for tick in range(ticks + 2):  # two warm-up ticks fill the cache
        _feed(cameras, odometry, frames, t_ns + 1, t_ns + CAMERA_DT_NS)
        t_ns += CAMERA_DT_NS
        inputs = assemble(cameras, odometry, now_ns=t_ns, tolerance_s=0.05,
                          max_image_age_s=0.5, odom_frame="odom").inputs
        variants = {"cached": inputs,
                    "uncached": dataclasses.replace(inputs, frame_keys=None)}
        order = ("cached", "uncached") if tick % 2 else ("uncached", "cached")
        plans = {name: planner.plan(variants[name], seed=tick) for name in order}
        if not np.array_equal(plans["cached"].xyz_m, plans["uncached"].xyz_m):
            raise RuntimeError(f"tick {tick}: the cached plan differs from the uncached one")
        if tick >= 2:
            for name, plan in plans.items():
                for stage in STAGES:
                    samples[name].setdefault(stage, []).append(plan.timings_ms[stage])
    return samples


def report(samples: dict[str, dict[str, list[float]]]) -> None:
    print(f"{'stage':<12}{'cached min':>11}{'median':>9}{'uncached min':>14}{'median':>9}")
    for stage in STAGES:
        c, u = samples["cached"][stage], samples["uncached"][stage]
        print(f"{stage:<12}{min(c):11.1f}{statistics.median(c):9.1f}{min(u):14.1f}"
              f"{statistics.median(u):9.1f}")
    total_c, total_u = samples["cached"]["total"], samples["uncached"]["total"]
    print(f"\nsteady state at 10 Hz: uncached / cached = {min(total_u) / min(total_c):.2f}x "
          f"(minima), {statistics.median(total_u) / statistics.median(total_c):.2f}x (medians)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=12)
    p.add_argument("--model", help="model folder (default: build the tiny one)")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_tiny(os.path.join(tmp, "tiny"))
        planner = Planner.from_pretrained(model, sampling=SamplingConfig(max_new_tokens=38))
        print(f"model {planner.model_id}, backend {planner.backend_name}, {args.ticks} ticks, "
              f"load average {os.getloadavg()[0]:.1f}")
        report(run(planner, args.ticks))


if __name__ == "__main__":
    main()
