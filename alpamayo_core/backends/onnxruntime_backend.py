"""`onnxruntime` backend: the exported step in an ONNX Runtime session with IO binding.

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length,
C = bucketed prefix capacity (P rounded up to `bucket` tokens).

Per plan, `bind` copies the prefix (positions, attn_bias, k_i, v_i) into contiguous tensors on
the backend's device and binds them to the session by address, once. Per step only x and t are
copied into their bound buffers and the session writes `velocity` into a bound output buffer,
so no ONNX Runtime value is created inside the loop.

With `static_shapes` (default on CPU) the prefix is padded to C masked slots and the session is
opened with B and P fixed (`add_free_dimension_override_by_name`), which lets ONNX Runtime fold
the graph's shape arithmetic (~8 % per step at the tiny size); one session per (B, C) is kept.
The intra-op pool does not spin (`session.intra_op.allow_spinning=0`): a spinning pool slows
PyTorch in the same process 10-50x (notes/ml_stack_on_cpu.md §4). CPU EP by default; the CUDA
EP when `device` is CUDA and this onnxruntime build has it (on torch's current stream).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from alpamayo_core.backends.base import (
    BackendUnavailable,
    ExpertBackend,
    bucket_capacity,
    pad_prefix,
)
from alpamayo_core.backends.onnx_export import N_ACTION, cached_export
from alpamayo_core.model.config import FlowConfig
from alpamayo_core.model.denoise_step import OUTPUT_NAMES, DenoiseStep, input_names, step_inputs
from alpamayo_core.model.expert import ExpertPrefix
from alpamayo_core.model.flow_matching import time_grid

logger = logging.getLogger(__name__)

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}
#: Sessions kept open for distinct (B, C) when shapes are static (each holds the weights).
MAX_SESSIONS = 4


def import_onnxruntime():
    """The onnxruntime module, or BackendUnavailable saying how to get it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailable("onnxruntime is not importable: pip install onnxruntime "
                                 "(or onnxruntime-gpu for the CUDA EP)") from err
    return onnxruntime


def providers_for(device: torch.device) -> list:
    """Execution providers for `device`; BackendUnavailable if CUDA is asked but absent."""
    ort = import_onnxruntime()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda" or "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable(
            f"onnxruntime {ort.__version__} has no execution provider for {device} (available: "
            f"{ort.get_available_providers()}); install onnxruntime-gpu or use device='cpu'")
    stream = torch.cuda.current_stream(device).cuda_stream
    options = {"device_id": device.index or 0, "user_compute_stream": str(stream)}
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


