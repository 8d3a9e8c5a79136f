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


@pytest.fixture
def active_node(tiny_model_dir, tmp_path, monkeypatch):
    """An in-process node, configured and activated on the tiny model; nothing spins it (the
    tests run its plan ticks by hand). Yields (node, context)."""
    from rosproc import init_in_process

    from alpamayo_ros.node.alpamayo_node import AlpamayoNode

    context = init_in_process(monkeypatch, tmp_path / "roslog", {
        "model_dir": str(tiny_model_dir), "autostart": "false", "warmup_on_configure": "false"})
    node = AlpamayoNode(context=context)
    try:
        node.trigger_configure()
        node.trigger_activate()
        yield node, context
    finally:
        rclpy.try_shutdown(context=context)


class _SignalDuringPublish:
    """A publisher that does what rclpy's SIGINT/SIGTERM handler does (rcl_shutdown of the
    context: no Python callbacks, no node destroyed) just before it publishes."""

    def __init__(self, publisher, context) -> None:
        self.publisher, self.context = publisher, context

    def publish(self, msg) -> None:
        self.context.handle.shutdown()
        self.publisher.publish(msg)  # raises: the publisher's context is invalid


class _BrokenPublisher:
    def __init__(self, publisher) -> None:
        self.publisher, self.fail = publisher, True

    def publish(self, msg) -> None:
        if self.fail:
            raise RuntimeError("cannot serialize the plan")
        self.publisher.publish(msg)


def _tick(node):
    """One plan tick, as the plan timer runs it; the plan's outcome."""
    node._on_plan_tick()
    return node._future.result(timeout=30.0)


@pytest.mark.parametrize("when", ["after_the_plan", "while_publishing"])
def test_a_signal_as_a_plan_finishes_is_a_clean_exit(active_node, capfd, when):
    """The signal shuts the context down before `destroy_node` sets the cancel flag: the
    plan finishing in that gap publishes nothing (or its publish fails into the shut-down
    context), and teardown neither raises nor logs an error."""
    node, context = active_node
    if when == "after_the_plan":
        run = node._plan_step.run

        def run_then_signal(now_ns, cancel):
            outcome = run(now_ns, cancel)
            context.handle.shutdown()
            return outcome

        node._plan_step.run = run_then_signal
    else:
        node._pubs["plan"] = _SignalDuringPublish(node._pubs["plan"], context)
    _tick(node)
    node.destroy_node()  # raised RCLError (publisher's context is invalid) from _release
    err = capfd.readouterr().err
    assert "[ERROR]" not in err, err
    assert "Traceback" not in err, err


def test_a_publish_error_is_logged_and_reported_and_planning_goes_on(active_node, capfd):
    from alpamayo_ros.node.messages import STATUS_INVALID

    node, _ = active_node
    broken = node._pubs["plan"] = _BrokenPublisher(node._pubs["plan"])
    _tick(node)
    _tick(node)  # the same error again: logged once
    assert node.status.last_level == STATUS_INVALID
    assert node.status.last_reason == ("publishing the plan failed: RuntimeError: cannot "
                                       "serialize the plan")
    err = capfd.readouterr().err
    assert err.count("publishing the plan failed: RuntimeError") == 1, err
    assert "Traceback" in err and "_publish_outcome" in err, err
    broken.fail = False
    outcome = _tick(node)
    assert node.status.last_reason == outcome.reason  # the worker still plans and publishes
    node.destroy_node()


def test_a_worker_exception_is_logged_at_teardown_not_raised(active_node, capfd):
    node, _ = active_node

    def run_fails(now_ns, cancel):
        raise ValueError("a bug in the plan step")

    node._plan_step.run = run_fails
    node._on_plan_tick()
    node._future.exception(timeout=30.0)
    node.destroy_node()  # raised the ValueError
    err = capfd.readouterr().err
    assert err.count("the plan worker failed: ValueError: a bug in the plan step") == 1, err
    assert "run_fails" in err, err
