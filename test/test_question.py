"""Alpamayo 1.5 question answering: layout, stop at <|im_end|>, no trajectory-token mask,
answer extraction (tiny 1.5 checkpoint, forced decoding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor

from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig
from alpamayo_core.inputs.tokens import extract_texts


class Force(LogitsProcessor):
    """Forces `tokens[k]` at generated step k (then anything)."""

    def __init__(self, tokens: list[int]):
        self.tokens, self.step = tokens, 0

    def __call__(self, input_ids, scores):
        if self.step < len(self.tokens):
            scores[:] = -float("inf")
            scores[:, self.tokens[self.step]] = 0.0
        self.step += 1
        return scores


class BoostTraj(LogitsProcessor):
    def __init__(self, start: int, end: int):
        self.band = (start, end)

    def __call__(self, input_ids, scores):
        scores[:, self.band[0]:self.band[1]] += 1e4
        return scores


@pytest.fixture(scope="module")
def planner(tiny_a15_model_dir) -> Planner:
    return Planner.from_pretrained(tiny_a15_model_dir, backend="torch",
                                   sampling=SamplingConfig(max_new_tokens=12, greedy=True))


def images(cameras: int = 1, frames: int = 2) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (cameras, frames, 64, 96, 3), np.uint8)


def test_answer_between_tags_and_stop_at_im_end(planner):
    tok, ids = planner.loaded.tokenizer, planner.loaded.token_ids
    words = tok(" A car is ahead.", add_special_tokens=False)["input_ids"]
    # <|traj_future_start|> mid-answer must not stop a question (it stops a plan).
    forced = [*words, ids.traj_future_start, ids.answer_end, ids.im_end]
    answer = planner.ask(images(), "What is ahead?", camera_ids=(1,), seed=0, t0_ns=5,
                         logits_processor=Force(forced))
    assert answer.num_generated_tokens == len(forced)  # stopped at <|im_end|>, not before
    assert answer.text == "A car is ahead.<|traj_future_start|>"
    assert answer.t0_ns == 5 and answer.model_id.startswith("tiny-1.5@")
    assert {"preprocess", "prefill", "decode", "total"} <= set(answer.timings_ms)


def test_no_trajectory_token_mask_and_length_cap(planner):
    ids = planner.loaded.token_ids
    answer = planner.ask(images(2, 1), "Describe the scene.", camera_ids=(1, 6), seed=0,
                         logits_processor=BoostTraj(ids.traj_token_start, ids.traj_token_end))
    generated = planner.loaded.tokenizer(answer.generated, add_special_tokens=False)
    assert answer.num_generated_tokens == 12  # never closed: runs to the cap
    assert all(ids.traj_token_start <= t < ids.traj_token_end
               for t in generated["input_ids"])  # <iN> are allowed in answers
    assert answer.text == ""  # no <|answer_end|>


@pytest.mark.parametrize(("decoded", "expected"), [
    ("<|answer_start|>Yes, it is red.<|answer_end|><|im_end|>", "Yes, it is red."),
    ("<|answer_start|>Yes, it is red.<|im_end|>", ""),
    ("<|answer_start|> two <|answer_end|> three <|answer_end|>", "two"),
])
def test_answer_extraction(decoded, expected):
    assert extract_texts(decoded)["answer"] == expected


def test_bad_question_inputs(planner):
    with pytest.raises(ValueError, match="question"):
        planner.ask(images(), "   ", camera_ids=(1,))
    with pytest.raises(ValueError, match="images_rgb"):
        planner.ask(images(2), "Why?", camera_ids=(1,))
    with pytest.raises(ValueError, match="camera_ids"):
        planner.ask(images(2), "Why?", camera_ids=(6, 1))
    assert torch.is_grad_enabled()
