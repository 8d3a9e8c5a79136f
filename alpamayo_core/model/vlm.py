"""The Qwen3-VL backbone: HF's `Qwen3VLForConditionalGeneration` built from our `ModelConfig`.

`build_vlm` makes the network (SDPA attention, interleaved mRoPE, our vision token ids) with the
vision patch embedding swapped for a faster equivalent that also embeds raw still images (same
state-dict keys), and the vision tower's layout-only work (position-embedding interpolation and
vision RoPE, which depend only on the image grids) remembered for the last camera layout, and
the vision attention run over all images in one call (`model.vision_attention`).
Running it (prefill, reasoning decode) lives in `inference.reasoning`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from alpamayo_core.model.config import ImageConfig, ModelConfig
from alpamayo_core.model.vision_attention import BatchedVisionAttention
from alpamayo_core.model.vocabulary import TokenIds


def hf_vlm_config(cfg: ModelConfig, token_ids: TokenIds) -> Qwen3VLConfig:
    """The HF config for our VLM: SDPA attention, interleaved mRoPE, our vision token ids."""
    t, v = cfg.text, cfg.vision
    text = dict(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads, head_dim=t.head_dim,
        rope_theta=t.rope_theta, rms_norm_eps=t.rms_norm_eps,
        max_position_embeddings=t.max_position_embeddings,
        tie_word_embeddings=t.tie_word_embeddings,
        rope_scaling={"rope_type": "default", "mrope_section": list(t.mrope_section),
                      "mrope_interleaved": True},
    )
    vision = dict(
        depth=v.depth, hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
        num_heads=v.num_heads, in_channels=v.in_channels, patch_size=v.patch_size,
        spatial_merge_size=v.spatial_merge_size, temporal_patch_size=v.temporal_patch_size,
        out_hidden_size=v.out_hidden_size, num_position_embeddings=v.num_position_embeddings,
        deepstack_visual_indexes=list(v.deepstack_visual_indexes),
    )
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=token_ids.image_pad,
        video_token_id=token_ids.video_pad, vision_start_token_id=token_ids.vision_start,
        vision_end_token_id=token_ids.vision_end, tie_word_embeddings=t.tie_word_embeddings,
        attn_implementation="sdpa", dtype=cfg.dtype,
    )


class PatchProjection(nn.Module):
    """Holds the vision patch `Conv3d`'s parameters (`weight` (E, C, Tp, P, P), `bias` (E,))
    under the same state-dict keys; `StillImagePatchEmbed` applies them."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        if conv.kernel_size != conv.stride or conv.padding != (0, 0, 0):
            raise ValueError("PatchProjection: needs a Conv3d with kernel == stride, no padding")
        self.weight = conv.weight
        self.bias = conv.bias


