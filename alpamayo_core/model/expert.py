"""Action expert: a Qwen3-VL text stack without embeddings, run over the VLM's cached K/V.

Dimension glossary:
    B   trajectory rows
    T   action tokens (= waypoints, 64)
    P   cached prefix length (prompt + reasoning, up to and including <|traj_future_start|>)
    E   expert hidden size; Hq / KV query / key-value heads; D head_dim
    L   expert layers; layer_map[i] = VLM layer whose cache expert layer i reads

The layers are transformers' `Qwen3VLTextDecoderLayer`s (state-dict keys `layers.{i}.*`,
`norm.weight`, exactly as in the release; no `embed_tokens`). Attention is run functionally
("path C" of notes/ml_stack_on_cpu.md): each layer's projections, qk-norm, RoPE and MLP are the
HF modules, but the keys/values are [prefix K/V of VLM layer layer_map[i] | own K/V of the T
tokens], concatenated without touching the cache, then one non-causal
`F.scaled_dot_product_attention` with an additive float bias. GQA uses HF's `repeat_kv`
(expand + reshape), which both ONNX exporters accept, instead of `enable_gqa`.

Positions: the T tokens get 1D positions (B, T); with equal t/h/w rows Qwen3-VL's interleaved
mRoPE reduces to ordinary RoPE at those positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen3VLTextConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLTextDecoderLayer,
    Qwen3VLTextRMSNorm,
    Qwen3VLTextRotaryEmbedding,
    apply_rotary_pos_emb,
    repeat_kv,
)

from alpamayo_core.model.config import ModelConfig

MASKED = torch.finfo(torch.float32).min


@dataclass(frozen=True)
class ExpertPrefix:
    """Read-only attention context of the expert (see the team contract).

    Only static properties are checked here so that the class can be built inside a traced
    forward; `validate()` checks the cross-tensor shapes.
    """

    keys: tuple[torch.Tensor, ...]    # per expert layer: (B, KV, P, D), RoPE'd and k-normed
    values: tuple[torch.Tensor, ...]  # per expert layer: (B, KV, P, D)
    positions: torch.Tensor           # (B, T) int64 rope position of each action token
    attn_bias: torch.Tensor           # (B, 1, 1, P + T) float32: 0 attend, finfo.min masked

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.values) or not self.keys:
            raise ValueError(f"keys and values need one entry per expert layer, got "
                             f"{len(self.keys)} keys and {len(self.values)} values")
        if self.positions.ndim != 2:
            raise ValueError(f"positions must be (B, T), got {tuple(self.positions.shape)}")
        if self.attn_bias.ndim != 4:
            raise ValueError(f"attn_bias must be (B, 1, 1, P + T), got "
                             f"{tuple(self.attn_bias.shape)}")

    @property
    def prefix_len(self) -> int:
        return self.keys[0].shape[2]

    def validate(self) -> None:
        """Raise ValueError unless all tensors agree on B, P and T."""
        batch, n_act = self.positions.shape
        expected = (batch, *self.keys[0].shape[1:])
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            if k.shape != expected or v.shape != expected:
                raise ValueError(f"layer {i}: keys {tuple(k.shape)} / values {tuple(v.shape)} "
                                 f"must both be {expected}")
        if tuple(self.attn_bias.shape) != (batch, 1, 1, self.prefix_len + n_act):
            raise ValueError(f"attn_bias must be {(batch, 1, 1, self.prefix_len + n_act)}, "
                             f"got {tuple(self.attn_bias.shape)}")


def prefix_bias(prefix_len: int, n_action: int, valid_len: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Additive float32 bias (B, 1, 1, P + T): cache slots [0, valid_len) that are not padding
    are visible, the rest masked; all T action tokens are always visible (non-causal).

    Args:
        valid_len: (B,) int, index of <|traj_future_start|> + 1 per row (None: all P).
        key_padding_mask: (B, P) bool, True = a real token (None: no padding).
    """
    if valid_len is None and key_padding_mask is None:
        raise ValueError("give valid_len and/or key_padding_mask to build the prefix mask")
    ref = valid_len if valid_len is not None else key_padding_mask
    slots = torch.arange(prefix_len, device=ref.device)
    visible = torch.ones(ref.shape[0], prefix_len, dtype=torch.bool, device=ref.device)
    if valid_len is not None:
        visible = visible & (slots[None] < valid_len.reshape(-1, 1))
    if key_padding_mask is not None:
        if key_padding_mask.shape != visible.shape:
            raise ValueError(f"key_padding_mask must be (B, P={prefix_len}), "
                             f"got {tuple(key_padding_mask.shape)}")
        visible = visible & key_padding_mask.bool()
    visible = torch.cat([visible, visible.new_ones(visible.shape[0], n_action)], dim=1)
    bias = torch.zeros(visible.shape, dtype=torch.float32, device=ref.device)
    return bias.masked_fill(~visible, MASKED)[:, None, None, :]


