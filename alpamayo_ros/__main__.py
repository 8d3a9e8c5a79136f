"""Run the alpamayo node: `python -m alpamayo_ros --ros-args --params-file config/alpamayo.yaml`.

Also the `alpamayo-node` console script and the `alpamayo_node` executable (`ros2 run`).
SIGINT and SIGTERM end it cleanly within 2 s (exit code 0, also when a second signal arrives
while it exits) and cancel a plan in flight; a failed autostart configure exits with 1, and so
does an invalid start-up parameter, with one line on stderr naming the parameter and its range
(no traceback).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from alpamayo_ros.node.alpamayo_node import AlpamayoNode
from alpamayo_ros.node.params import parameter_range_text
from alpamayo_ros.node.shutdown import ignore_exit_signals, until_shutdown


def _autostart(node: AlpamayoNode) -> bool:
    """configure + activate; False (logged) if a transition fails."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("autostart: configure failed (see the error above)")
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("autostart: activate failed")
        return False
    return True


def run(args: list[str] | None = None,
        node_factory: Callable[[], AlpamayoNode] = AlpamayoNode) -> int:
    """Run one node until SIGINT/SIGTERM; `args` default to sys.argv (ROS arguments). Returns
    the exit code (the node, its plan worker and rclpy are shut down)."""
    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = node_factory()
    except ParameterException as err:
        print(f"alpamayo: {_parameter_error_line(err)}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        with until_shutdown():
            if node.get_parameter("autostart").value and not _autostart(node):
                code = 1
            else:
                executor.spin()
    finally:
        ignore_exit_signals()  # the first signal ends the process; later ones must not kill it
        node.cancel_plan()  # rclpy's signal handler shut the context down: publish no more
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_exit_signals()
    return code


def main(args: list[str] | None = None,
         node_factory: Callable[[], AlpamayoNode] = AlpamayoNode) -> None:
    """Console entry point: `run`, then exit at once. Everything is shut down when `run`
    returns; the interpreter's own finalisation (module teardown with torch loaded) takes
    seconds and would break the 2 s exit bound, so it is skipped after flushing the logs."""
    code = run(args, node_factory)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _parameter_error_line(err: ParameterException) -> str:
    """'parameter NAME: REASON (RANGE)' from rclpy's '<message>: <name>' text."""
    message, _, name = str(err).rpartition(": ")
    return f"parameter {name}: {message} ({parameter_range_text(name)})"


if __name__ == "__main__":
    main()
