"""A signal-requested shutdown is a clean exit; errors while ROS is still up propagate."""

from __future__ import annotations

import contextlib
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


def test_signals_during_the_exit_do_not_kill_the_node(tmp_path):
    """`ros2 launch` sends SIGINT on Ctrl-C; users press it twice. SIGINTs keep arriving for
    the whole exit (from the first one until the process is gone): exit code 0, not -2."""
    import signal
    import time

    from rosproc import RosProcess, next_domain_id, node_params_file, ros_env, tiny_checkpoint

    env = ros_env(next_domain_id(), tmp_path / "roslog")
    params = node_params_file(tmp_path / "params.yaml", warmup_on_configure=False,
                              model_dir=str(tiny_checkpoint(tmp_path)))
    node = RosProcess(["-m", "alpamayo_ros", "--ros-args", "--params-file", str(params)], env,
                      "alpamayo_node")
    try:
        node.wait_for("active: planning", 120.0)
        sent = 0
        while node.proc.poll() is None and sent < 2000:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGINT)
            sent += 1
            time.sleep(0.01)
        code = node.proc.wait(timeout=30.0)
    finally:
        node.stop()
    assert sent >= 2, "the node exited before a second SIGINT could be sent"
    assert code == 0, node.tail()
