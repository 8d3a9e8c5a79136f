"""Full-size expert step on one GPU: eager, static buffers, CUDA graph (and ORT CUDA with
--ort), against the bandwidth floor (performance_anchors.md §3). Prepared for a GPU task; not
run on the CPU box.

    python bench/gpu_expert_fullsize.py --out /tmp/gpu_expert.json [--samples 1 6] [--ort]

Builds the released `alpamayo-r1-10b` expert (36 layers, hidden 2048, 16/8 heads x 128, MLP
8256; 2.28 B params) with random bf16 weights and a 3,086-token random bf16 prefix (the measured
Alpamayo prompt), then times ms per step with CUDA events (min / median over --iters steps after
--warmup) and ms per 10-step plan. Self-checks: the CUDA-graph velocity must match eager
(cosine >= 0.999, finite); exits 1 otherwise, 2 without CUDA. The floor is
(weight bytes + prefix K/V bytes) / bandwidth, e.g. 1.50 ms on an H100 SXM (3.35 TB/s); the
report gives floor / measured (fraction of the bound) for every backend.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

#: Peak HBM bandwidth in bytes/s by device-name fragment (vendor specs, anchors table H1-H2).
BANDWIDTH = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100": 3.35e12}
PREFIX_TOKENS = 3086


def bandwidth_for(name: str, override_gbs: float | None) -> float | None:
    if override_gbs:
        return override_gbs * 1e9
    return next((bw for key, bw in BANDWIDTH.items() if key in name), None)


def time_steps(backend, x: torch.Tensor, t: torch.Tensor, warmup: int, iters: int) -> list[float]:
    """Per-step ms with CUDA events around each velocity call."""
    for _ in range(warmup):
        backend.velocity(x, t)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        backend.velocity(x, t)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def time_plans(backend, noise: torch.Tensor, plans: int) -> list[float]:
    from alpamayo_core.model.config import FlowConfig

    flow, times = FlowConfig(num_steps=10), []
    for _ in range(plans):
        torch.cuda.synchronize()
        start = time.perf_counter()
        backend.sample(noise, flow)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(ms: list[float]) -> dict[str, float]:
    return {"min": min(ms), "median": statistics.median(ms), "n": len(ms)}


def bench_samples(step, samples: int, names: list[str], args) -> dict:
    from alpamayo_core.backends import BackendUnavailable, create_backend
    from alpamayo_core.backends.synthetic import random_prefix
    from alpamayo_core.model.flow_matching import make_noise

    prefix = random_prefix(step, samples, PREFIX_TOKENS, seed=samples)
    gen = torch.Generator().manual_seed(0)
    noise = make_noise(samples, 64, gen).cuda()
    t = torch.full((samples,), 0.3, device="cuda")
    out, velocities = {}, {}
    for name in names:
        try:
            start = time.perf_counter()
            backend = create_backend(name, step, "cuda", cache_dir=args.cache_dir)
            backend.bind(prefix)
            velocities[name] = backend.velocity(noise, t).float()
            torch.cuda.synchronize()
            setup_s = time.perf_counter() - start
        except (BackendUnavailable, ValueError) as err:
            out[name] = {"unavailable": str(err)}
            print(f"  {name}: unavailable: {err}", flush=True)
            continue
        steps = time_steps(backend, noise, t, args.warmup, args.iters)
        plans = time_plans(backend, noise, args.plans)
        backend.close()
        out[name] = {"setup_s": setup_s, "ms_per_step": summary(steps),
                     "ms_per_plan": summary(plans)}
        print(f"  {name}: {summary(steps)['min']:.3f} / {summary(steps)['median']:.3f} ms/step "
              f"(min / median), plan {summary(plans)['median']:.1f} ms, setup {setup_s:.1f} s",
              flush=True)
    ref = velocities.get("torch")
    for name, vel in velocities.items():
        cos = torch.nn.functional.cosine_similarity(vel.flatten(), ref.flatten(), dim=0).item()
        out[name]["vs_torch"] = {"max_abs": (vel - ref).abs().max().item(), "cosine": cos,
                                 "finite": bool(torch.isfinite(vel).all())}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 6])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--plans", type=int, default=5)
    parser.add_argument("--ort", action="store_true", help="also try ORT's CUDA EP (needs "
                        "onnxruntime-gpu; exports 4.6 GB first; ORT's Python binding has no "
                        "bf16, so the bf16 model is reported unavailable)")
    parser.add_argument("--bandwidth-gbs", type=float, help="override the HBM bandwidth")
    parser.add_argument("--cache-dir", default="/tmp/alpamayo_gpu_cache")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_expert_fullsize: no CUDA device (torch.cuda.is_available() is False); this "
              "benchmark needs one GPU with >= 24 GB", file=sys.stderr)
        return 2

    from alpamayo_core.backends.synthetic import random_step
    from alpamayo_core.model.config import preset

    name = torch.cuda.get_device_name()
    torch.backends.cuda.matmul.allow_tf32 = True
    start = time.perf_counter()
    step = random_step(preset("alpamayo-r1-10b"), seed=0, init_std=0.02, device="cuda",
                       dtype=torch.bfloat16)
    weight_bytes = sum(p.numel() * p.element_size() for p in step.parameters())
    print(f"{name}: expert built in {time.perf_counter() - start:.1f} s, "
          f"{weight_bytes / 1e9:.2f} GB of bf16 weights", flush=True)
    names = ["torch", "torch_static", "torch_cuda_graph"] + (["onnxruntime"] if args.ort else [])
    bandwidth = bandwidth_for(name, args.bandwidth_gbs)
    report = {"device": name, "torch": torch.__version__, "prefix_tokens": PREFIX_TOKENS,
              "weight_bytes": weight_bytes, "bandwidth_Bps": bandwidth, "samples": {}}
    failed = False
    for samples in args.samples:
        kv_bytes = 36 * 2 * samples * 8 * PREFIX_TOKENS * 128 * 2
        floor_ms = (weight_bytes + kv_bytes) / bandwidth * 1e3 if bandwidth else None
        print(f"B = {samples}: floor {floor_ms or float('nan'):.2f} ms/step", flush=True)
        result = bench_samples(step, samples, names, args)
        for backend, r in result.items():
            if "ms_per_step" in r and floor_ms:
                r["floor_over_measured"] = floor_ms / r["ms_per_step"]["min"]
                print(f"  {backend}: {100 * r['floor_over_measured']:.0f} % of the bandwidth "
                      f"bound ({floor_ms:.2f} ms)")
            check = r.get("vs_torch")
            if check and (not check["finite"] or check["cosine"] < 0.999):
                print(f"  SELF-CHECK FAILED for {backend}: {check}", file=sys.stderr)
                failed = True
        report["samples"][samples] = {"floor_ms": floor_ms, "backends": result}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
