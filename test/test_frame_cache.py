"""Frames encoded once: cached vision outputs are exact on CPU, only new frames are encoded,
the cache is bounded, and a planner given frame keys plans exactly as without them and keeps
its own copies of resized frames."""

import numpy as np
import pytest
import torch
from tiny_vlm import random_frames, tiny_vlm
from transformers import DynamicCache

from alpamayo_core.inference.frame_cache import (
    EncodedImage,
    FrameEncodingCache,
    encode_frames,
    prefill_with_features,
)
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig, _forward, _prompt_positions
from alpamayo_core.inputs.images import preprocess_images, resized_size
from alpamayo_core.inputs.prompt import build_prompt


@pytest.fixture(scope="module")
def setup():
    tok, ids, cfg, vlm = tiny_vlm()
    stream = random_frames(2, 3)  # 2 cameras, 3 stamps
    return tok, ids, cfg, vlm, stream


def _prompt(setup, first_stamp):
    tok, ids, cfg, _vlm, stream = setup
    frames = stream[:, first_stamp:first_stamp + 2]  # (2 cameras, 2 frames, 3, H, W)
    prompt = build_prompt(tok, ids, preprocess_images(frames, cfg.images, cfg.vision),
                          torch.arange(48) + ids.hist_token_start)
    keys = [(cam, stamp) for cam in range(2) for stamp in (first_stamp, first_stamp + 1)]
    return prompt, keys


def _prefill(vlm, prompt, features=None):
    positions = _prompt_positions(vlm, prompt.input_ids, prompt.image_grid_thw)
    cache = DynamicCache()
    with torch.no_grad():
        if features is None:
            logits = _forward(vlm, prompt.input_ids, positions, cache, prompt)
        else:
            logits = prefill_with_features(vlm, prompt.input_ids, positions, cache, features)
    return logits, [layer.keys for layer in cache.layers]


def test_cached_frames_give_bitwise_identical_features_and_prefill(setup):
    vlm = setup[3]
    cache = FrameEncodingCache(max_frames=4)
    first, first_keys = _prompt(setup, 0)
    second, second_keys = _prompt(setup, 1)  # stamp 1 of both cameras was in the first plan
    with torch.no_grad():
        warm = encode_frames(vlm.model.visual, first.pixel_values, first.image_grid_thw,
                             first_keys, cache)
        cached = encode_frames(vlm.model.visual, second.pixel_values, second.image_grid_thw,
                               second_keys, cache)
        fresh = encode_frames(vlm.model.visual, second.pixel_values, second.image_grid_thw,
                              None, None)
    assert (warm.encoded, cached.encoded, fresh.encoded) == (4, 2, 4)
    assert torch.equal(cached.embeds, fresh.embeds)
    assert len(cached.deepstack) == len(vlm.config.vision_config.deepstack_visual_indexes) > 0
    for a, b in zip(cached.deepstack, fresh.deepstack, strict=True):
        assert torch.equal(a, b)
    hf_logits, hf_keys = _prefill(vlm, second)  # HF's own forward with pixel_values
    logits, keys = _prefill(vlm, second, cached)
    assert torch.equal(logits, hf_logits)
    for a, b in zip(keys, hf_keys, strict=True):
        assert torch.equal(a, b)


def test_cache_is_bounded_least_recently_used_first_out():
    cache = FrameEncodingCache(max_frames=2)
    item = EncodedImage(torch.zeros(1, 2), ())
    cache.put("a", item)
    cache.put("b", item)
    assert cache.get("a") is item  # "a" is now the most recent
    cache.put("c", item)
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") is item
    with pytest.raises(ValueError, match="frame_cache.max_frames"):
        FrameEncodingCache(max_frames=0)


def test_planner_with_frame_keys_plans_exactly_as_without(tiny_model_dir):
    planner = Planner.from_pretrained(tiny_model_dir,
                                      sampling=SamplingConfig(max_new_tokens=6))
    cams = planner.cfg.images
    n_cams, n_frames = len(cams.cameras), len(cams.frame_offsets_s)
    stream = np.random.default_rng(0).integers(0, 255, (n_cams, n_frames + 1, 64, 96, 3),
                                               dtype=np.uint8)
    xyz = np.zeros((16, 3))
    rot = np.repeat(np.eye(3)[None], 16, 0)

    def inputs(start, keyed):
        keys = tuple((cam, start + f) for cam in cams.cameras for f in range(n_frames))
        return PlanInputs(stream[:, start:start + n_frames], xyz, rot,
                          frame_keys=keys if keyed else None)

    shared_key = ((cams.cameras[0], 1), (64, 96))  # (frame key, input size)
    resized = []
    for start in (0, 1):  # the second plan reuses n_frames - 1 frames of each camera
        keyed = planner.plan(inputs(start, True), seed=3)
        plain = planner.plan(inputs(start, False), seed=3)
        np.testing.assert_array_equal(keyed.xyz_m, plain.xyz_m)
        assert keyed.cot == plain.cot
        resized.append(planner.resized_frames.get(shared_key))
    assert resized[0] is not None and resized[1] is resized[0]  # resized once, then reused
    assert len(planner.frame_cache) == n_cams * n_frames  # bounded to one plan's frames
    assert len(planner.resized_frames) == n_cams * n_frames
    sibling = planner.with_settings(sampling=SamplingConfig(max_new_tokens=4))
    assert sibling.resized_frames is planner.resized_frames
    assert sibling.frame_cache is planner.frame_cache
    sibling.forget_frames()
    assert len(planner.frame_cache) == len(planner.resized_frames) == 0
    with pytest.raises(ValueError, match="frame_keys: expected"):
        planner.plan(PlanInputs(stream[:, :n_frames], xyz, rot, frame_keys=("x",)))


def test_resized_frames_do_not_alias_the_callers_arrays(tiny_model_dir):
    """Frames already at the model's size need no resize; the planner still keeps its own copy,
    so a caller that reuses its frame buffer cannot change what later plans see."""
    planner = Planner.from_pretrained(tiny_model_dir, sampling=SamplingConfig(max_new_tokens=4))
    cams = planner.cfg.images
    shape = (len(cams.cameras), len(cams.frame_offsets_s))
    h, w = resized_size(64, 96, cams, planner.cfg.vision)
    frames = np.random.default_rng(1).integers(0, 255, (*shape, h, w, 3), dtype=np.uint8)
    keys = tuple(range(shape[0] * shape[1]))
    planner.plan(PlanInputs(frames, np.zeros((16, 3)), np.repeat(np.eye(3)[None], 16, 0),
                            frame_keys=keys), seed=0)
    kept = planner.resized_frames.get((keys[0], (h, w)))
    np.testing.assert_array_equal(kept[0].permute(1, 2, 0).numpy(), frames[0, 0])
    frames[:] = 0  # the caller reuses its buffer
    assert int(kept.sum()) > 0
