"""Phase 1 on a tiny random-init Qwen3-VL: stopping, masking, determinism, cache, positions."""

import pytest
import torch
from tiny_vlm import random_frames, tiny_prompt, tiny_vlm
from transformers import LogitsProcessor

from alpamayo_core.inference.reasoning import (
    SamplingConfig,
    generate_reasoning,
    prefill_with_reasoning,
)
from alpamayo_core.inputs.tiny_tokenizer import released_layout_base_tokenizer, tiny_base_tokenizer
from alpamayo_core.model.config import TokenConfig, preset
from alpamayo_core.model.expert import build_prefix
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


@pytest.fixture(scope="module")
def setup():
    tok, ids, cfg, vlm = tiny_vlm()
    prompt = tiny_prompt(tok, ids, cfg, random_frames(2, 2))
    return tok, ids, cfg, vlm, prompt


class ForceTokens(LogitsProcessor):
    """Forces `schedule[(row, step)]` at generated step `step` of `row`."""

    def __init__(self, prompt_len: int, schedule: dict[tuple[int, int], int]):
        self.prompt_len, self.schedule = prompt_len, schedule

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        for row in range(scores.shape[0]):
            if (row, step) in self.schedule:
                scores[row] = -float("inf")
                scores[row, self.schedule[(row, step)]] = 0.0
        return scores


class BoostTrajTokens(LogitsProcessor):
    def __init__(self, ids: TokenIds):
        self.ids = ids

    def __call__(self, input_ids, scores):
        scores[:, self.ids.traj_token_start:self.ids.traj_token_end] += 1e4
        return scores


def _force_stop(ids, prompt_len, steps_per_row):
    sched = {}
    for row, k in enumerate(steps_per_row):
        sched[(row, k)] = ids.cot_end
        sched[(row, k + 1)] = ids.traj_future_start
    return ForceTokens(prompt_len, sched)


def test_stops_one_token_after_future_start(setup):
    tok, ids, _cfg, vlm, prompt = setup
    text_ids = tok(" Slow down for the light.", add_special_tokens=False)["input_ids"]
    k = len(text_ids)
    force = _force_stop(ids, prompt.length, [k])
    force.schedule.update({(0, i): t for i, t in enumerate(text_ids)})
    res = generate_reasoning(vlm, prompt, ids, SamplingConfig(max_new_tokens=40), tokenizer=tok,
                             generator=torch.Generator().manual_seed(0), logits_processor=force)
    L0 = prompt.length
    assert res.num_generated == k + 3  # text, cot_end, traj_future_start, one extra token
    assert res.sequences.shape == (1, L0 + k + 3)
    assert res.future_start_index.tolist() == [L0 + k + 1]
    assert res.sequences[0, L0 + k + 1].item() == ids.traj_future_start
    assert res.sequences[0, -1].item() == ids.pad  # the extra token is replaced by pad
    assert res.cache_length == L0 + k + 2  # the extra token is never cached
    assert bool(res.found_future_start.all())
    assert res.texts[0] == {"cot": "Slow down for the light.", "meta_action": "", "answer": ""}


def test_rows_stop_independently_with_sets_and_samples(setup):
    _tok, ids, cfg, vlm, prompt = setup
    sampling = SamplingConfig(max_new_tokens=40, num_traj_samples=2, num_traj_sets=2)
    res = generate_reasoning(vlm, prompt, ids, sampling,
                             generator=torch.Generator().manual_seed(0),
                             logits_processor=_force_stop(ids, prompt.length, [1, 7, 3, 4]))
    L0 = prompt.length
    assert res.sequences.shape[0] == 4
    assert res.num_generated == 7 + 3  # the slowest row decides
    assert res.future_start_index.tolist() == [L0 + k + 1 for k in (1, 7, 3, 4)]
    for row, k in enumerate((1, 7, 3, 4)):
        assert (res.sequences[row, L0 + k + 2:] == ids.pad).all()
    assert all(k.shape == (4, cfg.text.num_key_value_heads, L0 + 9, cfg.text.head_dim)
               for k in res.keys)
    assert len(res.keys) == len(res.values) == cfg.text.num_hidden_layers


def test_traj_tokens_never_sampled_even_when_boosted(setup):
    _tok, ids, _cfg, vlm, prompt = setup
    sampling = SamplingConfig(max_new_tokens=30, temperature=2.0, top_p=1.0, num_traj_samples=3)
    res = generate_reasoning(vlm, prompt, ids, sampling,
                             generator=torch.Generator().manual_seed(3),
                             logits_processor=BoostTrajTokens(ids))
    new = res.sequences[:, prompt.length:]
    assert res.num_generated == 30
    assert not ((new >= ids.traj_token_start) & (new < ids.traj_token_end)).any()


