"""The small random-init Qwen3-VL the decode, phase-1 and frame-cache tests share: the tiny
preset with the offline tokenizer, images of 64x64 to 128x128 pixels, weights from seed 0."""

from __future__ import annotations

import torch

from alpamayo_core.inputs.images import preprocess_images
from alpamayo_core.inputs.prompt import build_prompt
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import ImageConfig, TokenConfig, preset, with_vocab_size
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


def tiny_vlm():
    """(tokenizer, TokenIds, ModelConfig, VLM) of the tiny preset, weights from seed 0."""
    tok = extend_tokenizer(tiny_base_tokenizer(), TokenConfig())
    ids = TokenIds.from_tokenizer(tok, TokenConfig())
    cfg = with_vocab_size(preset("tiny"), len(tok))
    cfg = cfg.replace(images=ImageConfig(min_pixels=64 * 64, max_pixels=128 * 128))
    torch.manual_seed(0)
    return tok, ids, cfg, build_vlm(cfg, ids)


def random_frames(cameras: int, frames: int, seed: int = 1) -> torch.Tensor:
    """(cameras, frames, 3, 96, 128) uint8 noise images, deterministic per seed."""
    return torch.randint(0, 256, (cameras, frames, 3, 96, 128), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def tiny_prompt(tok, ids: TokenIds, cfg, frames: torch.Tensor):
    """The prompt for `frames` with 48 history tokens."""
    images = preprocess_images(frames, cfg.images, cfg.vision)
    return build_prompt(tok, ids, images, torch.arange(48) + ids.hist_token_start)
