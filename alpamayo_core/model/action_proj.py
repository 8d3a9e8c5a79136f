"""Action input projection (noisy action + flow time -> expert tokens) and output projection.

Dimension glossary: B = trajectory rows, T = waypoints, F = Fourier features per scalar
(`num_fourier_feats`, 20), H = MLP hidden (512), E = expert hidden size (2048).

Layout and state-dict keys follow the release (`PerWaypointActionInProjV2`):
    sinus.0.freqs, sinus.1.freqs, timestep_fourier_encoder.freqs   (1, F/2) buffers
    encoder.trunk.{0, 3, ...}  Linear, then SiLU, RMSNorm(eps 1e-5) per layer; last Linear -> E
    norm                       LayerNorm(E, eps 1e-5)
The Fourier features are computed in float32 whatever the weights' dtype, in the reference's
operation order `u * freqs * 2 * pi` (left to right: angles reach ~1700 rad, so the order
shows in the last bits); the MLP runs in the weights' dtype. The RMSNorm is transformers'
Qwen3-VL one (float32 statistics, cast back, then times the weight), which is exactly the
release's semantics.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm

from alpamayo_core.model.config import ActionInProjConfig

_RMS_EPS = 1e-5
_LAYER_NORM_EPS = 1e-5


class FourierFeatures(nn.Module):
    """f(u) = sqrt(2) * [sin(u freq 2 pi), cos(u freq 2 pi)], F/2 log-spaced freqs in [1, max]."""

    freqs: torch.Tensor

    def __init__(self, num_feats: int, max_freq: float, dtype: torch.dtype,
                 persistent: bool = True):
        """`persistent` False (Alpamayo 1.5): the frequencies are not in the state dict and are
        computed directly in `dtype` (`reset_buffers` after materialising a meta model)."""
        super().__init__()
        self._grid = (num_feats // 2, math.log10(max_freq))
        self.register_buffer("freqs", self._compute(dtype, persistent), persistent=persistent)

    def _compute(self, dtype: torch.dtype, from_float64: bool,
                 device: torch.device | None = None) -> torch.Tensor:
        """(1, F/2) log-spaced grid in `dtype`: R1 rounds the float64 grid to its stored dtype,
        1.5 builds the grid in the load dtype (fp32: not bf16-rounded)."""
        n, log_max = self._grid
        if from_float64:
            return torch.logspace(0.0, log_max, n, dtype=torch.float64,
                                  device=device).to(dtype)[None]
        return torch.logspace(0.0, log_max, n, dtype=dtype, device=device)[None]

    def reset_buffers(self) -> None:
        """Recompute non-persistent frequencies (garbage after `to_empty`) in their dtype."""
        if "freqs" in self._non_persistent_buffers_set:
            self.freqs = self._compute(self.freqs.dtype, False, self.freqs.device)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(...) -> (...) + (F,) float32."""
        angle = u.float()[..., None] * self.freqs[0].float() * 2.0 * math.pi
        return math.sqrt(2.0) * torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class MLPEncoder(nn.Module):
    """`trunk`: [Linear, SiLU, RMSNorm] x num_layers, then Linear to the output size."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(num_layers):
            blocks += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.SiLU(),
                       Qwen3VLTextRMSNorm(hidden, eps=_RMS_EPS)]
        blocks.append(nn.Linear(hidden, out_dim))
        self.trunk = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


class ActionInProj(nn.Module):
    """Per-waypoint Fourier features of (accel, curvature, t) -> MLP -> LayerNorm tokens."""

    def __init__(self, cfg: ActionInProjConfig, out_dim: int,
                 freqs_dtype: str | torch.dtype = "bfloat16", persistent_freqs: bool = True):
        super().__init__()
        dtype = freqs_dtype if isinstance(freqs_dtype, torch.dtype) else getattr(torch,
                                                                                 freqs_dtype)
        n, f_max = cfg.num_fourier_feats, cfg.max_freq
        self.sinus = nn.ModuleList([FourierFeatures(n, f_max, dtype, persistent_freqs)
                                    for _ in range(2)])
        self.timestep_fourier_encoder = FourierFeatures(n, f_max, dtype, persistent_freqs)
        self.encoder = MLPEncoder(3 * n, cfg.hidden_size, out_dim, cfg.num_enc_layers)
        self.norm = nn.LayerNorm(out_dim, eps=_LAYER_NORM_EPS)

    def features(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, T, 2), t (B,) or (B, 1, 1) -> (B, T, 3F) float32 [f(accel) | f(curv) | f(t)]."""
        if x.ndim != 3 or x.shape[-1] != 2:
            raise ValueError(f"x must be (B, T, 2), got shape {tuple(x.shape)}")
        batch, n_wp = x.shape[:2]
        if t.numel() != batch:
            raise ValueError(f"t must hold one time per row (B={batch}), got {tuple(t.shape)}")
        f_time = self.timestep_fourier_encoder(t.reshape(batch, 1))  # (B, 1, F)
        return torch.cat([self.sinus[0](x[..., 0]), self.sinus[1](x[..., 1]),
                          f_time.expand(batch, n_wp, -1)], dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, T, 2) normalised noisy action, t (B,) flow time -> (B, T, E) weights' dtype."""
        feats = self.features(x, t).to(self.norm.weight.dtype)
        return self.norm(self.encoder(feats))


def make_action_out_proj(expert_hidden: int) -> nn.Linear:
    """Expert hidden state (..., E) -> velocity (..., 2); keys `weight` (2, E), `bias` (2,)."""
    return nn.Linear(expert_hidden, 2, bias=True)
