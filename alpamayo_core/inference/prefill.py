"""The prompt prefill through the Qwen3-VL text model, written straight into a static KV cache.

`prefill_into` runs the HF model's own modules (norms, projections, rotary table, MLPs,
lm_head) over the prompt with the vision features in its image slots (deepstack added after the
first layers), as `frame_cache.prefill_with_features` does through HF's wrapper, but:

* each layer's keys and values go directly into the plan's `StaticKV` (every row), so the
  prompt's cache exists once instead of in a `DynamicCache` and then a copy;
* the last layer computes queries, attention, output projection and MLP for the last position
  only: the prefill's only output there is the next-token logits, and every other position's
  keys and values come from that layer's input (llama.cpp skips unused outputs the same way).
  Exact (rows of a layer are independent); it saves 1/num_layers of the attention and MLP
  work (half on the 2-layer tiny model, ~3 % on the 36-layer release);
* causal attention is SDPA with `is_causal=True` (no mask tensor), as HF's SDPA path does.

Glossary: L prompt tokens, T image tokens, E hidden, H query heads, KV key/value heads,
D head dim, V vocabulary, B cache rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alpamayo_core.inference.decode_step import StaticKV, rms_norm
from alpamayo_core.inference.frame_cache import ImageFeatures


def prefill_into(vlm, input_ids: Tensor, positions: Tensor, features: ImageFeatures,
                 cache: StaticKV) -> Tensor:
    """The prompt (1, L) with `features` in its image slots -> next-token logits (1, V) f32.

    positions: (3, 1, L) mRoPE ids. Writes columns [0, L) of every row of `cache`.
    """
    text = vlm.model.language_model
    slots = (input_ids[0] == vlm.config.image_token_id).nonzero().squeeze(1)  # (T,)
    if slots.numel() != features.embeds.shape[0]:
        raise ValueError(f"prompt has {slots.numel()} image slots for "
                         f"{features.embeds.shape[0]} image tokens")
    hidden = text.embed_tokens(input_ids[0])  # (L, E)
    hidden.index_copy_(0, slots, features.embeds.to(hidden.dtype))
    cos, sin = (c[0] for c in text.rotary_emb(hidden, positions))  # (L, D) each
    last = len(text.layers) - 1
    for i, (layer, k_cache, v_cache) in enumerate(
            zip(text.layers, cache.keys, cache.values, strict=True)):
        hidden = _layer(layer, hidden, cos, sin, k_cache, v_cache, last_only=i == last)
        if i < len(features.deepstack):
            _add_deepstack(hidden, slots, features.deepstack[i], input_ids.shape[1], i == last)
    return vlm.lm_head(rms_norm(hidden[-1:], text.norm)).to(torch.float32)  # (1, V)


def _layer(layer: nn.Module, hidden: Tensor, cos: Tensor, sin: Tensor, k_cache: Tensor,
           v_cache: Tensor, last_only: bool) -> Tensor:
    """(L, E) -> (L, E), or (1, E) for the last position when `last_only`; K/V -> the cache."""
    attn, length = layer.self_attn, hidden.shape[0]
    x = rms_norm(hidden, layer.input_layernorm)
    k = rms_norm(attn.k_proj(x).view(length, -1, attn.head_dim), attn.k_norm)  # (L, KV, D)
    k_cache[:, :, :length].copy_(_rope(k, cos, sin).transpose(0, 1))
    v_cache[:, :, :length].copy_(attn.v_proj(x).view(length, -1, attn.head_dim).transpose(0, 1))
    if last_only:
        x, hidden, cos, sin = x[-1:], hidden[-1:], cos[-1:], sin[-1:]
    rows = x.shape[0]
    q = rms_norm(attn.q_proj(x).view(rows, -1, attn.head_dim), attn.q_norm)  # (rows, H, D)
    out = F.scaled_dot_product_attention(
        _rope(q, cos, sin).transpose(0, 1)[None], k_cache[:1, :, :length],
        v_cache[:1, :, :length], is_causal=not last_only, scale=attn.scaling,
        enable_gqa=True)  # (1, H, rows, D)
    hidden = hidden + attn.o_proj(out[0].transpose(0, 1).reshape(rows, -1))
    return hidden + layer.mlp(rms_norm(hidden, layer.post_attention_layernorm))


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """(rows, heads, D) rotated by per-row (rows, D) cos/sin, HF's formula (rotate_half)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def _add_deepstack(hidden: Tensor, slots: Tensor, level: Tensor, length: int,
                   last_only: bool) -> None:
    """Add one deepstack level (T, E) to the image rows of `hidden` in place; with
    `last_only` hidden holds the last position alone (it gets its row if it is an image)."""
    if not last_only:
        hidden.index_add_(0, slots, level.to(hidden.dtype))
    elif slots.numel() and int(slots[-1]) == length - 1:
        hidden.add_(level[-1:].to(hidden.dtype))
