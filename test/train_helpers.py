"""Shared by the training tests and the torchrun worker: a seeded random-init `demo`-preset
model and a few labelled training samples rendered from a synthetic drive (no ROS)."""

from __future__ import annotations

import numpy as np
import torch

from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.model.config import preset, with_vocab_size
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer
from alpamayo_core.sim.drive import SyntheticDrive
from alpamayo_core.sim.labels import reasoning_label
from alpamayo_core.sim.randomize import random_scene
from alpamayo_core.training.sample import TrainSample


def demo_model(seed: int = 0):
    """(model, tokenizer): the `demo` preset, random init from `seed`."""
    tokenizer = extend_tokenizer(tiny_base_tokenizer(), preset("demo").tokens)
    cfg = with_vocab_size(preset("demo"), len(tokenizer))
    torch.manual_seed(seed)
    return AlpamayoR1(cfg, TokenIds.from_tokenizer(tokenizer, cfg.tokens)), tokenizer


def drive_samples(kind: str = "lead_vehicle_braking", seed: int = 0, count: int = 4,
                  labelled: bool = True) -> list[TrainSample]:
    """`count` moments 1 s apart from 2 s on, frames rendered at the demo input size (160x96),
    ground-truth history and future."""
    drive = SyntheticDrive(random_scene(kind, seed, width=160, height=96))
    samples = []
    for t_s in 2.0 + np.arange(count):
        t0_ns = int(drive.to_ns(t_s))
        frames = np.stack([[drive.render(cam, t0_ns)] for cam in drive.config.camera_names])
        history, future = drive.history(t0_ns), drive.true_future(t0_ns)
        label = reasoning_label(drive, t0_ns) if labelled else None
        samples.append(TrainSample(
            images_rgb=frames, history_xyz_m=history.xyz_m, history_rot=history.rot,
            future_xyz_m=future.xyz_m, future_rot=future.rot,
            cot=label.cot if label else "", meta_action=label.meta_action if label else ""))
    return samples
