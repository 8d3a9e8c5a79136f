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


def _call(collector: Collector, client, request, timeout_s: float = 120.0):
    if not client.wait_for_service(timeout_sec=30.0):
        raise TimeoutError(f"service {client.srv_name} did not appear")
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.srv_name} did not answer within {timeout_s} s")
        time.sleep(0.02)
    return future.result()


class Lifecycle:
    def __init__(self, collector: Collector) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.collector = collector
        self.change = collector.node.create_client(ChangeState, "/alpamayo/change_state")
        self.get = collector.node.create_client(GetState, "/alpamayo/get_state")

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return _call(self.collector, self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = transition_id
        return _call(self.collector, self.change, request).success


def _plans_after(collector: Collector, t_ns: int) -> list:
    return [p for p in collector.messages("/alpamayo/plan") if stamp_ns(p.header.stamp) > t_ns]


def test_lifecycle_transitions_gate_planning_and_cleanup_allows_a_restart(stack):
    from lifecycle_msgs.msg import Transition

    collector, node = stack
    life = Lifecycle(collector)
    assert life.state() == "unconfigured"
    time.sleep(1.5)
    assert collector.messages("/alpamayo/plan") == []  # autostart false: nothing yet

    assert life.transition(Transition.TRANSITION_CONFIGURE)
    assert life.state() == "inactive"
    time.sleep(1.5)
    assert collector.messages("/alpamayo/plan") == []  # configured, but no timer yet

    assert life.transition(Transition.TRANSITION_ACTIVATE)
    assert life.state() == "active"
    collector.wait_for(lambda: collector.messages("/alpamayo/plan"), 60.0, "plans after activate")

    assert life.transition(Transition.TRANSITION_DEACTIVATE)
    assert life.state() == "inactive"
    time.sleep(1.0)  # a plan already running may still finish
    stopped_at = time.time_ns()
    time.sleep(2.0)
    assert _plans_after(collector, stopped_at) == []

    assert life.transition(Transition.TRANSITION_CLEANUP)
    assert life.state() == "unconfigured"
    assert life.transition(Transition.TRANSITION_CONFIGURE)
    assert life.transition(Transition.TRANSITION_ACTIVATE)
    restarted_at = time.time_ns()
    collector.wait_for(lambda: _plans_after(collector, restarted_at), 60.0,
                       "plans after cleanup + configure + activate")
    assert node.stop(signal.SIGINT) == 0
