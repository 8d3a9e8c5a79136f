"""DistributedDataParallel: two CPU processes under torchrun (gloo, 127.0.0.1) on the halves
of a fixed batch average to the gradients of one process on the whole batch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import torch
from train_helpers import demo_model, drive_samples

from alpamayo_core.training.config import TrainConfig
from alpamayo_core.training.trainer import Trainer

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_average_to_the_whole_batch_gradients(tmp_path):
    out = tmp_path / "ddp_grads.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           str(HERE / "ddp_worker.py"), str(out)]
    # own session: on a timeout the whole group (torchrun and its workers) is killed
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # torchrun starts each worker in a session of its own: kill them by ancestry
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    ddp = torch.load(out, weights_only=True)

    model, tokenizer = demo_model()
    trainer = Trainer(model, tokenizer, drive_samples(count=4), [],
                      TrainConfig(steps=1, batch_size=4, warmup_steps=0, flow_draws=2),
                      tmp_path / "single")
    trainer.wrapped(trainer.encoded(list(range(4))), 0, 0, 0).total.backward()
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    assert set(ddp) == set(single) and len(single) > 50
    for name, grad in single.items():
        torch.testing.assert_close(ddp[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(g.abs().max()) > 1e-3 for g in single.values())
