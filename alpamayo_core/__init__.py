"""Alpamayo-R1 without ROS: the model, its inputs, inference, checkpoint I/O and backends.

    from alpamayo_core import Planner, PlanInputs
    planner = Planner.from_pretrained("models/alpamayo-r1-10b", device="cuda")

Subpackages, each depending only on those before it:

    model/      the network and its maths (configs, Qwen3-VL build, expert, flow matching,
                action space, vocabulary)
    inputs/     images, prompt layout, history tokens, text extraction, offline tokenizers
    io/         config.json parsing, sharded safetensors, model folders
    backends/   the expert's denoise step on torch, ONNX Runtime, CUDA graphs, TensorRT
    inference/  phase-1 reasoning loop, `Planner`, `PlanInputs`/`Plan`, selection, timing
    sim/        synthetic drives (roads, rendered cameras, odometry)
    cli/        the alpamayo-* command-line tools

The names below load on first use, so importing one subpackage does not import them all.
"""

from __future__ import annotations

import importlib

#: Public name -> the module defining it.
_EXPORTS = {
    "Planner": "alpamayo_core.inference.planner",
    "PlanInputs": "alpamayo_core.inference.plan",
    "Plan": "alpamayo_core.inference.plan",
    "SamplingConfig": "alpamayo_core.inference.reasoning",
    "ModelConfig": "alpamayo_core.model.config",
    "preset": "alpamayo_core.model.config",
    "load_model": "alpamayo_core.io.model_io",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alpamayo_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
