"""Expert backends behind one interface, and the registry that picks one.

    backend = create_backend(resolve("auto", device), step, device)
    backend.bind(prefix)                   # once per plan
    x1 = backend.sample(noise, flow_cfg)   # or backend.velocity(x, t) per solver step

Names: "torch" (eager), "torch_static" (eager over static prefix buffers, any device),
"torch_cuda_graph" (CUDA only), "onnxruntime" (CPU EP, CUDA EP where installed), "tensorrt"
(CUDA + the TensorRT Python package). "auto" resolves to the fastest available: on CPU
torch_static (fastest at the released ~3k-token prompts; onnxruntime wins only on short
prefixes, see bench/expert.py), on CUDA tensorrt > torch_cuda_graph > torch_static > torch.
Backend modules are imported lazily so a missing optional package only affects its own
backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging

import torch

from alpamayo_core.backends.base import BackendUnavailable, ExpertBackend
from alpamayo_core.model.denoise_step import DenoiseStep

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendUnavailable", "ExpertBackend", "available_backends",
           "create_backend", "resolve"]

#: name -> (module, class) under alpamayo_core.backends.
BACKENDS = {
    "torch": ("torch_eager", "TorchEagerBackend"),
    "torch_static": ("torch_static", "TorchStaticBackend"),
    "torch_cuda_graph": ("cuda_graph", "CudaGraphBackend"),
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend"),
    "tensorrt": ("tensorrt_backend", "TensorRTBackend"),
}
_PREFERENCE = {"cpu": ("torch_static", "onnxruntime", "torch"),
               "cuda": ("tensorrt", "torch_cuda_graph", "torch_static", "torch")}


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _ort_has_cuda() -> bool:
    if not _has_module("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def available_backends(device: torch.device | str) -> list[str]:
    """Backends whose packages and device are present, fastest first (cheap: builds nothing)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return []
    checks = {
        "torch": True,
        "torch_static": True,
        "torch_cuda_graph": device.type == "cuda",
        "onnxruntime": _has_module("onnxruntime") and (device.type == "cpu" or _ort_has_cuda()),
        "tensorrt": device.type == "cuda" and _has_module("tensorrt"),
    }
    order = [*_PREFERENCE.get(device.type, ("torch",)), *BACKENDS]
    return [name for name in dict.fromkeys(order) if checks[name]]


def resolve(name: str, device: torch.device | str) -> str:
    """`name` itself if known, or for "auto" the preferred available backend on `device`."""
    device = torch.device(device)
    if name == "auto":
        for candidate in _PREFERENCE.get(device.type, ("torch",)):
            if candidate in available_backends(device):
                return candidate
        raise BackendUnavailable(f"no expert backend can run on {device}")
    if name not in BACKENDS:
        raise ValueError(f"unknown expert backend {name!r}; choose 'auto' or one of "
                         f"{sorted(BACKENDS)}")
    return name


def create_backend(name: str, step: DenoiseStep, device: torch.device | str,
                   **opts) -> ExpertBackend:
    """Build backend `name` ("auto" allowed) for `step` on `device`.

    `opts` are keyword options of the backend classes (e.g. `cache_dir`, `intra_op_threads`,
    `precision`); those the chosen class does not take are dropped (logged), so one option set
    serves every backend "auto" may pick. Raises BackendUnavailable (a RuntimeError) saying what
    is missing when the backend cannot run here.
    """
    resolved = resolve(name, device)
    module_name, class_name = BACKENDS[resolved]
    cls = getattr(importlib.import_module(f"alpamayo_core.backends.{module_name}"), class_name)
    accepted = inspect.signature(cls.__init__).parameters
    unused = sorted(set(opts) - set(accepted))
    if unused:
        logger.debug("backend %s ignores options %s", resolved, unused)
    return cls(step, device, **{k: v for k, v in opts.items() if k in accepted})
