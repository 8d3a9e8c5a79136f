"""`torch` backend: the DenoiseStep module run eagerly (the reference the others are tested on).

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length.
Each step concatenates the prefix with the T new keys/values inside the expert (the HF-style
path); this is the baseline the benchmark ratios are taken against.
"""

from __future__ import annotations

import torch

from alpamayo_core.backends.base import ExpertBackend
from alpamayo_core.model.denoise_step import flat_kv
from alpamayo_core.model.expert import ExpertPrefix


class TorchEagerBackend(ExpertBackend):
    """Eager PyTorch on any device, under `torch.inference_mode`."""

    name = "torch"

    def _bind(self, prefix: ExpertPrefix) -> None:
        self._inputs = (prefix.positions, prefix.attn_bias, *flat_kv(prefix))

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_batch(x)
        with torch.inference_mode():
            return self.step(x, t, *self._inputs)

    def close(self) -> None:
        super().close()
        self._inputs = ()
