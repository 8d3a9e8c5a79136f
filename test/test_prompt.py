"""Prompt layout, image-pad expansion and history fusion."""

import pytest
import torch
from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor

from alpamayo_core.inputs.images import ImageInputs, preprocess_images
from alpamayo_core.inputs.prompt import (
    QWEN3_VL_CHAT_TEMPLATE,
    build_prompt,
    chat_messages,
    fuse_history,
)
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import ImageConfig, TokenConfig, preset
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer

VISION = preset("tiny").vision


@pytest.fixture(scope="module")
def tok():
    return extend_tokenizer(tiny_base_tokenizer(), TokenConfig())


@pytest.fixture(scope="module")
def ids(tok):
    return TokenIds.from_tokenizer(tok, TokenConfig())


def _grid_only_images(n: int, gh: int = 20, gw: int = 36) -> ImageInputs:
    grid = torch.tensor([[1, gh, gw]] * n)
    return ImageInputs(pixel_values=torch.zeros(n * gh * gw, 1536), image_grid_thw=grid,
                       merge_size=2)


def test_layout_for_16_full_hd_frames(tok, ids):
    history = torch.arange(48) + ids.hist_token_start
    prompt = build_prompt(tok, ids, _grid_only_images(16), history)
    seq = prompt.input_ids[0]
    assert (seq == ids.image_pad).sum().item() == 16 * 180
    assert (seq == ids.vision_start).sum().item() == 16
    assert (seq == ids.traj_history).sum().item() == 0
    start = (seq == ids.traj_history_start).nonzero().item()
    assert torch.equal(seq[start + 1:start + 49], history)
    assert seq[start + 49].item() == ids.traj_history_end
    assert seq[-1].item() == ids.cot_start
    assert seq[-5:].tolist().count(ids.im_end) == 0  # the assistant turn stays open
    assert (seq == ids.im_end).sum().item() == 2  # system and user turns only
    assert prompt.attention_mask.shape == prompt.input_ids.shape


def test_text_layout(tok):
    text = tok.apply_chat_template(chat_messages(2, 3), chat_template=QWEN3_VL_CHAT_TEMPLATE,
                                   tokenize=False, continue_final_message=True)
    assert text == (
        "<|im_start|>system\nYou are a driving assistant that generates safe and accurate "
        "actions.<|im_end|>\n<|im_start|>user\n"
        + "<|vision_start|><|image_pad|><|vision_end|>" * 2
        + "<|traj_history_start|>" + "<|traj_history|>" * 3 + "<|traj_history_end|>"
        + "output the chain-of-thought reasoning of the driving process, then output the "
        "future trajectory.<|im_end|>\n<|im_start|>assistant\n<|cot_start|>")


class _ImageOnlyProcessor(Qwen3VLProcessor):
    attributes = ["image_processor", "tokenizer"]  # noqa: RUF012 (HF class attribute)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kw):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kw)


def test_matches_hf_processor_path(tok, ids):
    cfg = ImageConfig()
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (4, 3, 240, 432), generator=g, dtype=torch.uint8)
    proc = _ImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, patch_size=16,
            temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tok, chat_template=QWEN3_VL_CHAT_TEMPLATE)
    messages = chat_messages(4, 48)
    for item, frame in zip(messages[1]["content"], frames, strict=False):
        item["image"] = frame.permute(1, 2, 0).numpy()
    ref = proc.apply_chat_template(messages, tokenize=True, add_generation_prompt=False,
                                   continue_final_message=True, return_dict=True,
                                   return_tensors="pt")
    ours = build_prompt(tok, ids, preprocess_images(frames, cfg, VISION), None)
    assert torch.equal(ours.input_ids, ref["input_ids"])
    assert torch.equal(ours.image_grid_thw, ref["image_grid_thw"])
    assert ours.pixel_values.shape == ref["pixel_values"].shape  # values: test_images.py


def test_fuse_history_requires_matching_count(tok, ids):
    prompt = build_prompt(tok, ids, _grid_only_images(1), None)
    with pytest.raises(ValueError, match="48 <\\|traj_history\\|> slots"):
        fuse_history(prompt.input_ids, torch.zeros(47, dtype=torch.int64), ids.traj_history)
    fused = fuse_history(prompt.input_ids, torch.full((1, 48), 7), ids.traj_history)
    assert (fused == 7).sum().item() == 48
    assert (prompt.input_ids == ids.traj_history).sum().item() == 48  # input left unchanged
