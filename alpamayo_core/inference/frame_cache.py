"""Frames encoded once: vision-tower outputs per (camera, stamp), reused by later plans.

At 10 Hz cameras and frame offsets -0.3..0 s, 12 of a plan's 16 frames were in the previous
plan. The Qwen3-VL vision tower never mixes images (attention split per image, per-image
positions, mergers within one image), so an image's outputs (merged tokens and deepstack
features) do not depend on the other images of the batch: on CPU they are bitwise identical
whether encoded alone or with others; on GPU kernels may round differently per batch size.

`encode_frames` runs only the frames missing from a `FrameEncodingCache` through the tower and
assembles all of them in prompt order; `prefill_with_features` is the HF model's prefill with
those features in place of `pixel_values` (the same fusion: scatter into the `<|image_pad|>`
slots, deepstack added in the first layers).

Glossary: N images, M patches, T_i merged tokens of image i, E hidden, L prompt tokens.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from torch import Tensor

logger = logging.getLogger(__name__)
V = TypeVar("V")


@dataclass(frozen=True)
class EncodedImage:
    """Vision-tower outputs of one image."""

    embeds: Tensor  # (T_i, E) merged tokens
    deepstack: tuple[Tensor, ...]  # per deepstack layer (T_i, E)


@dataclass(frozen=True)
class ImageFeatures:
    """Vision-tower outputs of a prompt's N images, concatenated in prompt order."""

    embeds: Tensor  # (sum T_i, E)
    deepstack: tuple[Tensor, ...]  # per deepstack layer (sum T_i, E)
    encoded: int  # images that went through the tower (the others came from the cache)


class FrameCache(Generic[V]):
    """One item per frame key for the last `max_frames` frames, least recently used evicted
    first."""

    def __init__(self, max_frames: int) -> None:
        if max_frames < 1:
            raise ValueError(f"frame_cache.max_frames: must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Hashable, item: V) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.max_frames:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class FrameEncodingCache(FrameCache[EncodedImage]):
    """The last `max_frames` images' vision-tower outputs (`EncodedImage`)."""


def _select(pixel_values: Tensor, patches: list[int], images: Sequence[int]) -> Tensor:
    """The `images` (indices) of `pixel_values` in either `ImageInputs` form; patches are
    cast to the tower's dtype by the caller, uint8 images by the patch embedding."""
    if list(images) == list(range(len(patches))):  # every image: no gather copy
        return pixel_values
    if pixel_values.ndim == 4:  # (N, 3, h, w) images
        return pixel_values[list(images)]
    starts = [sum(patches[:i]) for i in range(len(patches))]
    return torch.cat([pixel_values[starts[i]:starts[i] + patches[i]] for i in images])


def _encode(visual, pixel_values: Tensor, grid_thw: Tensor,
            images: Sequence[int]) -> list[EncodedImage]:
    """Images `images` (indices into grid_thw) through the tower in one batch."""
    patches = grid_thw.prod(-1).tolist()  # (N,) patch rows per image
    rows = _select(pixel_values, patches, images)
    if rows.ndim == 2:
        rows = rows.type(visual.dtype)
    embeds, deepstack = visual(rows, grid_thw=grid_thw[list(images)])
    merge = visual.spatial_merge_size ** 2
    tokens = [patches[i] // merge for i in images]
    per_level = [level.split(tokens) for level in deepstack]
    return [EncodedImage(e, tuple(level[j] for level in per_level))
            for j, e in enumerate(embeds.split(tokens))]


def encode_frames(visual, pixel_values: Tensor, grid_thw: Tensor,
                  keys: Sequence[Hashable] | None,
                  cache: FrameEncodingCache | None) -> ImageFeatures:
    """Vision features of N images (`pixel_values` in either `ImageInputs` form, grid_thw
    (N, 3)).

    With a cache and one key per image (e.g. (camera, stamp_ns, grid)), only images whose key
    is missing are encoded; they are then stored. Without either, every image is encoded.
    """
    n = grid_thw.shape[0]
    if keys is not None and len(keys) != n:
        raise ValueError(f"frame_keys: {len(keys)} keys for {n} images")
    found = [None] * n if cache is None or keys is None else [cache.get(k) for k in keys]
    missing = [i for i, item in enumerate(found) if item is None]
    if missing:
        for i, item in zip(missing, _encode(visual, pixel_values, grid_thw, missing),
                           strict=True):
            found[i] = item
            if cache is not None and keys is not None:
                cache.put(keys[i], item)
    levels = len(found[0].deepstack)
    return ImageFeatures(
        embeds=torch.cat([item.embeds for item in found]),
        deepstack=tuple(torch.cat([item.deepstack[k] for item in found])
                        for k in range(levels)),
        encoded=len(missing))


def prefill_with_features(vlm, input_ids: Tensor, positions: Tensor, cache,
                          features: ImageFeatures) -> Tensor:
    """The prompt (1, L) through the text model with `features` in its image slots.

    positions: (3, 1, L) mRoPE ids; `cache` (an HF `Cache`) receives the prompt's K/V.
    Returns the last position's logits (1, V) float32.
    """
    embeds = vlm.model.get_input_embeddings()(input_ids)  # (1, L, E)
    image_slots = input_ids == vlm.config.image_token_id  # (1, L)
    if int(image_slots.sum()) != features.embeds.shape[0]:
        raise ValueError(f"prompt has {int(image_slots.sum())} image slots for "
                         f"{features.embeds.shape[0]} image tokens")
    embeds = embeds.masked_scatter(image_slots[..., None], features.embeds.to(embeds.dtype))
    out = vlm.model.language_model(
        inputs_embeds=embeds, position_ids=positions, past_key_values=cache, use_cache=True,
        cache_position=torch.arange(input_ids.shape[1], device=input_ids.device),
        visual_pos_masks=image_slots, deepstack_visual_embeds=list(features.deepstack))
    return vlm.lm_head(out.last_hidden_state[:, -1:]).to(torch.float32)[:, -1]
