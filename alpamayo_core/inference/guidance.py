"""Alpamayo 1.5 sampler additions: noise temperature and classifier-free guidance (CFG).

Guidance steers the flow towards the route text (1.5 sheet §1.8): next to the guided context
(prompt with the `<|route_start|>...<|route_end|>` span, then the sampled reasoning) an
unguided one is built from the prompt without that span with the same reasoning replayed, and
every velocity evaluation combines the two fields:

    v = (1 - w) * v_unguided + w * v_guided        (w = `GuidanceConfig.weight`)

w = 1 is the guided field alone (the route is still in the prompt), w > 1 amplifies the route's
effect (the 1.5 notebook uses 1.5). The reasoning text is the guided one; only the expert's
context differs.

How the two fields are evaluated: the two expert prefixes are padded to one length (masked
slots) and stacked along the batch, bound once per plan, and each solver evaluation is one
backend call on 2B rows. This works unchanged with every backend on the one instance the
planner holds (they all take any B and P; TensorRT within its engine's profile).
`bench/guidance.py` measured it against two backend instances bound once each and against
re-binding one instance per call: on the 2-core CPU the three ways were within ~10 % of each
other in most runs (README, Benchmarks). It is kept for needing no second backend instance
(session, graphs, engine context); it saves no memory (Cost, below).

Cost: a second prefill of the prompt (the vision tower's outputs are reused) plus one forward
over the reasoning, and expert steps on twice the rows. Memory, in units of the guided VLM K/V
cache C (rows x layers x 2 x KV x P x D values): the unguided cache (1 C), the stacked 2B-row
prefix (2 C), and on the static backends their 2B-row input buffers (~2 C); measured ~5 C with
`torch_static` on the tiny 1.5 model (README, Alpamayo 1.5 > Cost). A TensorRT engine must
admit 2B rows (`alpamayo-export trt --max-batch`).

Glossary: B = trajectory rows, G = replayed reasoning tokens, P = cached prefix tokens,
T = waypoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache

from alpamayo_core.backends.base import ExpertBackend, pad_prefix
from alpamayo_core.inference.frame_cache import ImageFeatures, prefill_with_features
from alpamayo_core.inference.reasoning import Phase1Result, _forward, _kv, _prompt_positions
from alpamayo_core.inputs.prompt import PromptInputs
from alpamayo_core.model.expert import ExpertPrefix


@dataclass(frozen=True)
class GuidanceConfig:
    """Phase-2 sampler settings of Alpamayo 1.5.

    weight: CFG weight w; 0 turns guidance off (no unguided context is built); needs a route.
    noise_temperature: the initial flow noise is `randn * noise_temperature` (1.0 = R1; the
        1.5 notebook uses 0.6: steadier, less diverse samples).
    """

    weight: float = 0.0
    noise_temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"guidance.weight: must be finite and >= 0 (0 = off), got "
                             f"{self.weight}")
        if not (math.isfinite(self.noise_temperature) and self.noise_temperature > 0):
            raise ValueError(f"guidance.noise_temperature: must be finite and > 0, got "
                             f"{self.noise_temperature}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


@dataclass(frozen=True)
class UnguidedContext:
    """The unguided VLM cache and where the trajectory starts in it, per row."""

    keys: tuple[Tensor, ...]  # per VLM layer (B, KV, P_u, D)
    values: tuple[Tensor, ...]  # per VLM layer (B, KV, P_u, D)
    future_start_index: Tensor  # (B,) int64 index of <|traj_future_start|> in the cache
    future_start_position: Tensor  # (B,) int64 mRoPE position of that token


@torch.no_grad()
def replay_unguided(vlm, unguided: PromptInputs, phase1: Phase1Result,
                    image_features: ImageFeatures | None = None) -> UnguidedContext:
    """Prefill the unguided prompt once, repeat it to B rows and replay the guided reasoning.

    `image_features`: the guided prompt's vision outputs (`frame_cache.encode_frames`); the
    unguided prompt has the same images, so they are reused instead of a second vision pass.

    The replayed tokens are exactly those in the guided cache after its prompt (pads of
    finished rows included; they lie after `<|traj_future_start|>` and are masked in the
    expert by its valid length).
    """
    guided_len, rows = phase1.prompt_length, phase1.sequences.shape[0]
    shift = guided_len - unguided.length  # tokens of the route span
    positions = _prompt_positions(vlm, unguided.input_ids, unguided.image_grid_thw)  # (3,1,L)
    cache = DynamicCache()
    if image_features is None:
        _forward(vlm, unguided.input_ids, positions, cache, unguided)
    else:
        prefill_with_features(vlm, unguided.input_ids, positions, cache, image_features)
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    first = int(positions.max()) + 1
    replay = phase1.sequences[:, guided_len:phase1.cache_length]  # (B, G)
    if replay.shape[1] > 0:
        steps = torch.arange(replay.shape[1], device=replay.device)
        pos = (first + steps).expand(3, rows, -1)  # (3, B, G) text positions
        _forward(vlm, replay, pos, cache)
    keys, values = _kv(cache)
    index = phase1.future_start_index - shift
    return UnguidedContext(keys=keys, values=values, future_start_index=index,
                           future_start_position=index - unguided.length + first)


def stack_prefixes(guided: ExpertPrefix, unguided: ExpertPrefix) -> ExpertPrefix:
    """One (2B)-row prefix: guided rows first, then unguided, padded to one prefix length
    with masked slots (zero attention weight, so each half's field is unchanged)."""
    capacity = max(guided.prefix_len, unguided.prefix_len)
    a, b = pad_prefix(guided, capacity), pad_prefix(unguided, capacity)
    return ExpertPrefix(
        keys=tuple(torch.cat(kv) for kv in zip(a.keys, b.keys, strict=True)),
        values=tuple(torch.cat(kv) for kv in zip(a.values, b.values, strict=True)),
        positions=torch.cat([a.positions, b.positions]),
        attn_bias=torch.cat([a.attn_bias, b.attn_bias]))


def combine(v_guided: Tensor, v_unguided: Tensor, weight: float) -> Tensor:
    """CFG combination (1 - w) * v_unguided + w * v_guided, (B, T, 2)."""
    return (1.0 - weight) * v_unguided + weight * v_guided


class GuidedVelocity:
    """Velocity field of CFG over a backend bound to a `stack_prefixes` prefix (2B rows)."""

    def __init__(self, backend: ExpertBackend, weight: float):
        self.backend = backend
        self.weight = weight

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """x (B, T, 2), t (B,) -> guided velocity (B, T, 2) from one 2B-row evaluation."""
        v = self.backend.velocity(torch.cat([x, x]), torch.cat([t, t]))
        v_guided, v_unguided = v.chunk(2)
        return combine(v_guided, v_unguided, self.weight)
