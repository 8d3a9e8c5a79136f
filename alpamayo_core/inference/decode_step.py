"""One reasoning token through the Qwen3-VL text model, writing into a static KV cache.

`StaticKV` is allocated once per plan at (B, KV, L0 + max_new, D) per layer and filled with
the batch-1 prompt cache broadcast to all B rows; decode then writes one column per token in
place (no concatenation, no reallocation). `TextDecodeStep` runs the HF model's own modules
(norms, projections, MLPs, lm_head) without the HF wrapper: for one token per row the wrapper's
mask building, cache bookkeeping and output objects cost more than the arithmetic. In decode
all three mRoPE components of a position are equal, so the rotary table is the model's own
`rotary_emb` evaluated once per plan for every decode position (as rotation matrices).

`GraphedDecodeStep` captures the same `TextDecodeStep.__call__` in a CUDA graph per
(rows, cache capacity) bucket; it attends over the whole capacity with an additive bias that
the step itself opens one column at a time, so the captured graph has static shapes.
`CompiledDecodeStep` runs that static-shape form through `torch.compile` (inductor, any
device): one compiled graph per bucket fuses the ~100 small operators of a token.

Glossary: B rows, H query heads, KV key/value heads, D head dim, E hidden, V vocabulary,
L0 prompt tokens, N decode positions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticKV:
    """Per-layer key/value buffers (B, KV, capacity, D); keys RoPE'd and k-normed."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    @classmethod
    def allocate(cls, num_layers: int, rows: int, kv_heads: int, capacity: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> StaticKV:
        shape = (rows, kv_heads, capacity, head_dim)
        return cls(tuple(torch.zeros(shape, dtype=dtype, device=device)
                         for _ in range(num_layers)),
                   tuple(torch.zeros(shape, dtype=dtype, device=device)
                         for _ in range(num_layers)))

    @property
    def rows(self) -> int:
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def load_prefix(self, keys: tuple[Tensor, ...], values: tuple[Tensor, ...]) -> None:
        """Copy per-layer (1 or B, KV, L0, D) prompt K/V into columns [0, L0) of every row."""
        length = keys[0].shape[2]
        if length > self.capacity:
            raise ValueError(f"prompt of {length} tokens exceeds the cache capacity "
                             f"{self.capacity}")
        for dst, src in zip(self.keys + self.values, keys + values, strict=True):
            dst[:, :, :length].copy_(src)

    def narrow(self, length: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Views (B, KV, length, D) per layer of the first `length` columns."""
        return (tuple(k[:, :, :length] for k in self.keys),
                tuple(v[:, :, :length] for v in self.values))


class TextDecodeStep:
    """One token per row through the text model of a `Qwen3VLForConditionalGeneration`."""

    def __init__(self, vlm) -> None:
        text = vlm.model.language_model
        self.embed, self.layers, self.norm = text.embed_tokens, text.layers, text.norm
        self.rotary, self.lm_head = text.rotary_emb, vlm.lm_head
        attn = self.layers[0].self_attn
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.kv_heads = text.config.num_key_value_heads

    def allocate(self, rows: int, capacity: int) -> StaticKV:
        weight = self.embed.weight
        return StaticKV.allocate(len(self.layers), rows, self.kv_heads, capacity,
                                 self.head_dim, weight.dtype, weight.device)

    def rope_table(self, first_position: int, count: int) -> Tensor:
        """(N, D, D) rotations for positions first_position .. first_position + N - 1.

        RoPE is linear in x: x * cos + rotate_half(x) * sin = x @ R with R = diag(cos) +
        P diag(sin), where P is rotate_half's (signed permutation) matrix; one matmul per token
        rotates queries and keys together. cos/sin come from the model's own `rotary_emb`.
        """
        weight = self.embed.weight
        positions = torch.arange(first_position, first_position + count, device=weight.device)
        cos, sin = self.rotary(weight[:1], positions.view(1, 1, -1).expand(3, 1, -1))
        half = self.head_dim // 2
        eye = torch.eye(self.head_dim, dtype=cos.dtype, device=cos.device)
        perm = torch.cat([-eye[:, half:], eye[:, :half]], dim=1)  # rotate_half(x) = x @ perm
        return torch.diag_embed(cos[0]) + perm[None] * sin[0][:, None, :]  # (N, D, D)

    def __call__(self, tokens: Tensor, rotation: Tensor, cache: StaticKV, write_at: Tensor,
                 kv_len: int | None = None, attn_bias: Tensor | None = None) -> Tensor:
        """(B,) tokens at cache column `write_at` ((1,) int64) -> (B, V) float32 logits.

        rotation: (D, D) RoPE rotation of this position (`rope_table`). Attention reads columns
        [0, kv_len) when `kv_len` is given (eager), else the whole capacity under `attn_bias`
        (B or 1, 1, 1, capacity), whose column `write_at` this call opens (0) first (graphs).
        """
        rows, dim = tokens.shape[0], self.head_dim
        hidden = self.embed(tokens)  # (B, E)
        if attn_bias is not None:
            attn_bias.index_fill_(-1, write_at, 0.0)
        for layer, k_cache, v_cache in zip(self.layers, cache.keys, cache.values, strict=True):
            attn = layer.self_attn
            x = rms_norm(hidden, layer.input_layernorm)
            q = rms_norm(_project(x, attn.q_proj).view(rows, -1, dim), attn.q_norm)  # (B, H, D)
            k = rms_norm(_project(x, attn.k_proj).view(rows, -1, dim), attn.k_norm)  # (B, KV, D)
            heads = q.shape[1]
            qk = torch.cat([q, k], dim=1) @ rotation  # (B, H + KV, D)
            k_cache.index_copy_(2, write_at, qk[:, heads:, None])
            v_cache.index_copy_(2, write_at, _project(x, attn.v_proj).view(rows, -1, 1, dim))
            keys, values = k_cache, v_cache
            if kv_len is not None:
                keys, values = k_cache[:, :, :kv_len], v_cache[:, :, :kv_len]
            out = F.scaled_dot_product_attention(qk[:, :heads, None], keys, values,
                                                 attn_mask=attn_bias, scale=self.scaling,
                                                 enable_gqa=True)  # (B, H, 1, D)
            hidden = hidden + _project(out.view(rows, -1), attn.o_proj)
            hidden = hidden + _mlp(rms_norm(hidden, layer.post_attention_layernorm), layer.mlp)
        return _project(rms_norm(hidden, self.norm), self.lm_head).to(torch.float32)


def rms_norm(x: Tensor, norm) -> Tensor:
    """The HF RMSNorm module `norm` as one fused op (bitwise equal in float32 on CPU)."""
    return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)


def _project(x: Tensor, linear: nn.Linear) -> Tensor:
    """(B, E_in) -> (B, E_out) through `linear`. One row runs as a matrix-vector product: on
    CPU bitwise equal to `F.linear` here and ~3x faster for the vocabulary projection
    (`F.linear` of one row goes through a general matrix multiply)."""
    if x.shape[0] != 1:
        return linear(x)
    if linear.bias is None:
        return torch.mv(linear.weight, x[0])[None]
    return torch.addmv(linear.bias, linear.weight, x[0])[None]


def _mlp(x: Tensor, mlp: nn.Module) -> Tensor:
    """(B, E) through the HF gated MLP `mlp`: down(act(gate(x)) * up(x))."""
    gate = mlp.act_fn(_project(x, mlp.gate_proj))
    return _project(gate.mul_(_project(x, mlp.up_proj)), mlp.down_proj)


def closed_bias(capacity: int, length: int, dtype: torch.dtype,
                device: torch.device) -> Tensor:
    """(1, 1, 1, capacity) additive attention bias: 0 on columns [0, length), -inf after."""
    bias = torch.full((1, 1, 1, capacity), -float("inf"), dtype=dtype, device=device)
    bias[..., :length] = 0.0
    return bias


#: (tokens (B,), rotation (D, D), write_at (1,), kv_len) -> (B, V) f32 logits; one decode
#: step against a plan's cache (`TextDecodeStep.__call__` bound to it).
DecodeForward = Callable[[Tensor, Tensor, Tensor, int], Tensor]


class CompiledDecodeStep:
    """`TextDecodeStep` through `torch.compile` (inductor), for one model, any device.

    The compiled form attends over the cache's whole capacity under `closed_bias` (static
    shapes, as the CUDA graph does), so one compiled graph serves every plan of a
    (rows, capacity) bucket while each plan keeps its own cache; caches and biases are
    arguments (dynamo guards on their shapes, not on their identity). Outputs equal the eager
    step to float rounding (inductor generates its own reductions; tested with a tolerance).
    A bucket's first token compiles it: the tiny model's first plan took 19 s on this
    project's CPU with an empty inductor cache and 5.5 s in a new process whose on-disk
    inductor cache had the bucket (0.5 s without compiling). torch compiles at most
    `torch._dynamo.config.recompile_limit` buckets per process and runs later ones eagerly.
    When compiling fails (e.g. no C++ compiler for inductor's CPU code), the step logs why
    once and runs eagerly from then on.
    """

    def __init__(self, step: TextDecodeStep) -> None:
        self.step = step
        self._compiled = torch.compile(step.__call__, fullgraph=True, dynamic=False)
        self.failed: str | None = None

    def bind(self, cache: StaticKV, length: int) -> DecodeForward:
        """The forward of a plan whose prompt fills `cache` columns [0, length)."""
        weight = self.step.embed.weight
        bias = closed_bias(cache.capacity, length, weight.dtype, weight.device)

        def forward(tokens: Tensor, rotation: Tensor, write_at: Tensor, kv_len: int) -> Tensor:
            if self.failed is None:
                try:
                    return self._compiled(tokens, rotation, cache, write_at, None, bias)
                except Exception as exc:  # dynamo's and inductor's errors share no base class
                    self.failed = f"{type(exc).__name__}: {exc}"
                    logger.warning("decode.compile: compiling the decode step failed (%s); "
                                   "decoding eagerly", self.failed.splitlines()[0])
            return self.step(tokens, rotation, cache, write_at, None, bias)

        return forward


class GraphedDecodeStep:
    """`TextDecodeStep` captured in a CUDA graph for one (rows, capacity) bucket.

    Owns its static cache and input buffers: a plan fills the cache's prompt columns and calls
    `open(length)`; `__call__` copies the token, rotary row and write index in and replays.
    """

    def __init__(self, step: TextDecodeStep, rows: int, capacity: int) -> None:
        device = step.embed.weight.device
        if device.type != "cuda":
            raise ValueError(f"decode.cuda_graph: needs a CUDA device, the model is on {device}")
        self.cache = step.allocate(rows, capacity)
        dtype = step.embed.weight.dtype
        self._tokens = torch.zeros(rows, dtype=torch.int64, device=device)
        self._rotation = torch.zeros(step.head_dim, step.head_dim, dtype=dtype, device=device)
        self._write_at = torch.zeros(1, dtype=torch.int64, device=device)
        self._bias = closed_bias(capacity, 0, dtype, device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up outside the graph (allocator, kernels)
            step(self._tokens, self._rotation, self.cache, self._write_at, None, self._bias)
        torch.cuda.current_stream(device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._logits = step(self._tokens, self._rotation, self.cache, self._write_at, None,
                                self._bias)
        logger.info("captured a decode CUDA graph for %d rows, capacity %d", rows, capacity)

    def open(self, length: int) -> None:
        """A new plan whose prompt fills `self.cache` columns [0, length): open those columns
        to attention and close every later one."""
        self._bias.fill_(-float("inf"))
        self._bias[..., :length] = 0.0

    def __call__(self, tokens: Tensor, rotation: Tensor, write_at: Tensor) -> Tensor:
        self._tokens.copy_(tokens)
        self._rotation.copy_(rotation)
        self._write_at.copy_(write_at)
        self._graph.replay()
        return self._logits
