"""The node as a managed (lifecycle) node, driven through its lifecycle services from another
process: nothing is planned before activate or after deactivate, cleanup returns to unconfigured
and a second configure/activate brings planning back; SIGINT then exits with code 0."""

from __future__ import annotations

import signal
import time

import pytest
from rosproc import (
    Collector,
    RosProcess,
    next_domain_id,
    node_params_file,
    ros_env,
    stamp_ns,
    tiny_checkpoint,
)


@pytest.fixture
def stack(tmp_path):
    from alpamayo.msg import DrivingPlan

    domain = next_domain_id()
    env = ros_env(domain, tmp_path / "roslog", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    collector = Collector(domain, tmp_path / "roslog")
    collector.subscribe("/alpamayo/plan", DrivingPlan)
    publisher = RosProcess(["test/sensor_publisher.py", "--transport", "compressed", "--width",
                            "640", "--height", "360"], env, "sensor_publisher")
    params = node_params_file(tmp_path / "params.yaml", autostart=False, plan_rate_hz=4.0,
                              camera_transport=["compressed"], max_generation_tokens=4,
                              backend="torch_static",
                              model_dir=str(tiny_checkpoint(tmp_path)))
    node = RosProcess(["-m", "alpamayo_ros", "--ros-args", "--params-file", str(params)], env,
                      "alpamayo_node")
    try:
        publisher.wait_for("^READY", 60.0)
        yield collector, node
    finally:
        node.stop()
        publisher.stop()
        collector.close()


class Lifecycle:
    """The node's lifecycle services, called from the collector.

    A state query is safe to repeat and is re-sent every 5 s until answered. A transition is not:
    when its answer does not come, the state decides whether it happened (see `Collector.call`).
    """

    def __init__(self, collector: Collector) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.collector = collector
        self.change = collector.node.create_client(ChangeState, "/alpamayo/change_state")
        self.get = collector.node.create_client(GetState, "/alpamayo/get_state")

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self.collector.call(self.get, GetState.Request(),
                                   resend_every_s=5.0).current_state.label

    def transition(self, transition_id: int, target: str) -> bool:
        """Request a transition; True once the node answers success or is in `target`."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = transition_id
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            try:
                return self.collector.call(self.change, request, timeout_s=15.0).success
            except TimeoutError:
                pass
            state = self.state()
            while state.endswith("ing"):  # configuring, activating, ...: still under way
                time.sleep(0.2)
                state = self.state()
            if state == target:
                return True
        raise TimeoutError(f"transition {transition_id} to {target} not done within 120 s")


def _plans_after(collector: Collector, t_ns: int) -> list:
    return [p for p in collector.messages("/alpamayo/plan") if stamp_ns(p.header.stamp) > t_ns]


def test_lifecycle_transitions_gate_planning_and_cleanup_allows_a_restart(stack):
    from lifecycle_msgs.msg import Transition

    collector, node = stack
    life = Lifecycle(collector)
    assert life.state() == "unconfigured"
    time.sleep(1.5)
    assert collector.messages("/alpamayo/plan") == []  # autostart false: nothing yet

    assert life.transition(Transition.TRANSITION_CONFIGURE, "inactive")
    assert life.state() == "inactive"
    time.sleep(1.5)
    assert collector.messages("/alpamayo/plan") == []  # configured, but no timer yet

    assert life.transition(Transition.TRANSITION_ACTIVATE, "active")
    assert life.state() == "active"
    collector.wait_for(lambda: collector.messages("/alpamayo/plan"), 60.0, "plans after activate")

    assert life.transition(Transition.TRANSITION_DEACTIVATE, "inactive")
    assert life.state() == "inactive"
    time.sleep(1.0)  # a plan already running may still finish
    stopped_at = time.time_ns()
    time.sleep(2.0)
    assert _plans_after(collector, stopped_at) == []

    assert life.transition(Transition.TRANSITION_CLEANUP, "unconfigured")
    assert life.state() == "unconfigured"
    assert life.transition(Transition.TRANSITION_CONFIGURE, "inactive")
    assert life.transition(Transition.TRANSITION_ACTIVATE, "active")
    restarted_at = time.time_ns()
    collector.wait_for(lambda: _plans_after(collector, restarted_at), 60.0,
                       "plans after cleanup + configure + activate")
    code = node.stop(signal.SIGINT)
    assert code == 0, f"exit code {code}; the node's output:\n{node.tail(80)}"
