"""Treat a signal-requested ROS shutdown as a clean exit, in every process this package runs.

rclpy's SIGINT/SIGTERM handler shuts the default context down from another thread. Depending on
where the main thread is at that moment (spinning, publishing, creating a wait set) it sees
KeyboardInterrupt, ExternalShutdownException, or an RCLError about an invalid context. All of
them mean "shutdown was requested"; any exception while the context is still valid is a bug and
propagates.
"""

from __future__ import annotations

import contextlib
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
