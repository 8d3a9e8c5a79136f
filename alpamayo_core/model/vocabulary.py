"""The extended Alpamayo-R1 vocabulary: its special strings, `<iN>` tokens and resolved ids.

The released tokenizer is the Qwen3-VL base tokenizer (151,669 entries) plus `<i0>..<i3999>` as
normal added tokens plus 29 special strings (28 new; `<|image_pad|>` already exists), 155,697 in
total. `TokenIds` resolves every id the model needs from a tokenizer once, so no code hard-codes
an id; `check_released_layout` pins the released numbers. The network needs these ids (vision
placeholders, the embedding size), so they live with the model; `inputs.tokens` turns
history and text into and out of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from alpamayo_core.model.config import (
    RELEASED_VOCAB_SIZE,
    VARIANT_1_5,
    VARIANT_R1,
    VARIANTS,
    TokenConfig,
)

#: Special-token keys in the released order; each becomes the string `<|{key}|>`.
SPECIAL_TOKEN_KEYS: tuple[str, ...] = (
    "prompt_start", "prompt_end",
    "image_start", "image_pre_tkn", "image_end",
    "traj_history_start", "traj_history_pre_tkn", "traj_history_end",
    "cot_start", "cot_end",
    "meta_action_start", "meta_action_end",
    "traj_future_start", "traj_future_pre_tkn", "traj_future_end",
    "traj_history", "traj_future",
    "image_pad",
    "vectorized_wm", "vectorized_wm_start", "vectorized_wm_end", "vectorized_wm_pre_tkn",
    "route_start", "route_pad", "route_end",
    "question_start", "question_end",
    "answer_start", "answer_end",
)
SPECIAL_TOKENS: tuple[str, ...] = tuple(f"<|{k}|>" for k in SPECIAL_TOKEN_KEYS)

#: Alpamayo 1.5 renamed eight reserved slots (same ids); its meta-action tags are gone, so a
#: 1.5 model never yields a meta-action text.
RENAMED_1_5: dict[str, str] = {
    "image_pre_tkn": "_padding_0", "traj_history_pre_tkn": "_padding_1",
    "meta_action_start": "_padding_2", "meta_action_end": "_padding_3",
    "traj_future_pre_tkn": "_padding_4", "vectorized_wm": "_padding_5",
    "vectorized_wm_start": "_padding_6", "vectorized_wm_end": "_padding_7",
    "vectorized_wm_pre_tkn": "_padding_8",
}


def special_tokens(variant: str = VARIANT_R1) -> tuple[str, ...]:
    """The 29 special strings of `variant` in the released order (1.5: renamed slots)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    renames = RENAMED_1_5 if variant == VARIANT_1_5 else {}
    return tuple(f"<|{renames.get(k, k)}|>" for k in SPECIAL_TOKEN_KEYS)


#: Ids of the released vocabulary (reference §3), checked by `TokenIds.check_released_layout`.
RELEASED_IDS: dict[str, int] = {
    "vocab_size": RELEASED_VOCAB_SIZE,
    "pad": 151643, "im_end": 151645, "vision_start": 151652, "vision_end": 151653,
    "image_pad": 151655, "video_pad": 151656,
    "traj_token_start": 151669, "hist_token_start": 154669, "traj_token_end": 155669,
    "prompt_start": 155669, "traj_history_start": 155674, "traj_history_end": 155676,
    "cot_start": 155677, "cot_end": 155678, "meta_action_start": 155679,
    "meta_action_end": 155680, "traj_future_start": 155681, "traj_future_end": 155683,
    "traj_history": 155684, "traj_future": 155685, "route_start": 155690, "route_end": 155692,
    "question_start": 155693, "question_end": 155694, "answer_start": 155695,
    "answer_end": 155696,
}


def traj_token(i: int) -> str:
    """The discrete trajectory token string `<i{i}>`."""
    return f"<i{i}>"


