"""Full-size expert step on one GPU: eager, static buffers, CUDA graph, TensorRT (and ORT CUDA
with --ort), against the bandwidth floor (performance_anchors.md §3).

    python bench/gpu_expert_fullsize.py --out /tmp/gpu_expert.json [--samples 1 6] [--ort]
    python bench/gpu_expert_fullsize.py --device cpu --preset tiny --out dry.json   # dry run

Builds the released `alpamayo-r1-10b` expert (36 layers, hidden 2048, 16/8 heads x 128, MLP
8256; 2.28 B params) with random bf16 weights and a 3,086-token random prefix (the measured
Alpamayo prompt), then times ms per step (CUDA events on a GPU; min / median over --iters steps
after --warmup) and ms per 10-step plan. Each backend's velocity is checked against eager torch
(cosine >= 0.999, finite). The floor is (weight bytes + prefix K/V bytes) / bandwidth, e.g.
1.50 ms on an H100 SXM (3.35 TB/s); the report gives floor / measured for every backend.

Robust by design: the JSON report is rewritten after every backend (a crash later keeps what
ran), and any failure of a backend (build, capture, bind, run, timing) is recorded as data
(`{"error": ..., "stage": ...}`) and the run goes on. Exit 0: every backend that ran matched
torch; 1: a parity failure; 2: the device is missing. `--device cpu --preset tiny` exercises
the same code on CPU (test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

#: Peak HBM bandwidth in bytes/s by device-name fragment (vendor specs, anchors table H1-H2).
BANDWIDTH = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100": 3.35e12}
PREFIX_TOKENS = 3086
MIN_COSINE = 0.999


def bandwidth_for(name: str, override_gbs: float | None) -> float | None:
    if override_gbs:
        return override_gbs * 1e9
    return next((bw for key, bw in BANDWIDTH.items() if key in name), None)


def _ms_timer(device: torch.device):
    """A function timing one call in ms: CUDA events on a GPU, perf_counter on CPU."""
    def on_cuda(fn) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def on_cpu(fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    return on_cuda if device.type == "cuda" else on_cpu


def summary(ms: list[float]) -> dict[str, float]:
    return {"min": min(ms), "median": statistics.median(ms), "n": len(ms)}


def write_report(report: dict, path: Path | None) -> None:
    """Atomically (re)write the report: a crash mid-run keeps every finished result."""
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(path)


def backend_names(device: torch.device, ort: bool) -> list[str]:
    from alpamayo_core.backends import available_backends

    if device.type == "cuda":
        names = ["torch", "torch_static", "torch_cuda_graph", "tensorrt"]
        return names + (["onnxruntime"] if ort else [])
    return [n for n in ["torch", "torch_static", "onnxruntime"] if n in available_backends(device)]


def run_backend(name: str, step, prefix, noise, t, args) -> tuple[dict, torch.Tensor | None]:
    """One backend: build, bind, one velocity, step and plan timings. Never raises: a failure
    is returned as {"error", "stage"} (with what was measured before it)."""
    from alpamayo_core.backends import create_backend, options_for
    from alpamayo_core.model.config import FlowConfig

    device, result, stage, backend = noise.device, {}, "build", None
    timer = _ms_timer(device)
    try:
        start = time.perf_counter()
        backend = create_backend(name, step, device, **options_for(
            name, cache_dir=args.cache_dir, build_missing=args.build_engines,
            max_batch=max(args.samples)))
        stage = "bind"
        backend.bind(prefix)
        velocity = backend.velocity(noise, t).float()
        result["setup_s"] = time.perf_counter() - start
        stage = "time_steps"
        for _ in range(args.warmup):
            backend.velocity(noise, t)
        result["ms_per_step"] = summary([timer(lambda: backend.velocity(noise, t))
                                         for _ in range(args.iters)])
        stage = "time_plans"
        flow = FlowConfig(num_steps=10)
        result["ms_per_plan"] = summary([timer(lambda: backend.sample(noise, flow))
                                         for _ in range(args.plans)])
        return result, velocity
    except Exception as err:  # recorded as data: one backend never loses the whole run
        result.update(error=f"{type(err).__name__}: {err}", stage=stage)
        return result, None
    finally:
        if backend is not None:
            backend.close()


def bench_samples(step, samples: int, names: list[str], args, report: dict) -> bool:
    """All backends at B = samples; the report is rewritten after each. True if all ran ones
    matched torch."""
    from alpamayo_core.backends.synthetic import random_prefix
    from alpamayo_core.model.flow_matching import make_noise

    device = next(step.parameters()).device
    prefix = random_prefix(step, samples, args.prefix_tokens, seed=samples)
    noise = make_noise(samples, 64, torch.Generator().manual_seed(0)).to(device)
    t = torch.full((samples,), 0.3, device=device)
    out, ok, reference = report["samples"][str(samples)]["backends"], True, None
    for name in names:
        result, velocity = run_backend(name, step, prefix, noise, t, args)
        reference = velocity if name == "torch" else reference
        if velocity is not None and reference is not None:
            result["vs_torch"] = _compare(velocity, reference)
            ok &= result["vs_torch"]["passed"]
        out[name] = result
        _print(name, result)
        write_report(report, args.out)
    return ok


def _compare(got: torch.Tensor, ref: torch.Tensor) -> dict:
    cos = torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0).item()
    finite = bool(torch.isfinite(got).all())
    return {"max_abs": (got - ref).abs().max().item(), "cosine": cos, "finite": finite,
            "passed": finite and cos >= MIN_COSINE}


def _print(name: str, r: dict) -> None:
    if "error" in r:
        print(f"  {name}: FAILED at {r['stage']}: {r['error']}", flush=True)
        return
    check = r.get("vs_torch", {})
    print(f"  {name}: {r['ms_per_step']['min']:.3f} / {r['ms_per_step']['median']:.3f} ms/step "
          f"(min / median), plan {r['ms_per_plan']['median']:.1f} ms, setup "
          f"{r['setup_s']:.1f} s, cosine vs torch {check.get('cosine', 1.0):.6f}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="alpamayo-r1-10b",
                        help="model sizes (tiny for a CPU dry run)")
    parser.add_argument("--prefix-tokens", type=int, default=PREFIX_TOKENS)
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 6])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--plans", type=int, default=5)
    parser.add_argument("--ort", action="store_true", help="also try ORT's CUDA EP (needs "
                        "onnxruntime-gpu; ORT's Python binding has no bf16, so the bf16 model "
                        "is recorded as failing to build)")
    parser.add_argument("--bandwidth-gbs", type=float, help="override the HBM bandwidth")
    parser.add_argument("--build-engines", action="store_true", help="build a missing TensorRT "
                        "engine (minutes for the full-size expert); without it a missing engine "
                        "is recorded as EngineNotBuilt")
    parser.add_argument("--cache-dir", default="/tmp/alpamayo_gpu_cache")
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_expert_fullsize: no CUDA device (torch.cuda.is_available() is False); this "
              "benchmark needs one GPU with >= 24 GB (or --device cpu --preset tiny)",
              file=sys.stderr)
        return 2
    from alpamayo_core.backends.synthetic import random_step
    from alpamayo_core.model.config import preset, with_vocab_size

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    start = time.perf_counter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    step = random_step(with_vocab_size(preset(args.preset), 32), seed=0, init_std=0.02,
                       device=device, dtype=dtype)
    weight_bytes = sum(p.numel() * p.element_size() for p in step.parameters())
    print(f"{name}: expert {args.preset} built in {time.perf_counter() - start:.1f} s, "
          f"{weight_bytes / 1e9:.3f} GB of {dtype} weights", flush=True)
    bandwidth = bandwidth_for(name, args.bandwidth_gbs)
    report = {"device": name, "torch": torch.__version__, "preset": args.preset,
              "prefix_tokens": args.prefix_tokens, "weight_bytes": weight_bytes,
              "bandwidth_Bps": bandwidth, "samples": {}}
    ok = True
    for samples in args.samples:
        cfg = step.expert.config
        kv_bytes = (len(step.expert.layers) * 2 * samples * cfg.num_key_value_heads
                    * args.prefix_tokens * cfg.head_dim * dtype.itemsize)
        floor_ms = (weight_bytes + kv_bytes) / bandwidth * 1e3 if bandwidth else None
        report["samples"][str(samples)] = {"floor_ms": floor_ms, "backends": {}}
        print(f"B = {samples}: floor {floor_ms or float('nan'):.2f} ms/step", flush=True)
        ok &= bench_samples(step, samples, backend_names(device, args.ort), args, report)
        for r in report["samples"][str(samples)]["backends"].values():
            if "ms_per_step" in r and floor_ms:
                r["floor_over_measured"] = floor_ms / r["ms_per_step"]["min"]
        write_report(report, args.out)
    if args.out:
        print(f"wrote {args.out}")
    if not ok:
        print("gpu_expert_fullsize: PARITY FAILURE against eager torch (see vs_torch)",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
