"""`tensorrt` backend: a TensorRT engine built from the exported step's ONNX (TensorRT >= 10).

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length,
L = expert layers.

Written against the documented TensorRT 10 Python API (Builder, OnnxParser, IBuilderConfig,
optimization profiles, timing cache; runtime `set_input_shape` / `set_tensor_address` /
`execute_async_v3`). It has NOT been executed: TensorRT cannot be installed on the machines of
this project (environment.md), so it is kept small and fails early with `BackendUnavailable`.

Build (offline, `alpamayo-export trt`, or `build_missing=True`): one optimization profile over B
in [1, max_batch] and P in [min_prefix, max_prefix] (opt at `opt_batch`, `opt_prefix`).
Precision: `auto` = bf16 where the GPU has bf16 (compute capability >= 8.0; the weights are
bf16-trained, fp16 risks overflow), else fp32; fp16 and fp8 only when asked for. A weakly typed
network gets the builder flag of the precision; a strongly typed one (`strongly_typed`, always
on TensorRT >= 11) computes in the ONNX's dtypes, so there the precision must equal the
exported step's dtype (or be `auto`), else ValueError: it is never silently ignored. FP8 only
takes effect on an ONNX with Q/DQ nodes (e.g. from ModelOpt); a plain export is warned about.
Engines are cached under `cache_dir/tensorrt/` keyed by the weights' hash (`model_hash`,
reduced on the GPU: no copy of the weights to the CPU) + GPU + compute capability + TensorRT
version + build spec, next to one timing cache file per GPU and TensorRT version. At run time
a missing engine is `EngineNotBuilt` (a BackendUnavailable naming the command that builds it):
the node never builds engines inside `on_configure`.
Runtime: everything runs under `torch.cuda.device(device)` (the device index is honoured); the
per-plan prefix tensors are bound by address once; each step copies x and t into bound buffers
and enqueues on torch's current CUDA stream of that device.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from alpamayo_core.backends.base import BackendUnavailable, ExpertBackend
from alpamayo_core.backends.onnx_export import (
    N_ACTION,
    cached_export,
    default_cache_dir,
    model_hash,
)
from alpamayo_core.model.denoise_step import OUTPUT_NAMES, DenoiseStep, input_names, step_inputs
from alpamayo_core.model.expert import ExpertPrefix

logger = logging.getLogger(__name__)

PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",), "fp8": ("FP8", "FP16")}
PRECISIONS = ("auto", *PRECISION_FLAGS)
_PRECISION_OF_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class EngineNotBuilt(BackendUnavailable):
    """No cached engine for this model, GPU, TensorRT version and spec."""


def resolve_precision(precision: str, capability: tuple[int, int]) -> str:
    """`auto` -> bf16 on GPUs with bf16 (compute capability >= 8.0), else fp32; others as is."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if capability >= (8, 0) else "fp32"


def check_strongly_typed(precision: str, step_dtype: torch.dtype) -> None:
    """A strongly typed network computes in the ONNX's dtypes: `precision` must name them."""
    exported = _PRECISION_OF_DTYPE.get(step_dtype)
    if precision not in ("auto", exported):
        raise ValueError(
            f"precision {precision!r} cannot apply to a strongly typed TensorRT network (always "
            f"on TensorRT >= 11): it computes in the exported step's dtype ({step_dtype}, "
            f"i.e. {exported!r}). Load the model in the dtype you want, use precision 'auto' "
            "or, on TensorRT 10, strongly_typed=False")


def import_tensorrt():
    """The tensorrt module (>= 10), or BackendUnavailable saying why and what to use instead."""
    try:
        import tensorrt
    except ImportError as err:
        raise BackendUnavailable(
            "the TensorRT Python package is not importable (`import tensorrt` failed: "
            f"{err}). It ships from NVIDIA's index (pypi.nvidia.com) or a TensorRT/JetPack "
            "image, not from PyPI; use backend 'torch_cuda_graph' or 'onnxruntime'") from err
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"TensorRT {tensorrt.__version__} is too old: this backend "
                                 "uses the TensorRT 10 tensor-name API")
    return tensorrt


