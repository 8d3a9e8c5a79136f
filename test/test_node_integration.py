"""The alpamayo node as a process with the real planner (tiny checkpoint), fed by a separate
synthetic sensor process (4 cameras 1920x1080 at 10 Hz, odometry at 50 Hz, straight drive at
10 m/s), observed by an in-test subscriber. Raw rgb8 and JPEG variants share the assertions.
"""

from __future__ import annotations

import itertools
import signal

import numpy as np
import pytest
from rosproc import NodeStack, stamp_ns, status_values

from alpamayo_ros.node.messages import STATUS_OK
from alpamayo_ros.node.params import DEFAULT_CAMERAS

pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")

NUM_SAMPLES = 2
SPEED_MPS = 10.0
PLAN_TIMEOUT_S = 90.0


# The JPEG publisher is RELIABLE, the raw one BEST_EFFORT: camera_qos "auto" must follow.
RELIABILITY = {"raw": "best_effort", "compressed": "reliable"}


# The JPEG stack also decodes through the compiled decode step (decode_mode compile).
DECODE_MODE = {"raw": "eager", "compressed": "compile"}


@pytest.fixture(scope="module", params=["raw", "compressed"])
def stack(request, tmp_path_factory):
    s = NodeStack(tmp_path_factory.getbasetemp(), [request.param],
                  params={"num_traj_samples": NUM_SAMPLES, "plan_rate_hz": 2.0,
                          "max_generation_tokens": 16, "camera_qos": "auto",
                          "decode_mode": DECODE_MODE[request.param]},
                  publisher_args=["--speed", str(SPEED_MPS),
                                  "--reliability", RELIABILITY[request.param]])
    try:  # the processes are stopped even when the first plans never come
        s.wait_plans(3, STATUS_OK, PLAN_TIMEOUT_S)
        yield s
    finally:
        s.close()


def _by_stamp(msgs) -> dict[int, object]:
    return {stamp_ns(m.header.stamp): m for m in msgs}


def test_plans_stamped_at_reference_camera_t0_in_odom(stack):
    plans = stack.wait_plans(3, STATUS_OK, PLAN_TIMEOUT_S)
    t0s = [stamp_ns(p.header.stamp) for p in plans]
    assert set(t0s) <= stack.reference_stamps_ns(), "t0 must be a reference camera stamp"
    assert all(b > a for a, b in itertools.pairwise(t0s)), "t0 must increase"
    for plan in plans:
        assert plan.header.frame_id == "odom"
        assert plan.status.reason == ""
        assert plan.model_id and plan.backend


def test_plan_samples_and_time_from_start(stack):
    plan = stack.wait_plans(1, STATUS_OK, PLAN_TIMEOUT_S)[-1]
    assert len(plan.trajectories) == NUM_SAMPLES
    assert plan.selected_index < NUM_SAMPLES
    for trajectory in plan.trajectories:
        tfs = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                        for p in trajectory.points])
        assert len(tfs) == 64
        assert np.all(np.diff(tfs) > 0)
        assert tfs[0] == pytest.approx(0.1) and tfs[-1] == pytest.approx(6.4)
        xyz = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                        for p in trajectory.points])
        assert np.all(np.isfinite(xyz))
    stages = {lat.stage for lat in plan.latencies}
    assert {"select_inputs", "history", "node_total"} <= stages
    ages = {a.name: a.age_s for a in plan.input_ages}
    assert set(ages) == {*DEFAULT_CAMERAS, "odometry"}
    # odometry stamps carry +-2 ms jitter, so the newest may be a little ahead of "now"
    assert all(-0.01 <= age < 0.5 for age in ages.values()), sorted(ages.items())[-2:]


def test_history_is_the_straight_constant_speed_drive(stack):
    plan = stack.wait_plans(1, STATUS_OK, PLAN_TIMEOUT_S)[-1]
    t0 = stamp_ns(plan.header.stamp)
    history = stack.collector.wait_for(
        lambda: _by_stamp(stack.collector.messages("/alpamayo/history")).get(t0), 10.0,
        "the history published with the plan")
    assert history.header.frame_id == "odom" and len(history.poses) == 16
    stamps = np.array([stamp_ns(p.header.stamp) for p in history.poses])
    np.testing.assert_array_equal(stamps, t0 - np.arange(15, -1, -1) * 100_000_000)
    xyz = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                    for p in history.poses])
    # 10 m/s along +x: 1 m per 0.1 s step (stamp jitter is reflected in the poses: tolerance)
    np.testing.assert_allclose(np.diff(xyz[:, 0]), SPEED_MPS * 0.1, atol=0.06)
    np.testing.assert_allclose(xyz[:, 1:], 0.0, atol=1e-6)
    ego = plan.ego_pose_t0.position
    np.testing.assert_allclose(xyz[-1], [ego.x, ego.y, ego.z], atol=1e-6)
    path = _by_stamp(stack.collector.messages("/alpamayo/trajectory")).get(t0)
    assert path is not None and path.header.frame_id == "odom" and len(path.poses) == 65
    assert path.poses[0].pose.position.x == pytest.approx(ego.x)