class StillImagePatchEmbed(nn.Module):
    """Drop-in for Qwen3-VL's patch embedding (same keys: `proj.weight`, `proj.bias`).

    Reads either form of `ImageInputs.pixel_values` and returns (M, E) in the same patch order:

    * the reference's normalised patches (M, C*Tp*P*P): the Conv3d (kernel == stride) as one
      matmul (on CPU the conv costs ~50 ms for 16 frames where the matmul costs ~2 ms);
    * uint8 images (N, C, h, w) at the model's size, still images: the processor would repeat
      each image Tp times along time, so W . [x; ...; x] = (sum over time of W) . x; and the
      normalisation (x - 255 mean) / (255 std) is affine per channel, so it folds into that
      weight and the bias. One strided convolution per image then embeds the raw pixels, with
      no patch gather, no normalised copy and no repeat: 4 ms for 16 frames of 320x576 on this
      project's CPU against 19 ms for building the patches and the matmul (one thread). The
      result equals the reference's to float rounding (the sums are reordered), not bitwise.
    """

    def __init__(self, embed: nn.Module, images: ImageConfig, merge_size: int) -> None:
        super().__init__()
        self.proj = PatchProjection(embed.proj)
        self.embed_dim = embed.embed_dim
        self.merge_size = merge_size
        self._mean = tuple(255.0 * m for m in images.image_mean)
        self._std = tuple(255.0 * s for s in images.image_std)
        self._folded_key: tuple | None = None
        self._folded_value: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(M, C*Tp*P*P) patches or (N, C, h, w) images -> (M, E)."""
        if pixels.ndim == 4:
            return self._embed_images(pixels)
        weight = self.proj.weight  # (E, C, Tp, P, P)
        if pixels.ndim != 2 or pixels.shape[-1] != weight[0].numel():
            raise ValueError(f"pixel_values: expected ({weight[0].numel()} values per patch) "
                             f"rows or (N, {weight.shape[1]}, h, w) images, got "
                             f"{tuple(pixels.shape)}")
        return F.linear(pixels.to(weight.dtype), weight.flatten(1), self.proj.bias)

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (E, C, P, P) weight and (E,) bias that embed raw 0-255 pixels, in the weight's
        dtype (folded in float32). Without autograd they are kept until the parameters change
        (a 1152 x 1536 pass per plan on the release otherwise, ~4 ms on one CPU thread)."""
        if torch.is_grad_enabled():
            return self._fold()
        key = (tensor_state(self.proj.weight), tensor_state(self.proj.bias))
        if key != self._folded_key:
            self._folded_key, self._folded_value = key, self._fold()
        return self._folded_value

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.proj.weight.float().sum(dim=2)  # (E, C, P, P)
        mean = torch.tensor(self._mean, device=weight.device).view(1, -1, 1, 1)
        std = torch.tensor(self._std, device=weight.device).view(1, -1, 1, 1)
        bias = self.proj.bias.float() - (weight * (mean / std)).sum(dim=(1, 2, 3))
        dtype = self.proj.weight.dtype
        return (weight / std).to(dtype), bias.to(dtype)

    def _embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (M, E), M = N * (h / P) * (w / P) in merge-block order.

        One image at a time: its float copy (2 MB at 320x576) is reused by the allocator, where
        a 16-frame copy (35 MB) is a fresh mapping per call whose page faults cost more than the
        convolution. Channels-last input runs the convolution ~5x faster on CPU than NCHW."""
        weight, bias = self._folded()
        dtype, p, m = self.proj.weight.dtype, self.proj.weight.shape[-1], self.merge_size
        if images.shape[1] != weight.shape[1] or images.shape[-2] % (p * m) \
                or images.shape[-1] % (p * m):
            raise ValueError(f"pixel_values: images {tuple(images.shape)} need "
                             f"{weight.shape[1]} channels and sides that are multiples of "
                             f"{p * m}")
        grids = torch.cat([
            F.conv2d(image.to(dtype, memory_format=torch.channels_last), weight, bias, stride=p)
            for image in images.split(1)])  # (N, E, gh, gw)
        n, e, gh, gw = grids.shape
        blocks = grids.view(n, e, gh // m, m, gw // m, m).permute(0, 2, 4, 3, 5, 1)
        return blocks.reshape(n * gh * gw, e)


def tensor_state(tensor: torch.Tensor) -> tuple:
    """What identifies a parameter's current values without reading them: in-place writes
    (e.g. `load_state_dict`) bump the version; moving or casting changes storage or dtype."""
    return tensor._version, tensor.data_ptr(), tensor.dtype, str(tensor.device)


class LayoutMemo:
    """Remembers `fn(grid_thw)` for the last grids (a camera layout rarely changes).

    The key holds the grids and the version, storage and dtype of `source.weight` (the module
    the result derives from, if any, read at call time), so loading or moving weights
    recomputes. Only used without
    autograd: the stored result is shared between plans and never modified by the tower.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor],
                 source: nn.Module | None = None) -> None:
        self.fn, self.source = fn, source
        self.key: tuple | None = None
        self.value: torch.Tensor | None = None

    def __call__(self, grid_thw: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.fn(grid_thw)
        w = None if self.source is None else self.source.weight
        key = (tuple(map(tuple, grid_thw.tolist())), str(grid_thw.device),
               None if w is None else tensor_state(w))
        if key != self.key:
            self.key, self.value = key, self.fn(grid_thw)
        return self.value


def build_vlm(cfg: ModelConfig, token_ids: TokenIds,
              plain: bool = False) -> Qwen3VLForConditionalGeneration:
    """A random-init VLM in `cfg.dtype`, eval mode. Works under `torch.device("meta")`.

    The vision patch embedding is swapped for the equivalent `StillImagePatchEmbed` and the
    vision attention for `BatchedVisionAttention` (same keys); position-embedding interpolation
    and vision RoPE go through a `LayoutMemo`. `plain`: HF's modules unchanged (the same
    state-dict keys; the baseline that tests and benchmarks compare the fast paths with).
    """
    if cfg.text.vocab_size < token_ids.vocab_size:
        raise ValueError(f"text.vocab_size ({cfg.text.vocab_size}) is below the tokenizer's "
                         f"{token_ids.vocab_size} entries: use with_vocab_size(cfg, len(tok))")
    hf_cfg = hf_vlm_config(cfg, token_ids)
    model = Qwen3VLForConditionalGeneration._from_config(
        hf_cfg, dtype=getattr(torch, cfg.dtype), attn_implementation="sdpa")
    if plain:
        return model.eval()
    visual = model.model.visual
    visual.patch_embed = StillImagePatchEmbed(visual.patch_embed, cfg.images,
                                               cfg.vision.spatial_merge_size)
    visual.fast_pos_embed_interpolate = LayoutMemo(visual.fast_pos_embed_interpolate,
                                                   visual.pos_embed)
    visual.rot_pos_emb = LayoutMemo(visual.rot_pos_emb)
    for block in visual.blocks:
        block.attn = BatchedVisionAttention(block.attn)
    return model.eval()
