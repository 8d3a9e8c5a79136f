"""Alpamayo 1.5 sampler: classifier-free guidance maths, the unguided context, noise
temperature, and guided plans with every CPU expert backend (tiny 1.5 checkpoint)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from alpamayo_core.backends.base import ExpertBackend
from alpamayo_core.inference.guidance import (
    GuidanceConfig,
    GuidedVelocity,
    replay_unguided,
    stack_prefixes,
)
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig, prefill_with_reasoning
from alpamayo_core.inputs.prompt import without_route
from alpamayo_core.model import flow_matching
from alpamayo_core.model.config import FlowConfig

ROUTE = "Turn left in 50m"


class _TwoFieldBackend(ExpertBackend):
    """Stub backend for the maths only: rows [0, B) see v = a, rows [B, 2B) see v = b - x."""

    name = "stub"

    def __init__(self, a: float, b: float):  # no DenoiseStep: nothing runs but the field
        self.a, self.b, self.calls = a, b, 0

    def _bind(self, prefix):
        pass

    def velocity(self, x, t):
        self.calls += 1
        half = x.shape[0] // 2
        return torch.cat([torch.full_like(x[:half], self.a), self.b - x[half:]])


def test_guidance_combines_fields_with_known_answer():
    """Euler on v = (1 - w)(b - x) + w a from x0: the closed-form step recursion."""
    a, b, w, steps = 2.0, -1.0, 1.5, 4
    backend = _TwoFieldBackend(a, b)
    x0 = torch.full((3, 5, 2), 0.5)
    x = flow_matching.sample(GuidedVelocity(backend, w), x0, FlowConfig(num_steps=steps))
    expected = 0.5
    for _ in range(steps):
        expected += (1 / steps) * ((1 - w) * (b - expected) + w * a)
    torch.testing.assert_close(x, torch.full_like(x0, expected))
    assert backend.calls == steps  # one batched evaluation per step


@pytest.mark.parametrize(("kwargs", "field"), [({"weight": -1.0}, "weight"),
                                               ({"weight": float("nan")}, "weight"),
                                               ({"noise_temperature": 0.0}, "noise_temperature")])
def test_guidance_config_validates(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GuidanceConfig(**kwargs)


@pytest.fixture(scope="module")
def planner(tiny_a15_model_dir) -> Planner:
    return Planner.from_pretrained(tiny_a15_model_dir, backend="torch",
                                   sampling=SamplingConfig(max_new_tokens=6, greedy=True))


def inputs(route: str | None = ROUTE, ids=(0, 1, 2, 6), frames: int = 2) -> PlanInputs:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (len(ids), frames, 64, 96, 3), dtype=np.uint8)
    xyz = np.zeros((16, 3))
    xyz[:, 0] = -0.8 * np.arange(15, -1, -1)
    return PlanInputs(images, xyz, np.repeat(np.eye(3)[None], 16, 0), t0_ns=7,
                      camera_ids=tuple(ids), route_text=route)


def test_unguided_replay_equals_teacher_forcing(planner):
    """The replayed unguided cache equals one forward over (prompt without route + reasoning)."""
    vlm, token_ids = planner._model.vlm, planner.loaded.token_ids
    prompt = planner.preprocess(inputs())
    reasoning = torch.tensor([token_ids.cot_start + 1, token_ids.cot_end,
                              token_ids.traj_future_start])
    guided = prefill_with_reasoning(vlm, prompt, reasoning, token_ids, num_rows=2)
    unguided_prompt = without_route(prompt, token_ids)
    ctx = replay_unguided(vlm, unguided_prompt, guided)
    ref = prefill_with_reasoning(vlm, unguided_prompt, reasoning, token_ids, num_rows=2)
    assert torch.equal(ctx.future_start_index, ref.future_start_index)
    assert torch.equal(ctx.future_start_position, ref.future_start_position)
    assert ctx.keys[0].shape == ref.keys[0].shape
    for k, k_ref in zip(ctx.keys + ctx.values, ref.keys + ref.values, strict=True):
        torch.testing.assert_close(k, k_ref, atol=1e-4, rtol=1e-4)
    shift = guided.cache_length - ref.cache_length
    assert shift == len(planner.loaded.tokenizer(f"<|route_start|>{ROUTE}<|route_end|>",
                                                 add_special_tokens=False)["input_ids"])


def test_stacked_prefix_keeps_each_field(planner):
    """Padding the shorter prefix and stacking changes neither half's velocity."""
    vlm, token_ids, step = planner._model.vlm, planner.loaded.token_ids, planner._expert.step
    prompt = planner.preprocess(inputs())
    reasoning = torch.tensor([token_ids.cot_end, token_ids.traj_future_start])
    guided = prefill_with_reasoning(vlm, prompt, reasoning, token_ids)
    ctx = replay_unguided(vlm, without_route(prompt, token_ids), guided)
    p_g, p_u = planner._prefix(guided), planner._prefix(ctx)
    x, t = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3])
    both = step.velocity_fn(stack_prefixes(p_g, p_u))(torch.cat([x, x]), torch.cat([t, t]))
    torch.testing.assert_close(both[:1], step.velocity_fn(p_g)(x, t), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], step.velocity_fn(p_u)(x, t), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[:1], both[1:])  # the route changes the field


