"""`alpamayo-export`: export the denoise step to ONNX (optionally a TensorRT engine), and
`alpamayo-export compare`: parity of every available backend against eager PyTorch.

    alpamayo-export --model DIR --out DIR [--exporter legacy|dynamo]
                    [--tensorrt --precision fp16|bf16|fp8]
    alpamayo-export compare --model DIR [--device cpu] [--prefix-len 256] [--batch 2]

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
    stages += ["build TensorRT engine"] if args.tensorrt else []
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
        if args.tensorrt:
            advance(stages[3])
            from alpamayo_core.backends.tensorrt_backend import EngineSpec, load_or_build

            spec = EngineSpec(precision=args.precision, max_batch=args.max_batch,
                              max_prefix=args.max_prefix)
            engine = load_or_build(step, spec, torch.device(args.device), out, path, n_action)
            manifest["tensorrt_engine"] = str(engine)
            bar.update()
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path} ({len(names)} inputs, {export_s:.1f} s) and {out / 'export.json'}")
    return 0


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
    is_compare = bool(argv) and argv[0] == "compare"
    parser = argparse.ArgumentParser(
        prog="alpamayo-export" + (" compare" if is_compare else ""),
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
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--exporter", choices=EXPORTERS, default="legacy")
    parser.add_argument("--tensorrt", action="store_true",
                        help="also build a TensorRT engine (needs CUDA + TensorRT)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16", "fp8"], default="fp16")
    parser.add_argument("--max-batch", type=int, default=6)
    parser.add_argument("--max-prefix", type=int, default=4096)
    return parser.parse_args(argv, namespace=argparse.Namespace(command="export"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return run_compare(args) if args.command == "compare" else run_export(args)
    except (BackendUnavailable, FileNotFoundError, ValueError) as err:
        print(f"alpamayo-export: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
