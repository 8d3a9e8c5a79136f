"""Parsing the released config.json layout (no Hydra) into typed configs, and back."""

from __future__ import annotations

import dataclasses
import json

import pytest

from alpamayo_core.io.config_io import load_config, parse_config, to_released_json, vlm_to_hf
from alpamayo_core.model.config import ExpertConfig, FlowConfig, ModelConfig, TextConfig, preset

#: The released config.json's keys as listed in the reference sheet §1.2 (VLM by name only).
RELEASED = {
    "architectures": ["AlpamayoR1"], "model_type": "alpamayo_r1",
    "vlm_name_or_path": "nvidia/Cosmos-Reason2-8B", "traj_vocab_size": 4000,
    "tokens_per_history_traj": 48, "tokens_per_future_traj": 128, "model_dtype": "bfloat16",
    "attn_implementation": "flash_attention_2", "add_special_tokens": True,
    "expert_cfg": {"dtype": "bfloat16", "head_dim": 128, "hidden_size": 2048,
                   "intermediate_size": 8256, "num_attention_heads": 16},
    "expert_non_causal_attention": True, "keep_same_dtype": True,
    "action_in_proj_cfg": {
        "_target_": "alpamayo_r1.models.action_in_proj.PerWaypointActionInProjV2",
        "hidden_size": 512, "max_freq": 100.0, "num_enc_layers": 2, "num_fourier_feats": 20},
    "action_out_proj_cfg": {"_target_": "torch.nn.Linear"},
    "action_space_cfg": {
        "_target_": "alpamayo_r1.action_space.unicycle_accel_curvature."
                    "UnicycleAccelCurvatureActionSpace",
        "accel_mean": 0.02902694707164455, "accel_std": 0.6810426736454882,
        "curvature_mean": 0.0002692167976330542, "curvature_std": 0.026148280660833106,
        "accel_bounds": [-9.8, 9.8], "curvature_bounds": [-0.33, 0.33], "dt": 0.1,
        "n_waypoints": 64, "theta_lambda": 1e-6, "theta_ridge": 1e-8, "v_lambda": 1e-6,
        "v_ridge": 1e-4, "a_lambda": 1e-4, "a_ridge": 1e-4, "kappa_lambda": 1e-4,
        "kappa_ridge": 1e-4},
    "diffusion_cfg": {"_target_": "alpamayo_r1.diffusion.flow_matching.FlowMatching",
                      "int_method": "euler", "x_dims": "???"},
    "hist_traj_tokenizer_cfg": {
        "_target_": "alpamayo_r1.models.delta_tokenizer.DeltaTrajectoryTokenizer"},
    "traj_tokenizer_cfg": {
        "_target_": "alpamayo_r1.action_space.discrete_action_space.DiscreteTrajectoryTokenizer",
        "num_bins": 3000, "dims_min": [-10, -10], "dims_max": [10, 10]},
    "vocab_size": 155697, "traj_token_start_idx": 151669,
}


def _same_architecture(a: ModelConfig, b: ModelConfig) -> None:
    for part in ("text", "vision", "expert", "action_in_proj", "action_space", "flow",
                 "history_tokenizer", "tokens", "images"):
        assert getattr(a, part) == getattr(b, part), part


def test_released_config_parses_to_the_10b_preset():
    cfg = parse_config(RELEASED)
    _same_architecture(cfg, preset("alpamayo-r1-10b"))
    assert cfg.flow == FlowConfig(num_steps=10, solver="euler")
    assert cfg.expert.num_hidden_layers == 36 and cfg.expert.num_key_value_heads == 8
    assert cfg.text.vocab_size == 155697 and cfg.dtype == "bfloat16"


@pytest.mark.parametrize("name", ["alpamayo-r1-10b", "seed-2b", "tiny", "demo"])
def test_written_config_round_trips(name, tmp_path):
    cfg = preset(name)
    raw = to_released_json(cfg)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    back = load_config(tmp_path)
    _same_architecture(back, cfg)
    assert back.dtype == cfg.dtype and back.stats_dtype == cfg.stats_dtype
    assert back.images == cfg.images and back.action_space == cfg.action_space
    # our layout keys appear only for a layout other than the release's (demo: one frame)
    assert ("image_frame_offsets_s" in raw) == (name == "demo")
    assert "image_cameras" not in raw


def test_unknown_target_is_an_error():
    raw = json.loads(json.dumps(RELEASED))
    raw["diffusion_cfg"]["_target_"] = "somewhere.DDPM"
    with pytest.raises(ValueError, match="diffusion_cfg._target_"):
        parse_config(raw)


