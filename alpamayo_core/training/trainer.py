"""The training loop: AdamW + warm-up/cosine, clipping, CSV losses, checkpoints, resume, DDP.

    out_dir/
        losses.csv          step, lr, loss, ce, flow, grad_norm (train, mean over processes),
                            val_loss, val_ce, val_flow (on the fixed validation split), elapsed_s
        checkpoint/         the latest checkpoint: a model folder in the released layout
                            (config.json, safetensors, tokenizer) + trainer_state.pt
                            (step, optimizer, scheduler, config)
        model/              the final model folder (what `load_model` and the node read)

Everything random (data order, noise, flow times) is a function of (seed, step, sample index),
so a resumed run continues exactly as an uninterrupted one, and a run from the same seed on
the same machine gives bit-identical weights.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from alpamayo_core.io import checkpoint
from alpamayo_core.io.model_io import save_model_folder
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.training.config import TrainConfig
from alpamayo_core.training.distributed import ProcessGroup, all_mean, shard
from alpamayo_core.training.objective import Losses, StageThreeObjective
from alpamayo_core.training.sample import EncodedSample, TrainSample, encode, fit_actions
from alpamayo_core.training.schedule import make_scheduler

LOG = logging.getLogger(__name__)

CSV_COLUMNS = ("step", "lr", "loss", "ce", "flow", "grad_norm", "val_loss", "val_ce",
               "val_flow", "elapsed_s")
STATE_FILE = "trainer_state.pt"
#: The `step` that seeds the validation draws (the same draws at every validation).
_VAL_STEP = 10**9


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    steps: int
    seconds: float
    last_val: dict[str, float]


def set_trainable(model: AlpamayoR1, freeze: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Parameters whose name starts with a `freeze` prefix are frozen; the rest train."""
    trainable = []
    for name, param in model.named_parameters():
        train = not any(name == p or name.startswith(p + ".") for p in freeze)
        param.requires_grad_(train)
        if train:
            trainable.append(param)
    if not trainable:
        raise ValueError(f"freeze: {freeze} leaves nothing to train")
    return trainable


def batch_indices(step: int, num_samples: int, batch_size: int, seed: int) -> list[int]:
    """Global batch of `step`: consecutive slices of per-epoch permutations (seeded)."""
    out, position = [], step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, num_samples)
        order = np.random.default_rng([seed, epoch]).permutation(num_samples)
        take = min(batch_size - len(out), num_samples - offset)
        out += order[offset:offset + take].tolist()
        position += take
    return out