@dataclass(frozen=True)
class EngineSpec:
    """Precision and the optimization profile of one engine."""

    precision: str = "auto"
    max_batch: int = 6
    opt_batch: int = 1
    min_prefix: int = 16
    opt_prefix: int = 3200
    max_prefix: int = 4096
    workspace_gib: float = 8.0
    strongly_typed: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"opt_batch must lie in [1, max_batch={self.max_batch}], "
                             f"got {self.opt_batch}")
        if not 1 <= self.min_prefix <= self.opt_prefix <= self.max_prefix:
            raise ValueError("need 1 <= min_prefix <= opt_prefix <= max_prefix, got "
                             f"{self.min_prefix}, {self.opt_prefix}, {self.max_prefix}")
        if self.workspace_gib <= 0:
            raise ValueError(f"workspace_gib must be positive, got {self.workspace_gib}")

    def profile_shape(self, name: str, shape: tuple[int, ...], point: str,
                      n_action: int) -> tuple[int, ...]:
        """`shape` of input `name` with B and P set for profile point min/opt/max."""
        batch = {"min": 1, "opt": self.opt_batch, "max": self.max_batch}[point]
        prefix = {"min": self.min_prefix, "opt": self.opt_prefix, "max": self.max_prefix}[point]
        dims = list(shape)
        dims[0] = batch
        if name == "attn_bias":
            dims[3] = prefix + n_action
        elif name.startswith(("k_", "v_")):
            dims[2] = prefix
        if any(d < 0 for d in dims):
            raise ValueError(f"input {name} {shape}: unexpected dynamic dims for the profile")
        return tuple(dims)


def _gpu_tag(device: torch.device) -> str:
    props = torch.cuda.get_device_properties(device)
    return f"{props.name.replace(' ', '_')}-sm{props.major}{props.minor}"


def is_strongly_typed(spec: EngineSpec) -> bool:
    """TensorRT >= 11 builds strongly typed networks only."""
    return spec.strongly_typed or int(import_tensorrt().__version__.split(".")[0]) >= 11


def build_engine(onnx_path: str | Path, spec: EngineSpec, timing_cache: Path) -> bytes:
    """Serialized engine for `onnx_path` (`spec.precision` resolved, not `auto`); reads and
    updates the timing cache file."""
    trt = import_tensorrt()
    if spec.precision == "auto":
        raise ValueError("build_engine needs a resolved precision (resolve_precision)")
    log = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(log)
    strongly_typed = is_strongly_typed(spec)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gib * 2**30))
    if not strongly_typed:
        for flag in PRECISION_FLAGS[spec.precision]:
            config.set_flag(getattr(trt.BuilderFlag, flag))
    if spec.precision == "fp8" and not _has_qdq(network):
        logger.warning("fp8 requested but %s has no Q/DQ layers: FP8 kernels are only used "
                       "for quantized (ModelOpt) graphs, this engine computes in fp16",
                       onnx_path)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    n_action = next(tuple(x.shape)[1] for x in inputs if x.name == "x")  # x is (B, T, 2)
    profile = builder.create_optimization_profile()
    for tensor in inputs:
        profile.set_shape(tensor.name, *(spec.profile_shape(tensor.name, tuple(tensor.shape), p,
                                                            n_action)
                                         for p in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} "
                           "(see the TensorRT log above)")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))


def _has_qdq(network) -> bool:
    trt = import_tensorrt()
    quant = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in quant for i in range(network.num_layers))


def resolved_spec(spec: EngineSpec, step: DenoiseStep, device: torch.device) -> EngineSpec:
    """`spec` with its precision resolved for `device` and checked against the network type."""
    precision = resolve_precision(spec.precision, torch.cuda.get_device_capability(device))
    if is_strongly_typed(spec):
        check_strongly_typed(spec.precision, next(step.parameters()).dtype)
        precision = _PRECISION_OF_DTYPE[next(step.parameters()).dtype]
    return replace(spec, precision=precision)


