"""Alpamayo-R1: the module tree whose `state_dict()` is the released checkpoint's.

    vlm              Qwen3VLForConditionalGeneration  (vlm.model.visual.*,
                                                       vlm.model.language_model.*, vlm.lm_head.*)
    expert           Qwen3-VL text stack, no embeddings (expert.layers.*, expert.norm.weight)
    action_in_proj   Fourier features + MLP + LayerNorm (action_in_proj.*)
    action_out_proj  Linear(expert hidden -> 2)       (action_out_proj.{weight,bias})
    action_space     unicycle accel/curvature stats   (action_space.{accel,curvature}_{mean,std})

Dtypes: the VLM, expert and projections are built in the compute dtype chosen at load time.
Two buffers follow the reference's rules instead (R1 sheet §8.4, §13.3): the action-space
statistics take `cfg.effective_stats_dtype` (the load dtype unless overridden: fp32 load keeps
the config's values, bf16 load rounds them), and the Fourier frequencies take `cfg.expert.dtype`
(the release's `expert_cfg.dtype`, bf16, which the reference casts its action heads to at every
load dtype). Never call `.to(dtype)` on the whole model: it would cast those buffers too.
Alpamayo 1.5 (`cfg.variant`) differs only there: both are non-persistent (not saved, not read
from a checkpoint) and rebuilt from the config in the load dtype (`cfg.freqs_dtype`).
"""

from __future__ import annotations

import torch
from torch import nn

from alpamayo_core.model.action_proj import ActionInProj, make_action_out_proj
from alpamayo_core.model.action_space import UnicycleActionSpace
from alpamayo_core.model.config import ModelConfig
from alpamayo_core.model.denoise_step import DenoiseStep
from alpamayo_core.model.expert import Expert
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds


class AlpamayoR1(nn.Module):
    """Composition only; inference lives in `inference.planner`, loading in `io.model_io`."""

    def __init__(self, cfg: ModelConfig, token_ids: TokenIds):
        super().__init__()
        if token_ids.vocab_size != cfg.text.vocab_size:
            raise ValueError(f"tokenizer has {token_ids.vocab_size} tokens but the config's "
                             f"vocab_size is {cfg.text.vocab_size}: wrong tokenizer or config")
        self.cfg = cfg
        self.token_ids = token_ids
        self.vlm = build_vlm(cfg, token_ids)
        self.expert = Expert(cfg)
        self.action_in_proj = ActionInProj(cfg.action_in_proj, cfg.expert.hidden_size,
                                           cfg.freqs_dtype, cfg.buffers_persistent)
        self.action_out_proj = make_action_out_proj(cfg.expert.hidden_size)
        self.action_space = UnicycleActionSpace(cfg.action_space, cfg.effective_stats_dtype,
                                                cfg.buffers_persistent)

    def denoise_step(self) -> DenoiseStep:
        """The exported unit: one velocity evaluation over an explicit prefix."""
        return DenoiseStep(self.action_in_proj, self.expert, self.action_out_proj)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.action_out_proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.action_out_proj.weight.device


def reset_nonpersistent_buffers(model: nn.Module) -> None:
    """Recompute buffers that checkpoints do not store (rotary `inv_freq`) after `to_empty`.

    A model built on the meta device and materialised with `to_empty` has garbage there; every
    module with a non-persistent buffer must be one we know how to rebuild.
    """
    for name, module in model.named_modules():
        missing = getattr(module, "_non_persistent_buffers_set", set())
        if not missing:
            continue
        if hasattr(module, "reset_buffers"):  # 1.5 statistics and Fourier frequencies
            module.reset_buffers()
        elif hasattr(module, "rope_init_fn") and hasattr(module, "config"):
            inv_freq, _ = module.rope_init_fn(module.config, module.inv_freq.device)
            module.inv_freq = inv_freq
            module.original_inv_freq = inv_freq
        elif missing == {"inv_freq"}:  # vision rotary: 1 / 10000^(2i/dim)
            dim = 2 * module.inv_freq.numel()
            exponent = torch.arange(0, dim, 2, dtype=torch.float32,
                                    device=module.inv_freq.device) / dim
            module.inv_freq = 1.0 / (10000.0 ** exponent)
        else:
            raise RuntimeError(f"cannot rebuild non-persistent buffers {sorted(missing)} of "
                               f"{name} ({type(module).__name__})")