def extend_tokenizer(base_tokenizer, cfg: TokenConfig, variant: str = VARIANT_R1):
    """Add `<i0>..<i{n-1}>` (normal tokens) then the special strings (special tokens), in place.

    Mirrors the reference's extension order so the ids match the released vocabulary; the
    special strings are `variant`'s (`special_tokens`). Returns the same tokenizer object for
    chaining.
    """
    vocab = base_tokenizer.get_vocab()
    if traj_token(0) in vocab:
        raise ValueError("extend_tokenizer: tokenizer already holds <i0>; it is extended already")
    base_tokenizer.add_tokens([traj_token(i) for i in range(cfg.traj_vocab_size)])
    new_special = [t for t in special_tokens(variant) if t not in vocab]
    base_tokenizer.add_tokens(new_special, special_tokens=True)
    return base_tokenizer


@dataclass(frozen=True)
class TokenIds:
    """Every token id the model uses, resolved from one tokenizer.

    `traj_token_end` is exclusive: `<iN>` ids are [traj_token_start, traj_token_end).
    History bins start at `hist_token_start = traj_token_start + future_num_bins`.
    """

    vocab_size: int
    pad: int
    im_end: int
    image_pad: int
    video_pad: int
    vision_start: int
    vision_end: int
    prompt_start: int
    traj_history: int
    traj_history_start: int
    traj_history_end: int
    traj_future: int
    traj_future_start: int
    traj_future_end: int
    cot_start: int
    cot_end: int
    meta_action_start: int
    meta_action_end: int
    answer_start: int
    answer_end: int
    route_start: int
    route_end: int
    question_start: int
    question_end: int
    traj_token_start: int
    hist_token_start: int
    traj_token_end: int

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"TokenIds.{f.name}: must be a valid id, got "
                                 f"{getattr(self, f.name)}")
        if not self.traj_token_start < self.hist_token_start < self.traj_token_end:
            raise ValueError("TokenIds.hist_token_start: must lie inside the <iN> id range")

    @classmethod
    def from_tokenizer(cls, tokenizer, cfg: TokenConfig) -> TokenIds:
        """Resolve ids; raises ValueError if a token is missing or `<iN>` is not contiguous."""
        vocab = tokenizer.get_vocab()

        def tid(tok: str) -> int:
            if tok not in vocab:
                raise ValueError(f"tokenizer has no {tok!r}: extend it with extend_tokenizer()")
            return vocab[tok]

        def slot(key: str) -> int:  # R1 name, else the 1.5 name of the same slot
            r1 = f"<|{key}|>"
            return tid(r1 if r1 in vocab or key not in RENAMED_1_5
                       else f"<|{RENAMED_1_5[key]}|>")

        start = tid(traj_token(0))
        last = tid(traj_token(cfg.traj_vocab_size - 1))
        if last != start + cfg.traj_vocab_size - 1:
            raise ValueError(f"<iN> ids are not contiguous: <i0>={start}, "
                             f"<i{cfg.traj_vocab_size - 1}>={last}")
        named = {k: slot(k) for k in (
            "image_pad", "video_pad", "vision_start", "vision_end", "prompt_start",
            "traj_history", "traj_history_start", "traj_history_end", "traj_future",
            "traj_future_start", "traj_future_end", "cot_start", "cot_end",
            "meta_action_start", "meta_action_end", "answer_start", "answer_end",
            "route_start", "route_end", "question_start", "question_end")}
        return cls(vocab_size=len(tokenizer), pad=tid("<|endoftext|>"), im_end=tid("<|im_end|>"),
                   traj_token_start=start, hist_token_start=start + cfg.future_num_bins,
                   traj_token_end=start + cfg.traj_vocab_size, **named)

    def check_released_layout(self) -> None:
        """Raise ValueError unless these ids are the released Alpamayo-R1 vocabulary's."""
        wrong = {k: (getattr(self, k), v) for k, v in RELEASED_IDS.items()
                 if getattr(self, k) != v}
        if wrong:
            detail = ", ".join(f"{k}={got} (expected {exp})" for k, (got, exp) in wrong.items())
            raise ValueError(f"tokenizer does not match the released Alpamayo-R1 vocabulary: "
                             f"{detail}. Use the checkpoint's tokenizer (Qwen3-VL base extended "
                             f"with extend_tokenizer and the released TokenConfig).")
