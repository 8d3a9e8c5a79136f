"""Read and write the released `config.json` layout without Hydra.

The release stores the Alpamayo parts as `_target_` dicts (`action_in_proj_cfg`,
`action_space_cfg`, `diffusion_cfg`, `hist_traj_tokenizer_cfg`, `traj_tokenizer_cfg`, ...) and the
expert as overrides of the VLM text config (`expert_cfg`). Each known `_target_` maps to one
dataclass of `config.py`; an unknown target is an error, never silently ignored.

The VLM architecture is not in the released file (the reference fetches it from the hub by
`vlm_name_or_path`). We take it from, in order: an embedded `vlm_config` (Qwen3-VL `config.json`
dict: `text_config` + `vision_config`; our `prepare` and tiny-checkpoint tools write it), a
`vlm_config` argument (e.g. the user's base Qwen3-VL folder's config.json), the config.json of
the folder `vlm_name_or_path` names when it is a local directory (fine-tuned checkpoints written
by the reference do that), or `KNOWN_VLMS`.

Written files stay loadable by the reference's Hydra loader: every `_target_` section holds only
its class's constructor arguments, in the release's formats; our extra keys sit at top level.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from alpamayo_core.model.config import (
    KNOWN_VLMS,
    VARIANT_1_5,
    VARIANT_R1,
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

#: config.json `model_type` and `architectures` of each variant, and its `_target_` package.
_VARIANT_KEYS = {
    VARIANT_R1: ("alpamayo_r1", "AlpamayoR1", "alpamayo_r1"),
    VARIANT_1_5: ("alpamayo1_5", "Alpamayo1_5", "alpamayo1_5"),
}

# `_target_` class names of the release -> the part of our config they describe.
_TARGETS = {
    "action_in_proj_cfg": ("PerWaypointActionInProjV2",),
    "action_out_proj_cfg": ("torch.nn.Linear", "Linear"),
    "action_space_cfg": ("UnicycleAccelCurvatureActionSpace",),
    "diffusion_cfg": ("FlowMatching",),
    "hist_traj_tokenizer_cfg": ("DeltaTrajectoryTokenizer",),
    "traj_tokenizer_cfg": ("DiscreteTrajectoryTokenizer",),
}

#: Our top-level key for the flow's sigma_min (the reference's FlowMatching takes no such
#: argument, so it cannot sit in diffusion_cfg).
_SIGMA_MIN_KEY = "flow_sigma_min"
#: Our keys for a camera/frame layout other than the release's (written only then).
_CAMERAS_KEY, _FRAMES_KEY = "image_cameras", "image_frame_offsets_s"

#: `_target_` module paths; `{pkg}` is the variant's package (`alpamayo_r1` / `alpamayo1_5`).
_MODULE_PATHS = {
    "action_in_proj_cfg": "{pkg}.models.action_in_proj.PerWaypointActionInProjV2",
    "action_out_proj_cfg": "torch.nn.Linear",
    "action_space_cfg": (
        "{pkg}.action_space.unicycle_accel_curvature.UnicycleAccelCurvatureActionSpace"
    ),
    "diffusion_cfg": "{pkg}.diffusion.flow_matching.FlowMatching",
    "hist_traj_tokenizer_cfg": "{pkg}.models.delta_tokenizer.DeltaTrajectoryTokenizer",
    "traj_tokenizer_cfg": "{pkg}.action_space.discrete_action_space.DiscreteTrajectoryTokenizer",
}


def detect_variant(raw: dict[str, Any]) -> str:
    """The variant a config.json describes: `model_type`, else `architectures`, else R1.

    `_target_` sections are matched by class name, so they never decide the variant (both
    packages' prefixes load). Unknown or contradicting values are errors.
    """
    by_type = {keys[0]: v for v, keys in _VARIANT_KEYS.items()}
    by_arch = {keys[1]: v for v, keys in _VARIANT_KEYS.items()}
    model_type, archs = raw.get("model_type"), list(raw.get("architectures") or [])
    if model_type is not None and model_type not in by_type:
        raise ValueError(f"config.json model_type = {model_type!r} is not an Alpamayo model; "
                         f"expected one of {sorted(by_type)}")
    from_archs = {by_arch[a] for a in archs if a in by_arch}
    if archs and not from_archs:
        raise ValueError(f"config.json architectures = {archs} names no Alpamayo model; "
                         f"expected one of {sorted(by_arch)}")
    if len(from_archs) > 1 or (model_type and from_archs and by_type[model_type] not in
                               from_archs):
        raise ValueError(f"config.json model_type = {model_type!r} and architectures = {archs} "
                         "disagree; fix one of them (alpamayo-recipes' convert_checkpoint "
                         "rewrites both)")
    if model_type is not None:
        return by_type[model_type]
    return from_archs.pop() if from_archs else VARIANT_R1


def _target_section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """The `key` sub-config without `_target_`, after checking the target is one we implement."""
    section = {k: v for k, v in (raw.get(key) or {}).items() if k != "_recursive_"}
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


def _local_vlm_config(name: str, base_dir: Path | None) -> dict[str, Any] | None:
    """The Qwen3-VL config.json of `vlm_name_or_path` when it names a local folder (absolute, or
    relative to the model folder), as fine-tuned checkpoints written by the reference do."""
    candidates = [Path(name)] if Path(name).is_absolute() else (
        [base_dir / name] if base_dir is not None else []) + [Path(name)]
    for folder in candidates:
        path = folder / "config.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} (the backbone named by vlm_name_or_path) is not "
                                 f"valid JSON: {err}") from err
    return None


def _resolve_vlm(raw: dict[str, Any], vlm_config: dict[str, Any] | None,
                 base_dir: Path | None) -> tuple[TextConfig, VisionConfig]:
    name = str(raw.get("vlm_name_or_path", "Qwen/Qwen3-VL-8B-Instruct"))
    embedded = raw.get("vlm_config") or vlm_config or _local_vlm_config(name, base_dir)
    if embedded is not None:
        text, vision = vlm_from_hf(embedded)
    else:
        if name not in KNOWN_VLMS:
            raise ValueError(
                f"VLM {name!r} is not a known architecture, not a local folder with a "
                f"config.json, and config.json embeds no 'vlm_config'; pass the base model's "
                f"config.json (--vlm-config) (known: {sorted(KNOWN_VLMS)})")
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
    return ExpertConfig(**base, layer_map=layer_map, non_causal=non_causal,
                        dtype=str(overrides.get("dtype", "bfloat16")))


#: Constructor arguments of the reference's `DeltaTrajectoryTokenizer` (hist_traj_tokenizer_cfg).
_HISTORY_TOKENIZER_KEYS = frozenset({"ego_xyz_min", "ego_xyz_max", "ego_yaw_min", "ego_yaw_max",
                                     "num_bins", "predict_yaw", "load_weights"})


def _history_tokenizer(raw: dict[str, Any]) -> HistoryTokenizerConfig:
    """`hist_traj_tokenizer_cfg` + `tokens_per_history_traj` -> the history tokenizer.

    Every key is the reference class's; unknown keys and `predict_yaw: true` are errors rather
    than silently ignored values.
    """
    section = _target_section(raw, "hist_traj_tokenizer_cfg")
    unknown = sorted(set(section) - _HISTORY_TOKENIZER_KEYS)
    if unknown:
        raise ValueError(f"config.json hist_traj_tokenizer_cfg has unknown keys {unknown}; "
                         f"DeltaTrajectoryTokenizer takes {sorted(_HISTORY_TOKENIZER_KEYS)} "
                         "(a folder written by an older alpamayo-prepare: run it again)")
    if section.get("predict_yaw", False):
        raise ValueError("config.json hist_traj_tokenizer_cfg.predict_yaw = true is not "
                         "supported: the released model tokenises the history's xyz only")
    n_tokens = int(raw.get("tokens_per_history_traj", 48))
    if n_tokens % 3:
        raise ValueError(f"tokens_per_history_traj={n_tokens} is not 3 x the number of history "
                         "steps (xyz per step, predict_yaw false)")
    return _pick({**section, "num_steps": n_tokens // 3}, HistoryTokenizerConfig,
                 {"ego_xyz_min": "dims_min", "ego_xyz_max": "dims_max"})


def _token_config(raw: dict[str, Any]) -> TokenConfig:
    traj = _target_section(raw, "traj_tokenizer_cfg")
    defaults = TokenConfig()
    return TokenConfig(traj_vocab_size=int(raw.get("traj_vocab_size", 4000)),
                       future_num_bins=int(traj.get("num_bins", 3000)),
                       future_dims_min=tuple(traj.get("dims_min", defaults.future_dims_min)),
                       future_dims_max=tuple(traj.get("dims_max", defaults.future_dims_max)))


def parse_config(raw: dict[str, Any], vlm_config: dict[str, Any] | None = None,
                 name: str = "checkpoint", base_dir: Path | None = None) -> ModelConfig:
    """`ModelConfig` from a released-layout config.json dict.

    `base_dir` is the model folder: a relative `vlm_name_or_path` is looked up there first.
    """
    text, vision = _resolve_vlm(raw, vlm_config, base_dir)
    space = _pick(_target_section(raw, "action_space_cfg"), ActionSpaceConfig,
                  {"dt": "dt_s"})
    diffusion = _target_section(raw, "diffusion_cfg")
    flow = _pick({**diffusion, "sigma_min": raw.get(_SIGMA_MIN_KEY, 0.0)}, FlowConfig,
                 {"num_inference_steps": "num_steps", "int_method": "solver"})
    _target_section(raw, "action_out_proj_cfg")
    default_images = ImageConfig()
    images = ImageConfig(min_pixels=int(raw.get("min_pixels") or 163_840),
                         max_pixels=int(raw.get("max_pixels") or 196_608),
                         cameras=tuple(raw.get(_CAMERAS_KEY, default_images.cameras)),
                         frame_offsets_s=tuple(raw.get(_FRAMES_KEY,
                                                       default_images.frame_offsets_s)))
    dtype = str(raw.get("model_dtype") or raw.get("dtype") or "bfloat16")
    return ModelConfig(
        name=str(raw.get("name", name)), text=text, vision=vision,
        expert=_expert_from_raw(raw, text),
        action_in_proj=_pick(_target_section(raw, "action_in_proj_cfg"), ActionInProjConfig),
        action_space=space, flow=flow, history_tokenizer=_history_tokenizer(raw),
        tokens=_token_config(raw), images=images,
        vlm_name_or_path=str(raw.get("vlm_name_or_path", "Qwen/Qwen3-VL-8B-Instruct")),
        dtype=dtype, stats_dtype=str(raw.get("stats_dtype", "auto")),
        variant=detect_variant(raw))


def _with_target(key: str, body: dict[str, Any], variant: str) -> dict[str, Any]:
    return {"_target_": _MODULE_PATHS[key].format(pkg=_VARIANT_KEYS[variant][2]), **body}


def _plain(obj: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}


def _target_sections(cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """The `_target_` sections, each holding only its reference class's constructor arguments
    (Hydra passes every key through), in the release's formats."""
    space = _plain(cfg.action_space)
    space["dt"] = space.pop("dt_s")
    hist = cfg.history_tokenizer
    v = cfg.variant
    return {
        "action_in_proj_cfg": _with_target("action_in_proj_cfg", _plain(cfg.action_in_proj), v),
        "action_out_proj_cfg": _with_target("action_out_proj_cfg", {}, v),
        "action_space_cfg": _with_target("action_space_cfg", space, v),
        "diffusion_cfg": _with_target("diffusion_cfg", {
            "int_method": cfg.flow.solver, "num_inference_steps": cfg.flow.num_steps,
            "x_dims": "???"}, v),
        "hist_traj_tokenizer_cfg": _with_target("hist_traj_tokenizer_cfg", {
            "ego_xyz_min": list(hist.dims_min), "ego_xyz_max": list(hist.dims_max),
            "num_bins": hist.num_bins, "predict_yaw": False}, v),
        # The class instantiates its own action_space_cfg: Hydra must pass it as a config.
        "traj_tokenizer_cfg": _with_target("traj_tokenizer_cfg", {
            "_recursive_": False,
            "action_space_cfg": _with_target("action_space_cfg", dict(space), v),
            "dims_min": list(cfg.tokens.future_dims_min),
            "dims_max": list(cfg.tokens.future_dims_max),
            "num_bins": cfg.tokens.future_num_bins}, v),
    }


def to_released_json(cfg: ModelConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A released-layout config.json dict for `cfg`, self-contained (embeds `vlm_config`).

    The release's keys keep their formats so the reference's own Hydra loader can read the
    file; ours (`name`, `vlm_config`, `stats_dtype`, `flow_sigma_min`, and `image_cameras` /
    `image_frame_offsets_s` for a camera/frame layout other than the release's) sit beside them.
    """
    expert = {k: v for k, v in _plain(cfg.expert).items() if k != "non_causal"}
    if not expert["layer_map"]:
        expert.pop("layer_map")
    model_type, arch, _ = _VARIANT_KEYS[cfg.variant]
    raw = {
        "architectures": [arch], "model_type": model_type, "name": cfg.name,
        "vlm_name_or_path": cfg.vlm_name_or_path, "vlm_config": vlm_to_hf(cfg.text, cfg.vision),
        "vocab_size": cfg.text.vocab_size, "model_dtype": cfg.dtype,
        "attn_implementation": "sdpa", "stats_dtype": cfg.stats_dtype,
        _SIGMA_MIN_KEY: cfg.flow.sigma_min, "add_special_tokens": True,
        "traj_vocab_size": cfg.tokens.traj_vocab_size,
        "tokens_per_history_traj": cfg.history_tokenizer.num_tokens,
        "tokens_per_future_traj": 2 * cfg.action_space.n_waypoints,
        "min_pixels": cfg.images.min_pixels, "max_pixels": cfg.images.max_pixels,
        "expert_cfg": expert, "expert_non_causal_attention": cfg.expert.non_causal,
        "keep_same_dtype": True, **_target_sections(cfg),
    }
    if cfg.images.cameras != ImageConfig().cameras:
        raw[_CAMERAS_KEY] = list(cfg.images.cameras)
    if cfg.images.frame_offsets_s != ImageConfig().frame_offsets_s:
        raw[_FRAMES_KEY] = list(cfg.images.frame_offsets_s)
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
    return parse_config(raw, vlm_config, name=Path(model_dir).name, base_dir=Path(model_dir))
