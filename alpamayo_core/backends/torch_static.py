"""`torch_static` backend: `StaticPrefixStep` run eagerly, on any device (no graph capture).

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length,
C = bucketed capacity.

The prefix is copied into per-layer (B, KV, C + T, D) buffers once per plan; each step writes
its own T keys/values in place and attends with grouped-query folding, so no step concatenates
the prefix or repeats K/V (see `cuda_graph.py`). On CPU with the ~3k-token prompts of the
released camera setup this is the fastest backend (attention over the prefix dominates there
and ONNX Runtime's unfused attention is slower than torch's SDPA); the CUDA-graph backend
replays the same step as a graph.
"""

from __future__ import annotations

import torch

from alpamayo_core.backends.base import ExpertBackend, get_or_build, static_key
from alpamayo_core.backends.cuda_graph import StaticPrefixStep
from alpamayo_core.model.denoise_step import DenoiseStep
from alpamayo_core.model.expert import ExpertPrefix

#: Static buffers kept alive per (B, C); each holds 2 x layers x (B, KV, C + T, D) values.
MAX_BUFFERS = 4


class TorchStaticBackend(ExpertBackend):
    """Eager `StaticPrefixStep` over buffers reused across plans of the same (B, C).

    Option: `bucket` (capacity granularity in tokens, default 256).
    """

    name = "torch_static"

    def __init__(self, step: DenoiseStep, device: torch.device | str = "cpu", *,
                 bucket: int = 256):
        super().__init__(step, device)
        self.bucket = bucket
        self._steps: dict[tuple[int, int], StaticPrefixStep] = {}

    def _bind(self, prefix: ExpertPrefix) -> None:
        batch, capacity = key = static_key(prefix, self.bucket)
        self._static = get_or_build(self._steps, key, lambda: StaticPrefixStep(
            self.step, batch, capacity, prefix.positions.shape[1]), MAX_BUFFERS)
        self._static.load(prefix)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_batch(x)
        with torch.inference_mode():
            self._static.x.copy_(x)
            self._static.t.copy_(t)
            return self._static()

    def close(self) -> None:
        super().close()
        self._steps.clear()
