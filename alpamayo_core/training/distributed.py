"""torchrun / DistributedDataParallel set-up: gloo on CPU, nccl on CUDA.

Under `torchrun` (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment) `init` joins
the process group; alone it does nothing and reports rank 0 of 1. Each process takes an equal,
contiguous shard of every global batch (`shard`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

LOG = logging.getLogger(__name__)

#: GIL-free pause before leaving the group (see `finish`).
_DRAIN_S = 0.2


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(device: torch.device | str = "cpu") -> ProcessGroup:
    """Join the torchrun process group if there is one (gloo on CPU, nccl on CUDA)."""
    if dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ProcessGroup()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    group = ProcessGroup(dist.get_rank(), dist.get_world_size())
    LOG.info("process %d of %d (%s)", group.rank, group.world_size, backend)
    return group


def shard(batch: list, group: ProcessGroup) -> tuple[list, int]:
    """This process's contiguous share of a global batch and the index of its first sample."""
    if len(batch) % group.world_size:
        raise ValueError(f"batch_size: {len(batch)} does not split over {group.world_size} "
                         "processes")
    size = len(batch) // group.world_size
    first = group.rank * size
    return batch[first:first + size], first


def all_mean(value: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """The mean of a scalar over the processes (itself when alone)."""
    if not group.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / group.world_size


def finish(group: ProcessGroup) -> None:
    """Leave the torchrun process group (nothing when alone): a barrier, a short GIL-free
    pause, then `destroy_process_group`. Call it once every rank is done with collectives.

    Without it a rank can hang at exit: when the interpreter frees DDP's reducer it frees the
    gloo group, whose destructor joins gloo's worker threads while holding the GIL, and a
    worker thread still dropping a finished collective needs the GIL for that (the work holds
    Python thread-local state). Seen in test_training_ddp: rank 1 blocked in
    `~ProcessGroupGloo` while its worker thread waited for the GIL in `~AsyncAllreduceWork`.
    The barrier waits with the GIL released until every rank's collectives are done; the pause
    lets the worker threads drop the barrier's own work.
    """
    if not group.distributed or not dist.is_initialized():
        return
    dist.barrier()
    time.sleep(_DRAIN_S)
    dist.destroy_process_group()
