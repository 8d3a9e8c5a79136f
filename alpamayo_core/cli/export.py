"""`alpamayo-export`: export the denoise step to ONNX; `alpamayo-export trt`: build the TensorRT
engine the node loads; `alpamayo-export compare`: parity of every backend against eager torch.

    alpamayo-export --model DIR --out DIR [--exporter legacy|dynamo]
    alpamayo-export trt --model DIR [--device cuda:0] [--precision auto|bf16|fp16|fp8|fp32]
                        [--max-batch 6] [--max-prefix 4096] [--cache-dir DIR]
    alpamayo-export compare --model DIR [--device cpu] [--prefix-len 256] [--batch 2]

`trt` is the offline step: it exports the step, builds the engine into the cache
(`$ALPAMAYO_CACHE/tensorrt`, keyed by the weights, GPU, TensorRT version and build spec) and
checks it against torch; the node and the `Planner` only load engines from there.

`compare` feeds every backend the same seeded prefix (random K/V of the model's shapes) and
noise, and reports max abs error and cosine similarity against `torch` for one step and for a
full plan (`--steps`, default the model's). With random weights the plan is chaotic
(performance_anchors.md §4.2), so plan errors there are informative, not a pass/fail gate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from alpamayo_core.backends import (
    BackendUnavailable,
    available_backends,
    create_backend,
    options_for,
)
from alpamayo_core.backends.onnx_export import EXPORTERS, FILE_NAME, OPSET, export_step, model_hash
from alpamayo_core.backends.synthetic import random_prefix
from alpamayo_core.backends.tensorrt_backend import PRECISIONS, EngineSpec
from alpamayo_core.model.config import FlowConfig
from alpamayo_core.model.denoise_step import OUTPUT_NAMES, input_names
from alpamayo_core.model.flow_matching import make_noise


def _load(model_dir: str, device: str, dtype: str | None):
    from alpamayo_core.io.model_io import load_model

    loaded = load_model(model_dir, device=device, dtype=dtype)
    return loaded, loaded.model.denoise_step().eval()


def check_onnx(path: Path, num_layers: int) -> list[str]:
    """onnx.checker on `path`; ValueError unless its inputs/outputs are the step's names."""
    import onnx

    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    if names != input_names(num_layers) or [o.name for o in graph.output] != list(OUTPUT_NAMES):
        raise ValueError(f"{path}: inputs {names} do not match {input_names(num_layers)}")
    return names


def run_export(args: argparse.Namespace) -> int:
    stages = ["load model", f"export ({args.exporter})", "check graph"]
    out = Path(args.out)
    with tqdm(total=len(stages), unit="stage", file=sys.stdout) as bar:
        def advance(stage: str) -> None:
            bar.set_description(stage)

        advance(stages[0])
        loaded, step = _load(args.model, args.device, args.dtype)
        n_action = loaded.cfg.n_waypoints
        bar.update()
        advance(stages[1])
        start = time.perf_counter()
        path = export_step(step, out / FILE_NAME, args.exporter, n_action)
        export_s = time.perf_counter() - start
        bar.update()
        advance(stages[2])
        names = check_onnx(path, len(step.expert.layers))
        bar.update()
        manifest = {"model_id": loaded.model_id, "model_hash": model_hash(step),
                    "exporter": args.exporter, "opset": OPSET[args.exporter],
                    "n_action": n_action, "inputs": names, "outputs": list(OUTPUT_NAMES),
                    "dynamic": {"B": "batch", "P": "prefix length"},
                    "dtype": str(next(step.parameters()).dtype), "export_s": export_s}
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path} ({len(names)} inputs, {export_s:.1f} s) and {out / 'export.json'}")
    return 0


def run_trt(args: argparse.Namespace) -> int:
    """Build (or find) the engine for the model on the device, then check it against torch."""
    from alpamayo_core.backends.selection import ParityTolerance, parity_check
    from alpamayo_core.backends.tensorrt_backend import TensorRTBackend

    loaded, step = _load(args.model, args.device, args.dtype)
    start = time.perf_counter()
    backend = TensorRTBackend(step, args.device, cache_dir=args.cache_dir,
                              n_action=loaded.cfg.n_waypoints, build_missing=True,
                              precision=args.precision, max_batch=args.max_batch,
                              max_prefix=args.max_prefix)
    build_s = time.perf_counter() - start
    parity = parity_check(backend, step, loaded.cfg.n_waypoints)
    passed = parity.passes(ParityTolerance.for_dtype(next(step.parameters()).dtype))
    print(f"engine for {loaded.model_id} on {args.device}: precision {backend.spec.precision}, "
          f"B <= {backend.spec.max_batch}, P <= {backend.spec.max_prefix}, {build_s:.1f} s; "
          f"parity vs torch: max_abs_err {parity.max_abs_err:.3g}, cosine {parity.cosine:.6f}"
          f" -> {'passed' if passed else 'FAILED'}")
    backend.close()
    return 0 if passed else 1


