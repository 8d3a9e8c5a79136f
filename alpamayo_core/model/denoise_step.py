"""One denoising step as a pure tensor function: the unit that backends export and run.

Dimension glossary: B = trajectory rows, T = action tokens (waypoints), P = cached prefix
length, L = expert layers, KV / D = key-value heads / head_dim.

    velocity = action_out_proj(expert(action_in_proj(x, t), prefix)[:, -T:])

Inputs are flat tensors with fixed names (`input_names`) so that eager PyTorch, ONNX Runtime
and TensorRT run the same signature: x (B, T, 2) f32, t (B,) f32, positions (B, T) i64,
attn_bias (B, 1, 1, P + T) f32, then k_0, v_0, k_1, v_1, ... (B, KV, P, D) per expert layer.
Features are computed in float32, the MLP and expert in the weights' dtype, and the velocity
is returned as float32.
"""

from __future__ import annotations

import torch
from torch import nn

from alpamayo_core.model.action_proj import ActionInProj
from alpamayo_core.model.expert import Expert, ExpertPrefix
from alpamayo_core.model.flow_matching import VelocityFn

OUTPUT_NAMES = ("velocity",)


def flat_kv(prefix: ExpertPrefix) -> tuple[torch.Tensor, ...]:
    """(k_0, v_0, k_1, v_1, ...) in expert-layer order, by reference."""
    return tuple(t for pair in zip(prefix.keys, prefix.values, strict=True) for t in pair)


def input_names(num_layers: int) -> list[str]:
    """["x", "t", "positions", "attn_bias", "k_0", "v_0", ...] for `num_layers` expert layers."""
    kv = [f"{kind}_{i}" for i in range(num_layers) for kind in ("k", "v")]
    return ["x", "t", "positions", "attn_bias", *kv]


def step_inputs(x: torch.Tensor, t: torch.Tensor,
                prefix: ExpertPrefix) -> tuple[torch.Tensor, ...]:
    """Positional inputs of `DenoiseStep.forward`, in `input_names` order."""
    return (x, t, prefix.positions, prefix.attn_bias, *flat_kv(prefix))


class DenoiseStep(nn.Module):
    """Velocity of the flow at (x, t) given the expert prefix; holds no state of its own."""

    def __init__(self, action_in_proj: ActionInProj, expert: Expert, action_out_proj: nn.Linear):
        super().__init__()
        self.action_in_proj = action_in_proj
        self.expert = expert
        self.action_out_proj = action_out_proj

    def forward(self, x: torch.Tensor, t: torch.Tensor, positions: torch.Tensor,
                attn_bias: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        """See the module docstring; returns velocity (B, T, 2) float32."""
        if len(kv) % 2:
            raise ValueError(f"kv must alternate keys and values per layer, got {len(kv)} tensors")
        prefix = ExpertPrefix(keys=kv[0::2], values=kv[1::2], positions=positions,
                              attn_bias=attn_bias)
        n_act = x.shape[1]
        hidden = self.expert(self.action_in_proj(x, t), prefix)  # (B, T, E)
        return self.action_out_proj(hidden[:, -n_act:]).float()

    def velocity_fn(self, prefix: ExpertPrefix) -> VelocityFn:
        """Bind a prefix: a `VelocityFn` for `flow_matching.sample`."""
        kv = flat_kv(prefix)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self(x, t, prefix.positions, prefix.attn_bias, *kv)

        return velocity
