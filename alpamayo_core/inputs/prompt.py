"""The reference chat layout as token ids, and fusion of the ego-history tokens.

Layout (reference §4.2): a system text, one user turn with N images (camera-major, oldest
first) and one text item (`<|traj_history_start|>` + 48 x `<|traj_history|>` +
`<|traj_history_end|>` + instruction), and an assistant turn `<|cot_start|>` left open
(continue_final_message: no closing `<|im_end|>`). The text is rendered with a Qwen3-VL-style
chat template, tokenized once per (tokenizer, layout), and each `<|image_pad|>` is expanded to
its image's token count, as the HF processor does, without re-tokenizing thousands of pads.

Alpamayo 1.5 additions (`PromptLayout`, 1.5 sheet §1.5): with camera ids, each camera's frames
are preceded by `"<name>: "` once and `"frame <k> "` per frame; a route text goes right after
the history block as `<|route_start|>text<|route_end|>`; a question replaces the history block
and the instruction (`<|question_start|>q<|question_end|>`, assistant prefix
`<|answer_start|>`). With no ids, no route and no question the layout is R1's exactly.

Glossary: L = prompt tokens, N = images, M = vision patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from alpamayo_core.inputs.cameras import check_camera_ids, display_name
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
    pixel_values: Tensor  # `ImageInputs.pixel_values`: (M, D) float patches or (N, 3, h, w) uint8
    image_grid_thw: Tensor  # (N, 3) int64

    def __post_init__(self) -> None:
        if self.input_ids.ndim != 2 or self.input_ids.shape[0] != 1:
            raise ValueError(f"input_ids: expected (1, L), got {tuple(self.input_ids.shape)}")
        if self.attention_mask.shape != self.input_ids.shape:
            raise ValueError("attention_mask: must have the shape of input_ids")

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]


@dataclass(frozen=True)
class PromptLayout:
    """The 1.5 parts of a prompt; the default (all None) is the R1 layout.

    camera_ids: one id (0-6, ascending) per camera, images grouped camera-major: adds the
        per-camera and per-frame headers.
    route_text: navigation instruction, e.g. "Turn left in 50m" (trajectory prompts only).
    question: a VQA question: no history block, no instruction; the answer follows
        `<|answer_start|>`.
    """

    camera_ids: tuple[int, ...] | None = None
    route_text: str | None = None
    question: str | None = None

    def __post_init__(self) -> None:
        if self.camera_ids is not None:
            object.__setattr__(self, "camera_ids", check_camera_ids(self.camera_ids))
        for name in ("route_text", "question"):
            text = getattr(self, name)
            if text is not None and (not text.strip() or "<|" in text or "|>" in text):
                raise ValueError(f"{name}: must be non-empty plain text without special-token "
                                 f"markers '<|' or '|>', got {text!r}")
        if self.route_text is not None and self.question is not None:
            raise ValueError("route_text: a question prompt takes no route (ask without it)")

    @property
    def is_r1(self) -> bool:
        return self.camera_ids is None and self.route_text is None and self.question is None


def _image_items(num_images: int, camera_ids: tuple[int, ...] | None) -> list[dict]:
    """The image block: bare images (R1), or camera-major frames with 1.5 headers."""
    if camera_ids is None:
        return [{"type": "image"} for _ in range(num_images)]
    frames, rest = divmod(num_images, len(camera_ids))
    if rest or frames < 1:
        raise ValueError(f"camera_ids: {num_images} images do not split into "
                         f"{len(camera_ids)} cameras with the same number of frames")
    items: list[dict] = []
    for camera_id in camera_ids:
        items.append({"type": "text", "text": f"{display_name(camera_id)}: "})
        for k in range(frames):
            items += [{"type": "text", "text": f"frame {k} "}, {"type": "image"}]
    return items


def chat_messages(num_images: int, num_history_tokens: int,
                  layout: PromptLayout = PromptLayout()) -> list[dict]:
    """The reference conversation with `{"type": "image"}` placeholders (no pixel data)."""
    user = _image_items(num_images, layout.camera_ids)
    if layout.question is not None:
        user.append({"type": "text",
                     "text": f"<|question_start|>{layout.question}<|question_end|>"})
        opening = "<|answer_start|>"
    else:
        text = ("<|traj_history_start|>" + "<|traj_history|>" * num_history_tokens
                + "<|traj_history_end|>")
        if layout.route_text is not None:
            text += f"<|route_start|>{layout.route_text}<|route_end|>"
        user.append({"type": "text", "text": text + INSTRUCTION_TEXT})
        opening = "<|cot_start|>"
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_TEXT}]},
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": opening}]},
    ]


def render_prompt_text(tokenizer, num_images: int, num_history_tokens: int,
                       layout: PromptLayout = PromptLayout()) -> str:
    """The rendered prompt string (one `<|image_pad|>` per image), ending in `<|cot_start|>`
    (`<|answer_start|>` for a question)."""
    return tokenizer.apply_chat_template(
        chat_messages(num_images, num_history_tokens, layout),
        chat_template=QWEN3_VL_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=False,
        continue_final_message=True)


@lru_cache(maxsize=16)
def _template_ids(tokenizer, num_images: int, num_history_tokens: int,
                  layout: PromptLayout) -> tuple[int, ...]:
    text = render_prompt_text(tokenizer, num_images, num_history_tokens, layout)
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
                 history_ids: Tensor | None, num_history_tokens: int = 48,
                 layout: PromptLayout = PromptLayout()) -> PromptInputs:
    """Prompt ids for the images and (optionally) fused history ids (48,) or (1, 48).

    Without `history_ids` the `<|traj_history|>` placeholders stay in place. A question layout
    has no history block: `history_ids` must be None.
    """
    if layout.question is not None and history_ids is not None:
        raise ValueError("history_ids: a question prompt has no history block; pass None")
    template = _template_ids(tokenizer, images.num_images, num_history_tokens, layout)
    ids = expand_image_pads(torch.tensor(template, dtype=torch.int64), token_ids.image_pad,
                            images.tokens_per_image).unsqueeze(0)  # (1, L)
    if history_ids is not None:
        ids = fuse_history(ids, history_ids, token_ids.traj_history)
    return PromptInputs(input_ids=ids, attention_mask=torch.ones_like(ids),
                        pixel_values=images.pixel_values, image_grid_thw=images.image_grid_thw)


def without_route(prompt: PromptInputs, token_ids: TokenIds) -> PromptInputs:
    """The unguided prompt of classifier-free guidance: every token from `<|route_start|>`
    through `<|route_end|>` removed (the same ids as rendering without the route, since both
    tags are special tokens). ValueError when the prompt has no complete route span."""
    ids = prompt.input_ids[0]  # (L,)
    starts = (ids == token_ids.route_start).nonzero().flatten()
    ends = (ids == token_ids.route_end).nonzero().flatten()
    if len(starts) != 1 or len(ends) != 1 or int(ends[0]) < int(starts[0]):
        raise ValueError("guidance needs a route text: the prompt has no "
                         "<|route_start|>...<|route_end|> span (set route_text or turn "
                         "guidance off)")
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[int(starts[0]):int(ends[0]) + 1] = False
    kept = ids[keep][None]  # (1, L')
    return PromptInputs(input_ids=kept, attention_mask=torch.ones_like(kept),
                        pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw)
