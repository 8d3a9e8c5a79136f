"""The stage-3 objective on the real architecture: reasoning cross-entropy + flow matching.

Per sample (R1 sheet §6-§8):

1. One VLM forward, teacher-forced, over prompt + assistant turn (ending with
   `<|traj_future_start|>`), with a fresh KV cache (gradients flow through it).
2. Cross-entropy of the assistant turn's tokens (labelled samples only), mean over its tokens.
3. Flow matching: `flow_draws` pairs (noise ~ N(0, I), t = 0.999 (1 - b), b ~ Beta(1.5, 1)),
   x_t = t x + (1 - t) noise, target velocity x - noise (`flow_matching.interpolate` /
   `target_velocity`, with the model's sigma_min); the expert runs over the cached K/V up to
   and including `<|traj_future_start|>` exactly as at inference (`Expert.build_prefix` +
   `DenoiseStep`); loss = MSE, mean over draws, waypoints and both action channels.

The batch loss is the mean over samples of ce_weight * CE_i + flow_weight * flow_i (CE_i = 0
for unlabelled samples), so equal shards averaged across processes (DDP) give exactly the
loss of the whole batch in one process. Noise and times come from a generator seeded by
(seed, step, the sample's index in the global batch): they do not depend on the sharding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DynamicCache

from alpamayo_core.model import flow_matching
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.model.denoise_step import flat_kv
from alpamayo_core.training.sample import EncodedSample

#: Beta(a, 1) time distribution of the reference (a = 1.5) and its scale (t < 1).
TIME_BETA_A, TIME_SCALE = 1.5, 0.999


def sample_times(count: int, generator: torch.Generator) -> Tensor:
    """(count,) float32 flow times t = 0.999 (1 - b), b ~ Beta(1.5, 1).

    Beta(a, 1) has CDF b^a, so b = u^(1/a) with u ~ U(0, 1) is an exact draw (and, unlike
    `torch.distributions.Beta`, takes a generator). Small t (noise) is favoured.
    """
    u = torch.rand(count, generator=generator, dtype=torch.float32)
    return TIME_SCALE * (1.0 - u.pow(1.0 / TIME_BETA_A))


def draw_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one sample's draws at one step (independent of process layout)."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class Losses:
    """Batch losses (0-dim tensors; `total` carries the gradient)."""

    total: Tensor
    ce: Tensor  # mean over the labelled samples (0 when none)
    flow: Tensor  # mean over the samples


class StageThreeObjective(nn.Module):
    """Wraps the model so that DistributedDataParallel sees one forward that returns the loss."""

    def __init__(self, model: AlpamayoR1, ce_weight: float = 1.0, flow_weight: float = 1.0,
                 flow_draws: int = 4):
        super().__init__()
        self.model = model
        self.ce_weight, self.flow_weight, self.flow_draws = ce_weight, flow_weight, flow_draws

    def forward(self, batch: list[EncodedSample], seed: int, step: int,
                first_index: int = 0) -> Losses:
        """Losses of `batch`, whose first sample is `first_index` in the global batch."""
        ce_terms, flow_terms, total = [], [], 0.0
        for offset, sample in enumerate(batch):
            generator = draw_generator(seed, step, first_index + offset)
            ce, flow = self.sample_losses(sample, generator)
            if sample.labelled:
                ce_terms.append(ce.detach())
                total = total + self.ce_weight * ce
            flow_terms.append(flow.detach())
            total = total + self.flow_weight * flow
        total = total / len(batch)
        ce_mean = torch.stack(ce_terms).mean() if ce_terms else torch.zeros(())
        return Losses(total=total, ce=ce_mean, flow=torch.stack(flow_terms).mean())

    def sample_losses(self, sample: EncodedSample,
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(cross-entropy of the reasoning, flow-matching MSE) of one sample."""
        model, prompt = self.model, sample.prompt
        device = model.device
        full = torch.cat([prompt.input_ids[0], sample.reasoning_ids])[None].to(device)  # (1, L)
        grid = prompt.image_grid_thw.to(device)
        positions, _ = model.vlm.model.get_rope_index(full, image_grid_thw=grid,
                                                      attention_mask=torch.ones_like(full))
        cache = DynamicCache()
        out = model.vlm(input_ids=full, position_ids=positions, past_key_values=cache,
                        use_cache=True, pixel_values=prompt.pixel_values.to(device),
                        image_grid_thw=grid)  # uint8 images: the patch embedding casts them
        start = prompt.length
        logits = out.logits[0, start - 1:-1].float()  # (R, V) predicts the reasoning tokens
        ce = F.cross_entropy(logits, full[0, start:])
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        flow = self._flow_loss(kv, positions, full.shape[1], sample.actions, generator)
        return ce, flow

    def _flow_loss(self, kv: list[tuple[Tensor, Tensor]], positions: Tensor, length: int,
                   actions: Tensor, generator: torch.Generator) -> Tensor:
        """MSE of the expert's velocity against the target over `flow_draws` draws."""
        model, draws = self.model, self.flow_draws
        device = model.device
        n_act = actions.shape[0]
        noise = torch.randn(draws, n_act, 2, generator=generator, dtype=torch.float32)
        t = sample_times(draws, generator)
        x_data = actions.float().expand(draws, -1, -1)
        sigma_min = model.cfg.flow.sigma_min
        x_t = flow_matching.interpolate(x_data, noise, t, sigma_min).to(device)
        target = flow_matching.target_velocity(x_data, noise, sigma_min).to(device)
        rows = [(k.expand(draws, -1, -1, -1), v.expand(draws, -1, -1, -1)) for k, v in kv]
        first = (positions[:, 0, length - 1].max() + 1).expand(draws)
        prefix = model.expert.build_prefix(
            rows, first_position=first, n_action=n_act,
            valid_len=torch.full((draws,), length, device=device))
        velocity = model.denoise_step()(x_t, t.to(device), prefix.positions, prefix.attn_bias,
                                        *flat_kv(prefix))  # (draws, T, 2)
        return F.mse_loss(velocity, target)
