"""The reference chat layout as token ids, and fusion of the ego-history tokens.

Layout (reference §4.2): a system text, one user turn with N images (camera-major, oldest
first) and one text item (`<|traj_history_start|>` + 48 x `<|traj_history|>` +
`<|traj_history_end|>` + instruction), and an assistant turn `<|cot_start|>` left open
(continue_final_message: no closing `<|im_end|>`). The text is rendered with a Qwen3-VL-style
chat template, tokenized once per (tokenizer, layout), and each `<|image_pad|>` is expanded to
its image's token count, as the HF processor does, without re-tokenizing thousands of pads.

Glossary: L = prompt tokens, N = images, M = vision patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from alpamayo_core.inputs.images import ImageInputs
from alpamayo_core.model.vocabulary import TokenIds

SYSTEM_TEXT = "You are a driving assistant that generates safe and accurate actions."
INSTRUCTION_TEXT = ("output the chain-of-thought reasoning of the driving process, then output "
                    "the future trajectory.")

#: Qwen3-VL-style chat template: ChatML turns, list-of-dict contents, image items rendered as
#: `<|vision_start|><|image_pad|><|vision_end|>`.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class PromptInputs:
    """Model inputs for one prompt (batch 1)."""

    input_ids: Tensor  # (1, L) int64, history slots already fused when built with history
    attention_mask: Tensor  # (1, L) int64, all ones
    pixel_values: Tensor  # (M, D) float32
    image_grid_thw: Tensor  # (N, 3) int64

    def __post_init__(self) -> None:
        if self.input_ids.ndim != 2 or self.input_ids.shape[0] != 1:
            raise ValueError(f"input_ids: expected (1, L), got {tuple(self.input_ids.shape)}")
        if self.attention_mask.shape != self.input_ids.shape:
            raise ValueError("attention_mask: must have the shape of input_ids")

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]


def chat_messages(num_images: int, num_history_tokens: int) -> list[dict]:
    """The reference conversation with `{"type": "image"}` placeholders (no pixel data)."""
    history = ("<|traj_history_start|>" + "<|traj_history|>" * num_history_tokens
               + "<|traj_history_end|>")
    user = [{"type": "image"} for _ in range(num_images)]
    user.append({"type": "text", "text": history + INSTRUCTION_TEXT})
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_TEXT}]},
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": "<|cot_start|>"}]},
    ]


def render_prompt_text(tokenizer, num_images: int, num_history_tokens: int) -> str:
    """The rendered prompt string (one `<|image_pad|>` per image), ending in `<|cot_start|>`."""
    return tokenizer.apply_chat_template(
        chat_messages(num_images, num_history_tokens), chat_template=QWEN3_VL_CHAT_TEMPLATE,
        tokenize=False, add_generation_prompt=False, continue_final_message=True)


@lru_cache(maxsize=16)
def _template_ids(tokenizer, num_images: int, num_history_tokens: int) -> tuple[int, ...]:
    text = render_prompt_text(tokenizer, num_images, num_history_tokens)
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def expand_image_pads(ids: Tensor, image_pad_id: int, tokens_per_image: list[int]) -> Tensor:
    """(L0,) ids with one `<|image_pad|>` per image -> (L,) with each repeated per image."""
    is_pad = ids == image_pad_id
    if int(is_pad.sum()) != len(tokens_per_image):
        raise ValueError(f"prompt has {int(is_pad.sum())} <|image_pad|> tokens for "
                         f"{len(tokens_per_image)} images")
    repeats = torch.ones_like(ids)
    repeats[is_pad] = torch.tensor(tokens_per_image, dtype=ids.dtype)
    return ids.repeat_interleave(repeats)


def fuse_history(input_ids: Tensor, history_ids: Tensor, traj_history_id: int) -> Tensor:
    """Write the history ids, in order, into the `<|traj_history|>` slots of (1, L) input_ids.

    Returns a new tensor; raises ValueError if the slot count differs from len(history_ids).
    """
    history = history_ids.reshape(-1).to(input_ids.dtype)
    slots = input_ids == traj_history_id
    if int(slots.sum()) != history.numel():
        raise ValueError(f"prompt has {int(slots.sum())} <|traj_history|> slots but "
                         f"{history.numel()} history ids were given")
    fused = input_ids.clone()
    fused[slots] = history
    return fused


def build_prompt(tokenizer, token_ids: TokenIds, images: ImageInputs,
                 history_ids: Tensor | None, num_history_tokens: int = 48) -> PromptInputs:
    """Prompt ids for the images and (optionally) fused history ids (48,) or (1, 48).

    Without `history_ids` the `<|traj_history|>` placeholders stay in place.
    """
    template = _template_ids(tokenizer, images.num_images, num_history_tokens)
    ids = expand_image_pads(torch.tensor(template, dtype=torch.int64), token_ids.image_pad,
                            images.tokens_per_image).unsqueeze(0)  # (1, L)
    if history_ids is not None:
        ids = fuse_history(ids, history_ids, token_ids.traj_history)
    return PromptInputs(input_ids=ids, attention_mask=torch.ones_like(ids),
                        pixel_values=images.pixel_values, image_grid_thw=images.image_grid_thw)