class Trainer:
    """Fits `model` to `train` (validating on `val`) as `cfg` says, writing to `out_dir`."""

    def __init__(self, model: AlpamayoR1, tokenizer, train: list[TrainSample],
                 val: list[TrainSample], cfg: TrainConfig, out_dir: Path | str,
                 group: ProcessGroup | None = None):
        if not train:
            raise ValueError("train: no training samples")
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.out_dir, self.group = Path(out_dir), group or ProcessGroup()
        self.train_set, self.val_set = train, val
        self.train_actions = fit_actions(model, train, cfg.forward_only)  # (S, T, 2)
        self.val_actions = fit_actions(model, val, cfg.forward_only) if val else None
        model.train()
        self.trainable = set_trainable(model, cfg.freeze)
        self.objective = StageThreeObjective(model, cfg.ce_weight, cfg.flow_weight,
                                             cfg.flow_draws)
        self.wrapped = (DistributedDataParallel(self.objective, find_unused_parameters=True)
                        if self.group.distributed else self.objective)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = 0

    def encoded(self, indices: list[int], val: bool = False) -> list[EncodedSample]:
        samples, actions = ((self.val_set, self.val_actions) if val
                            else (self.train_set, self.train_actions))
        return [encode(samples[i], self.model, self.tokenizer, actions[i]) for i in indices]

    def train_step(self) -> tuple[Losses, float]:
        """One optimizer step on this process's shard of the step's global batch."""
        cfg = self.cfg
        indices = batch_indices(self.step, len(self.train_set), cfg.batch_size, cfg.seed)
        mine, first = shard(indices, self.group)
        losses = self.wrapped(self.encoded(mine), cfg.seed, self.step, first)
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        norm = (torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
                if cfg.grad_clip > 0 else _grad_norm(self.trainable))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return losses, float(norm)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean losses over the validation split with fixed draws (this process only)."""
        if not self.val_set:
            return {}
        totals = np.zeros(3)
        size = self.cfg.batch_size
        for first in range(0, len(self.val_set), size):
            chunk = list(range(first, min(first + size, len(self.val_set))))
            losses = self.objective(self.encoded(chunk, val=True), self.cfg.seed, _VAL_STEP,
                                    first)
            totals += len(chunk) * np.array([float(losses.total), float(losses.ce),
                                             float(losses.flow)])
        mean = totals / len(self.val_set)
        return {"val_loss": mean[0], "val_ce": mean[1], "val_flow": mean[2]}

    def run(self, resume: bool = False) -> TrainResult:
        """Train to `cfg.steps` (from the checkpoint when `resume`); returns the final model."""
        cfg, main = self.cfg, self.group.is_main
        if resume:
            self.load_checkpoint(self.out_dir / "checkpoint")
        start = time.perf_counter()
        log = _CsvLog(self.out_dir / "losses.csv", append=resume) if main else None
        last_val: dict[str, float] = {}
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not main, desc="train")
        while self.step < cfg.steps:
            lr = self.scheduler.get_last_lr()[0]
            losses, norm = self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{losses.total.item():.3f}", flow=f"{losses.flow.item():.3f}")
            last = self.step == cfg.steps
            row = None
            if main and (self.step % cfg.log_every == 0 or last):
                row = {"step": self.step, "lr": lr, "grad_norm": norm,
                       "elapsed_s": time.perf_counter() - start,
                       **self._train_means(losses)}
            elif self.group.distributed and (self.step % cfg.log_every == 0 or last):
                self._train_means(losses)  # every process joins the all-reduce
            if main and (self.step % cfg.val_every == 0 or last):
                last_val = self.validate()
                row = {**(row or {"step": self.step}), **last_val}
            if row is not None:
                log.write(row)
            if self.step % cfg.checkpoint_every == 0 or last:
                self.save_checkpoint(self.out_dir / "checkpoint")
        bar.close()
        model_dir = self.out_dir / "model"
        if main:
            save_model_folder(self.model, self.tokenizer, model_dir)
        return TrainResult(model_dir, self.step, time.perf_counter() - start, last_val)

    def _train_means(self, losses: Losses) -> dict[str, float]:
        return {name: all_mean(getattr(losses, key).detach(), self.group).item()
                for name, key in (("loss", "total"), ("ce", "ce"), ("flow", "flow"))}

    def save_checkpoint(self, folder: Path) -> None:
        """Model folder + trainer state, written beside and then swapped in (main process)."""
        if not self.group.is_main:
            return
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_model_folder(self.model, self.tokenizer, tmp)
        torch.save({"step": self.step, "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "config": dataclasses.asdict(self.cfg)}, tmp / STATE_FILE)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        LOG.info("checkpoint at step %d in %s", self.step, folder)

    def load_checkpoint(self, folder: Path) -> None:
        """Weights, optimizer, scheduler and step from a checkpoint folder."""
        if not (folder / STATE_FILE).is_file():
            raise FileNotFoundError(f"{folder / STATE_FILE}: no checkpoint to resume from")
        checkpoint.load_into(self.model, folder)
        state = torch.load(folder / STATE_FILE, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        LOG.info("resumed from step %d (%s)", self.step, folder)


def _grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad.detach().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


class _CsvLog:
    """`losses.csv` with a header, flushed per row (readable while training runs)."""

    def __init__(self, path: Path, append: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not (append and path.is_file())
        self._file = path.open("w" if new else "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
        if new:
            self._writer.writeheader()

    def write(self, row: dict[str, float]) -> None:
        self._writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                               for k, v in row.items()})
        self._file.flush()
