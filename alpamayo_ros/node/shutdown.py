"""Treat a signal-requested ROS shutdown as a clean exit, in every process this package runs.

rclpy's SIGINT/SIGTERM handler shuts the default context down from another thread. Depending on
where the main thread is at that moment (spinning, publishing, creating a wait set) it sees
KeyboardInterrupt, ExternalShutdownException, or an RCLError about an invalid context. All of
them mean "shutdown was requested"; any exception while the context is still valid is a bug and
propagates.

Once a process is exiting, `ignore_exit_signals` makes a second SIGINT/SIGTERM (`ros2 launch`
sends SIGINT on Ctrl-C, and an impatient user presses it twice) a no-op: otherwise it reaches
Python's default handler during the clean-up (rclpy restores it at shutdown) and the process
dies of SIGINT (exit code -2) instead of finishing its exit.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import rclpy
from rclpy.executors import ExternalShutdownException


@contextlib.contextmanager
def until_shutdown() -> Iterator[None]:
    """Run the body; swallow only what a requested shutdown raises."""
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise


def ignore_exit_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (main thread only; call it again after
    `rclpy.try_shutdown()`, which restores the handlers that were there before rclpy's)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