class OnnxRuntimeBackend(ExpertBackend):
    """ONNX Runtime over the step's ONNX graph (exported on demand into the model-hash cache).

    Options: `onnx_path` (use this file instead of exporting; it must come from the legacy
    exporter for `static_shapes`), `cache_dir`, `exporter`, `n_action` (T of the graph),
    `intra_op_threads` (default 1), `static_shapes` (default: True on CPU), `bucket` (prefix
    padding granularity in tokens for static shapes, default 128).
    """

    name = "onnxruntime"

    def __init__(self, step: DenoiseStep, device: torch.device | str = "cpu", *,
                 onnx_path: str | Path | None = None, cache_dir: str | Path | None = None,
                 exporter: str = "legacy", n_action: int = N_ACTION, intra_op_threads: int = 1,
                 static_shapes: bool | None = None, bucket: int = 128):
        super().__init__(step, device)
        self._ort = import_onnxruntime()
        dtype = next(step.parameters()).dtype
        if dtype == torch.bfloat16:
            raise BackendUnavailable("onnxruntime cannot run bfloat16 weights (its Python API "
                                     "has no bfloat16); load the model in float32 or float16, "
                                     "or use the torch_static / tensorrt backend")
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        self._providers = providers_for(self.device)
        self.onnx_path = Path(onnx_path) if onnx_path else cached_export(
            step, cache_dir, exporter, n_action)
        self.static_shapes = self.device.type == "cpu" if static_shapes is None else static_shapes
        self.bucket, self.intra_op_threads = bucket, intra_op_threads
        self._names = input_names(self.num_layers)
        self._sessions: dict[tuple[int, int] | None, object] = {}
        self.session = self._session(None)  # dynamic B and P; also validates the graph
        self._n_action = int(self.session.get_inputs()[0].shape[1])  # T of x (B, T, 2)

    def _session(self, shape: tuple[int, int] | None):
        """The session for (B, C) static shapes, or the dynamic one for None; cached."""
        if shape in self._sessions:
            return self._sessions[shape]
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if shape is not None:
            batch, capacity = shape
            overrides = {"B": batch, "P": capacity, "P_plus_T": capacity + self._n_action}
            for dim, value in overrides.items():
                options.add_free_dimension_override_by_name(dim, value)
        session = self._ort.InferenceSession(str(self.onnx_path), options,
                                             providers=self._providers)
        got = [i.name for i in session.get_inputs()]
        if got != self._names:
            raise ValueError(f"{self.onnx_path} has inputs {got}, expected {self._names}; "
                             "re-export it for this model")
        if len(self._sessions) > MAX_SESSIONS:  # drop the oldest static-shape session
            self._sessions.pop(next(k for k in self._sessions if k is not None))
        self._sessions[shape] = session
        return session

    def _bind_tensor(self, name: str, tensor: torch.Tensor, output: bool = False) -> None:
        if tensor.dtype not in _NUMPY_DTYPES:
            raise ValueError(f"{name}: dtype {tensor.dtype} cannot be bound by onnxruntime's "
                             f"Python API (use {sorted(map(str, _NUMPY_DTYPES))}); export and "
                             "run the step in float32 or float16")
        bind = self._binding.bind_output if output else self._binding.bind_input
        bind(name, self.device.type, self.device.index or 0, _NUMPY_DTYPES[tensor.dtype],
             list(tensor.shape), tensor.data_ptr())

    def _bind(self, prefix: ExpertPrefix) -> None:
        batch, n_act = prefix.positions.shape
        if n_act != self._n_action:
            raise ValueError(f"the prefix has T = {n_act} action tokens, {self.onnx_path} was "
                             f"exported for T = {self._n_action}; export with n_action={n_act}")
        if self.static_shapes:
            capacity = bucket_capacity(prefix.prefix_len, self.bucket)
            prefix = pad_prefix(prefix, capacity)
            self.session = self._session((batch, capacity))
        x = torch.zeros(batch, n_act, 2, dtype=torch.float32, device=self.device)
        t = torch.zeros(batch, dtype=torch.float32, device=self.device)
        # Own contiguous copies: the binding holds raw addresses, these keep them alive.
        self._buffers = [a.to(self.device).contiguous().clone()
                         for a in step_inputs(x, t, prefix)]
        self._out = torch.empty(batch, n_act, 2, dtype=torch.float32, device=self.device)
        self._binding = self.session.io_binding()
        for name, tensor in zip(self._names, self._buffers, strict=True):
            self._bind_tensor(name, tensor)
        self._bind_tensor(OUTPUT_NAMES[0], self._out, output=True)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_batch(x)
        self._buffers[0].copy_(x)
        self._buffers[1].copy_(t)
        self._run()
        return self._out.clone()

    def _run(self) -> None:
        if self.device.type == "cuda":
            self._binding.synchronize_inputs()
        self.session.run_with_iobinding(self._binding)
        if self.device.type == "cuda":
            self._binding.synchronize_outputs()

    def sample(self, noise: torch.Tensor, flow_cfg: FlowConfig,
               before_step: Callable[[], None] | None = None) -> torch.Tensor:
        """Euler runs in the bound buffers (x updated in place, no per-step tensors); other
        solvers use the generic loop. `before_step` as in `ExpertBackend.sample`."""
        if flow_cfg.solver != "euler":
            return super().sample(noise, flow_cfg, before_step)
        self.check_batch(noise)
        x, t, out = self._buffers[0], self._buffers[1], self._out
        grid = time_grid(flow_cfg.num_steps, self.device)
        times, deltas = grid[:-1].tolist(), grid[1:] - grid[:-1]  # float32 dt, as the sampler
        step_dx = torch.empty_like(out)
        x.copy_(noise)
        for i, t_i in enumerate(times):
            if before_step is not None:
                before_step()
            t.fill_(t_i)  # exact: t_i is a float32 grid value
            self._run()
            torch.mul(out, deltas[i], out=step_dx)
            x.add_(step_dx)
        return x.clone()

    def close(self) -> None:
        super().close()
        self._buffers, self._binding, self.session = [], None, None
        self._sessions.clear()
