"""Wall-clock stage timing that is correct on asynchronous devices."""

from __future__ import annotations

import time

import torch


def device_clock(device: torch.device) -> float:
    """`time.perf_counter()` once the device's queued work is done (CUDA runs asynchronously:
    without the synchronize, a stage's time would land in whichever stage syncs next)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
