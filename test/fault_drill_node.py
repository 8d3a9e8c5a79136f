"""The alpamayo node with a planner that fails while a fault file exists (test-only).

An empty fault file makes `plan` raise; a fault file holding "hang" makes it block (honouring
its cancel event) until the file is removed: a stalled planner for the watchdog drill.

    python test/fault_drill_node.py --fault-file PATH --ros-args --params-file params.yaml

The production node has no such switch: this script injects a `planner_loader` that wraps the
real planner, so the "model raises" drill runs the real node code in its own process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alpamayo_ros.__main__ import main
from alpamayo_ros.node.alpamayo_node import AlpamayoNode
from alpamayo_ros.node.pipeline import load_planner


class FaultDrillPlanner:
    """Delegates to a real `Planner`; `plan` raises RuntimeError (or hangs, see the module
    docstring) while `fault_file` exists."""

    def __init__(self, planner, fault_file: Path) -> None:
        self._planner, self._fault_file = planner, fault_file

    def __getattr__(self, name: str):
        return getattr(self._planner, name)

    def with_settings(self, **settings) -> FaultDrillPlanner:
        return FaultDrillPlanner(self._planner.with_settings(**settings), self._fault_file)

    def plan(self, inputs, seed=None, cancel=None):
        if self._hanging():
            while self._hanging() and not (cancel is not None and cancel.is_set()):
                time.sleep(0.05)
        elif self._fault_file.exists():
            raise RuntimeError(f"fault injected ({self._fault_file} exists)")
        return self._planner.plan(inputs, seed=seed, cancel=cancel)

    def _hanging(self) -> bool:
        try:
            return self._fault_file.read_text().strip() == "hang"
        except OSError:
            return False


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault-file", type=Path, required=True)
    known, ros_args = parser.parse_known_args()
    main([sys.argv[0], *ros_args], node_factory=lambda: AlpamayoNode(
        planner_loader=lambda params: FaultDrillPlanner(load_planner(params),
                                                        known.fault_file)))
