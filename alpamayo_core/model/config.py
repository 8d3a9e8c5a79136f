"""Typed, frozen model configuration, named presets, and parsing of the released `config.json`.

The released `nvidia/Alpamayo-R1-10B` config.json stores the Alpamayo parts as Hydra-style
`_target_` dicts and names the VLM by `vlm_name_or_path` only. This module turns that into
dataclasses without Hydra: each `_target_` class name maps to one dataclass below, and the VLM
architecture comes from (in order) an embedded `vlm_config` dict (written by our `prepare` and
tiny-checkpoint tools), or the registry of known base models.

Every dataclass validates itself in `__post_init__` and raises `ValueError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------
# VLM (Qwen3-VL) architecture


_DTYPES = ("float32", "bfloat16", "float16")
#: `stats_dtype` values: `auto` = the load dtype, as the reference (its action-space buffers are
#: created under the load dtype and never cast).
_STATS_DTYPES = ("auto", *_DTYPES)
#: Model variants (config.json `model_type`): one network, two prompt/sampler profiles.
VARIANT_R1 = "alpamayo_r1"
VARIANT_1_5 = "alpamayo1_5"
VARIANTS = (VARIANT_R1, VARIANT_1_5)


def _require(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{name}: {msg}")


@dataclass(frozen=True)
class TextConfig:
    """Qwen3-VL language model (the VLM's text stack)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 262_144
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim"):
            _require(getattr(self, name) > 0, f"text.{name}", "must be positive")
        _require(self.num_attention_heads % self.num_key_value_heads == 0,
                 "text.num_attention_heads", "must be a multiple of num_key_value_heads")
        _require(sum(self.mrope_section) * 2 == self.head_dim, "text.mrope_section",
                 f"must sum to head_dim/2 = {self.head_dim // 2}, got {self.mrope_section}")


@dataclass(frozen=True)
class VisionConfig:
    """Qwen3-VL vision tower."""

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    num_position_embeddings: int = 2304
    deepstack_visual_indexes: tuple[int, ...] = (8, 16, 24)
    in_channels: int = 3

    def __post_init__(self) -> None:
        for name in ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
                     "patch_size", "temporal_patch_size", "spatial_merge_size"):
            _require(getattr(self, name) > 0, f"vision.{name}", "must be positive")
        side = math.isqrt(self.num_position_embeddings)
        _require(side * side == self.num_position_embeddings, "vision.num_position_embeddings",
                 "must be a perfect square")
        _require(all(0 <= i < self.depth for i in self.deepstack_visual_indexes),
                 "vision.deepstack_visual_indexes", f"must lie in [0, depth={self.depth})")


@dataclass(frozen=True)
class ExpertConfig:
    """Action expert: a Qwen3-VL text stack without embeddings over the VLM's KV cache.

    `layer_map[i]` is the VLM layer whose cached K/V expert layer i attends to. Empty means the
    identity map, which needs as many expert layers as VLM layers. `dtype` is `expert_cfg.dtype`
    of the release: the reference builds its expert and action heads in it whatever the load
    dtype (`keep_same_dtype`), so the Fourier frequencies are rounded to it; ours runs the
    networks in the load dtype and uses `dtype` for those frequencies only.
    """

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_hidden_layers: int
    num_key_value_heads: int
    head_dim: int
    layer_map: tuple[int, ...] = ()
    non_causal: bool = True
    dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        _require(self.dtype in _DTYPES, "expert.dtype", f"must be one of {_DTYPES}")
        for name in ("hidden_size", "intermediate_size", "num_attention_heads",
                     "num_hidden_layers", "num_key_value_heads", "head_dim"):
            _require(getattr(self, name) > 0, f"expert.{name}", "must be positive")
        _require(self.num_attention_heads % self.num_key_value_heads == 0,
                 "expert.num_attention_heads", "must be a multiple of num_key_value_heads")
        if self.layer_map:
            _require(len(self.layer_map) == self.num_hidden_layers, "expert.layer_map",
                     f"has {len(self.layer_map)} entries for {self.num_hidden_layers} layers")


# ---------------------------------------------------------------------------------------------
# Alpamayo heads, action space, flow matching, tokens, images


