"""`Planner` on the tiny checkpoint: input validation, outputs, determinism, sampling options."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor

from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import PlanCancelled, SamplingConfig
from alpamayo_core.inference.selection import select_medoid
from alpamayo_core.model.config import FlowConfig

SPEED_MPS = 8.0


@pytest.fixture(scope="module")
def planner(tiny_model_dir) -> Planner:
    return Planner.from_pretrained(tiny_model_dir, sampling=SamplingConfig(max_new_tokens=6))


def straight_inputs(height: int = 96, width: int = 160) -> PlanInputs:
    images = np.random.default_rng(0).integers(0, 255, (4, 4, height, width, 3), dtype=np.uint8)
    xyz = np.zeros((16, 3))
    xyz[:, 0] = -SPEED_MPS * 0.1 * np.arange(15, -1, -1)
    return PlanInputs(images, xyz, np.repeat(np.eye(3)[None], 16, 0), t0_ns=42)


def test_plan_shapes_units_and_metadata(planner):
    plan = planner.plan(straight_inputs(), seed=0)
    assert plan.xyz_m.shape == (1, 64, 3) and plan.yaw_rad.shape == (1, 64)
    np.testing.assert_allclose(plan.time_from_start_s, 0.1 * np.arange(1, 65))
    assert plan.t0_ns == 42 and plan.selected == 0
    assert plan.model_id.startswith("tiny@") and plan.backend
    assert {"preprocess", "prefill", "decode", "flow", "total"} <= set(plan.timings_ms)
    assert 0 < plan.num_generated_tokens <= 6
    # The unicycle starts from the history's speed: v(0.1 s) = v0 + a0 * dt.
    v0 = plan.speed_mps[0, 0] - plan.accel_mps2[0, 0] * 0.1
    assert abs(v0 - SPEED_MPS) < 0.05
    steps = np.diff(np.concatenate([[0.0], plan.speed_mps[0]]))
    np.testing.assert_allclose(steps[1:], plan.accel_mps2[0, 1:] * 0.1, atol=1e-5)


def test_same_seed_same_plan_other_seed_other_plan(planner):
    inputs = straight_inputs()
    a, b = planner.plan(inputs, seed=3), planner.plan(inputs, seed=3)
    c = planner.plan(inputs, seed=4)
    np.testing.assert_array_equal(a.xyz_m, b.xyz_m)
    assert not np.array_equal(a.xyz_m, c.xyz_m)


def test_injected_noise_is_used(planner):
    inputs = straight_inputs()
    noise = torch.zeros(1, 64, 2)
    a = planner.plan(inputs, seed=1, noise=noise)
    b = planner.plan(inputs, seed=2, noise=noise)  # other reasoning sample, same noise
    c = planner.plan(inputs, seed=1, noise=noise + 1.0)
    assert not np.array_equal(a.xyz_m, c.xyz_m)
    assert a.xyz_m.shape == b.xyz_m.shape
    with pytest.raises(ValueError, match="noise"):
        planner.plan(inputs, noise=torch.zeros(2, 64, 2))


def test_several_sets_and_samples_and_a_second_order_solver(planner):
    other = planner.with_settings(
        sampling=SamplingConfig(max_new_tokens=4, num_traj_samples=3, num_traj_sets=2),
        flow=FlowConfig(num_steps=4, solver="heun"))
    plan = other.plan(straight_inputs(), seed=0)
    assert plan.xyz_m.shape == (6, 64, 3) and len(plan.cot) == 6
    assert plan.selected == select_medoid(plan.xyz_m)
    assert len({plan.xyz_m[k].tobytes() for k in range(6)}) == 6


@pytest.mark.parametrize(("change", "message"), [
    (dict(images_rgb=np.zeros((4, 4, 8, 8, 3), np.float32)), "uint8"),
    (dict(images_rgb=np.zeros((3, 4, 8, 8, 3), np.uint8)), "4 cameras"),
    (dict(history_xyz_m=np.zeros((15, 3))), "history_xyz_m"),
    (dict(history_xyz_m=np.full((16, 3), np.nan)), "NaN"),
    (dict(history_rot=np.full((16, 3, 3), 2.0)), "rotation"),
])
def test_bad_inputs_are_rejected_with_the_field_name(planner, change, message):
    with pytest.raises(ValueError, match=message):
        planner.plan(dataclasses.replace(straight_inputs(), **change))


def test_medoid_ignores_an_outlier():
    base = np.zeros((4, 10, 3))
    base[1, :, 0] = 0.1
    base[2, :, 0] = -0.3
    base[3, :, 1] = 50.0  # outlier, off to the side
    assert select_medoid(base) == 0


def test_bfloat16_load_plans_on_the_static_backend_and_ort_says_why_not(tiny_model_dir):
    """The GPU path's dtype (bf16 weights, f32 action-space maths) runs on CPU too."""
    from alpamayo_core.backends import BackendUnavailable

    sampling = SamplingConfig(max_new_tokens=3)
    bf16 = Planner.from_pretrained(tiny_model_dir, dtype="bfloat16", backend="torch_static",
                                   sampling=sampling)
    assert bf16.loaded.model.vlm.dtype == torch.bfloat16
    assert bf16.loaded.model.action_space.accel_std.dtype == torch.bfloat16
    plan = bf16.plan(straight_inputs(), seed=0)
    assert np.isfinite(plan.xyz_m).all() and plan.backend == "torch_static"
    with pytest.raises(BackendUnavailable, match="bfloat16"):
        Planner(bf16.loaded, sampling, backend="onnxruntime", backend_fallback=False)
    fallen = Planner(bf16.loaded, sampling, backend="onnxruntime")  # fallback by default
    assert fallen.backend_name == "torch_static" and fallen.backend_selection.fell_back
    assert "onnxruntime: rejected" in fallen.backend_selection.diagnostic_values()["trials"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["torch", "torch_static", "torch_cuda_graph"])