def engine_path(step: DenoiseStep, spec: EngineSpec, device: torch.device,
                cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(engine file, timing-cache file) for these weights (`model_hash`, computed on the
    device), build spec, GPU and TensorRT."""
    trt = import_tensorrt()
    tag = f"{_gpu_tag(device)}-trt{trt.__version__}"
    spec_hash = hashlib.sha256(repr(sorted(asdict(spec).items())).encode()).hexdigest()[:8]
    root = Path(cache_dir or default_cache_dir()) / "tensorrt"
    return root / f"{model_hash(step)}-{tag}-{spec_hash}.engine", root / f"timing-{tag}.cache"


def load_or_build(step: DenoiseStep, spec: EngineSpec, device: torch.device,
                  cache_dir: str | Path | None = None, onnx_path: str | Path | None = None,
                  n_action: int = N_ACTION, build_missing: bool = True) -> Path:
    """The cached engine file for a resolved `spec`; on a miss, build it (exporting the ONNX)
    when `build_missing`, else EngineNotBuilt naming the command that builds it."""
    engine_file, timing_file = engine_path(step, spec, device, cache_dir)
    if not engine_file.is_file() and not build_missing:
        raise EngineNotBuilt(
            f"no TensorRT engine at {engine_file} (precision {spec.precision}, max_batch "
            f"{spec.max_batch}, max_prefix {spec.max_prefix}); build it once, offline, with "
            f"`alpamayo-export trt --model <model folder> --device {device} --precision "
            f"{spec.precision} --max-batch {spec.max_batch} --max-prefix {spec.max_prefix}`")
    if not engine_file.is_file():
        onnx = Path(onnx_path) if onnx_path else cached_export(step, cache_dir, "legacy",
                                                                n_action)
        logger.info("building TensorRT engine %s from %s", engine_file, onnx)
        plan = build_engine(onnx, spec, timing_file)
        tmp = engine_file.with_suffix(".tmp")
        tmp.write_bytes(plan)
        tmp.replace(engine_file)
    return engine_file


class TensorRTBackend(ExpertBackend):
    """A TensorRT engine over the exported step, bound to torch CUDA tensors.

    Options: `precision` ("auto", "bf16", "fp16", "fp8", "fp32"), `max_batch`, `opt_batch`,
    `min_prefix`, `opt_prefix`, `max_prefix`, `strongly_typed`, `workspace_gib` (see
    `EngineSpec`), `cache_dir`, `onnx_path`, `n_action`, `build_missing` (False: a missing
    engine is EngineNotBuilt).
    """

    name = "tensorrt"
    SPEC_OPTIONS = tuple(f.name for f in fields(EngineSpec))

    def __init__(self, step: DenoiseStep, device: torch.device | str = "cuda", *,
                 cache_dir: str | Path | None = None, onnx_path: str | Path | None = None,
                 n_action: int = N_ACTION, build_missing: bool = False, **spec: object):
        self.spec = EngineSpec(**spec)  # options are validated before anything else
        trt = import_tensorrt()
        device = torch.device(device)
        if device.type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailable(f"tensorrt needs a CUDA device, got {device}")
        super().__init__(step, device)
        with torch.cuda.device(device):
            self.spec = resolved_spec(self.spec, step, device)
            path = load_or_build(step, self.spec, device, cache_dir, onnx_path, n_action,
                                 build_missing)
            self._log = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._log)
            self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {path}; delete it and "
                                   "rebuild it with `alpamayo-export trt`")
            self.context = self.engine.create_execution_context()
        self._dtypes = self._check_io(trt)

    def _check_io(self, trt) -> dict[str, torch.dtype]:
        """Engine tensor name -> torch dtype; ValueError unless the I/O names are the step's."""
        to_torch = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                    trt.DataType.BF16: torch.bfloat16, trt.DataType.INT64: torch.int64,
                    trt.DataType.INT32: torch.int32}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names
                  if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if sorted(inputs) != sorted(input_names(self.num_layers)) or \
                outputs != list(OUTPUT_NAMES):
            raise ValueError(f"engine I/O {inputs} -> {outputs} does not match the step's "
                             f"{input_names(self.num_layers)} -> {list(OUTPUT_NAMES)}")
        return {n: to_torch[self.engine.get_tensor_dtype(n)] for n in names}

    def _bind(self, prefix: ExpertPrefix) -> None:
        batch, n_act = prefix.positions.shape
        spec = self.spec
        if not (batch <= spec.max_batch and spec.min_prefix <= prefix.prefix_len
                <= spec.max_prefix):
            raise ValueError(f"B = {batch}, P = {prefix.prefix_len} is outside the engine's "
                             f"profile (B <= {spec.max_batch}, P in [{spec.min_prefix}, "
                             f"{spec.max_prefix}]); rebuild with a larger max_batch/max_prefix")
        x = torch.zeros(batch, n_act, 2, device=self.device)
        t = torch.zeros(batch, device=self.device)
        names = input_names(self.num_layers)
        self._buffers = [a.to(self.device, self._dtypes[n]).contiguous()
                         for n, a in zip(names, step_inputs(x, t, prefix), strict=True)]
        self._out = torch.empty(batch, n_act, 2, device=self.device,
                                dtype=self._dtypes[OUTPUT_NAMES[0]])
        for name, tensor in zip(names, self._buffers, strict=True):
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise ValueError(f"TensorRT rejected shape {tuple(tensor.shape)} for {name}")
            self.context.set_tensor_address(name, tensor.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAMES[0], self._out.data_ptr())
        missing = self.context.infer_shapes()
        if missing:
            raise ValueError(f"TensorRT could not infer shapes for {missing}")

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_batch(x)
        self._buffers[0].copy_(x)
        self._buffers[1].copy_(t)
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        return self._out.float().clone()

    def close(self) -> None:
        super().close()
        self._buffers, self.context, self.engine = [], None, None
