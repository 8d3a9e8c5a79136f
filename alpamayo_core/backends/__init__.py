"""Expert backends behind one interface, and the registry that picks one.

    backend = create_backend("auto", step, device)   # or select(...) for the trial record
    backend.bind(prefix)                   # once per plan
    x1 = backend.sample(noise, flow_cfg)   # or backend.velocity(x, t) per solver step

Names: "torch" (eager), "torch_static" (eager over static prefix buffers, any device),
"torch_cuda_graph" (CUDA only), "onnxruntime" (CPU EP, CUDA EP where installed), "tensorrt"
(CUDA + the TensorRT Python package). "auto" (`select`) builds every available one, keeps
those that pass a parity self-check against the eager step and picks the fastest of them by a
short timed trial at a real prompt's prefix length (`selection.select_fastest`); a named
backend falls back in the preference order (CPU: torch_static > onnxruntime > torch; CUDA:
tensorrt > torch_cuda_graph > torch_static > torch); `resolve` only names the preferred
available one. Options are checked: an option
the backend does not take is an error, never silently dropped. Backend modules are imported
lazily so a missing optional package only affects its own backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging

import torch

from alpamayo_core.backends.base import BackendUnavailable, ExpertBackend
from alpamayo_core.backends.selection import (
    TRIAL_PREFIX_LEN,
    BackendSelection,
    select_backend,
    select_fastest,
)
from alpamayo_core.model.denoise_step import DenoiseStep

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendSelection", "BackendUnavailable", "ExpertBackend",
           "available_backends", "backend_class", "backend_options", "create_backend",
           "options_for", "resolve", "select"]

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


def backend_class(name: str) -> type[ExpertBackend]:
    """The class of backend `name` (imports its module)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown expert backend {name!r}; choose 'auto' or one of "
                         f"{sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    return getattr(importlib.import_module(f"alpamayo_core.backends.{module_name}"), class_name)


def backend_options(name: str) -> frozenset[str]:
    """Keyword options backend `name` takes: its constructor's named keywords plus the names
    it forwards to a spec (`ExpertBackend.SPEC_OPTIONS`, e.g. TensorRT's `EngineSpec`)."""
    cls = backend_class(name)
    params = inspect.signature(cls.__init__).parameters.values()
    named = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return frozenset((named - {"self", "step", "device"}) | set(cls.SPEC_OPTIONS))


def options_for(name: str, **opts) -> dict:
    """The subset of `opts` backend `name` takes: for callers that share one option set across
    named backends on purpose (benchmarks, comparisons)."""
    taken = backend_options(name)
    return {k: v for k, v in opts.items() if k in taken}


def _check_options(names: list[str], opts: dict) -> None:
    """ValueError for options none of `names` takes (a typo must never be silently dropped)."""
    known = set().union(*(backend_options(n) for n in names))
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown expert backend option(s) {unknown} for {names}; "
                         f"known: {sorted(known)}")


def create_backend(name: str, step: DenoiseStep, device: torch.device | str,
                   **opts) -> ExpertBackend:
    """Build backend `name` for `step` on `device`, with keyword options `opts`.

    Every option must be one the backend takes (`backend_options`), else ValueError; they all
    reach it. "auto" is `select("auto", ...)`: the fastest available backend that passes
    its parity self-check. Raises BackendUnavailable (a RuntimeError) saying what is missing when
    the backend cannot run here.
    """
    if name == "auto":
        return select(name, step, device, **opts).backend
    _check_options([name], opts)
    return backend_class(name)(step, device, **opts)


def select(name: str, step: DenoiseStep, device: torch.device | str, *,
           fallback: bool = True, n_action: int = 64, trial_batch: int = 1,
           trial_prefix_len: int = TRIAL_PREFIX_LEN, **opts) -> BackendSelection:
    """Backend `name` ("auto" allowed) after a parity self-check against the torch step.

    "auto" builds and checks every available backend and keeps the fastest passing one by a
    short timed trial (`trial_batch` rows, `trial_prefix_len` prefix tokens; see
    `selection.select_fastest`). A named backend that fails to build or to pass is replaced
    by the next of the preference order when `fallback` (the selection says so), else
    BackendUnavailable. `opts` are shared: each candidate gets the options it takes; an option
    no candidate takes is a ValueError.
    """
    device = torch.device(device)
    order = available_backends(device)
    if name == "auto":
        candidates = order
    else:
        backend_class(name)  # ValueError for an unknown name
        candidates = [name, *(n for n in order if n != name)] if fallback else [name]
    if not candidates:
        raise BackendUnavailable(f"no expert backend can run on {device}")
    _check_options(list(BACKENDS), opts)

    def build(candidate: str) -> ExpertBackend:
        return backend_class(candidate)(step, device, **options_for(candidate, **opts))

    if name == "auto":
        return select_fastest(candidates, build, step, batch=trial_batch,
                              prefix_len=trial_prefix_len, n_action=n_action)
    return select_backend(candidates, build, step, n_action=n_action)
