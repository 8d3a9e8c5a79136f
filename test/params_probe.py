"""Test helper: start the real node class with this process's ROS arguments, print what it got.

    python test/params_probe.py --ros-args -r __ns:=/veh1 --params-file p.yaml -p model_dir:=/m

rclpy parses the arguments itself (--params-file, -p, -r __node/__ns), exactly as for
`ros2 run`/`ros2 launch`; nothing is configured, so no model is needed. Prints one JSON line:
the node's full name, use_sim_time and every NodeParams parameter.
"""

import json
import sys

import rclpy

from alpamayo_ros.node import params as P
from alpamayo_ros.node.alpamayo_node import AlpamayoNode


def main() -> int:
    rclpy.init(args=sys.argv)
    node = AlpamayoNode()
    values = {name: node.get_parameter(name).value for name in P.parameter_names()}
    print(json.dumps({"fqn": node.get_fully_qualified_name(),
                      "use_sim_time": node.get_parameter("use_sim_time").value,
                      "params": values}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
