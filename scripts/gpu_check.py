"""The one GPU check (run by scripts/gpu_check.sh): gpu tests, full-size expert bench, an
end-to-end bf16 plan on the tiny model with every backend, and a summary table.

    python scripts/gpu_check.py --out gpu_check_out [--device cuda:0]
    python scripts/gpu_check.py --out dry --device cpu      # CPU dry run of the same steps

Steps (each recorded in OUT/gpu_check.json as soon as it ends; a failing step never stops the
next one):
  1. `pytest -m gpu` (the GPU-marked tests; on CPU they skip with their reason),
  2. bench/gpu_expert_fullsize.py (full-size expert; on CPU the tiny preset, short prefix),
  3. per backend: a tiny model loaded in bf16, the backend chosen with its parity self-check
     against eager torch (no fallback), one seeded plan; its deviation from the torch plan is
     reported (random weights make plans chaotic, so it is informative, not a gate).
Exit status: 0 all passed; 1 a parity failure, a failed test or a backend that raised; 2 usage
errors. A backend is "unavailable" (not a failure) only when an explicit check before it runs
says it cannot run here (`unavailable_reason`: its package or device is absent, e.g. TensorRT
not installed); any exception from an available backend is a failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's alpamayo_core, also when not installed

E2E_BACKENDS = ("torch", "torch_static", "torch_cuda_graph", "tensorrt", "onnxruntime")
PASSED, FAILED, UNAVAILABLE = "passed", "FAILED", "unavailable"
NOT_BUILT = "skipped (engine not built)"


def run_gpu_tests(device: str, out: Path) -> dict:
    """`pytest -m gpu`; on a CPU dry run the tests only collect and skip."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
           f"--junitxml={out / 'gpu_tests.xml'}", str(ROOT / "test")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    # pytest exit 5 = nothing collected/selected; 0 = all selected passed or skipped.
    status = PASSED if proc.returncode in (0, 5) else FAILED
    if device == "cpu":
        status = "skipped (CPU dry run)" if status == PASSED else status
    return {"status": status, "returncode": proc.returncode, "summary": tail[0],
            "seconds": time.perf_counter() - start}


def run_bench(device: str, out: Path) -> dict:
    """bench/gpu_expert_fullsize.py (tiny preset and a short prefix on CPU)."""
    report = out / "expert_fullsize.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_expert_fullsize.py"), "--device", device,
           "--out", str(report), "--cache-dir", str(out / "cache")]
    if device == "cpu":
        cmd += ["--preset", "tiny", "--prefix-tokens", "64", "--samples", "1", "--iters", "3",
                "--warmup", "1", "--plans", "1"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420)
    (out / "expert_fullsize.log").write_text(proc.stdout + proc.stderr)
    backends = {}
    if report.is_file():
        dtype = torch.float32 if device == "cpu" else torch.bfloat16  # the bench's dtype
        for samples, entry in json.loads(report.read_text())["samples"].items():
            for name, r in entry["backends"].items():
                reason = unavailable_reason(name, device, dtype)
                backends[f"{name} B={samples}"] = _bench_status(r, reason)
    status = {0: PASSED, 1: FAILED}.get(proc.returncode, f"{FAILED} (exit {proc.returncode})")
    return {"status": status, "returncode": proc.returncode, "backends": backends,
            "seconds": time.perf_counter() - start}


def unavailable_reason(name: str, device: str | torch.device,
                       dtype: torch.dtype) -> str | None:
    """Why backend `name` cannot run on `device` at all (its package or device is absent, or
    it takes no `dtype` weights), or None when it can. Decided before the backend runs, so that
    an exception from an available backend is reported as a failure, never as "unavailable"."""
    from alpamayo_core.backends import available_backends

    if name not in available_backends(device):
        return (f"{name}: not available on {device} (its package or device is absent; "
                f"available: {', '.join(available_backends(device)) or 'none'})")
    if name == "onnxruntime" and dtype == torch.bfloat16:
        return "onnxruntime: cannot run bfloat16 weights (its Python API has no bfloat16)"
    return None


def _bench_status(r: dict, unavailable: str | None) -> dict:
    """One bench entry; `unavailable` is `unavailable_reason` for its backend. The bench
    builds no TensorRT engine (minutes at full size; the e2e step builds and checks one), so
    its EngineNotBuilt is a skip; any other error of an available backend is a failure."""
    if "error" in r:
        status = (UNAVAILABLE if unavailable is not None
                  else NOT_BUILT if r["error"].startswith("EngineNotBuilt:") else FAILED)
        return {"status": status, "detail": f"{r['stage']}: {r['error']}"}
    check = r.get("vs_torch", {"passed": True, "cosine": 1.0, "max_abs": 0.0})
    return {"status": PASSED if check["passed"] else FAILED,
            "detail": f"{r['ms_per_step']['min']:.3f} ms/step, cosine {check['cosine']:.6f}, "
                      f"max_abs {check['max_abs']:.3g}"}


