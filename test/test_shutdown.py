"""A signal-requested shutdown is a clean exit; errors while ROS is still up propagate."""

from __future__ import annotations

import os

import pytest
import rclpy
from rclpy.executors import ExternalShutdownException

from alpamayo_ros.node.shutdown import until_shutdown

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_errors_while_ros_is_up_propagate(ros):
    with pytest.raises(RuntimeError, match="bug"), until_shutdown():
        raise RuntimeError("bug")


def test_interrupts_are_swallowed(ros):
    for exc in (KeyboardInterrupt(), ExternalShutdownException()):
        with until_shutdown():
            raise exc


def test_errors_after_a_requested_shutdown_are_swallowed(ros):
    rclpy.shutdown()  # what rclpy's SIGTERM handler does from its thread
    with until_shutdown():
        raise RuntimeError("failed to initialize wait set: the given context is not valid")
