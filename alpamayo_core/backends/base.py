"""The `ExpertBackend` interface: one denoise step bound to a per-plan prefix.

Dimension glossary: B = trajectory rows (samples), T = action tokens (waypoints), P = cached
prefix length, L = expert layers.

A backend wraps one `DenoiseStep` (the pure step function of `denoise_step.py`) on one device.
Per plan the caller binds the prefix once (`bind`), then evaluates the velocity field at as many
(x, t) as the solver needs (`velocity`), or lets the backend run the whole flow (`sample`).
Backends differ only in how the step runs (eager PyTorch, a captured CUDA graph, ONNX Runtime,
TensorRT); all take and return torch tensors on the backend's device.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import torch

from alpamayo_core.model.config import FlowConfig
from alpamayo_core.model.denoise_step import DenoiseStep
from alpamayo_core.model.expert import MASKED, ExpertPrefix
from alpamayo_core.model.flow_matching import sample as flow_sample


def same_device(a: torch.device, b: torch.device) -> bool:
    """True when a and b name the same device ("cuda" matches "cuda:0")."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def bucket_capacity(prefix_len: int, bucket: int) -> int:
    """Smallest multiple of `bucket` that holds `prefix_len` slots."""
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1 token, got {bucket}")
    return max(1, -(-prefix_len // bucket)) * bucket


def padded_bias(attn_bias: torch.Tensor, prefix_len: int, capacity: int) -> torch.Tensor:
    """(B, 1, 1, P + T) bias -> (B, 1, 1, C + T): slots [P, C) masked, own tokens last."""
    if capacity < prefix_len:
        raise ValueError(f"capacity {capacity} is below the prefix length {prefix_len}")
    pad = attn_bias.new_full((*attn_bias.shape[:3], capacity - prefix_len), MASKED)
    return torch.cat([attn_bias[..., :prefix_len], pad, attn_bias[..., prefix_len:]], dim=-1)


def pad_prefix(prefix: ExpertPrefix, capacity: int) -> ExpertPrefix:
    """`prefix` grown to `capacity` cached slots: zero K/V and a masked bias in [P, capacity).

    Masked slots get exactly zero attention weight (exp(finfo.min - max) == 0 in float32), so
    the velocity is that of the unpadded prefix up to summation order.
    """
    extra = capacity - prefix.prefix_len
    if extra == 0:
        return prefix

    def grow(kv: torch.Tensor) -> torch.Tensor:  # (B, KV, P, D) -> (B, KV, C, D)
        return torch.nn.functional.pad(kv, (0, 0, 0, extra))

    return ExpertPrefix(keys=tuple(map(grow, prefix.keys)), values=tuple(map(grow, prefix.values)),
                        positions=prefix.positions,
                        attn_bias=padded_bias(prefix.attn_bias, prefix.prefix_len, capacity))


def static_key(prefix: ExpertPrefix, bucket: int) -> tuple[int, int]:
    """(B, bucketed capacity C) under which static buffers or graphs for `prefix` are kept."""
    return prefix.positions.shape[0], bucket_capacity(prefix.prefix_len, bucket)


def get_or_build(store: dict, key: Hashable, build: Callable[[], Any], max_items: int) -> Any:
    """`store[key]`, built on first use; the oldest entry is dropped beyond `max_items`."""
    if key not in store:
        if len(store) >= max_items:
            store.pop(next(iter(store)))
        store[key] = build()
    return store[key]


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (missing package or device); the message says what to do."""


class ExpertBackend(abc.ABC):
    """Velocity of the flow at (x, t) for the prefix bound last."""

    name: ClassVar[str]
    #: Option names forwarded to a spec through **kwargs (checked by `backend_options`).
    SPEC_OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, step: DenoiseStep, device: torch.device | str):
        self.step = step
        self.device = torch.device(device)
        self.num_layers = len(step.expert.layers)
        self._prefix: ExpertPrefix | None = None

    @property
    def prefix(self) -> ExpertPrefix:
        """The bound prefix; RuntimeError before the first `bind`."""
        if self._prefix is None:
            raise RuntimeError(f"{self.name}: call bind(prefix) before velocity() or sample()")
        return self._prefix

    def bind(self, prefix: ExpertPrefix) -> None:
        """Attach the prefix of one plan (copied or referenced once, never per step)."""
        prefix.validate()
        if len(prefix.keys) != self.num_layers:
            raise ValueError(f"prefix has {len(prefix.keys)} layers, the expert "
                             f"{self.num_layers}; build it with expert.build_prefix")
        if not same_device(prefix.keys[0].device, self.device):
            raise ValueError(f"{self.name}: prefix is on {prefix.keys[0].device}, the backend "
                             f"on {self.device}; move the prefix first")
        self._prefix = prefix
        self._bind(prefix)

    @abc.abstractmethod
    def _bind(self, prefix: ExpertPrefix) -> None:
        """Backend-specific part of `bind` (the prefix is already validated)."""

    @abc.abstractmethod
    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, T, 2) float32, t (B,) float32 -> velocity (B, T, 2) float32 (a new tensor)."""

    def sample(self, noise: torch.Tensor, flow_cfg: FlowConfig,
               before_step: Callable[[], None] | None = None) -> torch.Tensor:
        """Integrate the flow from `noise` (B, T, 2) to t = 1 (`flow_matching.sample`).

        `before_step` runs before every velocity evaluation; an exception it raises (e.g. a
        cancelled plan) stops the flow there."""
        self.check_batch(noise)
        if before_step is None:
            return flow_sample(self.velocity, noise, flow_cfg)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            before_step()
            return self.velocity(x, t)

        return flow_sample(velocity, noise, flow_cfg)

    def check_batch(self, x: torch.Tensor) -> None:
        """ValueError unless x is (B, T, 2) with the bound prefix's B and T."""
        expected = (*self.prefix.positions.shape, 2)
        if tuple(x.shape) != expected:
            raise ValueError(f"{self.name}: x must be (B, T, 2) = {expected} for the bound "
                             f"prefix, got {tuple(x.shape)}")

    def close(self) -> None:
        """Release sessions, graphs and buffers; the backend cannot be used afterwards."""
        self._prefix = None

    def __enter__(self) -> ExpertBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
