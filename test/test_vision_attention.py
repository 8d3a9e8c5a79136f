"""The fast vision tower (batched attention, still-image patches, layout memo) against HF's."""

from __future__ import annotations

import pytest
import torch

from alpamayo_core.inputs.images import ImageInputs, preprocess_images
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import preset, with_vocab_size
from alpamayo_core.model.vision_attention import BatchedVisionAttention
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


@pytest.fixture(scope="module")
def fast_and_plain():
    tok = extend_tokenizer(tiny_base_tokenizer(), preset("tiny").tokens)
    cfg = with_vocab_size(preset("tiny"), len(tok))
    ids = TokenIds.from_tokenizer(tok, cfg.tokens)
    torch.manual_seed(0)
    fast = build_vlm(cfg, ids)
    plain = build_vlm(cfg, ids, plain=True)
    plain.load_state_dict(fast.state_dict())
    return fast.model.visual, plain.model.visual, cfg


def _images(cfg, sizes: list[tuple[int, int]]) -> ImageInputs:
    """Two frames per size, concatenated: images of several sizes in one tower call."""
    parts = [preprocess_images(torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8),
                               cfg.images, cfg.vision) for h, w in sizes]
    return ImageInputs(torch.cat([p.pixel_values for p in parts]),
                       torch.cat([p.image_grid_thw for p in parts]), cfg.vision.spatial_merge_size)


@pytest.mark.parametrize("sizes", [[(96, 160)], [(96, 160), (128, 96)]],
                         ids=["equal sizes, one call", "mixed sizes, per image"])
def test_fast_tower_equals_hf_tower(fast_and_plain, sizes):
    fast, plain, cfg = fast_and_plain
    assert all(isinstance(b.attn, BatchedVisionAttention) for b in fast.blocks)
    images = _images(cfg, sizes)
    with torch.no_grad():
        embeds, deepstack = fast(images.pixel_values, grid_thw=images.image_grid_thw)
        ref_embeds, ref_deepstack = plain(images.pixel_values, grid_thw=images.image_grid_thw)
    assert len(deepstack) == len(ref_deepstack) == len(cfg.vision.deepstack_visual_indexes)
    torch.testing.assert_close(embeds, ref_embeds, rtol=1e-5, atol=1e-6)
    for level, ref in zip(deepstack, ref_deepstack, strict=True):
        torch.testing.assert_close(level, ref, rtol=1e-5, atol=1e-6)


def test_plain_build_keeps_hf_modules(fast_and_plain):
    _, plain, _ = fast_and_plain
    assert not any(isinstance(b.attn, BatchedVisionAttention) for b in plain.blocks)
    assert type(plain.patch_embed).__name__ == "Qwen3VLVisionPatchEmbed"
