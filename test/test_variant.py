"""Alpamayo 1.5 next to R1: variant detection, presets, tokenizer names, load-time buffers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from alpamayo_core.inputs.tiny_tokenizer import released_layout_base_tokenizer
from alpamayo_core.io import checkpoint
from alpamayo_core.io.config_io import detect_variant, parse_config, to_released_json
from alpamayo_core.io.model_io import load_model
from alpamayo_core.model.config import VARIANT_1_5, VARIANT_R1, preset, with_vocab_size
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer, special_tokens

R1_FREQS_BF16 = [1, 1.671875, 2.78125, 4.65625, 7.75, 12.9375, 21.5, 36, 60, 100]
STAT_KEYS = [f"action_space.{k}" for k in ("accel_mean", "accel_std", "curvature_mean",
                                           "curvature_std")]
FREQ_KEYS = ["action_in_proj.sinus.0.freqs", "action_in_proj.sinus.1.freqs",
             "action_in_proj.timestep_fourier_encoder.freqs"]


@pytest.mark.parametrize(("raw", "variant"), [
    ({"model_type": "alpamayo1_5"}, VARIANT_1_5),
    ({"architectures": ["Alpamayo1_5"]}, VARIANT_1_5),
    ({"model_type": "alpamayo1_5", "architectures": ["Alpamayo1_5"]}, VARIANT_1_5),
    ({"model_type": "alpamayo_r1", "architectures": ["AlpamayoR1"]}, VARIANT_R1),
    ({"architectures": ["AlpamayoR1"]}, VARIANT_R1),
    ({}, VARIANT_R1),
])
def test_variant_from_model_type_or_architectures(raw, variant):
    assert detect_variant(raw) == variant


@pytest.mark.parametrize(("raw", "message"), [
    ({"model_type": "qwen3_vl"}, "model_type"),
    ({"architectures": ["LlamaForCausalLM"]}, "architectures"),
    ({"model_type": "alpamayo_r1", "architectures": ["Alpamayo1_5"]}, "disagree"),
])
def test_unknown_or_contradicting_variant_is_an_error(raw, message):
    with pytest.raises(ValueError, match=message):
        detect_variant(raw)


def test_both_target_prefixes_parse_and_1_5_writes_its_own():
    cfg = with_vocab_size(preset("tiny-1.5"), 500)
    raw = to_released_json(cfg)
    assert raw["model_type"] == "alpamayo1_5" and raw["architectures"] == ["Alpamayo1_5"]
    targets = [v["_target_"] for v in raw.values() if isinstance(v, dict) and "_target_" in v]
    assert all(t.startswith(("alpamayo1_5.", "torch.")) for t in targets) and len(targets) == 6
    back = parse_config(raw)
    assert back.variant == VARIANT_1_5 and back == cfg.replace(name=back.name)
    # The same file with R1 prefixes and R1 metadata (the recipes' to-a1 conversion).
    as_r1 = json.loads(json.dumps(raw).replace("alpamayo1_5.", "alpamayo_r1."))
    as_r1.update(model_type="alpamayo_r1", architectures=["AlpamayoR1"])
    r1 = parse_config(as_r1)
    assert r1.variant == VARIANT_R1 and r1.replace(variant=VARIANT_1_5) == back


def test_presets_share_the_network():
    r1, a15 = preset("alpamayo-r1-10b"), preset("alpamayo-1.5-10b")
    assert a15.variant == VARIANT_1_5 and a15.is_1_5 and not r1.is_1_5
    assert (a15.text, a15.vision, a15.expert, a15.action_space) == (
        r1.text, r1.vision, r1.expert, r1.action_space)
    assert a15.vlm_name_or_path == "nvidia/Cosmos-Reason2-8B"
    assert preset("tiny-1.5").replace(name="tiny", variant=VARIANT_R1) == preset("tiny")


def test_1_5_special_token_names_keep_the_released_ids():
    names = special_tokens(VARIANT_1_5)
    assert [n for n in names if n.startswith("<|_padding_")] == [
        f"<|_padding_{i}|>" for i in range(9)]
    assert "<|meta_action_start|>" not in names and "<|route_start|>" in names
    ids = {}
    for variant in (VARIANT_R1, VARIANT_1_5):
        tok = extend_tokenizer(released_layout_base_tokenizer(), preset("tiny").tokens, variant)
        token_ids = TokenIds.from_tokenizer(tok, preset("tiny").tokens)
        token_ids.check_released_layout()
        ids[variant] = token_ids
        assert tok.convert_ids_to_tokens(155690) == "<|route_start|>"
        assert tok.convert_ids_to_tokens(155695) == "<|answer_start|>"
    assert ids[VARIANT_R1] == ids[VARIANT_1_5]
    assert (ids[VARIANT_1_5].route_start, ids[VARIANT_1_5].question_start) == (155690, 155693)


def test_1_5_folder_stores_no_statistics_or_freqs(tiny_a15_model_dir, tiny_model_dir):
    a15_keys = set(checkpoint.weight_map(tiny_a15_model_dir))
    r1_keys = set(checkpoint.weight_map(tiny_model_dir))
    assert r1_keys - a15_keys == set(STAT_KEYS + FREQ_KEYS)
    assert a15_keys < r1_keys


def test_1_5_rebuilds_buffers_in_the_load_dtype(tiny_a15_model_dir):
    fp32 = load_model(tiny_a15_model_dir, dtype="float32").model
    freqs = fp32.action_in_proj.sinus[0].freqs[0]
    assert freqs.dtype == torch.float32
    exact = torch.logspace(0.0, 2.0, 10, dtype=torch.float64)
    torch.testing.assert_close(freqs.double(), exact, rtol=2e-7, atol=0)  # not bf16-rounded
    assert freqs[1].item() != R1_FREQS_BF16[1]
    cfg = fp32.cfg.action_space
    assert fp32.action_space.accel_std.item() == pytest.approx(cfg.accel_std, rel=1e-7)
    bf16 = load_model(tiny_a15_model_dir, dtype="bfloat16").model
    assert bf16.action_in_proj.timestep_fourier_encoder.freqs[0].tolist() == R1_FREQS_BF16
    assert bf16.action_space.accel_std.dtype == torch.bfloat16
    assert bf16.action_space.accel_std.item() == 0.6796875


def test_r1_keeps_bf16_freqs_at_fp32_load(tiny_model_dir):
    model = load_model(tiny_model_dir, dtype="float32").model
    assert model.action_in_proj.sinus[0].freqs.dtype == torch.bfloat16
    assert model.action_in_proj.sinus[0].freqs[0].tolist() == R1_FREQS_BF16


def test_r1_folder_loads_as_1_5_ignoring_stored_buffers(tiny_model_dir, tmp_path):
    """The recipes' to-a15 conversion changes only config.json metadata: the stored statistics
    and freqs are skipped and rebuilt from the config, every weight is read."""
    folder = tmp_path / "converted"
    shutil.copytree(tiny_model_dir, folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.update(model_type="alpamayo1_5", architectures=["Alpamayo1_5"])
    (folder / "config.json").write_text(json.dumps(raw))
    r1 = load_model(tiny_model_dir).model
    a15 = load_model(folder).model
    assert a15.cfg.variant == VARIANT_1_5
    for key, value in r1.state_dict().items():
        if key not in STAT_KEYS + FREQ_KEYS:
            assert torch.equal(value, a15.state_dict()[key]), key
    assert a15.action_in_proj.sinus[0].freqs.dtype == torch.float32