def test_full_plan_on_cuda_in_bf16(tiny_model_dir, backend):
    """The vehicle path: bf16 weights on the GPU, every tensor of phase 1 and 2 on the device."""
    planner = Planner.from_pretrained(tiny_model_dir, device="cuda", backend=backend,
                                      backend_fallback=False,  # a failed check must fail here
                                      sampling=SamplingConfig(max_new_tokens=4,
                                                              num_traj_samples=2))
    assert planner.loaded.model.vlm.dtype == torch.bfloat16
    plan = planner.plan(straight_inputs(), seed=0)
    assert plan.backend == planner.backend_name == backend
    again = planner.plan(straight_inputs(), seed=0)
    assert plan.xyz_m.shape == (2, 64, 3) and np.isfinite(plan.xyz_m).all()
    np.testing.assert_allclose(plan.xyz_m, again.xyz_m, atol=1e-3)
    v0 = plan.speed_mps[:, 0] - plan.accel_mps2[:, 0] * 0.1
    np.testing.assert_allclose(v0, SPEED_MPS, atol=0.1)


def test_unseeded_plan_leaves_torch_global_rng_alone(planner):
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    a = planner.plan(straight_inputs())
    b = planner.plan(straight_inputs())
    assert torch.equal(torch.rand(4), expected)  # neither read nor reseeded
    assert not np.array_equal(a.xyz_m, b.xyz_m)  # still a fresh draw per plan


def test_tiny_model_ends_its_reasoning(planner):
    """make_tiny's stop direction: the reasoning ends at <|traj_future_start|> at once."""
    plan = planner.plan(straight_inputs(), seed=3)
    assert plan.num_truncated_reasoning == 0 and plan.num_generated_tokens == 2


def test_cancel_stops_the_plan_between_tokens_and_before_the_flow(planner):
    cancel = threading.Event()

    class CancelAtSecondToken(LogitsProcessor):
        calls = 0

        def __call__(self, input_ids, scores):
            CancelAtSecondToken.calls += 1
            if CancelAtSecondToken.calls == 2:
                cancel.set()
            return scores

    hot = planner.with_settings(sampling=SamplingConfig(max_new_tokens=6, temperature=10.0))
    with pytest.raises(PlanCancelled, match="during reasoning decode"):
        hot.plan(straight_inputs(), seed=0, logits_processor=CancelAtSecondToken(),
                 cancel=cancel)
    assert CancelAtSecondToken.calls == 2  # no token after the cancel
    with pytest.raises(PlanCancelled, match="during preprocessing"):
        planner.plan(straight_inputs(), seed=0, cancel=cancel)
    plan = planner.plan(straight_inputs(), seed=0, cancel=threading.Event())  # not set: plans
    np.testing.assert_allclose(plan.xyz_m, planner.plan(straight_inputs(), seed=0).xyz_m,
                               atol=1e-6)


def test_forward_only_planner_never_plans_backwards_at_a_standstill(planner):
    """History of a stopped car whose odometry creeps back 0.5 m/s (v0 < 0): the reference
    integration starts every sample backwards; `forward_only` never goes behind t0."""
    inputs = straight_inputs()
    creep = np.zeros((16, 3))
    creep[:, 0] = 0.5 * 0.1 * np.arange(15, -1, -1)  # from +0.75 m back to the origin
    inputs = dataclasses.replace(inputs, history_xyz_m=creep)
    sampling = SamplingConfig(max_new_tokens=4, num_traj_samples=6)
    reference = planner.with_settings(sampling=sampling).plan(inputs, seed=0)
    forward = planner.with_settings(sampling=sampling, forward_only=True).plan(inputs, seed=0)
    assert planner.forward_only is False  # the core's default is the reference's
    assert (reference.xyz_m[:, 0, 0] < 0).all() and (reference.speed_mps[:, 0] < 0).any()
    assert forward.speed_mps.min() >= 0.0
    assert forward.xyz_m[..., 0].min() >= -0.05  # the quality tool's "backwards" tolerance
    np.testing.assert_array_equal(forward.cot, reference.cot)  # same samples, other integration
