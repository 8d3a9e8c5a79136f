"""Test helper: start the real node class with this process's ROS arguments, print what it got.

    python test/params_probe.py --ros-args -r __ns:=/veh1 --params-file p.yaml -p model_dir:=/m
    python test/params_probe.py --batch cases.json    # {"name": [argv...], ...}

rclpy parses the arguments itself (--params-file, -p, -r __node/__ns), exactly as for
`ros2 run`/`ros2 launch`; nothing is configured, so no model is needed. Prints one JSON line:
the node's full name, use_sim_time and every NodeParams parameter. `--batch` probes several
argument lists in one process (one rclpy context each, initialised with that list as its
arguments, as `rclpy.init` does for a process) and prints one JSON object keyed by case name:
the node module's imports are paid once.
"""

import json
import sys
from pathlib import Path

import rclpy
from rclpy.context import Context

from alpamayo_ros.node import params as P
from alpamayo_ros.node.alpamayo_node import AlpamayoNode


def probe(argv: list[str]) -> dict:
    """The node's name, use_sim_time and parameters under the process arguments `argv`."""
    context = Context()
    rclpy.init(args=argv, context=context)
    try:
        node = AlpamayoNode(context=context)
        values = {name: node.get_parameter(name).value for name in P.parameter_names()}
        result = {"fqn": node.get_fully_qualified_name(),
                  "use_sim_time": node.get_parameter("use_sim_time").value, "params": values}
        node.destroy_node()
        return result
    finally:
        rclpy.try_shutdown(context=context)


def main() -> int:
    if sys.argv[1:2] == ["--batch"]:
        cases = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        results = {name: probe([sys.argv[0], *argv]) for name, argv in cases.items()}
        print(json.dumps(results), flush=True)
        return 0
    print(json.dumps(probe(sys.argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