def run_e2e(device: str, out: Path) -> dict:
    """A seeded bf16 plan on the tiny model with every backend, each after its self-check."""
    from alpamayo_core.cli.make_tiny import make_tiny
    from alpamayo_core.io.model_io import load_model

    model_dir = out / "tiny_model"
    if not (model_dir / "config.json").is_file():
        make_tiny(model_dir, seed=0)
    loaded = load_model(model_dir, device=device, dtype="bfloat16")
    results, reference = {}, None
    for name in E2E_BACKENDS:
        results[name], xyz_m = _plan_with(loaded, name, out)
        if name == "torch":
            reference = xyz_m
        elif xyz_m is not None and reference is not None:
            deviation = np.abs(xyz_m - reference).max()
            results[name]["detail"] += f", plan max|d| vs torch {deviation:.3g} m"
    status = FAILED if any(r["status"] == FAILED for r in results.values()) else PASSED
    return {"status": status, "backends": results}


def _plan_with(loaded, name: str, out: Path, **options) -> tuple[dict, np.ndarray | None]:
    """One plan on backend `name` (no fallback); `options` are extra backend options."""
    from alpamayo_core.backends.selection import NoBackendPassed
    from alpamayo_core.inference.planner import Planner
    from alpamayo_core.inference.reasoning import SamplingConfig

    weight = loaded.model.action_out_proj.weight
    reason = unavailable_reason(name, weight.device, weight.dtype)
    if reason is not None:
        return {"status": UNAVAILABLE, "detail": reason}, None
    try:
        planner = Planner(loaded, SamplingConfig(max_new_tokens=4, num_traj_samples=2),
                          backend=name, backend_fallback=False,
                          backend_options={"cache_dir": str(out / "cache"),
                                           "build_missing": True, **options})
    except NoBackendPassed as err:  # failed to build, raised in or failed its self-check
        return {"status": FAILED, "detail": err.trials[-1].summary()}, None
    except Exception as err:  # an available backend that raises is a failure
        return {"status": FAILED, "detail": f"{type(err).__name__}: {err}"}, None
    try:
        plan = planner.plan(_straight_inputs(loaded.cfg), seed=0)
    except Exception as err:  # a backend that passed its check but fails in a plan
        return {"status": FAILED, "detail": f"plan raised {type(err).__name__}: {err}"}, None
    finite = bool(np.isfinite(plan.xyz_m).all())
    trial = planner.backend_selection.chosen
    return {"status": PASSED if finite else FAILED,
            "detail": trial.summary() + ("" if finite else ", NON-FINITE plan")}, plan.xyz_m


def _straight_inputs(cfg):
    from alpamayo_core.inference.plan import PlanInputs

    n_cams, n_frames = len(cfg.images.cameras), len(cfg.images.frame_offsets_s)
    images = np.random.default_rng(0).integers(0, 255, (n_cams, n_frames, 96, 160, 3),
                                               dtype=np.uint8)
    steps = cfg.history_tokenizer.num_steps
    xyz = np.zeros((steps, 3))
    xyz[:, 0] = -0.8 * np.arange(steps - 1, -1, -1)  # 8 m/s straight
    return PlanInputs(images, xyz, np.repeat(np.eye(3)[None], steps, 0), t0_ns=0)


def summary_table(report: dict) -> tuple[list[str], int]:
    """Printable rows and the exit status (1 when any entry FAILED)."""
    rows = [f"{'check':34} {'status':24} detail"]
    failed = False
    for step in ("gpu_tests", "expert_bench", "e2e_bf16_plan"):
        entry = report.get(step, {"status": f"{FAILED} (did not run)"})
        failed |= entry["status"].startswith(FAILED)
        rows.append(f"{step:34} {entry['status']:24} {entry.get('summary', '')}")
        for name, sub in entry.get("backends", {}).items():
            failed |= sub["status"] == FAILED
            rows.append(f"  {name:32} {sub['status']:24} {sub['detail']}")
    return rows, int(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (dry run)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    args = parser.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --device cpu for a dry run",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": args.device, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(args.device) if args.device != "cpu" else "cpu"}
    for step, run in (("gpu_tests", run_gpu_tests), ("expert_bench", run_bench),
                      ("e2e_bf16_plan", run_e2e)):
        print(f"[gpu_check] {step} ...", flush=True)
        try:
            report[step] = run(args.device, args.out)
        except Exception as err:  # recorded; the next step still runs
            report[step] = {"status": f"{FAILED} ({type(err).__name__})", "summary": str(err)}
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    rows, status = summary_table(report)
    print("\n".join(rows))
    print(f"[gpu_check] {'PASSED' if status == 0 else 'FAILED'}; details in "
          f"{args.out / 'gpu_check.json'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