def _diag_values(array, name: str) -> tuple[int, dict[str, str]]:
    status = next(s for s in array.status if s.name == name)
    return (status.level[0] if isinstance(status.level, bytes) else status.level,
            status_values(status))


def test_camera_qos_auto_matches_the_publishers(stack):
    want = RELIABILITY[stack.params["camera_transport"][0]].upper()

    def reliabilities():
        arrays = stack.collector.messages("/diagnostics")
        if not arrays or not any(s.name == "alpamayo: planner" for s in arrays[-1].status):
            return None
        found = {_diag_values(arrays[-1], f"alpamayo: input {c}")[1]["reliability"]
                 for c in DEFAULT_CAMERAS}
        return found == {want}

    stack.collector.wait_for(reliabilities, 10.0, f"camera subscriptions {want}")


def test_diagnostics_report_rates_ages_and_model(stack):
    plan = stack.wait_plans(1, STATUS_OK, PLAN_TIMEOUT_S)[-1]
    arrays = stack.collector.wait_for(
        lambda: [a for a in stack.collector.messages("/diagnostics")
                 if any(s.name == "alpamayo: planner" for s in a.status)][-3:], 10.0,
        "alpamayo diagnostics")
    _, planner = _diag_values(arrays[-1], "alpamayo: planner")
    assert planner["model_id"] == plan.model_id and planner["backend"] == plan.backend
    assert planner["decode"] == DECODE_MODE[stack.params["camera_transport"][0]]
    assert planner["state"] == "active" and int(planner["plans_ok"]) >= 1
    assert "skipped_ticks" in planner and float(planner["latency_ms_mean"]) > 0
    for camera in DEFAULT_CAMERAS:
        _, values = _diag_values(arrays[-1], f"alpamayo: input {camera}")
        assert 5.0 <= float(values["rate_hz_by_stamp"]) <= 13.0, values
        assert 0.0 <= float(values["age_s"]) < 0.5
    level, backend = _diag_values(arrays[-1], "alpamayo: expert backend")
    # auto times every CPU backend that passes its parity check and keeps the fastest
    assert level == 0 and backend["backend"] == plan.backend
    assert plan.backend in ("torch_static", "onnxruntime", "torch")
    for name in ("torch_static", "onnxruntime", "torch"):
        assert f"{name}: passed (" in backend["trials"]
    assert backend["trials"].count("ms/step in the trial") == 3
    if plan.backend != "torch":  # the eager reference has no parity figures of its own
        assert float(backend["parity_max_abs_err"]) < 1e-4
        assert float(backend["parity_cosine"]) > 0.9999
    _, odom = _diag_values(arrays[-1], "alpamayo: input odometry")
    # Nominal 10 Hz cameras and 50 Hz odometry, but the publisher process shares 2 cores with
    # the node and falls behind under load (odometry 39 Hz with the machine otherwise idle,
    # 22-25 Hz beside other jobs): the floors only say the stream is live. The rate meter's
    # accuracy is tested on exact stamps in test_ego_history.py and test_camera_buffer.py.
    assert 10.0 <= float(odom["rate_hz_by_stamp"]) <= 60.0, odom


def test_reasoning_and_markers_follow_the_plan(stack):
    stack.wait_plans(1, STATUS_OK, PLAN_TIMEOUT_S)
    markers = stack.collector.wait_for(
        lambda: stack.collector.messages("/alpamayo/markers"), 10.0, "markers")[-1]
    lines = [m for m in markers.markers if m.ns.endswith("/samples")]
    assert len(lines) == NUM_SAMPLES
    assert all(m.header.frame_id == "odom" for m in lines)
    assert stack.collector.messages("/alpamayo/reasoning"), "no ~/reasoning message"


def test_node_exits_cleanly_on_signal(stack):
    sig = signal.SIGTERM if stack.params["camera_transport"] == ["raw"] else signal.SIGINT
    assert stack.node.stop(sig, timeout_s=20.0) == 0, stack.node.tail()
    assert "Traceback" not in "\n".join(stack.node.lines), stack.node.tail()