def test_eos_im_end_is_honoured(setup):
    _tok, ids, _cfg, vlm, prompt = setup
    res = generate_reasoning(vlm, prompt, ids, SamplingConfig(max_new_tokens=40),
                             generator=torch.Generator().manual_seed(0),
                             logits_processor=ForceTokens(prompt.length, {(0, 2): ids.im_end}))
    assert res.num_generated == 3
    assert not bool(res.found_future_start[0])
    assert res.future_start_index.item() == res.sequences.shape[1] - 1


def test_seeded_sampling_is_deterministic(setup):
    _tok, ids, _cfg, vlm, prompt = setup
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.5, num_traj_samples=2)

    def run(seed):
        return generate_reasoning(vlm, prompt, ids, sampling,
                                  generator=torch.Generator().manual_seed(seed)).sequences

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_teacher_forcing_matches_step_by_step_cache_and_positions(setup):
    _tok, ids, _cfg, vlm, prompt = setup
    gen = generate_reasoning(vlm, prompt, ids, SamplingConfig(max_new_tokens=20, greedy=True),
                             logits_processor=_force_stop(ids, prompt.length, [6]))
    end = gen.future_start_index.item()
    reasoning = gen.sequences[0, prompt.length:end + 1]
    tf = prefill_with_reasoning(vlm, prompt, reasoning, ids, num_rows=2)
    assert tf.cache_length == gen.cache_length == end + 1
    for kg, vg, kt, vt in zip(gen.keys, gen.values, tf.keys, tf.values, strict=True):
        torch.testing.assert_close(kt[1:], kg, atol=1e-5, rtol=0)
        torch.testing.assert_close(vt[:1], vg, atol=1e-5, rtol=0)
    # Positions: the model's own mRoPE index of the full sequence, then + 1 + j.
    full = gen.sequences[:, :end + 1]
    pos, _ = vlm.model.get_rope_index(full, image_grid_thw=prompt.image_grid_thw)
    prompt_pos, _ = vlm.model.get_rope_index(prompt.input_ids, prompt.image_grid_thw)
    assert pos[0, 0, end].item() == gen.future_start_position.item()
    assert gen.future_start_position.item() == prompt_pos.max().item() + 1 + 6 + 1
    assert tf.future_start_position.tolist() == [gen.future_start_position.item()] * 2
    # The expert's action tokens follow it (the prefix the planner builds from this result).
    prefix = build_prefix(list(zip(gen.keys, gen.values, strict=True)), range(len(gen.keys)),
                          gen.future_start_position + 1, 64, kv_heads=gen.keys[0].shape[1],
                          head_dim=gen.keys[0].shape[3], valid_len=gen.future_start_index + 1)
    expected = gen.future_start_position.item() + 1 + torch.arange(64)
    assert torch.equal(prefix.positions[0], expected)
    assert torch.equal(tf.sequences[0, :end + 1], full[0])


def test_teacher_forcing_requires_future_start(setup):
    _tok, ids, _cfg, vlm, prompt = setup
    with pytest.raises(ValueError, match="traj_future_start"):
        prefill_with_reasoning(vlm, prompt, torch.tensor([ids.cot_end]), ids)


@pytest.mark.parametrize("field, value", [
    ("temperature", 0.0), ("top_p", 0.0), ("top_p", 1.5), ("max_new_tokens", 0),
    ("num_traj_samples", 0), ("num_traj_sets", 0)])
def test_sampling_config_validates(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingConfig(**{field: value})


def test_tiny_vocab_placeholder_rejected():
    tok = extend_tokenizer(tiny_base_tokenizer(), TokenConfig())
    with pytest.raises(ValueError, match="with_vocab_size"):
        build_vlm(preset("tiny"), TokenIds.from_tokenizer(tok, TokenConfig()))


def test_release_shape_on_meta_device():
    tok = extend_tokenizer(released_layout_base_tokenizer(), TokenConfig())
    ids = TokenIds.from_tokenizer(tok, TokenConfig())
    cfg = preset("alpamayo-r1-10b")
    with torch.device("meta"):
        vlm = build_vlm(cfg, ids)
    state = vlm.state_dict()
    assert state["lm_head.weight"].shape == (155_697, 4096)
    assert state["model.language_model.embed_tokens.weight"].shape == (155_697, 4096)
    assert state["model.visual.patch_embed.proj.weight"].shape == (1152, 3, 2, 16, 16)
    assert {k.split(".")[0] for k in state} == {"model", "lm_head"}
    assert {k.split(".")[1] for k in state if k.startswith("model.")} == {
        "visual", "language_model"}
    assert vlm.config.text_config.rope_scaling["mrope_interleaved"] is True
    assert vlm.config.image_token_id == 151_655
    assert vlm.model.language_model.config._attn_implementation == "sdpa"
    assert state["lm_head.weight"].dtype == torch.bfloat16
