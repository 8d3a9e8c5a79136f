"""Typed, frozen training configuration; every field validates itself (ValueError names it)."""

from __future__ import annotations

from dataclasses import dataclass

#: Parameter-name prefixes `freeze` accepts (the module tree of `model.alpamayo`).
FREEZABLE = ("vlm", "vlm.model.visual", "vlm.model.language_model", "vlm.lm_head", "expert",
             "action_in_proj", "action_out_proj")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        steps: optimizer steps in the whole run.
        batch_size: samples per step over all processes (a multiple of the process count).
        lr: peak AdamW learning rate, reached after `warmup_steps` (linear from 0), then cosine
            decay to `min_lr_ratio` * lr at `steps`.
        weight_decay, betas: AdamW's.
        grad_clip: max global gradient norm (0 = no clipping).
        ce_weight, flow_weight: weights of the reasoning cross-entropy and flow-matching terms.
        flow_draws: (noise, time) draws per sample for the flow term: the expert runs on the
            same prefix that many times (cheap next to the VLM pass).
        freeze: parameter-name prefixes that are not trained (see `FREEZABLE`), e.g.
            ("vlm",) for an expert-only fine-tune.
        forward_only: action labels fitted with the t0 speed clamped at >= 0
            (`traj_to_action(..., forward_only=True)`), consistent with a planner that
            integrates forward only (the node's default): at a standstill the noisy history's
            v0 is often negative, and a label that cancels it would drive forward there.
        seed: fixes data order, noise and time draws (and initialisation in the CLI).
        val_every, checkpoint_every, log_every: in steps (the last step always does all three).
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    ce_weight: float = 1.0
    flow_weight: float = 1.0
    flow_draws: int = 4
    freeze: tuple[str, ...] = ()
    forward_only: bool = True
    seed: int = 0
    val_every: int = 100
    checkpoint_every: int = 200
    log_every: int = 10

    def __post_init__(self) -> None:
        checks = [
            ("steps", self.steps >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("lr", self.lr > 0, "must be > 0"),
            ("warmup_steps", 0 <= self.warmup_steps <= self.steps, "must be in [0, steps]"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "must be in [0, 1]"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("betas", all(0 <= b < 1 for b in self.betas), "must be in [0, 1)"),
            ("grad_clip", self.grad_clip >= 0, "must be >= 0 (0 = off)"),
            ("ce_weight", self.ce_weight >= 0, "must be >= 0"),
            ("flow_weight", self.flow_weight >= 0, "must be >= 0"),
            ("flow_draws", self.flow_draws >= 1, "must be >= 1"),
            ("freeze", all(f in FREEZABLE for f in self.freeze),
             f"entries must be in {FREEZABLE}"),
            ("seed", self.seed >= 0, "must be >= 0"),
            ("val_every", self.val_every >= 1, "must be >= 1"),
            ("checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"),
            ("log_every", self.log_every >= 1, "must be >= 1"),
        ]
        for name, ok, msg in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name}: {msg} (got {getattr(self, name)!r})")