@dataclass(frozen=True)
class ActionInProjConfig:
    """`PerWaypointActionInProjV2`: Fourier features of (accel, curvature, t) + MLP + norms."""

    hidden_size: int = 512
    num_enc_layers: int = 2
    num_fourier_feats: int = 20
    max_freq: float = 100.0

    def __post_init__(self) -> None:
        _require(self.hidden_size > 0, "action_in_proj.hidden_size", "must be positive")
        _require(self.num_enc_layers >= 1, "action_in_proj.num_enc_layers", "must be >= 1")
        _require(self.num_fourier_feats > 0 and self.num_fourier_feats % 2 == 0,
                 "action_in_proj.num_fourier_feats", "must be a positive even number")
        _require(self.max_freq > 1.0, "action_in_proj.max_freq", "must be > 1")


@dataclass(frozen=True)
class ActionSpaceConfig:
    """Unicycle (acceleration, curvature) action space and its least-squares regularisers."""

    accel_mean: float = 0.0
    accel_std: float = 1.0
    curvature_mean: float = 0.0
    curvature_std: float = 1.0
    accel_bounds: tuple[float, float] = (-9.8, 9.8)
    curvature_bounds: tuple[float, float] = (-0.2, 0.2)
    dt_s: float = 0.1
    n_waypoints: int = 64
    theta_lambda: float = 1e-6
    theta_ridge: float = 1e-8
    v_lambda: float = 1e-6
    v_ridge: float = 1e-4
    a_lambda: float = 1e-4
    a_ridge: float = 1e-4
    kappa_lambda: float = 1e-4
    kappa_ridge: float = 1e-4

    def __post_init__(self) -> None:
        _require(self.accel_std > 0, "action_space.accel_std", "must be positive")
        _require(self.curvature_std > 0, "action_space.curvature_std", "must be positive")
        _require(self.dt_s > 0, "action_space.dt_s", "must be positive")
        _require(self.n_waypoints > 0, "action_space.n_waypoints", "must be positive")
        _require(self.accel_bounds[0] < self.accel_bounds[1], "action_space.accel_bounds",
                 "must be (low, high) with low < high")
        _require(self.curvature_bounds[0] < self.curvature_bounds[1],
                 "action_space.curvature_bounds", "must be (low, high) with low < high")

    @property
    def horizon_s(self) -> float:
        return self.dt_s * self.n_waypoints


SOLVERS = ("euler", "midpoint", "heun")


@dataclass(frozen=True)
class FlowConfig:
    """Flow-matching sampler: time runs 0 (noise) -> 1 (data)."""

    num_steps: int = 10
    solver: str = "euler"
    sigma_min: float = 0.0

    def __post_init__(self) -> None:
        _require(self.num_steps >= 1, "flow.num_steps", "must be >= 1")
        _require(self.solver in SOLVERS, "flow.solver", f"must be one of {SOLVERS}")
        _require(0.0 <= self.sigma_min < 1.0, "flow.sigma_min", "must be in [0, 1)")


@dataclass(frozen=True)
class HistoryTokenizerConfig:
    """Delta tokenizer of the ego history: per-axis uniform bins of consecutive xyz deltas.

    `dims_min`/`dims_max` are the release's `ego_xyz_min`/`ego_xyz_max` (metres per step); the
    number of steps comes from `tokens_per_history_traj` / 3. Yaw tokens (`predict_yaw`) are not
    supported: the released model tokenises xyz only.
    """

    num_bins: int = 1000
    dims_min: tuple[float, float, float] = (-4.0, -4.0, -10.0)
    dims_max: tuple[float, float, float] = (4.0, 4.0, 10.0)
    num_steps: int = 16

    def __post_init__(self) -> None:
        _require(self.num_bins >= 2, "history_tokenizer.num_bins", "must be >= 2")
        _require(all(a < b for a, b in zip(self.dims_min, self.dims_max, strict=True)),
                 "history_tokenizer.dims_min", "must be below dims_max on every axis")
        _require(self.num_steps >= 2, "history_tokenizer.num_steps", "must be >= 2")

    @property
    def num_tokens(self) -> int:
        return 3 * self.num_steps


