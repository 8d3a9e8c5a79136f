"""Bad inputs and a failing model: the node stays up, says why, and recovers.

One node process (real planner, tiny checkpoint) and one sensor publisher process are shared by
the tests of this module; each test switches one fault on through the publisher's stdin (or, for
"model raises", the fault file of test/fault_drill_node.py, the node with a planner that raises
on demand), checks the INVALID plans and their reason, checks that no plan made while the fault
was on is OK, switches it off and waits for an OK plan again.
Cameras 0-2 are JPEG, camera 3 (front_tele) raw rgb8, all 1920x1080.
"""

from __future__ import annotations

import re
import time

import pytest
from rosproc import NodeStack, next_domain_id, ros_env

from alpamayo_ros.node.messages import STATUS_INVALID, STATUS_OK

pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")

TRANSPORTS = ["compressed", "compressed", "compressed", "raw"]
CROSS_LEFT, FRONT_WIDE = "camera_cross_left_120fov", "camera_front_wide_120fov"
CROSS_RIGHT, TELE = "camera_cross_right_120fov", "camera_front_tele_30fov"
DETECT_S, RECOVER_S = 20.0, 30.0


@pytest.fixture(scope="module")
def fault_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fault") / "model_fault"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fault_file):
    s = NodeStack(tmp_path_factory.getbasetemp(), TRANSPORTS,
                  params={"plan_rate_hz": 2.0, "max_generation_tokens": 16},
                  node_command=["test/fault_drill_node.py", "--fault-file", str(fault_file)])
    s.wait_plans(2, STATUS_OK, 90.0)
    yield s
    s.close()


@pytest.fixture
def healthy(stack):
    """Each test starts from a node that is making OK plans from fresh inputs."""
    stack.publisher.send("clear")
    stack.wait_plans(1, STATUS_OK, RECOVER_S, after=time.time_ns())
    assert stack.node.alive()
    return stack


def _switch(stack: NodeStack, command: str) -> int:
    stack.publisher.send(command)
    stack.publisher.wait_for(f"^ACK {re.escape(command)}$", 10.0)
    return time.time_ns()


def _run_fault(stack: NodeStack, on, off, reason: str) -> str:
    """Switch a fault on, wait for INVALID plans whose reason matches `reason` (regex), check
    that nothing after the first of them was OK while the fault lasted, switch it off and wait
    for recovery. Returns the first matching reason."""
    start = len(stack.plans())
    on()

    def first_match():
        for index, plan in enumerate(stack.plans()[start:], start):
            if plan.status.level == STATUS_INVALID and re.search(reason, plan.status.reason):
                return index, plan
        return None

    index, plan = stack.collector.wait_for(first_match, DETECT_S, f"INVALID plan /{reason}/")
    time.sleep(1.5)  # several more ticks with the fault on
    during = stack.plans()[index:]
    assert plan.trajectories == [] and plan.header.frame_id == "odom"
    assert all(p.status.level != STATUS_OK for p in during), [p.status.reason for p in during]
    assert stack.node.alive(), stack.node.tail()
    off_ns = off()
    stack.wait_plans(1, STATUS_OK, RECOVER_S, after=off_ns)
    return plan.status.reason


def _fault(stack: NodeStack, mode: str, reason: str, camera: str = "") -> str:
    command = f"fault {mode} {camera}".strip()
    return _run_fault(stack, lambda: _switch(stack, command), lambda: _switch(stack, "clear"),
                      reason)


@pytest.mark.parametrize("camera", [CROSS_LEFT, FRONT_WIDE])
def test_camera_stops(healthy, camera):
    reason = _fault(healthy, "stop_camera", rf"camera {camera}: stale", camera)
    assert "s old" in reason or "older than t0" in reason


def test_odometry_stops(healthy):
    _fault(healthy, "stop_odom", r"^odometry: odometry is stale")


def test_timestamps_jump_back(healthy):
    _fault(healthy, "jump_back", rf"camera {FRONT_WIDE}: stale \(newest frame [45]\.\d+ s old")
    resets = _diag_counter(healthy, "alpamayo: input odometry", "clock_resets")
    assert resets >= 1