def build_prefix(cache_kv: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 layer_map: Sequence[int], first_position: torch.Tensor, n_action: int, *,
                 kv_heads: int, head_dim: int, valid_len: torch.Tensor | None = None,
                 key_padding_mask: torch.Tensor | None = None) -> ExpertPrefix:
    """Select the VLM layers the expert reads and build positions and mask.

    Args:
        cache_kv: per VLM layer (keys, values), each (B, KV, P, D); never modified.
        layer_map: VLM layer index for each expert layer.
        first_position: (B,) int64 rope position of the first action token (the mRoPE position
            of <|traj_future_start|> + 1).
        n_action: T, the number of action tokens.
        kv_heads, head_dim: the expert's; they must match the cache.
        valid_len, key_padding_mask: see `prefix_bias`.
    """
    if any(not 0 <= i < len(cache_kv) for i in layer_map):
        raise ValueError(f"layer_map {tuple(layer_map)} indexes outside the {len(cache_kv)} "
                         "cached VLM layers")
    keys = tuple(cache_kv[i][0] for i in layer_map)
    values = tuple(cache_kv[i][1] for i in layer_map)
    got = tuple(keys[0].shape[1::2])
    if got != (kv_heads, head_dim):
        raise ValueError(f"the VLM cache has (kv heads, head_dim) = {got} but the expert expects "
                         f"{(kv_heads, head_dim)}; expert.num_key_value_heads and head_dim must "
                         "equal the VLM's")
    offsets = torch.arange(n_action, device=first_position.device, dtype=torch.int64)
    prefix = ExpertPrefix(
        keys=keys, values=values,
        positions=first_position.reshape(-1, 1).to(torch.int64) + offsets,
        attn_bias=prefix_bias(keys[0].shape[2], n_action, valid_len, key_padding_mask),
    )
    prefix.validate()
    return prefix


def expert_text_config(cfg: ModelConfig) -> Qwen3VLTextConfig:
    """The VLM's text config with the expert's sizes on top (as the release builds it)."""
    t, e = cfg.text, cfg.expert
    return Qwen3VLTextConfig(
        vocab_size=t.vocab_size, hidden_size=e.hidden_size,
        intermediate_size=e.intermediate_size, num_hidden_layers=e.num_hidden_layers,
        num_attention_heads=e.num_attention_heads, num_key_value_heads=e.num_key_value_heads,
        head_dim=e.head_dim, rms_norm_eps=t.rms_norm_eps, rope_theta=t.rope_theta,
        rope_scaling={"rope_type": "default", "mrope_section": list(t.mrope_section),
                      "mrope_interleaved": True},
        max_position_embeddings=t.max_position_embeddings, attention_bias=False,
        hidden_act="silu", attn_implementation="sdpa",
    )


