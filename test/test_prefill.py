"""The static-cache prefill (`prefill.prefill_into`) against HF's forward over the same prompt:
same next-token logits and the same keys/values in every cache row (float tolerance: the last
layer attends for the last position alone, a different kernel call than HF's causal one)."""

import dataclasses

import pytest
import torch
from transformers import DynamicCache

from alpamayo_core.inference.decode_step import TextDecodeStep
from alpamayo_core.inference.frame_cache import encode_frames
from alpamayo_core.inference.prefill import prefill_into
from alpamayo_core.inference.reasoning import _forward, _prompt_positions
from alpamayo_core.inputs.images import preprocess_images
from alpamayo_core.inputs.prompt import build_prompt
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import ImageConfig, TokenConfig, preset, with_vocab_size
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


@pytest.fixture(scope="module", params=[2, 3], ids=["2 layers", "3 layers"])
def setup(request):
    tok = extend_tokenizer(tiny_base_tokenizer(), TokenConfig())
    ids = TokenIds.from_tokenizer(tok, TokenConfig())
    cfg = with_vocab_size(preset("tiny"), len(tok))
    cfg = cfg.replace(images=ImageConfig(min_pixels=64 * 64, max_pixels=128 * 128),
                      text=dataclasses.replace(cfg.text, num_hidden_layers=request.param),
                      expert=dataclasses.replace(cfg.expert, layer_map=tuple(
                          range(request.param - 2, request.param))))
    torch.manual_seed(0)
    vlm = build_vlm(cfg, ids)
    frames = torch.randint(0, 256, (2, 2, 3, 96, 128), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    prompt = build_prompt(tok, ids, preprocess_images(frames, cfg.images, cfg.vision),
                          torch.arange(48) + ids.hist_token_start)
    return vlm, prompt


@torch.no_grad()
def test_prefill_into_static_cache_equals_hf_forward(setup):
    vlm, prompt = setup
    positions = _prompt_positions(vlm, prompt.input_ids, prompt.image_grid_thw)
    hf_cache = DynamicCache()
    hf_logits = _forward(vlm, prompt.input_ids, positions, hf_cache, prompt)  # (1, V)
    features = encode_frames(vlm.model.visual, prompt.pixel_values, prompt.image_grid_thw,
                             None, None)
    assert len(features.deepstack) == 2  # deepstack reaches the last layer of the 2-layer model
    cache = TextDecodeStep(vlm).allocate(rows=3, capacity=prompt.length + 5)
    logits = prefill_into(vlm, prompt.input_ids, positions, features, cache)
    torch.testing.assert_close(logits, hf_logits, rtol=0, atol=1e-5)
    assert logits.argmax() == hf_logits.argmax()
    for ours, ref in zip(cache.keys + cache.values,
                         [layer.keys for layer in hf_cache.layers]
                         + [layer.values for layer in hf_cache.layers], strict=True):
        torch.testing.assert_close(ours[:, :, :prompt.length], ref.expand(3, -1, -1, -1),
                                   rtol=0, atol=1e-5)
        assert not ours[:, :, prompt.length:].any()  # later columns untouched


def test_prefill_into_rejects_a_feature_count_mismatch(setup):
    vlm, prompt = setup
    positions = _prompt_positions(vlm, prompt.input_ids, prompt.image_grid_thw)
    features = encode_frames(vlm.model.visual, prompt.pixel_values, prompt.image_grid_thw,
                             None, None)
    short = type(features)(features.embeds[:-1], features.deepstack, features.encoded)
    cache = TextDecodeStep(vlm).allocate(rows=1, capacity=prompt.length)
    with pytest.raises(ValueError, match="image slots"):
        prefill_into(vlm, prompt.input_ids, positions, short, cache)