def test_noise_temperature_scales_the_seeded_draw(planner):
    hot = planner.with_settings(guidance=GuidanceConfig(noise_temperature=0.5))
    noise = flow_matching.make_noise(1, 64, generator=torch.Generator().manual_seed(3))
    a = hot.plan(inputs(), seed=3)  # greedy reasoning: the generator only draws the noise
    b = planner.plan(inputs(), seed=3, noise=noise * 0.5)
    c = planner.plan(inputs(), seed=3)
    np.testing.assert_array_equal(a.xyz_m, b.xyz_m)
    assert not np.allclose(a.xyz_m, c.xyz_m)


def test_guided_plan_weights_and_errors(planner):
    plain = planner.plan(inputs(), seed=1)
    w1 = planner.with_settings(guidance=GuidanceConfig(weight=1.0)).plan(inputs(), seed=1)
    w2 = planner.with_settings(guidance=GuidanceConfig(weight=2.0)).plan(inputs(), seed=1)
    np.testing.assert_allclose(w1.xyz_m, plain.xyz_m, atol=1e-4)  # w = 1: the guided field
    assert np.abs(w2.xyz_m - plain.xyz_m).max() > 1e-3
    assert w2.cot == plain.cot and w2.route_text == ROUTE and w2.guidance_weight == 2.0
    assert "unguided_prefill" in w2.timings_ms and "unguided_prefill" not in plain.timings_ms
    with pytest.raises(ValueError, match="route_text"):
        planner.with_settings(guidance=GuidanceConfig(weight=2.0)).plan(inputs(route=None))


@pytest.mark.parametrize("backend", ["torch_static", "onnxruntime"])
def test_guidance_works_with_every_cpu_backend(planner, backend):
    """The guided field through each backend (stacked prefix, one bind) equals eager torch's
    per evaluation; random weights make whole plans chaotic, so those are compared per step."""
    other = Planner(planner.loaded, planner.sampling, backend=backend,
                    guidance=GuidanceConfig(weight=1.5, noise_temperature=0.8))
    assert other.backend_name == backend
    vlm, token_ids = planner._model.vlm, planner.loaded.token_ids
    for ids in [(0, 1, 2, 6), (1,)]:
        prompt = planner.preprocess(inputs(ids=ids))
        reasoning = torch.tensor([token_ids.cot_end, token_ids.traj_future_start])
        guided = prefill_with_reasoning(vlm, prompt, reasoning, token_ids, num_rows=2)
        ctx = replay_unguided(vlm, without_route(prompt, token_ids), guided)
        stacked = stack_prefixes(planner._prefix(guided), planner._prefix(ctx))
        fields = []
        for runner in (planner, other):
            runner._expert.bind(stacked)
            fields.append(GuidedVelocity(runner._expert, 1.5))
        x = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(1))
        for t in (0.0, 0.5, 0.9):
            time = torch.full((2,), t)
            torch.testing.assert_close(fields[1](x, time), fields[0](x, time), atol=1e-4,
                                       rtol=1e-4)
        plan = other.plan(inputs(ids=ids), seed=2)
        assert plan.xyz_m.shape == (1, 64, 3) and np.isfinite(plan.xyz_m).all()


def test_r1_refuses_1_5_features(tiny_model_dir):
    r1 = Planner.from_pretrained(tiny_model_dir, backend="torch",
                                 sampling=SamplingConfig(max_new_tokens=2))
    four = dataclasses.replace(inputs(route=None, frames=4), camera_ids=None)
    assert r1.plan(dataclasses.replace(four, camera_ids=(0, 1, 2, 6)), seed=0).route_text == ""
    with pytest.raises(ValueError, match="route_text"):
        r1.plan(dataclasses.replace(four, route_text=ROUTE))
    with pytest.raises(ValueError, match="camera_ids"):
        r1.plan(dataclasses.replace(four, images_rgb=four.images_rgb[:1], camera_ids=(1,)))
    with pytest.raises(ValueError, match="guidance"):
        r1.with_settings(guidance=GuidanceConfig(weight=1.5))
    with pytest.raises(ValueError, match="question"):
        r1.ask(four.images_rgb, "Why?")
