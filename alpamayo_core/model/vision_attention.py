"""Vision-tower attention over all images in one SDPA call (drop-in for Qwen3-VL's).

Qwen3-VL's vision attention never mixes images: HF's SDPA path splits the patch rows at
`cu_seqlens` and calls SDPA once per image (16 calls per block for 4 cameras x 4 frames). Images
of one plan share one size, so `BatchedVisionAttention` views the rows as (N, S, ...) and runs
one call with the images on the batch axis: the same per-image attention (bitwise equal on CPU),
without N calls, N-way splits and the concatenation of N outputs. Images of different sizes
fall back to one call per image.

Vision RoPE is applied to queries and keys together, as x * cos + roll(x, D/2) * sin_signed
(rotate_half(x) = roll(x, D/2) with its first half negated), in float32 as HF does.

Glossary: M patch rows (all images), N images, S patches per image, H heads, D head dim,
E = H * D vision hidden.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BatchedVisionAttention(nn.Module):
    """Holds `qkv` (E -> 3E) and `proj` (E -> E) under the HF module's state-dict keys."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.qkv, self.proj = attn.qkv, attn.proj
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        self.scaling = attn.scaling

    def forward(self, hidden_states: Tensor, cu_seqlens: Tensor,
                position_embeddings: tuple[Tensor, Tensor], **_: object) -> Tensor:
        """(M, E) rows, cu_seqlens (N + 1,) image boundaries, (cos, sin) (M, D) -> (M, E)."""
        rows = hidden_states.shape[0]
        qkv = self.qkv(hidden_states).view(rows, 3, self.num_heads, self.head_dim)
        qk = _rope(qkv[:, :2], *position_embeddings)  # (M, 2, H, D)
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()  # (N,) patches per image
        if min(lengths) == max(lengths):
            out = _attend(qk[:, 0], qk[:, 1], qkv[:, 2], len(lengths), self.scaling)
        else:
            out = torch.cat([_attend(q, k, v, 1, self.scaling) for q, k, v in zip(
                qk[:, 0].split(lengths), qk[:, 1].split(lengths), qkv[:, 2].split(lengths),
                strict=True)])
        return self.proj(out.reshape(rows, -1))


def _rope(qk: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """(M, 2, H, D) queries and keys rotated by per-row (M, D) cos/sin (rotate_half layout),
    in float32 as HF does (a no-op cast for float32 models)."""
    half, dtype = qk.shape[-1] // 2, qk.dtype
    qk, cos, sin = qk.float(), cos.float(), sin.float()
    sin_signed = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)  # (M, D)
    rotated = qk.roll(half, dims=-1) * sin_signed[:, None, None]
    return rotated.add_(qk * cos[:, None, None]).to(dtype)


def _attend(q: Tensor, k: Tensor, v: Tensor, images: int, scale: float) -> Tensor:
    """(M, H, D) each, M = images * S rows of equal-size images -> (M, H, D)."""
    rows, heads, dim = q.shape
    q, k, v = (x.reshape(images, rows // images, heads, dim).transpose(1, 2) for x in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)  # (N, H, S, D)
    return out.transpose(1, 2).reshape(rows, heads, dim)
