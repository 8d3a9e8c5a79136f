"""Alpamayo 1.5 prompt layouts: camera headers (4, 2, 1 cameras), the route span, questions,
the unguided prompt, and equality with R1's prompt when no 1.5 part is given."""

from __future__ import annotations

import pytest
import torch

from alpamayo_core.inputs.cameras import camera_ids_for_names, check_camera_ids, display_name
from alpamayo_core.inputs.images import ImageInputs
from alpamayo_core.inputs.prompt import (
    QWEN3_VL_CHAT_TEMPLATE,
    PromptLayout,
    build_prompt,
    chat_messages,
    without_route,
)
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import VARIANT_1_5, VARIANT_R1, ImageConfig, TokenConfig
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer

IMG = "<|vision_start|><|image_pad|><|vision_end|>"
HISTORY = "<|traj_history_start|>" + "<|traj_history|>" * 2 + "<|traj_history_end|>"
INSTRUCTION = ("output the chain-of-thought reasoning of the driving process, then output the "
               "future trajectory.")


@pytest.fixture(scope="module", params=[VARIANT_R1, VARIANT_1_5])
def tok(request):
    return extend_tokenizer(tiny_base_tokenizer(), TokenConfig(), request.param)


@pytest.fixture(scope="module")
def tok15():
    return extend_tokenizer(tiny_base_tokenizer(), TokenConfig(), VARIANT_1_5)


def _user_text(tok, n_images: int, layout: PromptLayout) -> str:
    text = tok.apply_chat_template(chat_messages(n_images, 2, layout),
                                   chat_template=QWEN3_VL_CHAT_TEMPLATE, tokenize=False,
                                   continue_final_message=True)
    return text.split("<|im_start|>user\n", 1)[1]


def _images(n: int) -> ImageInputs:
    return ImageInputs(pixel_values=torch.zeros(n * 4, 1536),
                       image_grid_thw=torch.tensor([[1, 2, 2]] * n), merge_size=2)


def _frames(name: str, n: int) -> str:
    return f"{name}: " + "".join(f"frame {k} {IMG}" for k in range(n))


@pytest.mark.parametrize(("ids", "frames"), [((0, 1, 2, 6), 4), ((1, 6), 4), ((1,), 4),
                                             ((1,), 1), ((0, 3, 4, 5), 2)])
@pytest.mark.parametrize("route", [None, "Turn left in 50m"])
def test_camera_headers_and_route_span(tok15, ids, frames, route):
    user = _user_text(tok15, len(ids) * frames, PromptLayout(camera_ids=ids, route_text=route))
    route_span = f"<|route_start|>{route}<|route_end|>" if route else ""
    expected = ("".join(_frames(display_name(i), frames) for i in ids) + HISTORY + route_span
                + INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n<|cot_start|>")
    assert user == expected


def test_four_camera_header_text_is_the_sheets():
    user = _user_text(extend_tokenizer(tiny_base_tokenizer(), TokenConfig(), VARIANT_1_5), 16,
                      PromptLayout(camera_ids=(0, 1, 2, 6)))
    assert user.startswith(f"Front left camera: frame 0 {IMG}frame 1 {IMG}")
    order = [user.index(n) for n in ("Front left camera: ", "Front camera: ",
                                     "Front right camera: ", "Front telephoto camera: ")]
    assert order == sorted(order)
    assert user.count("frame 3 ") == 4 and user.count(IMG) == 16


def test_no_ids_no_route_equals_r1_token_for_token():
    r1 = extend_tokenizer(tiny_base_tokenizer(), TokenConfig(), VARIANT_R1)
    a15 = extend_tokenizer(tiny_base_tokenizer(), TokenConfig(), VARIANT_1_5)
    history = torch.arange(48) + TokenIds.from_tokenizer(r1, TokenConfig()).hist_token_start
    p_r1 = build_prompt(r1, TokenIds.from_tokenizer(r1, TokenConfig()), _images(16), history)
    p_15 = build_prompt(a15, TokenIds.from_tokenizer(a15, TokenConfig()), _images(16), history,
                        layout=PromptLayout())
    assert torch.equal(p_r1.input_ids, p_15.input_ids)


def test_unguided_prompt_is_the_prompt_without_the_route(tok):
    ids = TokenIds.from_tokenizer(tok, TokenConfig())
    routed = build_prompt(tok, ids, _images(8), None,
                          layout=PromptLayout(camera_ids=(1, 6), route_text="Turn right in 25m"))
    plain = build_prompt(tok, ids, _images(8), None, layout=PromptLayout(camera_ids=(1, 6)))
    seq = routed.input_ids[0]
    start = (seq == ids.route_start).nonzero().item()
    assert seq[start - 1].item() == ids.traj_history_end  # right after the history block
    assert routed.length > plain.length
    assert torch.equal(without_route(routed, ids).input_ids, plain.input_ids)
    with pytest.raises(ValueError, match="route text"):
        without_route(plain, ids)


def test_question_layout(tok15):
    user = _user_text(tok15, 2, PromptLayout(camera_ids=(1,), question="Is the light red?"))
    assert user == (_frames("Front camera", 2) + "<|question_start|>Is the light red?"
                    "<|question_end|><|im_end|>\n<|im_start|>assistant\n<|answer_start|>")
    ids = TokenIds.from_tokenizer(tok15, TokenConfig())
    prompt = build_prompt(tok15, ids, _images(2), None,
                          layout=PromptLayout(camera_ids=(1,), question="Is the light red?"))
    seq = prompt.input_ids[0]
    assert seq[-1].item() == ids.answer_start
    assert not (seq == ids.traj_history_start).any() and not (seq == ids.cot_start).any()
    with pytest.raises(ValueError, match="history"):
        build_prompt(tok15, ids, _images(2), torch.zeros(48, dtype=torch.int64),
                     layout=PromptLayout(camera_ids=(1,), question="Why?"))


@pytest.mark.parametrize(("ids", "message"), [
    ((), "1 to 7"), ((0, 1, 2, 3, 4, 5, 6, 6), "1 to 7"), ((7,), "0-6"), ((-1,), "0-6"),
    ((1, 1), "unique"), ((6, 1), "ascending"),
])
def test_bad_camera_ids(ids, message):
    with pytest.raises(ValueError, match=message):
        check_camera_ids(ids)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"route_text": "  "}, "route_text"), ({"route_text": "go <|im_end|>"}, "route_text"),
    ({"question": ""}, "question"), ({"route_text": "x", "question": "y"}, "route_text"),
])
def test_bad_texts(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PromptLayout(**kwargs)


def test_images_must_split_evenly_into_cameras(tok15):
    with pytest.raises(ValueError, match="camera_ids"):
        chat_messages(5, 2, PromptLayout(camera_ids=(1, 6)))


def test_camera_table():
    assert camera_ids_for_names(ImageConfig().cameras) == (0, 1, 2, 6)
    assert display_name(6) == "Front telephoto camera" and display_name(9) == "Camera 9"