@dataclass(frozen=True)
class TokenConfig:
    """Layout of the extended vocabulary: base tokenizer, `<iN>` bins, special tokens."""

    traj_vocab_size: int = 4000
    future_num_bins: int = 3000
    #: Range of the future (accel, curvature) bins (`traj_tokenizer_cfg`; training only).
    future_dims_min: tuple[float, float] = (-10.0, -10.0)
    future_dims_max: tuple[float, float] = (10.0, 10.0)

    def __post_init__(self) -> None:
        _require(0 < self.future_num_bins < self.traj_vocab_size, "tokens.future_num_bins",
                 "must be positive and below traj_vocab_size")
        _require(all(a < b for a, b in zip(self.future_dims_min, self.future_dims_max,
                                           strict=True)),
                 "tokens.future_dims_min", "must be below future_dims_max on every axis")


@dataclass(frozen=True)
class ImageConfig:
    """Image preprocessing (Qwen2-VL image processor semantics) and the camera/frame layout."""

    min_pixels: int = 163_840
    max_pixels: int = 196_608
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    cameras: tuple[str, ...] = (
        "camera_cross_left_120fov",
        "camera_front_wide_120fov",
        "camera_cross_right_120fov",
        "camera_front_tele_30fov",
    )
    frame_offsets_s: tuple[float, ...] = (-0.3, -0.2, -0.1, 0.0)

    def __post_init__(self) -> None:
        _require(0 < self.min_pixels <= self.max_pixels, "images.min_pixels",
                 "must be positive and <= max_pixels")
        _require(len(self.cameras) >= 1, "images.cameras", "needs at least one camera")
        _require(len(self.frame_offsets_s) >= 1, "images.frame_offsets_s", "needs one offset")
        _require(list(self.frame_offsets_s) == sorted(self.frame_offsets_s),
                 "images.frame_offsets_s", "must be sorted oldest first")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an Alpamayo model (R1 or 1.5: same network, `variant`).

    `variant` (`alpamayo_r1` | `alpamayo1_5`, config.json's `model_type`) selects what differs:
    the prompt (1.5: camera headers, route and question spans), the sampler (1.5: guidance,
    noise temperature) and the buffers (1.5 rebuilds the action-space statistics and the
    Fourier frequencies at load time in the load dtype and never reads them from a checkpoint).
    """

    name: str
    text: TextConfig
    vision: VisionConfig
    expert: ExpertConfig
    action_in_proj: ActionInProjConfig = field(default_factory=ActionInProjConfig)
    action_space: ActionSpaceConfig = field(default_factory=ActionSpaceConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    history_tokenizer: HistoryTokenizerConfig = field(default_factory=HistoryTokenizerConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    vlm_name_or_path: str = "Qwen/Qwen3-VL-8B-Instruct"
    dtype: str = "bfloat16"
    stats_dtype: str = "auto"
    variant: str = VARIANT_R1

    def __post_init__(self) -> None:
        _require(self.variant in VARIANTS, "variant", f"must be one of {VARIANTS}")
        _require(self.dtype in _DTYPES, "dtype", f"must be one of {_DTYPES}")
        _require(self.stats_dtype in _STATS_DTYPES, "stats_dtype",
                 f"must be one of {_STATS_DTYPES}")
        _require(self.vision.out_hidden_size == self.text.hidden_size, "vision.out_hidden_size",
                 f"must equal text.hidden_size ({self.text.hidden_size})")
        e, t = self.expert, self.text
        _require(e.num_key_value_heads == t.num_key_value_heads, "expert.num_key_value_heads",
                 f"must equal the VLM's ({t.num_key_value_heads}): the expert reads its KV cache")
        _require(e.head_dim == t.head_dim, "expert.head_dim",
                 f"must equal the VLM's ({t.head_dim}): the expert reads its KV cache")
        if e.layer_map:
            _require(all(0 <= i < t.num_hidden_layers for i in e.layer_map), "expert.layer_map",
                     f"entries must be VLM layers in [0, {t.num_hidden_layers})")
        else:
            _require(e.num_hidden_layers == t.num_hidden_layers, "expert.layer_map",
                     f"needed: the expert has {e.num_hidden_layers} layers and the VLM "
                     f"{t.num_hidden_layers}; give an explicit layer_map")

    @property
    def expert_layer_map(self) -> tuple[int, ...]:
        """VLM layer index attended by each expert layer."""
        return self.expert.layer_map or tuple(range(self.expert.num_hidden_layers))

    @property
    def n_waypoints(self) -> int:
        return self.action_space.n_waypoints

    @property
    def effective_stats_dtype(self) -> str:
        """dtype of the action-space statistics: `stats_dtype`, or the load dtype for `auto`
        (fp32 load: the config's values; bf16 load: bf16-rounded, as in the reference)."""
        return self.dtype if self.stats_dtype == "auto" else self.stats_dtype

    @property
    def is_1_5(self) -> bool:
        """True for the Alpamayo 1.5 variant (route, guidance, questions, camera headers)."""
        return self.variant == VARIANT_1_5

    @property
    def buffers_persistent(self) -> bool:
        """R1 stores and reads the action-space statistics and Fourier frequencies; 1.5 does
        not (non-persistent buffers rebuilt from the config at load time)."""
        return not self.is_1_5

    @property
    def freqs_dtype(self) -> str:
        """dtype of the Fourier frequencies: R1 casts them to `expert.dtype` (bf16 in the
        release) at every load dtype; 1.5 builds them in the load dtype (fp32 load: exact)."""
        return self.dtype if self.is_1_5 else self.expert.dtype

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Presets

_QWEN3_VL_8B_TEXT = dict(
    hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, rope_theta=5_000_000.0, mrope_section=(24, 20, 20),
    tie_word_embeddings=False,
)
_QWEN3_VL_8B_VISION = dict(
    depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
    num_position_embeddings=2304, deepstack_visual_indexes=(8, 16, 24),
)
_QWEN3_VL_2B_TEXT = dict(
    hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, rope_theta=5_000_000.0, mrope_section=(24, 20, 20),
    tie_word_embeddings=True,
)
_QWEN3_VL_2B_VISION = dict(
    depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
    num_position_embeddings=2304, deepstack_visual_indexes=(5, 11, 17),
)
#: Base models whose architecture is known without reading their config from the hub.
KNOWN_VLMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "Qwen/Qwen3-VL-8B-Instruct": (_QWEN3_VL_8B_TEXT, _QWEN3_VL_8B_VISION),
    "nvidia/Cosmos-Reason2-8B": (_QWEN3_VL_8B_TEXT, _QWEN3_VL_8B_VISION),
    "Qwen/Qwen3-VL-2B-Instruct": (_QWEN3_VL_2B_TEXT, _QWEN3_VL_2B_VISION),
}

#: Released action-space statistics (config.json of nvidia/Alpamayo-R1-10B).
RELEASED_ACTION_SPACE = ActionSpaceConfig(
    accel_mean=0.02902694707164455, accel_std=0.6810426736454882,
    curvature_mean=0.0002692167976330542, curvature_std=0.026148280660833106,
    accel_bounds=(-9.8, 9.8), curvature_bounds=(-0.33, 0.33),
)

#: Vocabulary sizes: Qwen3-VL base tokenizer length and the released extended vocabulary.
QWEN3_VL_BASE_TOKENIZER_LEN = 151_669
RELEASED_VOCAB_SIZE = 155_697


def _r1_10b() -> ModelConfig:
    return ModelConfig(
        name="alpamayo-r1-10b",
        text=TextConfig(vocab_size=RELEASED_VOCAB_SIZE, **_QWEN3_VL_8B_TEXT),
        vision=VisionConfig(**_QWEN3_VL_8B_VISION),
        expert=ExpertConfig(hidden_size=2048, intermediate_size=8256, num_attention_heads=16,
                            num_hidden_layers=36, num_key_value_heads=8, head_dim=128),
        action_space=RELEASED_ACTION_SPACE,
    )


def _seed_2b() -> ModelConfig:
    """The seed document's variant: 2B backbone, 12-layer expert, 4.8 s horizon, 50 steps."""
    return ModelConfig(
        name="seed-2b",
        text=TextConfig(vocab_size=RELEASED_VOCAB_SIZE, **_QWEN3_VL_2B_TEXT),
        vision=VisionConfig(**_QWEN3_VL_2B_VISION),
        expert=ExpertConfig(hidden_size=2048, intermediate_size=8256, num_attention_heads=16,
                            num_hidden_layers=12, num_key_value_heads=8, head_dim=128,
                            layer_map=tuple(range(16, 28))),
        action_space=dataclasses.replace(RELEASED_ACTION_SPACE, n_waypoints=48),
        flow=FlowConfig(num_steps=50, solver="euler", sigma_min=1e-4),
        vlm_name_or_path="Qwen/Qwen3-VL-2B-Instruct",
    )


def _tiny() -> ModelConfig:
    """Same topology as the release with tiny dims (performance_anchors.md §0b sizes)."""
    return ModelConfig(
        name="tiny",
        text=TextConfig(vocab_size=0 + 1, hidden_size=128, intermediate_size=256,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=32, rope_theta=5_000_000.0, mrope_section=(6, 5, 5)),
        vision=VisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                            out_hidden_size=128, num_position_embeddings=64,
                            deepstack_visual_indexes=(0, 1)),
        expert=ExpertConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                            num_hidden_layers=2, num_key_value_heads=2, head_dim=32),
        action_in_proj=ActionInProjConfig(hidden_size=64),
        action_space=RELEASED_ACTION_SPACE,
        dtype="float32",
    )


