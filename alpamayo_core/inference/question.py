"""Alpamayo 1.5 question answering (VQA) over the camera frames.

Layout (1.5 sheet §1.5, §1.10): the image block (with camera headers), then
`<|question_start|>question<|question_end|>`, no history block; the assistant turn opens with
`<|answer_start|>`. Decoding is plain sampling: no `<iN>` mask, no stop after
`<|traj_future_start|>`; it ends at `<|im_end|>` or the length cap. The answer is the text
before `<|answer_end|>` ("" when the model never closes it). The prefill and decode loop are
phase 1's (`reasoning`: static-cache decode step, optional CUDA graph, cancel event).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

from alpamayo_core.inference.reasoning import (
    DecodeOptions,
    SamplingConfig,
    _decode,
    _prefill,
    _TokenSampler,
)
from alpamayo_core.inference.timing import device_clock
from alpamayo_core.inputs.prompt import PromptInputs
from alpamayo_core.inputs.tokens import extract_texts
from alpamayo_core.model.vocabulary import TokenIds


@dataclass(frozen=True)
class Answer:
    """The model's answer to one question.

    Attributes:
        text: the answer (text between `<|answer_start|>` and `<|answer_end|>`), "" if the
            model did not close it within the token cap.
        generated: everything decoded after `<|answer_start|>`, special tokens kept (for
            diagnosing an empty `text`).
        t0_ns: time of the newest frame the question was asked on.
        num_generated_tokens: tokens sampled.
        model_id: short id of the loaded model.
        timings_ms: preprocess, prefill, decode, total.
    """

    text: str
    generated: str
    t0_ns: int = 0
    num_generated_tokens: int = 0
    model_id: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def answer_question(vlm, prompt: PromptInputs, token_ids: TokenIds, sampling: SamplingConfig,
                    tokenizer, generator: torch.Generator | None = None,
                    logits_processor: LogitsProcessor | None = None,
                    decode: DecodeOptions | None = None,
                    cancel: threading.Event | None = None) -> Answer:
    """One answer (a single row) for a question prompt ending in `<|answer_start|>`;
    `logits_processor` (HF) runs before the warpers (constrained or forced decoding);
    `decode` and `cancel` as in `generate_reasoning`."""
    if int(prompt.input_ids[0, -1]) != token_ids.answer_start:
        raise ValueError("prompt: a question prompt must end with <|answer_start|> (build it "
                         "with PromptLayout(question=...))")
    device, prompt_len = prompt.input_ids.device, prompt.length
    t0 = device_clock(device)
    options = decode or DecodeOptions()
    pre = _prefill(vlm, prompt, None, 1, sampling.max_new_tokens, options)
    t1 = device_clock(device)
    seqs = torch.full((1, prompt_len + sampling.max_new_tokens), token_ids.pad, device=device)
    seqs[:, :prompt_len] = prompt.input_ids
    sample = _TokenSampler(token_ids, sampling, logits_processor, generator,
                           mask_traj_tokens=False)
    n_new = _decode(pre, pre.logits, seqs, prompt_len, sample, token_ids, options, cancel,
                    stop_after_future_start=False)
    t2 = device_clock(device)
    generated = seqs[0, prompt_len:prompt_len + n_new].tolist()
    text = tokenizer.decode(generated, skip_special_tokens=False)
    head = tokenizer.decode([token_ids.answer_start], skip_special_tokens=False)
    return Answer(text=extract_texts(head + text)["answer"], generated=text,
                  num_generated_tokens=n_new,
                  timings_ms={"prefill": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3})