def _errors(ref: torch.Tensor, got: torch.Tensor) -> dict[str, float]:
    ref, got = ref.double().flatten(), got.double().flatten()
    cosine = torch.nn.functional.cosine_similarity(ref, got, dim=0).item()
    return {"max_abs": (ref - got).abs().max().item(), "cosine": cosine}


def compare(step, device: str, batch: int, prefix_len: int, n_action: int, steps: int,
            backends: list[str], cache_dir: str | None) -> dict[str, dict]:
    """Per backend: errors vs torch for one velocity and a full Euler plan at fixed noise."""
    prefix = random_prefix(step, batch, prefix_len, n_action, seed=1, masked_tail=3)
    noise = make_noise(batch, n_action, torch.Generator().manual_seed(0)).to(device)
    t = torch.full((batch,), 0.3, device=device)
    flow = FlowConfig(num_steps=steps)
    results: dict[str, dict] = {}
    outputs = {}
    for name in ["torch", *[b for b in backends if b != "torch"]]:
        try:
            opts = options_for(name, cache_dir=cache_dir)
            with create_backend(name, step, device, **opts) as backend:
                backend.bind(prefix)
                outputs[name] = (backend.velocity(noise, t), backend.sample(noise, flow))
        except BackendUnavailable as err:
            results[name] = {"unavailable": str(err)}
            continue
        ref_step, ref_plan = outputs["torch"]
        results[name] = {"step": _errors(ref_step, outputs[name][0]),
                         "plan": _errors(ref_plan, outputs[name][1])}
    return results


def run_compare(args: argparse.Namespace) -> int:
    loaded, step = _load(args.model, args.device, args.dtype)
    backends = args.backends or available_backends(args.device)
    steps = args.steps or loaded.cfg.flow.num_steps
    results = compare(step, args.device, args.batch, args.prefix_len, loaded.cfg.n_waypoints,
                      steps, backends, args.cache_dir)
    print(f"{loaded.model_id} on {args.device}: B={args.batch}, P={args.prefix_len}, "
          f"{steps}-step plan, errors vs torch")
    print(f"{'backend':18} {'step max|d|':>12} {'step cos':>10} {'plan max|d|':>12} "
          f"{'plan cos':>10}")
    for name, r in results.items():
        if "unavailable" in r:
            print(f"{name:18} unavailable: {r['unavailable']}")
            continue
        print(f"{name:18} {r['step']['max_abs']:12.3e} {r['step']['cosine']:10.7f} "
              f"{r['plan']['max_abs']:12.3e} {r['plan']['cosine']:10.7f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    command = argv[0] if argv and argv[0] in ("compare", "trt") else "export"
    is_compare = command == "compare"
    parser = argparse.ArgumentParser(
        prog="alpamayo-export" + ("" if command == "export" else f" {command}"),
        description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder (see alpamayo-make-tiny)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: "
                        "float32 on CPU, bfloat16 on CUDA)")
    if is_compare:
        parser.add_argument("--backends", nargs="+", help="default: all available here")
        parser.add_argument("--batch", type=int, default=2)
        parser.add_argument("--prefix-len", type=int, default=256)
        parser.add_argument("--steps", type=int, help="plan steps (default: the model's)")
        parser.add_argument("--cache-dir", help="export/engine cache (default ~/.cache)")
        parser.add_argument("--json", help="also write the results here")
        return parser.parse_args(argv[1:], namespace=argparse.Namespace(command="compare"))
    if command == "trt":
        parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                            help="auto = bf16 where the GPU supports it, else fp32")
        parser.add_argument("--max-batch", type=int, default=EngineSpec.max_batch)
        parser.add_argument("--max-prefix", type=int, default=EngineSpec.max_prefix)
        parser.add_argument("--cache-dir", help="engine cache (default $ALPAMAYO_CACHE or "
                            "~/.cache/alpamayo: where the node looks)")
        parser.set_defaults(device="cuda")
        return parser.parse_args(argv[1:], namespace=argparse.Namespace(command="trt"))
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--exporter", choices=EXPORTERS, default="legacy")
    return parser.parse_args(argv, namespace=argparse.Namespace(command="export"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        run = {"compare": run_compare, "trt": run_trt, "export": run_export}[args.command]
        return run(args)
    except (BackendUnavailable, FileNotFoundError, ValueError) as err:
        print(f"alpamayo-export: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