def test_history_token_count_must_match():
    with pytest.raises(ValueError, match="tokens_per_history_traj"):
        parse_config({**RELEASED, "tokens_per_history_traj": 16})


def test_unknown_vlm_without_embedded_config_is_an_error():
    with pytest.raises(ValueError, match="not a known architecture"):
        parse_config({**RELEASED, "vlm_name_or_path": "someone/other-vlm"})


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(tmp_path)


def test_validation_names_the_field():
    tiny = preset("tiny")
    with pytest.raises(ValueError, match="expert.num_key_value_heads"):
        tiny.replace(expert=dataclasses.replace(tiny.expert, num_key_value_heads=4,
                                                num_attention_heads=4))
    with pytest.raises(ValueError, match="expert.layer_map"):
        tiny.replace(expert=dataclasses.replace(tiny.expert, num_hidden_layers=1))
    with pytest.raises(ValueError, match="text.mrope_section"):
        dataclasses.replace(tiny.text, mrope_section=(1, 1, 1))
    with pytest.raises(ValueError, match="flow.solver"):
        FlowConfig(solver="rk45")
    assert isinstance(tiny.text, TextConfig) and isinstance(tiny.expert, ExpertConfig)


def _with_history(**section) -> dict:
    raw = json.loads(json.dumps(RELEASED))
    raw["hist_traj_tokenizer_cfg"].update(section)
    return raw


def test_history_tokenizer_ranges_are_parsed():
    cfg = parse_config(_with_history(ego_xyz_min=[-5, -6, -12], ego_xyz_max=[5, 6, 12],
                                     num_bins=500, predict_yaw=False))
    hist = cfg.history_tokenizer
    assert hist.dims_min == (-5, -6, -12) and hist.dims_max == (5, 6, 12)
    assert hist.num_bins == 500 and hist.num_steps == 16


def test_unsupported_history_tokenizer_values_are_rejected():
    with pytest.raises(ValueError, match="predict_yaw"):
        parse_config(_with_history(predict_yaw=True))
    with pytest.raises(ValueError, match=r"unknown keys \['dims_min'\]"):
        parse_config(_with_history(dims_min=[-1, -1, -1]))
    with pytest.raises(ValueError, match="tokens_per_history_traj=47"):
        parse_config({**RELEASED, "tokens_per_history_traj": 47})


def test_stats_dtype_defaults_to_the_load_dtype_with_an_explicit_override():
    cfg = parse_config(RELEASED)
    assert cfg.stats_dtype == "auto" and cfg.expert.dtype == "bfloat16"
    assert cfg.replace(dtype="float32").effective_stats_dtype == "float32"
    assert cfg.replace(dtype="bfloat16").effective_stats_dtype == "bfloat16"
    override = parse_config({**RELEASED, "stats_dtype": "bfloat16"}).replace(dtype="float32")
    assert override.effective_stats_dtype == "bfloat16"
    with pytest.raises(ValueError, match="stats_dtype"):
        preset("tiny").replace(stats_dtype="int8")


@pytest.mark.parametrize("relative", [True, False])
def test_vlm_named_by_a_local_folder_is_read_from_there(tmp_path, relative):
    tiny = preset("tiny")
    backbone = tmp_path / "model" / "backbone" if relative else tmp_path / "elsewhere" / "vlm"
    backbone.mkdir(parents=True)
    (tmp_path / "model").mkdir(exist_ok=True)
    (backbone / "config.json").write_text(json.dumps(vlm_to_hf(tiny.text, tiny.vision)))
    raw = {k: v for k, v in to_released_json(tiny).items() if k != "vlm_config"}
    raw["vlm_name_or_path"] = "backbone" if relative else str(backbone)
    (tmp_path / "model" / "config.json").write_text(json.dumps(raw))
    cfg = load_config(tmp_path / "model")
    assert cfg.text == tiny.text and cfg.vision == tiny.vision


def test_written_config_keeps_every_released_key_and_target():
    written = to_released_json(preset("alpamayo-r1-10b"))
    # traj_token_start_idx comes from the tokenizer: the folder writers add it (see
    # test_reference_loader.py); the reference recomputes it at load anyway.
    for key, value in {k: v for k, v in RELEASED.items() if k != "traj_token_start_idx"}.items():
        assert key in written, key
        if isinstance(value, dict) and "_target_" in value:
            assert written[key]["_target_"] == value["_target_"], key
            assert set(value) <= set(written[key]), key
            for name, released in value.items():
                if name != "_target_":
                    assert written[key][name] == released, (key, name)
    for key in ("expert_cfg",):
        assert {k: written[key][k] for k in RELEASED[key]} == RELEASED[key]
