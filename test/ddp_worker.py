"""torchrun worker of test_training_ddp: the Trainer's DDP-wrapped objective on this process's
shard of a fixed batch; rank 0 writes the averaged gradients to argv[1] (torch.save)."""

from __future__ import annotations

import sys

import torch
from train_helpers import demo_model, drive_samples

from alpamayo_core.training import distributed
from alpamayo_core.training.config import TrainConfig
from alpamayo_core.training.trainer import Trainer


def main(out: str) -> None:
    torch.set_num_threads(1)
    group = distributed.init("cpu")
    model, tokenizer = demo_model()
    samples = drive_samples(count=4)
    cfg = TrainConfig(steps=1, batch_size=4, warmup_steps=0, flow_draws=2)
    trainer = Trainer(model, tokenizer, samples, [], cfg, out + ".run", group)
    mine, first = distributed.shard(list(range(4)), group)
    losses = trainer.wrapped(trainer.encoded(mine), cfg.seed, 0, first)
    losses.total.backward()
    if group.is_main:
        torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, out)
    distributed.finish(group)


if __name__ == "__main__":
    main(sys.argv[1])
