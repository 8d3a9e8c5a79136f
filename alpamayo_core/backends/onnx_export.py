"""Export one `DenoiseStep` to ONNX, and a cache of exported files keyed by the model's hash.

Dimension glossary: B = trajectory rows, T = action tokens (static, from the model config),
P = cached prefix length, L = expert layers, KV / D = key-value heads / head_dim.

The graph has the named inputs of `denoise_step.input_names` (x, t, positions, attn_bias,
k_0, v_0, ...) and one output `velocity`; B and P are dynamic (`attn_bias` has P + T slots).
The legacy TorchScript exporter is the default: it exports in ~1 s and its graph ran faster in
ONNX Runtime than the dynamo one (notes/ml_stack_on_cpu.md §4); `exporter="dynamo"` is offered.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from alpamayo_core.model.denoise_step import OUTPUT_NAMES, DenoiseStep, input_names

logger = logging.getLogger(__name__)

EXPORTERS = ("legacy", "dynamo")
OPSET = {"legacy": 17, "dynamo": 18}
FILE_NAME = "denoise_step.onnx"
#: Example shapes traced at export (B >= 2 avoids 0/1 specialisation of the dynamic batch).
EXAMPLE_BATCH, EXAMPLE_PREFIX = 2, 40
#: T, static in the graph: the release's 64 waypoints unless the model says otherwise.
N_ACTION = 64


def default_cache_dir() -> Path:
    """$ALPAMAYO_CACHE, else ~/.cache/alpamayo."""
    return Path(os.environ.get("ALPAMAYO_CACHE", Path.home() / ".cache" / "alpamayo"))


_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
#: Position weights of the fingerprint cycle with this prime period.
_WEIGHT_PERIOD = 65_521


def model_hash(module: torch.nn.Module) -> str:
    """16 hex digits identifying the module's weights, computed where they live.

    Per tensor, two integer sums of its raw bits (plain, and weighted by position modulo a
    prime) are reduced on the tensor's device; only those numbers, with names, dtypes and
    shapes, reach the CPU and sha256. No copy of the weights leaves the device, so keying a
    cache by it costs one read of the weights (~2 ms for the 4.6 GB expert on an H100), and any
    changed, swapped or moved value changes the key.
    """
    digest = hashlib.sha256()
    sums = []
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        bits = tensor.detach().contiguous().view(_INT_OF_SIZE[tensor.element_size()]).flatten()
        weight = torch.arange(bits.numel(), device=bits.device) % _WEIGHT_PERIOD + 1
        sums.append(torch.stack([bits.sum(dtype=torch.int64), (bits.long() * weight).sum()]))
    if sums:
        digest.update(torch.stack(sums).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def example_inputs(step: DenoiseStep, batch: int = EXAMPLE_BATCH,
                   prefix_len: int = EXAMPLE_PREFIX,
                   n_action: int = N_ACTION) -> tuple[torch.Tensor, ...]:
    """Random inputs in `input_names` order on the step's device and dtype (for tracing)."""
    param = next(step.parameters())
    cfg = step.expert.config
    gen = torch.Generator().manual_seed(0)
    kv_shape = (batch, cfg.num_key_value_heads, prefix_len, cfg.head_dim)
    kv = [torch.randn(kv_shape, generator=gen).to(param.device, param.dtype)
          for _ in range(2 * len(step.expert.layers))]
    x = torch.randn(batch, n_action, 2, generator=gen).to(param.device)
    t = torch.full((batch,), 0.3, device=param.device)
    positions = (torch.arange(n_action) + prefix_len).expand(batch, -1).to(param.device)
    bias = torch.zeros(batch, 1, 1, prefix_len + n_action, device=param.device)
    return (x, t, positions, bias, *kv)


def export_step(step: DenoiseStep, path: str | Path, exporter: str = "legacy",
                n_action: int = N_ACTION) -> Path:
    """Write the step's ONNX graph to `path` (weights inline, or external data above 2 GB)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = step.eval()
    args = example_inputs(step, n_action=n_action)
    names = input_names(len(step.expert.layers))
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if exporter == "legacy":
            _export_legacy(step, args, names, path)
        else:
            _export_dynamo(step, args, names, path)
    logger.info("exported %s (%s) in %.1f s", path, exporter, time.perf_counter() - start)
    return path


def _export_legacy(step: DenoiseStep, args: tuple, names: list[str], path: Path) -> None:
    axes = {"x": {0: "B"}, "t": {0: "B"}, "positions": {0: "B"},
            "attn_bias": {0: "B", 3: "P_plus_T"}, OUTPUT_NAMES[0]: {0: "B"}}
    axes.update({name: {0: "B", 2: "P"} for name in names[4:]})
    torch.onnx.export(step, args, str(path), dynamo=False, input_names=names,
                      output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                      opset_version=OPSET["legacy"], do_constant_folding=True)


def _export_dynamo(step: DenoiseStep, args: tuple, names: list[str], path: Path) -> None:
    dim_b = torch.export.Dim("B", min=1, max=1024)
    dim_p = torch.export.Dim("P", min=2, max=1 << 16)
    n_act = args[0].shape[1]
    kv_specs = tuple({0: dim_b, 2: dim_p} for _ in names[4:])
    shapes = ({0: dim_b}, {0: dim_b}, {0: dim_b}, {0: dim_b, 3: dim_p + n_act}, kv_specs)
    program = torch.onnx.export(step, args, dynamo=True, dynamic_shapes=shapes,
                                input_names=names, output_names=list(OUTPUT_NAMES),
                                opset_version=OPSET["dynamo"], verbose=False)
    program.save(str(path), external_data=_weight_bytes(step) > 1 << 30)


def _weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def cached_export(step: DenoiseStep, cache_dir: str | Path | None = None,
                  exporter: str = "legacy", n_action: int = N_ACTION) -> Path:
    """The step's ONNX file under `cache_dir/onnx/<model hash>-<exporter>-.../`, exported once.

    The key covers the weights (`model_hash`, computed on their device), the dtype, the
    exporter and opset, the torch version and T, so a changed model or toolchain never reuses
    a stale graph. The export goes to a
    temporary folder that is renamed into place, so an interrupted export leaves no
    half-written entry.
    """
    dtype = str(next(step.parameters()).dtype).removeprefix("torch.")
    key = (f"{model_hash(step)}-{dtype}-{exporter}-op{OPSET.get(exporter, 0)}-T{n_action}"
           f"-torch{torch.__version__.split('+')[0]}")
    folder = Path(cache_dir or default_cache_dir()) / "onnx" / key
    if (folder / FILE_NAME).is_file():
        logger.info("reusing cached ONNX export %s", folder / FILE_NAME)
        return folder / FILE_NAME
    tmp = folder.with_name(f".{key}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    export_step(step, tmp / FILE_NAME, exporter, n_action)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished the same export first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / FILE_NAME
