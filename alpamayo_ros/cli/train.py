"""`alpamayo-train`: train or fine-tune Alpamayo-R1 on synthetic drives and/or recorded bags.

    alpamayo-train --preset demo --out runs/demo                 # the committed demo model
    alpamayo-train --init models/ar1 --bags drive1 drive2 --freeze vlm --out runs/ft
    torchrun --nproc-per-node 2 -m alpamayo_ros.cli.train ...    # DDP (gloo on CPU)

`--preset` starts from a random-init model of a named preset (seeded by `--seed`; the offline
tiny tokenizer); `--init` fine-tunes a model folder. Data: `--synthetic N` randomised drives
per scene kind (`sim.randomize`, seeds 0..N-1, the last `--val-drives` of each kind held out
for validation), with reasoning labels, and `--bags` (every 10th moment for validation),
trajectory only. Samples go through the node's own buffers (`tools.train_data`). Writes
OUT/losses.csv, OUT/checkpoint (resumable with `--resume`) and OUT/model.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.io.model_io import load_model
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.model.config import PRESETS, preset, with_vocab_size
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer
from alpamayo_core.sim.drive import SCENE_KINDS, SyntheticDrive
from alpamayo_core.sim.randomize import random_scene
from alpamayo_core.training import distributed
from alpamayo_core.training.config import FREEZABLE, TrainConfig
from alpamayo_core.training.sample import TrainSample
from alpamayo_core.training.trainer import Trainer
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools.train_data import bag_samples, synthetic_samples

#: Rendering size of synthetic training frames (16:9 like the 1080p cameras; the frames are
#: then resized to the model's input exactly as the node's frames are).
RENDER_SIZE = (480, 270)
#: `--preset demo` defaults: the committed demo model's training run.
DEMO_DEFAULTS = dict(synthetic=40, every=1.0, steps=1600, batch_size=8, lr=2e-3, warmup=80)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--preset", choices=sorted(PRESETS), help="random-init model preset")
    start.add_argument("--init", help="model folder to fine-tune")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--synthetic", type=int, help="synthetic drives per scene kind")
    p.add_argument("--val-drives", type=int, default=1, help="held-out drives per kind")
    p.add_argument("--bags", nargs="*", default=[], help="recorded drives (rosbag2)")
    p.add_argument("--every", type=float,
                   help="seconds between samples (default: demo 1.0, else 0.5)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int)
    p.add_argument("--flow-draws", type=int, default=4)
    p.add_argument("--freeze", nargs="*", default=[], choices=FREEZABLE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint")
    return p


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    fallback = DEMO_DEFAULTS if args.preset == "demo" else dict(
        synthetic=0, every=0.5, steps=1000, batch_size=8, lr=1e-4, warmup=50)
    for name, value in fallback.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def build_model(args: argparse.Namespace):
    """(model, tokenizer) from a preset (seeded random init) or a model folder."""
    if args.init:
        loaded = load_model(args.init, device=args.device, dtype="float32")
        return loaded.model, loaded.tokenizer
    tokenizer = extend_tokenizer(tiny_base_tokenizer(), preset(args.preset).tokens)
    cfg = with_vocab_size(preset(args.preset), len(tokenizer))
    torch.manual_seed(args.seed)
    return AlpamayoR1(cfg, TokenIds.from_tokenizer(tokenizer, cfg.tokens)).to(args.device), \
        tokenizer


def build_data(args: argparse.Namespace, cfg, show: bool):
    """(train, val) samples: synthetic drives split by seed, bags by moment."""
    params = NodeParams.from_values({"model_dir": args.init or args.out})
    train: list[TrainSample] = []
    val: list[TrainSample] = []
    jobs = [(k, s) for s in range(args.synthetic) for k in SCENE_KINDS]
    width, height = RENDER_SIZE
    for kind, seed in tqdm(jobs, desc="synthetic drives", disable=not show):
        drive = SyntheticDrive(random_scene(kind, seed, width=width, height=height))
        held_out = seed >= args.synthetic - args.val_drives
        (val if held_out else train).extend(synthetic_samples(drive, params, cfg, args.every))
    for bag in tqdm(args.bags, desc="bags", disable=not show):
        for i, sample in enumerate(bag_samples(bag, params, cfg, args.every)):
            (val if i % 10 == 9 else train).append(sample)
    return train, val


def main(argv: list[str] | None = None) -> int:
    args = _defaults(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      warmup_steps=min(args.warmup, args.steps), flow_draws=args.flow_draws,
                      freeze=tuple(args.freeze), seed=args.seed,
                      val_every=max(args.steps // 4, 1), checkpoint_every=max(args.steps // 8, 1))
    group = distributed.init(args.device)
    model, tokenizer = build_model(args)
    start = time.perf_counter()
    train, val = build_data(args, model.cfg, group.is_main)
    if group.is_main:
        print(f"data: {len(train)} training and {len(val)} validation samples in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    result = Trainer(model, tokenizer, train, val, cfg, Path(args.out), group).run(args.resume)
    distributed.finish(group)
    if group.is_main:
        print(f"trained {result.steps} steps in {result.seconds:.0f} s "
              f"(total {time.perf_counter() - start:.0f} s); validation "
              + ", ".join(f"{k} {v:.4f}" for k, v in result.last_val.items()))
        print(f"model: {result.model_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