def test_duplicate_stamps_are_dropped_and_plans_stay_ok(healthy):
    before = _diag_counter(healthy, f"alpamayo: input {FRONT_WIDE}", "dropped_duplicate")
    on_ns = _switch(healthy, "fault duplicate")
    plans = healthy.wait_plans(3, STATUS_OK, RECOVER_S, after=on_ns)
    healthy.collector.wait_for(
        lambda: _diag_counter(healthy, f"alpamayo: input {FRONT_WIDE}",
                              "dropped_duplicate") > before, 10.0, "duplicates counted")
    assert _diag_counter(healthy, "alpamayo: input odometry", "dropped_duplicate") > 0
    for plan in plans:  # a plan's frames are distinct messages, one per target time
        assert len({a.name for a in plan.input_ages}) == 5
    _switch(healthy, "clear")


def test_nan_pose(healthy):
    _fault(healthy, "nan_pose", r"^odometry: ")
    assert _diag_counter(healthy, "alpamayo: input odometry", "dropped_invalid") > 0


def test_truncated_jpeg(healthy):
    _fault(healthy, "truncated_jpeg", rf"camera {CROSS_RIGHT}: frame cannot be decoded.*"
           "truncated", CROSS_RIGHT)


def test_wrong_encoding(healthy):
    _fault(healthy, "wrong_encoding", rf"camera {TELE}: frame cannot be decoded.*rgb9", TELE)


def test_wrong_encoding_compressed_format(healthy):
    _fault(healthy, "wrong_encoding", rf"camera {CROSS_LEFT}: frame cannot be decoded.*webp",
           CROSS_LEFT)


def test_image_of_wrong_size(healthy):
    _fault(healthy, "wrong_size", rf"camera {CROSS_LEFT}: image size 960x540 differs",
           CROSS_LEFT)


def test_model_raises(healthy, fault_file):
    def on():
        fault_file.touch()
        return time.time_ns()

    def off():
        fault_file.unlink()
        return time.time_ns()

    reason = _run_fault(healthy, on, off, r"^model: RuntimeError: fault injected")
    assert str(fault_file) in reason


def _diag_counter(stack: NodeStack, name: str, key: str) -> int:
    for array in reversed(stack.collector.messages("/diagnostics")):
        for status in array.status:
            if status.name == name:
                return int({kv.key: kv.value for kv in status.values}.get(key, 0))
    return 0


def test_configure_fails_cleanly_on_a_corrupt_checkpoint(tmp_path, monkeypatch):
    """In-process lifecycle: a broken model folder fails configure; the node stays usable."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn

    from alpamayo_ros.node.alpamayo_node import AlpamayoNode

    bad = tmp_path / "bad_model"
    bad.mkdir()
    (bad / "config.json").write_text("{ not json")
    domain = next_domain_id()
    for key, value in ros_env(domain, tmp_path / "roslog").items():
        if key.startswith("ROS_"):
            monkeypatch.setenv(key, value)
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "-p", f"model_dir:={bad}", "-p", "autostart:=false"],
               context=context, domain_id=domain)
    try:
        node = AlpamayoNode(context=context)
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE  # still unconfigured
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)



@pytest.mark.parametrize("fallback", [False, True])
def test_unusable_named_backend_fails_configure_or_falls_back(tiny_model_dir, tmp_path,
                                                              monkeypatch, fallback):
    """In-process lifecycle: tensorrt cannot be built on CPU (no TensorRT, no GPU)."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn

    from alpamayo_ros.node import messages
    from alpamayo_ros.node.alpamayo_node import AlpamayoNode
    from alpamayo_ros.node.node_status import backend_status

    domain = next_domain_id()
    for key, value in ros_env(domain, tmp_path / "roslog").items():
        if key.startswith("ROS_"):
            monkeypatch.setenv(key, value)
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "-p", f"model_dir:={tiny_model_dir}", "-p",
                     "autostart:=false", "-p", "backend:=tensorrt", "-p",
                     f"backend_fallback:={str(fallback).lower()}", "-p",
                     "warmup_on_configure:=false"], context=context, domain_id=domain)
    try:
        node = AlpamayoNode(context=context)
        result = node.trigger_configure()
        if not fallback:
            assert result == TransitionCallbackReturn.FAILURE
        else:
            assert result == TransitionCallbackReturn.SUCCESS
            selection = node._planner.backend_selection
            status = backend_status(node._planner.backend_name, selection)
            assert status.level == bytes([messages.DIAG_WARN])
            assert status.message.startswith("fell back to torch_static: tensorrt: rejected: "
                                             "BackendUnavailable")
            node.trigger_cleanup()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
