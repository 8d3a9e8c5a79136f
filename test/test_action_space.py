"""Analytic oracles and round trips for the unicycle action space."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from alpamayo_core.model.action_space import UnicycleActionSpace, forward_speeds
from alpamayo_core.model.config import RELEASED_ACTION_SPACE
from alpamayo_core.model.geometry import rot_from_yaw, unwrap, yaw_from_rot

DT = 0.1
N_HIST = 16


def straight_history(speed_mps: float, yaw: float = 0.0, batch: int = 1):
    """Constant-speed straight history ending at the origin at t0, heading `yaw`."""
    t = torch.arange(-N_HIST + 1, 1, dtype=torch.float32) * DT
    heading = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
    xyz = (speed_mps * t)[:, None] * heading
    rot = rot_from_yaw(torch.full((N_HIST,), yaw))
    return xyz.expand(batch, -1, -1).clone(), rot.expand(batch, -1, -1, -1).clone()


def space(stats_dtype="float32", **changes) -> UnicycleActionSpace:
    return UnicycleActionSpace(dataclasses.replace(RELEASED_ACTION_SPACE, **changes), stats_dtype)


def test_geometry_yaw_roundtrip_and_unwrap():
    yaw = torch.linspace(-3.0, 3.0, 7)
    assert torch.allclose(yaw_from_rot(rot_from_yaw(yaw)), yaw, atol=1e-6)
    ramp = torch.linspace(0.0, 4 * math.pi, 50, dtype=torch.float64)
    wrapped = torch.atan2(torch.sin(ramp), torch.cos(ramp))
    assert torch.allclose(unwrap(wrapped), ramp, atol=1e-9)
    assert np.allclose(unwrap(wrapped).numpy(), np.unwrap(wrapped.numpy()))


def test_bf16_effective_constants_match_reference():
    sp = space("bfloat16")
    assert sp.accel_mean.dtype == torch.bfloat16
    assert sp.accel_mean.item() == 0.029052734375
    assert sp.accel_std.item() == 0.6796875
    assert sp.curvature_mean.item() == pytest.approx(0.00026893615722656, abs=1e-17)
    assert sp.curvature_std.item() == 0.026123046875
    assert sorted(sp.state_dict()) == sorted(
        ["accel_mean", "accel_std", "curvature_mean", "curvature_std"])
    sp.load_state_dict({"accel_mean": torch.tensor(0.02902694707164455),
                        "accel_std": torch.tensor(0.6810426736454882),
                        "curvature_mean": torch.tensor(0.0002692167976330542),
                        "curvature_std": torch.tensor(0.026148280660833106)})
    assert sp.accel_std.dtype == torch.bfloat16 and sp.accel_std.item() == 0.6796875


def test_normalize_denormalize_roundtrip():
    sp = space("bfloat16")
    phys = torch.tensor([[[1.5, 0.01], [-2.0, -0.1]]])
    assert torch.allclose(sp.denormalize(sp.normalize(phys)), phys, atol=1e-6)


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5])
def test_v0_estimate_recovers_constant_speed(yaw):
    xyz, rot = straight_history(12.0, yaw, batch=2)
    v0 = space().estimate_t0_speed(xyz, rot)
    assert v0.shape == (2,) and v0.dtype == torch.float32
    # The ridge 1e-4*|v|^2 biases the estimate by ~5e-5 relative.
    assert torch.allclose(v0, torch.full((2,), 12.0), rtol=1e-4)


def test_constant_speed_straight_line_is_exact():
    sp = space("bfloat16")
    xyz, rot = straight_history(8.0)
    v0 = sp.estimate_t0_speed(xyz, rot)
    action = sp.normalize(torch.zeros(1, 64, 2))
    traj = sp.action_to_traj(action, xyz, rot)
    k = torch.arange(1, 65, dtype=torch.float32)
    assert torch.allclose(traj.xyz[0, :, 0], v0 * DT * k, rtol=1e-5)
    assert traj.xyz[..., 1:].abs().max() < 1e-5
    assert torch.allclose(traj.speed, v0.expand(1, 64), atol=1e-5)


def test_constant_curvature_traces_a_circle():
    sp = space()
    kappa, xyz, rot = 0.05, *straight_history(10.0)
    v0 = float(sp.estimate_t0_speed(xyz, rot))
    action = sp.normalize(torch.tensor([0.0, kappa]).expand(1, 64, 2))
    traj = sp.action_to_traj(action, xyz, rot)
    k = np.arange(65)
    theta = kappa * v0 * DT * k  # exact heading, float64
    assert np.allclose(traj.yaw[0].numpy(), theta[1:], atol=1e-5)
    assert torch.allclose(traj.rot, rot_from_yaw(traj.yaw), atol=1e-6)
    # Oracle 1: the trapezoid rule of section 8.2 in float64.
    x_ref = np.cumsum(DT / 2 * v0 * (np.cos(theta[:-1]) + np.cos(theta[1:])))
    y_ref = np.cumsum(DT / 2 * v0 * (np.sin(theta[:-1]) + np.sin(theta[1:])))
    assert np.allclose(traj.xyz[0, :, 0].numpy(), x_ref, atol=2e-4)
    assert np.allclose(traj.xyz[0, :, 1].numpy(), y_ref, atol=2e-4)
    # Oracle 2: the points lie on the circle of radius 1/kappa centred at (0, 1/kappa), up to
    # the trapezoid rule's O((kappa * v * dt)^2) relative inward drift per step.
    radius = np.hypot(traj.xyz[0, :, 0].numpy(), traj.xyz[0, :, 1].numpy() - 1 / kappa)
    assert np.abs(radius - 1 / kappa).max() < 1e-2


def _physical_actions(n: int) -> dict[str, torch.Tensor]:
    t = torch.arange(n, dtype=torch.float32) * DT
    phase = 2 * math.pi * t / (n * DT)
    zeros = torch.zeros(n)
    return {
        "straight_accel": torch.stack([torch.full((n,), 1.0), zeros], -1),
        "constant_turn": torch.stack([zeros, torch.full((n,), 0.05)], -1),
        "s_curve": torch.stack([0.5 * torch.cos(phase), 0.03 * torch.sin(phase)], -1),
    }


@pytest.mark.parametrize("name", ["straight_accel", "constant_turn", "s_curve"])
@pytest.mark.parametrize("n_waypoints", [64, 48])
def test_traj_action_traj_roundtrip_within_1cm(name, n_waypoints):
    sp = space("bfloat16", n_waypoints=n_waypoints)
    xyz, rot = straight_history(10.0)
    phys = _physical_actions(n_waypoints)[name][None]
    traj = sp.action_to_traj(sp.normalize(phys), xyz, rot)
    action = sp.traj_to_action(traj.xyz, traj.rot, xyz, rot)
    assert action.shape == (1, n_waypoints, 2) and action.dtype == torch.float32
    again = sp.action_to_traj(action, xyz, rot)
    assert (again.xyz - traj.xyz).norm(dim=-1).max() < 0.01
    recovered = sp.denormalize(action)
    assert (recovered[..., 0] - phys[..., 0]).abs().max() < 0.02
    assert (recovered[..., 1] - phys[..., 1]).abs().max() < 5e-4


def test_true_circle_fits_within_1cm():
    """An exact circle (not produced by our integrator) survives traj -> action -> traj."""
    sp = space("bfloat16")
    speed, kappa = 10.0, 0.04
    xyz_h, rot_h = straight_history(speed)
    theta = kappa * speed * DT * torch.arange(1, 65, dtype=torch.float64)
    future = torch.stack([torch.sin(theta) / kappa, (1 - torch.cos(theta)) / kappa,
                          torch.zeros_like(theta)], -1)[None].float()
    action = sp.traj_to_action(future, rot_from_yaw(theta.float())[None], xyz_h, rot_h)
    traj = sp.action_to_traj(action, xyz_h, rot_h)
    assert (traj.xyz - future).norm(dim=-1).max() < 0.01


def test_stopped_vehicle_is_finite():
    sp = space("bfloat16")
    xyz = torch.zeros(1, N_HIST, 3)
    rot = torch.eye(3).expand(1, N_HIST, 3, 3)
    v0 = sp.estimate_t0_speed(xyz, rot)
    assert v0.abs().item() < 1e-6
    action = sp.traj_to_action(torch.zeros(1, 64, 3), torch.eye(3).expand(1, 64, 3, 3), xyz, rot)
    assert torch.isfinite(action).all()


def test_bad_shapes_raise_value_error():
    sp = space()
    xyz, rot = straight_history(5.0)
    with pytest.raises(ValueError, match="history_rot"):
        sp.estimate_t0_speed(xyz, rot[:, :3])
    with pytest.raises(ValueError, match="action"):
        sp.action_to_traj(torch.zeros(1, 64), xyz, rot)


def test_forward_speeds_is_the_speed_recursion_clamped_at_zero():
    generator = torch.Generator().manual_seed(0)
    v0 = torch.tensor([-0.4, 0.0, 0.3, 5.0])
    accel = 2.0 * torch.randn(4, 64, generator=generator)  # (B, T) m/s^2
    speed = v0.clamp(min=0.0)
    expected = [speed]
    for k in range(64):
        speed = (speed + accel[:, k] * DT).clamp(min=0.0)
        expected.append(speed)
    got = forward_speeds(v0, accel, DT)
    assert got.shape == (4, 65) and got.min() >= 0.0
    assert torch.allclose(got, torch.stack(expected, dim=1), atol=1e-5)


def test_forward_only_changes_nothing_while_the_speed_stays_positive():
    sp = space("bfloat16")
    xyz, rot = straight_history(10.0)
    action = sp.normalize(_physical_actions(64)["s_curve"][None])
    reference = sp.action_to_traj(action, xyz, rot)
    forward = sp.action_to_traj(action, xyz, rot, forward_only=True)
    for name in ("xyz", "yaw", "speed", "accel"):
        assert torch.allclose(getattr(forward, name), getattr(reference, name), atol=1e-4), name


def test_forward_only_stops_a_braking_plan_instead_of_reversing():
    sp = space()
    xyz, rot = straight_history(2.0)
    action = sp.normalize(torch.tensor([-2.0, 0.0]).expand(1, 64, 2))  # 2 m/s^2 for 6.4 s
    reference = sp.action_to_traj(action, xyz, rot)
    forward = sp.action_to_traj(action, xyz, rot, forward_only=True)
    assert reference.xyz[0, -1, 0] < -20.0  # the reference reverses after 1 s
    stop_m = 2.0**2 / (2 * 2.0)  # v^2 / 2a
    assert forward.xyz[0, :, 0].max() == pytest.approx(stop_m, abs=0.02)
    assert torch.all(torch.diff(forward.xyz[0, :, 0]) >= 0)
    assert forward.speed[0, 10:].abs().max() == 0.0  # stopped from 1 s on
    assert forward.accel[0, 10:].abs().max() == 0.0  # the applied acceleration, not the asked


def test_at_a_standstill_with_a_negative_v0_forward_only_never_goes_backwards():
    """A stopped car whose odometry creeps back 0.3 m/s: the reference plan goes backwards."""
    sp = space()
    xyz, rot = straight_history(-0.3)
    assert sp.estimate_t0_speed(xyz, rot).item() == pytest.approx(-0.3, abs=1e-3)
    stand = sp.normalize(torch.zeros(1, 64, 2))
    assert sp.action_to_traj(stand, xyz, rot).xyz[0, -1, 0] < -1.9
    forward = sp.action_to_traj(stand, xyz, rot, forward_only=True)
    assert forward.xyz.abs().max() < 1e-6 and forward.speed.abs().max() == 0.0


def test_forward_only_labels_of_a_standstill_keep_the_car_still():
    """Labels must match the integration: with the reference fit (v0 = -0.3 m/s) the label
    accelerates to cancel v0, which a forward-only integration turns into driving forward."""
    sp = space()
    xyz, rot = straight_history(-0.3)
    future_xyz, future_rot = torch.zeros(1, 64, 3), torch.eye(3).expand(1, 64, 3, 3)
    labels = sp.traj_to_action(future_xyz, future_rot, xyz, rot, forward_only=True)
    assert sp.denormalize(labels)[..., 0].abs().max() < 1e-3
    still = sp.action_to_traj(labels, xyz, rot, forward_only=True)
    assert still.xyz.norm(dim=-1).max() < 0.01
    cancelling = sp.traj_to_action(future_xyz, future_rot, xyz, rot)
    assert sp.denormalize(cancelling)[0, 0, 0] > 1.0
    assert sp.action_to_traj(cancelling, xyz, rot, forward_only=True).xyz[0, -1, 0] > 0.1