def _a15_10b() -> ModelConfig:
    """Alpamayo 1.5 (`nvidia/Alpamayo-1.5-10B`): R1's network and weights layout, 1.5 profile."""
    return _r1_10b().replace(name="alpamayo-1.5-10b", variant=VARIANT_1_5,
                             vlm_name_or_path="nvidia/Cosmos-Reason2-8B")


def _tiny_1_5() -> ModelConfig:
    """The tiny preset with the 1.5 profile (tests of the 1.5 prompt and sampler)."""
    return _tiny().replace(name="tiny-1.5", variant=VARIANT_1_5)


#: Action-space statistics of the synthetic drives (`alpamayo_core.sim`): accelerations up to
#: about -5 m/s^2 (cosine stops), curvatures up to 1/40 m; the released statistics would put
#: a stop at -7 standard deviations.
SYNTHETIC_ACTION_SPACE = dataclasses.replace(RELEASED_ACTION_SPACE, accel_mean=0.0,
                                             accel_std=1.5, curvature_mean=0.0,
                                             curvature_std=0.01)


def _demo() -> ModelConfig:
    """The trained demo model: the released topology with dims small enough to train on two
    CPU cores (`alpamayo-train --preset demo`). Against the release: the `tiny` text dims, a
    3-layer vision tower of width 64 (twice the `tiny` one's), an expert as wide as the text
    model, one frame per camera (t0 only, not four) and images of at most 16384 pixels
    (1920x1080 becomes 160x96, 15 tokens per image), and action statistics of the synthetic
    drives."""
    tiny = _tiny()
    return tiny.replace(
        name="demo",
        vision=VisionConfig(depth=3, hidden_size=64, intermediate_size=128, num_heads=2,
                            out_hidden_size=128, num_position_embeddings=64,
                            deepstack_visual_indexes=(1, 2)),
        expert=ExpertConfig(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                            num_hidden_layers=2, num_key_value_heads=2, head_dim=32),
        action_in_proj=ActionInProjConfig(hidden_size=128),
        action_space=SYNTHETIC_ACTION_SPACE,
        images=ImageConfig(min_pixels=4096, max_pixels=16_384, frame_offsets_s=(0.0,)),
    )


PRESETS = {"alpamayo-r1-10b": _r1_10b, "alpamayo-1.5-10b": _a15_10b, "seed-2b": _seed_2b,
           "tiny": _tiny, "tiny-1.5": _tiny_1_5, "demo": _demo}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, optionally with top-level fields replaced.

    The `tiny` and `demo` presets' text vocab_size is a placeholder: set it to the tokenizer length
    (`preset("tiny").with_vocab_size(len(tokenizer))`).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg


def with_vocab_size(cfg: ModelConfig, vocab_size: int) -> ModelConfig:
    """`cfg` with the VLM vocabulary resized (embedding rows and lm_head)."""
    return cfg.replace(text=dataclasses.replace(cfg.text, vocab_size=vocab_size))
