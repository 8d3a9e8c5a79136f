"""Benchmark of the expert backends: ms per denoising step and per plan, each backend in its
own process, 1 thread (performance_anchors.md §4.2).

    python bench/expert.py --out bench/results/expert_cpu.json
    python bench/expert.py --sizes tiny --backends torch onnxruntime --plans 25

Sizes (random weights, §4.2): tiny = 2 layers, hidden 128, 4/2 heads x 32, MLP 512, prefix 512;
small = 4 layers, hidden 256, 8/4 heads x 32, MLP 1024, prefix 1024; tiny3k = tiny at the
released 16-image prompt length (prefix 3072). Backend "auto" is what a planner with B rows
gets: `select("auto")`'s timed trial at B rows and the size's prefix (the chosen backend is
reported per point). Sweeps: steps {1, 5, 10}
x samples {1, 6}. A "step" is one velocity evaluation plus the Euler update; a "plan" is the
whole flow (noise -> x1). Setup (export, session, first bind) is timed apart from the steady
state. Ratios are eager / backend from this run only: the shared 2-core machine alternates
between phases ~1.5x apart, so compare minimums within one run. The auto worker also times
eager torch in its own process, interleaved with its pick, and reports that ratio (a ratio
across two processes mixes machine phases: auto's pick once read 1.70x there while the same
backend read 2.13x in its own process; timed side by side in one process they differ <1%).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = {
    "tiny": dict(layers=2, hidden=128, heads=4, kv_heads=2, mlp=512, prefix=512),
    "small": dict(layers=4, hidden=256, heads=8, kv_heads=4, mlp=1024, prefix=1024),
    "tiny3k": dict(layers=2, hidden=128, heads=4, kv_heads=2, mlp=512, prefix=3072),
}
HEAD_DIM = 32


def size_config(size: str):
    """ModelConfig of a §4.2 benchmark size (the tiny preset's VLM reshaped to match)."""
    from alpamayo_core.model.config import preset, with_vocab_size

    s, cfg = SIZES[size], with_vocab_size(preset("tiny"), 32)
    text = dataclasses.replace(cfg.text, num_hidden_layers=s["layers"],
                               num_attention_heads=s["kv_heads"],
                               num_key_value_heads=s["kv_heads"], head_dim=HEAD_DIM)
    expert = dataclasses.replace(cfg.expert, num_hidden_layers=s["layers"],
                                 hidden_size=s["hidden"], intermediate_size=s["mlp"],
                                 num_attention_heads=s["heads"],
                                 num_key_value_heads=s["kv_heads"], head_dim=HEAD_DIM)
    return cfg.replace(text=text, expert=expert, action_in_proj=dataclasses.replace(
        cfg.action_in_proj, hidden_size=s["hidden"]))


def stats_ms(values_s: list[float], per: int = 1) -> dict[str, float]:
    ms = sorted(v * 1e3 / per for v in values_s)
    return {"min": ms[0], "median": statistics.median(ms),
            "p90": ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]}


def run_worker(args: argparse.Namespace) -> dict:
    """Time one backend at one size over the whole sweep (runs in its own process), under
    inference mode as `Planner.plan` runs it."""
    import torch

    with torch.inference_mode():
        return _sweep(args)


def _sweep(args: argparse.Namespace) -> dict:
    import torch

    from alpamayo_core.backends import create_backend, options_for, select
    from alpamayo_core.backends.synthetic import random_prefix, random_step
    from alpamayo_core.model.config import FlowConfig
    from alpamayo_core.model.flow_matching import make_noise

    torch.set_num_threads(1)
    step = random_step(size_config(args.size), seed=0)
    opts = dict(cache_dir=args.cache_dir, intra_op_threads=1)

    def build(samples: int):
        if args.backend == "auto":
            return select("auto", step, "cpu", trial_batch=samples,
                          trial_prefix_len=SIZES[args.size]["prefix"], **opts).backend
        return create_backend(args.backend, step, "cpu", **options_for(args.backend, **opts))

    start = time.perf_counter()
    backend = build(args.samples[0])
    result = {"backend": args.backend, "size": args.size, "setup_s": time.perf_counter() - start,
              "params": sum(p.numel() for p in step.parameters()), "points": []}
    # auto's own process also times eager torch, interleaved: its ratio is of one process
    eager = create_backend("torch", step, "cpu") if args.backend == "auto" else None
    for samples in args.samples:
        if args.backend == "auto" and samples != args.samples[0]:
            backend.close()
            backend = build(samples)
        prefix = random_prefix(step, samples, SIZES[args.size]["prefix"], seed=samples)
        noise = make_noise(samples, 64, torch.Generator().manual_seed(0))
        start = time.perf_counter()
        backend.bind(prefix)
        backend.velocity(noise, torch.zeros(samples))
        bind_s = time.perf_counter() - start
        if eager is not None:
            eager.bind(prefix)
        for steps in args.steps:
            times = _time_plans([backend, eager], noise, FlowConfig(num_steps=steps), args)
            point = {"samples": samples, "steps": steps, "chosen": backend.name,
                     "first_bind_s": bind_s, "plans": len(times[0]),
                     "ms_per_plan": stats_ms(times[0]), "ms_per_step": stats_ms(times[0], steps)}
            if eager is not None:
                ref = stats_ms(times[1], steps)
                point["speedup_vs_torch_same_process"] = {
                    k: ref[k] / point["ms_per_step"][k] for k in ("min", "median")}
            result["points"].append(point)
    backend.close()
    return result


