"""`torch_cuda_graph` backend: the denoise step captured once per (B, C) as a CUDA graph.

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length,
C = bucketed capacity (P rounded up to `bucket` tokens, 256 by default), E = expert hidden,
Hq / KV = query / key-value heads, G = Hq / KV, D = head_dim.

`StaticPrefixStep` computes exactly `DenoiseStep` but over preallocated buffers, so that the
step is a fixed sequence of kernels on fixed addresses (what graph capture needs) and moves no
prefix bytes per step:
  * per layer one (B, KV, C + T, D) key and value buffer: slots [0, P) hold the prefix (copied
    in place once per plan), [P, C) are masked by the bias, [C, C + T) receive the step's own
    T keys/values in place; no `cat`, no allocation of prefix-sized tensors;
  * grouped-query attention without repeating K/V: the G query heads that share a KV head are
    folded into the query axis (B, KV, G*T, D), exact because the bias is the same for every
    query (non-causal, (B, 1, 1, C + T));
  * static x, t, positions and bias buffers; `velocity` copies x and t in and replays.
It is hand-written (rather than `torch.compile(mode="reduce-overhead")`) because the in-tree
expert concatenates the prefix each step; the HF modules (projections, norms, RoPE, MLP) are
reused. It runs on any device, so its parity with DenoiseStep is tested on CPU.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from alpamayo_core.backends.base import (
    BackendUnavailable,
    ExpertBackend,
    get_or_build,
    padded_bias,
    static_key,
)
from alpamayo_core.model.denoise_step import DenoiseStep
from alpamayo_core.model.expert import ExpertPrefix, project_qkv

logger = logging.getLogger(__name__)

#: Captured graphs kept alive (each holds its K/V buffers: 144 KiB per slot at full size).
MAX_GRAPHS = 4


class StaticPrefixStep(nn.Module):
    """DenoiseStep over static buffers for one (B, C); see the module docstring."""

    def __init__(self, step: DenoiseStep, batch: int, capacity: int, n_action: int):
        super().__init__()
        self.step = step
        param = next(step.parameters())
        cfg = step.expert.config
        self.capacity, self.n_action = capacity, n_action
        kv_shape = (batch, cfg.num_key_value_heads, capacity + n_action, cfg.head_dim)

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=param.device)

        self.keys = [zeros(*kv_shape, dtype=param.dtype) for _ in step.expert.layers]
        self.values = [zeros(*kv_shape, dtype=param.dtype) for _ in step.expert.layers]
        self.bias = zeros(batch, 1, 1, capacity + n_action, dtype=param.dtype)
        self.positions = zeros(batch, n_action, dtype=torch.int64)
        self.x = zeros(batch, n_action, 2)
        self.t = zeros(batch)

    def load(self, prefix: ExpertPrefix) -> None:
        """Copy one plan's prefix into the buffers in place (once per plan)."""
        length = prefix.prefix_len
        for buf, src in zip(self.keys + self.values, prefix.keys + prefix.values, strict=True):
            buf[:, :, :length].copy_(src)
        self.bias.copy_(padded_bias(prefix.attn_bias, length, self.capacity))
        self.positions.copy_(prefix.positions)

    def forward(self) -> torch.Tensor:
        """velocity (B, T, 2) float32 at the buffered (x, t)."""
        expert = self.step.expert
        hidden = self.step.action_in_proj(self.x, self.t)  # (B, T, E)
        cos, sin = expert.rotary_emb(hidden, self.positions)
        for layer, keys, values in zip(expert.layers, self.keys, self.values, strict=True):
            attn_in = layer.input_layernorm(hidden)
            hidden = hidden + self._attention(layer.self_attn, attn_in, cos, sin, keys, values)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return self.step.action_out_proj(expert.norm(hidden)).float()

    def _attention(self, attn: nn.Module, hidden: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        batch, n_act, _ = hidden.shape
        q, k, v = project_qkv(attn, hidden, cos, sin)  # (B, Hq, T, D), (B, KV, T, D) x 2
        keys[:, :, self.capacity:].copy_(k)
        values[:, :, self.capacity:].copy_(v)
        kv_heads = keys.shape[1]
        q = q.reshape(batch, kv_heads, -1, attn.head_dim)  # (B, KV, G*T, D), head h -> h // G
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=self.bias,
                                             scale=attn.scaling)
        out = out.reshape(batch, -1, n_act, attn.head_dim).transpose(1, 2)  # (B, T, Hq, D)
        return attn.o_proj(out.reshape(batch, n_act, -1))


class CudaGraphBackend(ExpertBackend):
    """CUDA-graph replay of `StaticPrefixStep`, one graph per (B, bucketed capacity).

    Options: `bucket` (capacity granularity in tokens, default 256), `warmup` (eager runs on a
    side stream before capture, default 2).
    """

    name = "torch_cuda_graph"

    def __init__(self, step: DenoiseStep, device: torch.device | str = "cuda", *,
                 bucket: int = 256, warmup: int = 2):
        device = torch.device(device)
        if device.type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailable(f"torch_cuda_graph needs a CUDA device, got {device} "
                                     f"(torch.cuda.is_available() = "
                                     f"{torch.cuda.is_available()}); use 'torch' or "
                                     "'onnxruntime' on CPU")
        super().__init__(step, device)
        self.bucket, self.warmup = bucket, warmup
        self._graphs: dict[tuple[int, int], tuple[StaticPrefixStep, torch.cuda.CUDAGraph,
                                                  torch.Tensor]] = {}

    def _bind(self, prefix: ExpertPrefix) -> None:
        batch, capacity = key = static_key(prefix, self.bucket)

        def build() -> tuple[StaticPrefixStep, torch.cuda.CUDAGraph, torch.Tensor]:
            static = StaticPrefixStep(self.step, batch, capacity, prefix.positions.shape[1])
            static.load(prefix)
            return (static, *self._capture(static))

        self._static, self._graph, self._out = get_or_build(self._graphs, key, build, MAX_GRAPHS)
        self._static.load(prefix)

    def _capture(self, static: StaticPrefixStep) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(self.warmup):
                static()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            out = static()
        logger.info("captured CUDA graph for B = %d, C = %d", static.x.shape[0],
                    static.capacity)
        return graph, out

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_batch(x)
        self._static.x.copy_(x)
        self._static.t.copy_(t)
        self._graph.replay()
        return self._out.clone()

    def close(self) -> None:
        super().close()
        self._graphs.clear()
