"""A training example as decoded arrays, and its encoding into the model's inputs and targets.

A `TrainSample` holds what the planner reads (camera frames, ego history in the t0 ego frame)
plus the targets: the future trajectory (ego frame at t0) and, optionally, the reasoning
(chain of causation + meta-action). Encoding builds the same prompt as `Planner.preprocess`
(images, 48 history tokens, the chat layout), the assistant turn the model must produce:

    <|cot_start|> (last prompt token) COT <|cot_end|> <|meta_action_start|> META
    <|meta_action_end|> <|traj_future_start|>

and the normalised (accel, curvature) actions from `traj_to_action`. A sample without
reasoning gets an empty block (`<|cot_end|><|traj_future_start|>`) as its prefix and trains
the trajectory term only.

Glossary: C cameras, F frames, N history poses, T waypoints, L0 prompt tokens, R reasoning
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from alpamayo_core.inputs.images import model_size_images
from alpamayo_core.inputs.prompt import PromptInputs, build_prompt
from alpamayo_core.inputs.tokens import HistoryDeltaTokenizer
from alpamayo_core.model.alpamayo import AlpamayoR1


@dataclass(frozen=True)
class TrainSample:
    """One moment of a drive (arrays as the planner takes them, plus targets)."""

    images_rgb: np.ndarray  # (C, F, H, W, 3) uint8, the model's camera and frame order
    history_xyz_m: np.ndarray  # (N, 3) ego frame at t0
    history_rot: np.ndarray  # (N, 3, 3)
    future_xyz_m: np.ndarray  # (T, 3) at t0 + dt ... t0 + T dt, ego frame at t0
    future_rot: np.ndarray  # (T, 3, 3)
    cot: str = ""
    meta_action: str = ""
    source: str = ""  # where it came from, e.g. "curve_left seed 3 t0 2.50 s"

    def __post_init__(self) -> None:
        if self.images_rgb.dtype != np.uint8 or self.images_rgb.ndim != 5:
            raise ValueError(f"TrainSample.images_rgb: expected uint8 (C, F, H, W, 3), got "
                             f"{self.images_rgb.dtype} {self.images_rgb.shape}")
        n, t = len(self.history_xyz_m), len(self.future_xyz_m)
        shapes = {"history_xyz_m": (n, 3), "history_rot": (n, 3, 3), "future_xyz_m": (t, 3),
                  "future_rot": (t, 3, 3)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name))
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise ValueError(f"TrainSample.{name}: expected finite {shape}, got "
                                 f"{value.shape}")
        if bool(self.cot) != bool(self.meta_action):
            raise ValueError("TrainSample.cot and meta_action: give both or neither")

    @property
    def labelled(self) -> bool:
        return bool(self.cot)


def assistant_text(sample: TrainSample) -> str:
    """The assistant turn after `<|cot_start|>`, ending with `<|traj_future_start|>`."""
    if not sample.labelled:
        return "<|cot_end|><|traj_future_start|>"
    return (f"{sample.cot}<|cot_end|><|meta_action_start|>{sample.meta_action}"
            "<|meta_action_end|><|traj_future_start|>")


@dataclass(frozen=True)
class EncodedSample:
    """Model inputs and targets of one sample."""

    prompt: PromptInputs  # (1, L0) ids (history fused), pixel values, grids
    reasoning_ids: Tensor  # (R,) int64, ends with <|traj_future_start|>
    labelled: bool  # the reasoning is a target (cross-entropy) and not a placeholder
    actions: Tensor  # (T, 2) float32 normalised (accel, curvature)


def encode(sample: TrainSample, model: AlpamayoR1, tokenizer,
           actions: Tensor | None = None) -> EncodedSample:
    """`sample` -> `EncodedSample` for `model` (its image layout, tokenizer, action space).

    `actions` (T, 2): precomputed `traj_to_action` labels (`fit_actions`), else fitted here.
    """
    cfg = model.cfg
    frames = torch.from_numpy(np.ascontiguousarray(sample.images_rgb))  # (C, F, H, W, 3)
    expected = (len(cfg.images.cameras), len(cfg.images.frame_offsets_s))
    if tuple(frames.shape[:2]) != expected:
        raise ValueError(f"images_rgb: expected {expected} (cameras, frames) for model "
                         f"{cfg.name}, got {tuple(frames.shape[:2])}")
    images = model_size_images(frames.permute(0, 1, 4, 2, 3), cfg.images, cfg.vision)
    history = HistoryDeltaTokenizer(cfg.history_tokenizer, model.token_ids.hist_token_start)
    history_ids = history.encode(torch.as_tensor(sample.history_xyz_m, dtype=torch.float32))
    prompt = build_prompt(tokenizer, model.token_ids, images, history_ids,
                          num_history_tokens=cfg.history_tokenizer.num_tokens)
    ids = tokenizer(assistant_text(sample), add_special_tokens=False)["input_ids"]
    if actions is None:
        actions = fit_actions(model, [sample])[0]
    return EncodedSample(prompt=prompt, reasoning_ids=torch.tensor(ids, dtype=torch.int64),
                         labelled=sample.labelled, actions=actions)


@torch.no_grad()
def fit_actions(model: AlpamayoR1, samples: list[TrainSample],
                forward_only: bool = False) -> Tensor:
    """(S, T, 2) normalised action labels: `traj_to_action` with the sheet's regularisers
    (`forward_only`: the first speed clamped at >= 0, see `UnicycleActionSpace`)."""
    def stack(name: str) -> Tensor:
        return torch.as_tensor(np.stack([getattr(s, name) for s in samples]),
                               dtype=torch.float32, device=model.device)

    return model.action_space.traj_to_action(stack("future_xyz_m"), stack("future_rot"),
                                             stack("history_xyz_m"), stack("history_rot"),
                                             forward_only=forward_only).cpu()
