"""Child processes for the demo and the soak benchmark: the node, replay and recorder.

A stand-in for `ros2 launch` where launch is not installed (PyPI ROS): each tool runs as its
own process in its own process group, with an isolated ROS environment (localhost discovery, a
chosen domain id, the shipped Fast DDS profile for large images, a log folder). Output lines
go to a log file and can be waited on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

import alpamayo_ros
from alpamayo_ros.tools.launch_support import WILDCARD
from alpamayo_ros.tools.share import share_path

#: The folder `alpamayo_ros` is imported from (site-packages or a checkout), for children's path.
IMPORT_ROOT = Path(alpamayo_ros.__file__).resolve().parents[1]


def ros_env(domain_id: int, log_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of one ROS child: LOCALHOST discovery (never multicast), its domain id."""
    if not 0 <= domain_id <= 232:
        raise ValueError(f"domain_id must be in [0, 232], got {domain_id}")
    env = dict(os.environ)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.update({
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_LOG_DIR": str(log_dir),
        "FASTDDS_DEFAULT_PROFILES_FILE": str(share_path("config/fastdds.xml")),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(IMPORT_ROOT),
                                                    env.get("PYTHONPATH", "")])),
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
    })
    env.update(extra)
    return env


def node_params_file(out_path: Path, **overrides: object) -> Path:
    """config/alpamayo.yaml with `overrides` in the node's section, written to `out_path`."""
    content = yaml.safe_load(share_path("config/alpamayo.yaml").read_text(encoding="utf-8"))
    content[WILDCARD]["ros__parameters"].update(overrides)
    out_path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return out_path


class ChildProcess:
    """`python <args>` in its own process group; output lines collected (and logged to
    `log_path` if given), waitable by pattern; with `stdin=True`, `send` writes command lines.
    It runs in `cwd` (default: this process's working directory)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path | None = None,
                 *, name: str | None = None, stdin: bool = False,
                 cwd: Path | None = None) -> None:
        self.name = name or (log_path.stem if log_path else args[-1])
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        # closed by the reader thread when the child's output ends
        self._log = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if self._log:
                self._log.write(line)
                self._log.flush()
            self.lines.append(line.rstrip("\n"))
            self._queue.put(self.lines[-1])
        self._queue.put(None)
        if self._log:
            self._log.close()

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        """Block until an output line matches `pattern`; RuntimeError with the log tail if the
        process exits or the time runs out."""
        regex, deadline = re.compile(pattern), time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"{self.name} exited (code {self.proc.wait()}) before "
                                   f"printing {pattern!r}:\n{self.tail()}")
            if match := regex.search(line):
                return match
        raise RuntimeError(f"{self.name}: no {pattern!r} within {timeout_s} s:\n{self.tail()}")

    def send(self, line: str) -> None:
        """One command line to the child's stdin (needs `stdin=True`)."""
        if self.proc.stdin is None:
            raise RuntimeError(f"{self.name}: started without stdin=True")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int:
        """`sig` to the group, then SIGKILL it after `timeout_s`; returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5.0)
        self._reader.join(timeout=5.0)
        return self.proc.returncode
