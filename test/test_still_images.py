"""Time-folded still-image patches give the vision tower the same result as repeated frames."""

from __future__ import annotations

import pytest
import torch

from alpamayo_core.inputs.images import preprocess_images
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import preset, with_vocab_size
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


@pytest.fixture(scope="module")
def vlm_and_cfg():
    tok = extend_tokenizer(tiny_base_tokenizer(), preset("tiny").tokens)
    cfg = with_vocab_size(preset("tiny"), len(tok))
    torch.manual_seed(0)
    return build_vlm(cfg, TokenIds.from_tokenizer(tok, cfg.tokens)), cfg


def test_folded_patches_equal_repeated_frames_through_the_vision_tower(vlm_and_cfg):
    vlm, cfg = vlm_and_cfg
    frames = torch.randint(0, 256, (3, 3, 96, 160), dtype=torch.uint8)
    full = preprocess_images(frames, cfg.images, cfg.vision)
    folded = preprocess_images(frames, cfg.images, cfg.vision, fold_time=True)
    assert folded.pixel_values.shape[1] * 2 == full.pixel_values.shape[1]
    assert torch.equal(folded.image_grid_thw, full.image_grid_thw)
    with torch.no_grad():
        a = vlm.model.visual(full.pixel_values, grid_thw=full.image_grid_thw)[0]
        b = vlm.model.visual(folded.pixel_values, grid_thw=folded.image_grid_thw)[0]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_patches_of_the_wrong_width_are_rejected(vlm_and_cfg):
    vlm, _ = vlm_and_cfg
    with pytest.raises(ValueError, match="pixel_values"):
        vlm.model.visual.patch_embed(torch.zeros(4, 100))
