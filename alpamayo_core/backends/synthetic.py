"""Random-weight denoise steps and prefixes (benchmarks, parity checks, `alpamayo-export
compare` without a checkpoint).

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length,
KV / D = key-value heads / head_dim.

`init_std` scales every weight (norm weights are 1 + noise); a small `init_std` together with a
low `max_freq` in the config gives a smooth velocity field, on which 10-step plans of different
backends stay comparable (random release-like weights make the field chaotic,
performance_anchors.md §4.2).
"""

from __future__ import annotations

import dataclasses

import torch

from alpamayo_core.model.action_proj import ActionInProj, make_action_out_proj
from alpamayo_core.model.config import ModelConfig
from alpamayo_core.model.denoise_step import DenoiseStep
from alpamayo_core.model.expert import Expert, ExpertPrefix


def smooth_config(cfg: ModelConfig, max_freq: float = 2.0) -> ModelConfig:
    """`cfg` with low-frequency Fourier features (a smooth field in x and t)."""
    return cfg.replace(action_in_proj=dataclasses.replace(cfg.action_in_proj, max_freq=max_freq))


def random_step(cfg: ModelConfig, seed: int = 0, init_std: float = 0.2,
                device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> DenoiseStep:
    """A DenoiseStep of `cfg`'s sizes with N(0, init_std) weights, built on `device`."""
    device = torch.device(device)
    with torch.device("meta"):
        step = DenoiseStep(ActionInProj(cfg.action_in_proj, cfg.expert.hidden_size,
                                        cfg.expert.dtype),
                           Expert(cfg), make_action_out_proj(cfg.expert.hidden_size))
    step.to_empty(device=device)
    step.expert.reset_rotary_buffers()
    reference = ActionInProj(cfg.action_in_proj, cfg.expert.hidden_size, cfg.expert.dtype)
    for name, buf in reference.named_buffers():  # the Fourier frequencies
        step.action_in_proj.get_buffer(name).copy_(buf)
    gen = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for name, param in step.named_parameters():
            noise = torch.randn(param.shape, generator=gen, device=device) * init_std
            param.copy_(noise + 1.0 if name.endswith("norm.weight") else noise)
        for param in step.parameters():  # buffers (RoPE, Fourier freqs) keep their dtype
            param.data = param.data.to(dtype)
    return step.eval()


def random_prefix(step: DenoiseStep, batch: int, prefix_len: int, n_action: int = 64,
                  seed: int = 1, masked_tail: int = 0) -> ExpertPrefix:
    """N(0, 1) per-layer K/V (B, KV, P, D) on the step's device and dtype, positions after the
    prefix, and the last `masked_tail` slots of odd rows masked (exercises the mask)."""
    param = next(step.parameters())
    cfg = step.expert.config
    gen = torch.Generator(param.device).manual_seed(seed)
    shape = (batch, cfg.num_key_value_heads, prefix_len, cfg.head_dim)
    cache = [tuple(torch.randn(shape, generator=gen, device=param.device).to(param.dtype)
                   for _ in range(2)) for _ in range(max(step.expert.layer_map) + 1)]
    valid = torch.full((batch,), prefix_len, device=param.device)
    valid[1::2] -= masked_tail
    first = torch.full((batch,), prefix_len + 7, dtype=torch.int64, device=param.device)
    return step.expert.build_prefix(cache, first, n_action, valid_len=valid)