def project_qkv(attn: nn.Module, hidden: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The T action tokens' q (B, Hq, T, D), k and v (B, KV, T, D) for one HF attention module:
    projections, q/k RMS norms and RoPE."""
    head_shape = (*hidden.shape[:2], -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(hidden).view(head_shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(hidden).view(head_shape)).transpose(1, 2)
    v = attn.v_proj(hidden).view(head_shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, k, v


class Expert(nn.Module):
    """`layers` + `norm` of a Qwen3VLTextModel, attending over an `ExpertPrefix`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = expert_text_config(cfg)
        self.layer_map = cfg.expert_layer_map
        self.layers = nn.ModuleList(Qwen3VLTextDecoderLayer(self.config, i)
                                    for i in range(self.config.num_hidden_layers))
        self.norm = Qwen3VLTextRMSNorm(self.config.hidden_size, eps=self.config.rms_norm_eps)
        self.rotary_emb = Qwen3VLTextRotaryEmbedding(self.config)

    def reset_rotary_buffers(self) -> None:
        """Recompute the non-persistent RoPE `inv_freq` (after `to_empty` from `meta`)."""
        rotary = self.rotary_emb
        inv_freq, rotary.attention_scaling = rotary.rope_init_fn(self.config,
                                                                 rotary.inv_freq.device)
        rotary.inv_freq = inv_freq
        rotary.original_inv_freq = inv_freq

    def build_prefix(self, cache_kv: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     first_position: torch.Tensor, n_action: int, *,
                     valid_len: torch.Tensor | None = None,
                     key_padding_mask: torch.Tensor | None = None) -> ExpertPrefix:
        """`build_prefix` with this expert's layer_map, KV heads and head_dim."""
        return build_prefix(cache_kv, self.layer_map, first_position, n_action,
                            kv_heads=self.config.num_key_value_heads,
                            head_dim=self.config.head_dim, valid_len=valid_len,
                            key_padding_mask=key_padding_mask)

    def forward(self, hidden: torch.Tensor, prefix: ExpertPrefix) -> torch.Tensor:
        """hidden (B, T, E) action tokens -> (B, T, E) after the final norm."""
        if len(prefix.keys) != len(self.layers):
            raise ValueError(f"prefix has {len(prefix.keys)} layers, the expert "
                             f"{len(self.layers)}; build it with the expert's layer_map")
        cos, sin = self.rotary_emb(hidden, prefix.positions)  # (B, T, D) each
        bias = prefix.attn_bias.to(hidden.dtype)
        for layer, k_prefix, v_prefix in zip(self.layers, prefix.keys, prefix.values, strict=True):
            attn_in = layer.input_layernorm(hidden)
            hidden = hidden + self._attention(layer.self_attn, attn_in, cos, sin, k_prefix,
                                              v_prefix, bias)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return self.norm(hidden)

    @staticmethod
    def _attention(attn: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   k_prefix: torch.Tensor, v_prefix: torch.Tensor,
                   bias: torch.Tensor) -> torch.Tensor:
        """One non-causal attention over [prefix | own tokens]; returns (B, T, E)."""
        batch, n_act, _ = hidden.shape
        q, k, v = project_qkv(attn, hidden, cos, sin)
        k = repeat_kv(torch.cat([k_prefix.to(k.dtype), k], dim=2), attn.num_key_value_groups)
        v = repeat_kv(torch.cat([v_prefix.to(v.dtype), v], dim=2), attn.num_key_value_groups)
        out = attention(q, k, v, bias, attn.scaling)
        return attn.o_proj(out.transpose(1, 2).reshape(batch, n_act, -1))  # (B, T, E)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
              scale: float) -> torch.Tensor:
    """`F.scaled_dot_product_attention` (non-causal, additive bias) with softmax scale `scale`.

    The scale is passed only when it differs from SDPA's default 1/sqrt(D): the legacy ONNX
    exporter crashes on an explicit scale with bf16 inputs ("ScalarType ComplexDouble is an
    unexpected tensor scalar type"), and Qwen3's scaling is exactly that default.
    """
    default = 1.0 / math.sqrt(q.shape[-1])
    explicit = None if math.isclose(scale, default, rel_tol=1e-12) else scale
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=explicit)
