"""minADE / FDE and the constant-velocity baseline against analytic odometry tracks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from alpamayo_ros.tools.metrics import (
    HORIZONS_S,
    OdomTrack,
    constant_velocity,
    evaluate_plan,
    score_horizons,
    write_csv,
    write_json,
)

T0_NS = 1_000 * 10**9
OFFSETS_S = np.arange(1, 65) * 0.1  # (T,) 0.1 ... 6.4 s
YAW0 = 0.7  # heading of the drive in odom (so the ego frame differs from odom)


def _track(distance_fn, t_from_s=-3.0, t_to_s=8.0, rate_hz=50.0) -> OdomTrack:
    """Straight drive along heading YAW0 from (5, -2); arc length s(t) given by distance_fn."""
    t_s = np.arange(t_from_s, t_to_s + 1e-9, 1.0 / rate_hz)
    s = distance_fn(t_s)
    heading = np.array([np.cos(YAW0), np.sin(YAW0), 0.0])
    xyz = np.array([5.0, -2.0, 0.0]) + s[:, None] * heading
    quat = np.tile(Rotation.from_euler("z", YAW0).as_quat(), (t_s.size, 1))
    return OdomTrack(T0_NS + np.round(t_s * 1e9).astype(np.int64), xyz, quat)


def _constant_speed(v_mps):
    return lambda t_s: v_mps * t_s


def _accelerating_after_t0(v_mps, a_mps2):
    return lambda t_s: v_mps * t_s + 0.5 * a_mps2 * np.clip(t_s, 0.0, None) ** 2


def test_ground_truth_is_in_the_ego_frame_at_t0():
    gt, valid = _track(_constant_speed(10.0)).future_in_ego(T0_NS, OFFSETS_S)
    assert valid.all()
    np.testing.assert_allclose(gt[:, 0], 10.0 * OFFSETS_S, atol=1e-9)
    np.testing.assert_allclose(gt[:, 1:], 0.0, atol=1e-9)


def test_perfect_prediction_scores_zero():
    track = _track(_constant_speed(10.0))
    gt, _ = track.future_in_ego(T0_NS, OFFSETS_S)
    metrics = evaluate_plan(track, T0_NS, gt[None], 0, OFFSETS_S)
    for h in HORIZONS_S:
        s = metrics.model[h]
        assert s.min_ade_m == pytest.approx(0.0, abs=1e-9)
        assert s.fde_m == pytest.approx(0.0, abs=1e-9)


def test_constant_offset_gives_that_offset():
    track = _track(_constant_speed(8.0))
    gt, valid = track.future_in_ego(T0_NS, OFFSETS_S)
    shifted = gt + np.array([0.0, 1.5, 0.0])
    scores = score_horizons(shifted[None], 0, OFFSETS_S, gt, valid)
    for h in HORIZONS_S:
        assert scores[h].min_ade_m == pytest.approx(1.5)
        assert scores[h].ade_m == pytest.approx(1.5)
        assert scores[h].fde_m == pytest.approx(1.5)


def test_min_ade_picks_the_best_sample_and_selected_is_reported_apart():
    track = _track(_constant_speed(8.0))
    gt, valid = track.future_in_ego(T0_NS, OFFSETS_S)
    pred = np.stack([gt + np.array([0.0, d, 0.0]) for d in (3.0, 1.0, 2.0)])  # (3, T, 3)
    scores = score_horizons(pred, 0, OFFSETS_S, gt, valid)
    assert scores[1.0].min_ade_m == pytest.approx(1.0)
    assert scores[1.0].min_fde_m == pytest.approx(1.0)
    assert scores[1.0].ade_m == pytest.approx(3.0)  # the selected sample 0
    assert scores[1.0].fde_m == pytest.approx(3.0)


def test_ade_averages_up_to_the_horizon_and_fde_is_the_endpoint():
    track = _track(_constant_speed(5.0))
    gt, valid = track.future_in_ego(T0_NS, OFFSETS_S)
    pred = gt.copy()
    pred[:, 0] += OFFSETS_S  # error grows 1 m per second
    scores = score_horizons(pred[None], 0, OFFSETS_S, gt, valid)
    assert scores[0.5].ade_m == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert scores[0.5].fde_m == pytest.approx(0.5)
    assert scores[5.0].ade_m == pytest.approx(np.mean(OFFSETS_S[:50]))
    assert scores[5.0].fde_m == pytest.approx(5.0)


def test_constant_velocity_uses_only_the_past():
    """Speed 6 m/s before t0, then +1 m/s^2: CV misses a*t^2/2 exactly."""
    a = 1.0
    track = _track(_accelerating_after_t0(6.0, a))
    baseline = constant_velocity(track, T0_NS, OFFSETS_S)
    np.testing.assert_allclose(baseline[0, :, 0], 6.0 * OFFSETS_S, atol=1e-6)
    np.testing.assert_allclose(baseline[0, :, 1:], 0.0, atol=1e-6)
    metrics = evaluate_plan(track, T0_NS, baseline, 0, OFFSETS_S)
    for h in HORIZONS_S:
        cv = metrics.constant_velocity[h]
        assert cv.fde_m == pytest.approx(0.5 * a * h**2, rel=1e-3)
        upto = OFFSETS_S[h + 1e-6 >= OFFSETS_S]
        assert cv.ade_m == pytest.approx(np.mean(0.5 * a * upto**2), rel=1e-3)
        assert metrics.model[h].ade_m == pytest.approx(cv.ade_m, rel=1e-6)


def test_short_future_is_excluded_at_long_horizons_and_counted(tmp_path):
    full = _track(_constant_speed(10.0))
    short = _track(_constant_speed(10.0), t_to_s=2.0)  # only 2 s of future odometry
    rows = []
    for track in (full, short):
        gt, _ = full.future_in_ego(T0_NS, OFFSETS_S)
        rows.append(evaluate_plan(track, T0_NS, gt[None], 0, OFFSETS_S))
    assert rows[1].model[1.0] is not None
    assert rows[1].model[3.0] is None and rows[1].model[5.0] is None
    assert rows[1].constant_velocity[5.0] is None
    summary = write_json(tmp_path / "m.json", rows, {"horizons_s": HORIZONS_S})
    assert summary["model"]["1s"]["num_scored"] == 2
    assert summary["model"]["5s"]["num_scored"] == 1
    assert summary["model"]["5s"]["num_excluded"] == 1
    assert summary["constant_velocity"]["3s"]["num_excluded"] == 1
    loaded = json.loads((tmp_path / "m.json").read_text())
    assert loaded["plans"][1]["model"]["5s"] is None
    write_csv(tmp_path / "m.csv", rows)
    with open(tmp_path / "m.csv", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 2 * 2 * len(HORIZONS_S)
    empty = [r for r in lines if r["min_ade_m"] == ""]
    assert {(r["method"], r["horizon_s"]) for r in empty} == {
        ("model", "3"), ("model", "5"), ("constant_velocity", "3"), ("constant_velocity", "5")}


def test_gap_in_odometry_excludes_the_horizons_it_touches():
    track = _track(_constant_speed(10.0))
    keep = (track.stamps_ns < T0_NS + 2 * 10**9) | (track.stamps_ns > T0_NS + 3 * 10**9)
    gappy = OdomTrack(track.stamps_ns[keep], track.xyz_m[keep], track.quat_xyzw[keep])
    gt, _ = track.future_in_ego(T0_NS, OFFSETS_S)
    metrics = evaluate_plan(gappy, T0_NS, gt[None], 0, OFFSETS_S)
    assert metrics.model[1.0] is not None and metrics.model[3.0] is None


def test_invalid_tracks_and_shapes_raise():
    with pytest.raises(ValueError, match="strictly increasing"):
        OdomTrack(np.array([2, 1]), np.zeros((2, 3)), np.tile([0, 0, 0, 1.0], (2, 1)))
    with pytest.raises(ValueError, match="xyz_m"):
        OdomTrack(np.array([1, 2]), np.full((2, 3), np.nan), np.tile([0, 0, 0, 1.0], (2, 1)))
    with pytest.raises(ValueError, match="must agree"):
        score_horizons(np.zeros((1, 10, 3)), 0, OFFSETS_S, np.zeros((64, 3)), np.ones(64, bool))
