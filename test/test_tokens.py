"""Extended vocabulary layout, history delta tokens and text extraction."""

import pytest
import torch

from alpamayo_core.inputs.tiny_tokenizer import released_layout_base_tokenizer, tiny_base_tokenizer
from alpamayo_core.inputs.tokens import HistoryDeltaTokenizer, extract_texts
from alpamayo_core.model.config import HistoryTokenizerConfig, TokenConfig
from alpamayo_core.model.vocabulary import SPECIAL_TOKENS, TokenIds, extend_tokenizer


@pytest.fixture(scope="module")
def released_tokenizer():
    return extend_tokenizer(released_layout_base_tokenizer(), TokenConfig())


def test_released_layout_ids(released_tokenizer):
    tok = released_tokenizer
    ids = TokenIds.from_tokenizer(tok, TokenConfig())
    ids.check_released_layout()
    assert len(tok) == 155_697
    assert tok.convert_tokens_to_ids("<|traj_future_start|>") == 155_681
    assert tok.convert_tokens_to_ids("<|traj_history|>") == 155_684
    assert tok.convert_tokens_to_ids("<|prompt_start|>") == 155_669
    assert tok.convert_tokens_to_ids("<|answer_end|>") == 155_696
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151_655
    assert ids.hist_token_start == 154_669
    assert (ids.traj_token_start, ids.traj_token_end) == (151_669, 155_669)


def test_special_tokens_are_29_with_image_pad_reused():
    assert len(SPECIAL_TOKENS) == 29 and len(set(SPECIAL_TOKENS)) == 29
    assert SPECIAL_TOKENS.index("<|image_pad|>") == 17


def test_traj_tokens_are_normal_and_specials_are_special(released_tokenizer):
    tok = released_tokenizer
    ids = tok.convert_tokens_to_ids(["<i7>", "<|cot_start|>"])
    assert tok.decode(ids, skip_special_tokens=True) == "<i7>"


def test_wrong_vocabulary_raises():
    tok = extend_tokenizer(tiny_base_tokenizer(), TokenConfig())
    ids = TokenIds.from_tokenizer(tok, TokenConfig())
    with pytest.raises(ValueError, match="traj_future_start"):
        ids.check_released_layout()


def test_unextended_tokenizer_raises():
    with pytest.raises(ValueError, match="extend_tokenizer"):
        TokenIds.from_tokenizer(tiny_base_tokenizer(), TokenConfig())


def test_double_extension_raises():
    tok = extend_tokenizer(tiny_base_tokenizer(), TokenConfig())
    with pytest.raises(ValueError, match="already"):
        extend_tokenizer(tok, TokenConfig())


HIST_START = 154_669


def _hist():
    return HistoryDeltaTokenizer(HistoryTokenizerConfig(), HIST_START)


def test_history_tie_goes_to_even_bin_and_layout_is_step_major():
    xyz = torch.zeros(1, 16, 3)
    xyz[0, :, 0] = torch.arange(16) * 0.5  # 0.5 m per step forward, first delta is 0
    ids = _hist().encode(xyz)
    assert ids.shape == (1, 48)
    bins = ids[0] - HIST_START
    assert bins[2].item() == 500  # z = 0: (0 + 10) / 20 * 999 = 499.5 -> 500 (half to even)
    assert bins[1].item() == 500  # y = 0 likewise
    assert bins[3].item() == round(4.5 / 8 * 999)  # x1 delta 0.5 m, step-major position 3


def test_history_saturates():
    xyz = torch.zeros(2, 16, 3)
    xyz[0, 0] = torch.tensor([-30.0, 9.0, 50.0])  # first delta is the oldest pose itself
    bins = _hist().encode(xyz) - HIST_START
    assert bins[0, :3].tolist() == [0, 999, 999]
    assert bins[0, 3].item() == 999  # the next delta (+30 m) saturates too


def test_history_round_trip_within_bin_width():
    g = torch.Generator().manual_seed(0)
    steps = torch.rand(3, 16, 3, generator=g) * torch.tensor([3.0, 1.0, 0.5])
    xyz = steps.cumsum(dim=1) - 2.0
    hist = _hist()
    back = hist.decode(hist.encode(xyz))
    # Each delta is off by at most half a bin; errors accumulate along the 16 steps.
    per_step = (back.diff(dim=1) - xyz.diff(dim=1)).abs()
    assert (per_step <= hist.bin_width_m + 1e-5).all()
    assert ((back[:, 0] - xyz[:, 0]).abs() <= hist.bin_width_m / 2 + 1e-5).all()


def test_history_rejects_wrong_shape():
    with pytest.raises(ValueError, match="xyz_m"):
        _hist().encode(torch.zeros(1, 15, 3))


@pytest.mark.parametrize("text, expected", [
    ("sys<|cot_start|> Slow down for the light. <|cot_end|><|traj_future_start|>x",
     {"cot": "Slow down for the light.", "meta_action": "", "answer": ""}),
    ("<|cot_start|>a<|cot_start|> b <|cot_end|> c <|cot_end|>",
     {"cot": "b", "meta_action": "", "answer": ""}),
    ("<|cot_start|>no end tag<|traj_future_start|>",
     {"cot": "", "meta_action": "", "answer": ""}),
    ("<|meta_action_start|>stop<|meta_action_end|><|answer_start|> yes<|answer_end|>",
     {"cot": "", "meta_action": "stop", "answer": "yes"}),
    # An end tag without its start tag is no block (the prompt must not leak into it).
    ("system prompt <|image_pad|><|cot_start|>go<|cot_end|> x <|meta_action_end|>",
     {"cot": "go", "meta_action": "", "answer": ""}),
])
def test_extract_texts(text, expected):
    assert extract_texts(text) == expected
