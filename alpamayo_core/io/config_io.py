"""Read and write the released `config.json` layout without Hydra.

The release stores the Alpamayo parts as `_target_` dicts (`action_in_proj_cfg`,
`action_space_cfg`, `diffusion_cfg`, `hist_traj_tokenizer_cfg`, `traj_tokenizer_cfg`, ...) and the
expert as overrides of the VLM text config (`expert_cfg`). Each known `_target_` maps to one
dataclass of `config.py`; an unknown target is an error, never silently ignored.

The VLM architecture is not in the released file (the reference fetches it from the hub by
`vlm_name_or_path`). We take it from, in order: an embedded `vlm_config` (Qwen3-VL `config.json`
dict: `text_config` + `vision_config`; our `prepare` and tiny-checkpoint tools write it), a
`vlm_config` argument (e.g. the user's base Qwen3-VL folder's config.json), or `KNOWN_VLMS`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from alpamayo_core.model.config import (
    KNOWN_VLMS,
    ActionInProjConfig,
    ActionSpaceConfig,
    ExpertConfig,
    FlowConfig,
    HistoryTokenizerConfig,
    ImageConfig,
    ModelConfig,
    TextConfig,
    TokenConfig,
    VisionConfig,
)

# `_target_` class names of the release -> the part of our config they describe.
_TARGETS = {
    "action_in_proj_cfg": ("PerWaypointActionInProjV2",),
    "action_out_proj_cfg": ("torch.nn.Linear", "Linear"),
    "action_space_cfg": ("UnicycleAccelCurvatureActionSpace",),
    "diffusion_cfg": ("FlowMatching",),
    "hist_traj_tokenizer_cfg": ("DeltaTrajectoryTokenizer",),
    "traj_tokenizer_cfg": ("DiscreteTrajectoryTokenizer",),
}

_MODULE_PATHS = {
    "action_in_proj_cfg": "alpamayo_r1.models.action_in_proj.PerWaypointActionInProjV2",
    "action_out_proj_cfg": "torch.nn.Linear",
    "action_space_cfg": (
        "alpamayo_r1.action_space.unicycle_accel_curvature.UnicycleAccelCurvatureActionSpace"
    ),
    "diffusion_cfg": "alpamayo_r1.diffusion.flow_matching.FlowMatching",
    "hist_traj_tokenizer_cfg": "alpamayo_r1.models.delta_tokenizer.DeltaTrajectoryTokenizer",
    "traj_tokenizer_cfg": (
        "alpamayo_r1.action_space.discrete_action_space.DiscreteTrajectoryTokenizer"
    ),
}


def _target_section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """The `key` sub-config without `_target_`, after checking the target is one we implement."""
    section = dict(raw.get(key) or {})
    target = section.pop("_target_", None)
    if target is not None and not any(target.endswith(name) for name in _TARGETS[key]):
        raise ValueError(f"config.json {key}._target_ = {target!r} is not supported; "
                         f"expected one of {_TARGETS[key]}")
    return section


def _pick(section: dict[str, Any], cls: type, renames: dict[str, str] | None = None) -> Any:
    """Build dataclass `cls` from the keys of `section` it knows (after renames)."""
    renames = renames or {}
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in section.items():
        name = renames.get(key, key)
        if name in names:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _text_from_hf(text: dict[str, Any], top: dict[str, Any]) -> TextConfig:
    rope = text.get("rope_scaling") or text.get("rope_parameters") or {}
    fields = {f.name for f in dataclasses.fields(TextConfig)}
    kwargs = {k: v for k, v in text.items() if k in fields and k != "mrope_section"}
    kwargs["mrope_section"] = tuple(rope.get("mrope_section", (24, 20, 20)))
    kwargs["rope_theta"] = float(text.get("rope_theta", rope.get("rope_theta", 5_000_000.0)))
    kwargs["tie_word_embeddings"] = bool(top.get("tie_word_embeddings",
                                                 text.get("tie_word_embeddings", False)))
    return TextConfig(**kwargs)


def vlm_from_hf(vlm_config: dict[str, Any]) -> tuple[TextConfig, VisionConfig]:
    """(text, vision) configs from a Qwen3-VL `config.json` dict."""
    if "text_config" not in vlm_config or "vision_config" not in vlm_config:
        raise ValueError("VLM config needs 'text_config' and 'vision_config' "
                         "(a Qwen3-VL config.json)")
    vision = _pick(vlm_config["vision_config"], VisionConfig)
    return _text_from_hf(vlm_config["text_config"], vlm_config), vision


def vlm_to_hf(text: TextConfig, vision: VisionConfig) -> dict[str, Any]:
    """A Qwen3-VL-style `config.json` dict for embedding in a self-contained model folder."""
    text_d = dataclasses.asdict(text)
    mrope = list(text_d.pop("mrope_section"))
    tie = text_d.pop("tie_word_embeddings")
    text_d["rope_scaling"] = {"rope_type": "default", "mrope_section": mrope,
                              "mrope_interleaved": True}
    vision_d = {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(vision).items()}
    return {"model_type": "qwen3_vl", "text_config": text_d, "vision_config": vision_d,
            "tie_word_embeddings": tie}


def _resolve_vlm(raw: dict[str, Any], vlm_config: dict[str, Any] | None) -> tuple[TextConfig,
                                                                                   VisionConfig]:
    embedded = raw.get("vlm_config") or vlm_config
    if embedded is not None:
        text, vision = vlm_from_hf(embedded)
    else:
        name = raw.get("vlm_name_or_path", "Qwen/Qwen3-VL-8B-Instruct")
        if name not in KNOWN_VLMS:
            raise ValueError(
                f"VLM {name!r} is not a known architecture and config.json embeds no "
                f"'vlm_config'; pass the base model's config.json (known: {sorted(KNOWN_VLMS)})")
        text_kw, vision_kw = KNOWN_VLMS[name]
        text = TextConfig(vocab_size=int(raw.get("vocab_size", 1)), **text_kw)
        vision = VisionConfig(**vision_kw)
    if "vocab_size" in raw:
        text = dataclasses.replace(text, vocab_size=int(raw["vocab_size"]))
    return text, vision


def _expert_from_raw(raw: dict[str, Any], text: TextConfig) -> ExpertConfig:
    overrides = dict(raw.get("expert_cfg") or {})
    base = dict(hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
                num_attention_heads=text.num_attention_heads,
                num_hidden_layers=text.num_hidden_layers,
                num_key_value_heads=text.num_key_value_heads, head_dim=text.head_dim)
    base.update({k: v for k, v in overrides.items() if k in base})
    layer_map = tuple(overrides.get("layer_map", ()))
    non_causal = bool(raw.get("expert_non_causal_attention", True))
    return ExpertConfig(**base, layer_map=layer_map, non_causal=non_causal)


def parse_config(raw: dict[str, Any], vlm_config: dict[str, Any] | None = None,
                 name: str = "checkpoint") -> ModelConfig:
    """`ModelConfig` from a released-layout config.json dict."""
    text, vision = _resolve_vlm(raw, vlm_config)
    space = _pick(_target_section(raw, "action_space_cfg"), ActionSpaceConfig,
                  {"dt": "dt_s"})
    diffusion = _target_section(raw, "diffusion_cfg")
    flow = _pick(diffusion, FlowConfig, {"num_inference_steps": "num_steps",
                                         "int_method": "solver"})
    hist = _pick(_target_section(raw, "hist_traj_tokenizer_cfg"), HistoryTokenizerConfig)
    traj = _target_section(raw, "traj_tokenizer_cfg")
    _target_section(raw, "action_out_proj_cfg")
    tokens = TokenConfig(traj_vocab_size=int(raw.get("traj_vocab_size", 4000)),
                         future_num_bins=int(traj.get("num_bins", 3000)))
    n_hist_tokens = raw.get("tokens_per_history_traj")
    if n_hist_tokens is not None and int(n_hist_tokens) != hist.num_tokens:
        raise ValueError(f"tokens_per_history_traj={n_hist_tokens} does not match the history "
                         f"tokenizer ({hist.num_tokens} = 3 x {hist.num_steps} steps)")
    images = ImageConfig(min_pixels=int(raw.get("min_pixels") or 163_840),
                         max_pixels=int(raw.get("max_pixels") or 196_608))
    dtype = str(raw.get("model_dtype") or raw.get("dtype") or "bfloat16")
    return ModelConfig(
        name=str(raw.get("name", name)), text=text, vision=vision,
        expert=_expert_from_raw(raw, text),
        action_in_proj=_pick(_target_section(raw, "action_in_proj_cfg"), ActionInProjConfig),
        action_space=space, flow=flow, history_tokenizer=hist, tokens=tokens, images=images,
        vlm_name_or_path=str(raw.get("vlm_name_or_path", "Qwen/Qwen3-VL-8B-Instruct")),
        dtype=dtype, stats_dtype=str(raw.get("stats_dtype", "bfloat16")))


def _with_target(key: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"_target_": _MODULE_PATHS[key], **body}


def _plain(obj: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}


def to_released_json(cfg: ModelConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A released-layout config.json dict for `cfg`, self-contained (embeds `vlm_config`)."""
    space = _plain(cfg.action_space)
    space["dt"] = space.pop("dt_s")
    expert = {k: v for k, v in _plain(cfg.expert).items() if k != "non_causal"}
    if not expert["layer_map"]:
        expert.pop("layer_map")
    hist = _plain(cfg.history_tokenizer)
    raw = {
        "architectures": ["AlpamayoR1"], "model_type": "alpamayo_r1", "name": cfg.name,
        "vlm_name_or_path": cfg.vlm_name_or_path, "vlm_config": vlm_to_hf(cfg.text, cfg.vision),
        "vocab_size": cfg.text.vocab_size, "model_dtype": cfg.dtype,
        "stats_dtype": cfg.stats_dtype, "add_special_tokens": True,
        "traj_vocab_size": cfg.tokens.traj_vocab_size,
        "tokens_per_history_traj": cfg.history_tokenizer.num_tokens,
        "tokens_per_future_traj": 2 * cfg.action_space.n_waypoints,
        "min_pixels": cfg.images.min_pixels, "max_pixels": cfg.images.max_pixels,
        "expert_cfg": expert, "expert_non_causal_attention": cfg.expert.non_causal,
        "keep_same_dtype": True,
        "action_in_proj_cfg": _with_target("action_in_proj_cfg", _plain(cfg.action_in_proj)),
        "action_out_proj_cfg": _with_target("action_out_proj_cfg", {}),
        "action_space_cfg": _with_target("action_space_cfg", space),
        "diffusion_cfg": _with_target("diffusion_cfg", {
            "int_method": cfg.flow.solver, "num_inference_steps": cfg.flow.num_steps,
            "sigma_min": cfg.flow.sigma_min}),
        "hist_traj_tokenizer_cfg": _with_target("hist_traj_tokenizer_cfg", hist),
        "traj_tokenizer_cfg": _with_target("traj_tokenizer_cfg", {
            "num_bins": cfg.tokens.future_num_bins}),
    }
    raw.update(extra or {})
    return raw


def load_config(model_dir: str | Path, vlm_config_path: str | Path | None = None) -> ModelConfig:
    """Parse `model_dir/config.json` (clear errors for a missing or malformed file)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {model_dir} an Alpamayo model folder?")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    vlm_config = json.loads(Path(vlm_config_path).read_text()) if vlm_config_path else None
    return parse_config(raw, vlm_config, name=Path(model_dir).name)