def _time_plans(backends: list, noise, flow, args: argparse.Namespace) -> list[list[float]]:
    """Seconds per flow of each backend (None entries skipped), alternating which goes first."""
    live = [b for b in backends if b is not None]
    for _ in range(args.warmup):
        for backend in live:
            backend.sample(noise, flow)
    times: list[list[float]] = [[] for _ in live]
    for i in range(args.plans):
        order = list(enumerate(live))
        for k, backend in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            backend.sample(noise, flow)
            times[k].append(time.perf_counter() - start)
    return times


def spawn(backend: str, size: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TORCHINDUCTOR_COMPILE_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--size", size,
           "--plans", str(args.plans), "--warmup", str(args.warmup),
           "--cache-dir", args.cache_dir, "--steps", *map(str, args.steps),
           "--samples", *map(str, args.samples)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"backend": backend, "size": size, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_ratios(results: list[dict]) -> None:
    """eager / backend for min and median per step, matched by (size, samples, steps)."""
    eager = {(r["size"], p["samples"], p["steps"]): p["ms_per_step"]
             for r in results if r.get("backend") == "torch" for p in r["points"]}
    for r in results:
        for p in r.get("points", []):
            ref = eager.get((r["size"], p["samples"], p["steps"]))
            if ref:
                p["speedup_vs_torch"] = {k: ref[k] / p["ms_per_step"][k]
                                         for k in ("min", "median")}


def print_table(results: list[dict]) -> None:
    print(f"{'size':6} {'backend':12} {'B':>2} {'steps':>5} | {'ms/step min':>11} "
          f"{'median':>7} {'p90':>7} | {'ms/plan min':>11} {'median':>7} | "
          f"{'x eager min':>11} {'median':>7} | setup s")
    for r in results:
        if "error" in r:
            print(f"{r['size']:6} {r['backend']:12} FAILED: {r['error'].splitlines()[-1]}")
            continue
        for p in r["points"]:
            s, pl, x = p["ms_per_step"], p["ms_per_plan"], p.get("speedup_vs_torch", {})
            name = r["backend"] if r["backend"] != "auto" else f"auto={p['chosen']}"
            x = p.get("speedup_vs_torch_same_process", x)  # auto: eager timed in its process
            print(f"{r['size']:6} {name:12} {p['samples']:>2} {p['steps']:>5} | "
                  f"{s['min']:11.3f} {s['median']:7.3f} {s['p90']:7.3f} | {pl['min']:11.2f} "
                  f"{pl['median']:7.2f} | {x.get('min', float('nan')):11.2f} "
                  f"{x.get('median', float('nan')):7.2f} | {r['setup_s']:.2f}")


def environment() -> dict:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__, "python": platform.python_version(),
            "nproc": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "threads": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--backends", nargs="+",
                        default=["torch", "torch_static", "onnxruntime", "auto"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1, 5, 10])
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 6])
    parser.add_argument("--plans", type=int, default=25, help="timed plans per point")
    parser.add_argument("--warmup", type=int, default=3, help="untimed plans per point")
    parser.add_argument("--cache-dir", default="/tmp/alpamayo_bench_cache",
                        help="ONNX export cache")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plans < 1 or args.warmup < 0:
        parser.error("--plans must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    results = []
    for size in args.sizes:
        for backend in args.backends:
            print(f"running {backend} at {size} ...", flush=True)
            results.append(spawn(backend, size, args))
    add_ratios(results)
    print_table(results)
    report = {"environment": environment(), "sizes": {s: SIZES[s] for s in args.sizes},
              "plans": args.plans, "warmup": args.warmup, "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
