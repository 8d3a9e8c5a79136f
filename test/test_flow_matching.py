"""Flow-matching sampler: analytic ODEs, solver orders, the reference loop, determinism."""

import math

import pytest
import torch

from alpamayo_core.model.config import FlowConfig
from alpamayo_core.model.flow_matching import (
    interpolate,
    make_noise,
    sample,
    target_velocity,
    time_grid,
)


def linear_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = -x + t; exact x(1) = (x0 + 1) / e."""
    return -x + t[:, None, None]


def exact_linear(x0: torch.Tensor) -> torch.Tensor:
    return (x0.double() + 1.0) / math.e


def _error(solver: str, steps: int) -> float:
    x0 = torch.linspace(-2.0, 2.0, 12).reshape(3, 2, 2)
    x1 = sample(linear_field, x0, FlowConfig(num_steps=steps, solver=solver))
    return float((x1.double() - exact_linear(x0)).abs().max())


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_solvers_converge_with_expected_order(solver, order):
    coarse, fine = _error(solver, 8), _error(solver, 16)
    observed = math.log2(coarse / fine)
    assert abs(observed - order) < 0.15, f"{solver}: observed order {observed:.3f}"
    assert fine < (0.05 if order == 1 else 1e-3)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun"])
def test_constant_velocity_is_exact(solver):
    noise = make_noise(4, 64, torch.Generator().manual_seed(0))
    c = torch.randn(4, 64, 2, generator=torch.Generator().manual_seed(1))
    x1 = sample(lambda x, t: c, noise, FlowConfig(num_steps=7, solver=solver))
    assert torch.allclose(x1, noise + c, atol=1e-5)


def test_euler_matches_reference_loop_bitwise():
    """sigma_min = 0 Euler is the reference: float32 linspace, left endpoint, t shaped (B,)."""
    weight = torch.randn(2, 2, generator=torch.Generator().manual_seed(3))

    def field(x, t):
        return torch.tanh(x @ weight) * (1 + t[:, None, None])

    noise = make_noise(3, 64, torch.Generator().manual_seed(42))
    ours = sample(field, noise, FlowConfig(num_steps=10, solver="euler", sigma_min=0.0))
    x, grid = noise.clone(), torch.linspace(0, 1, 11)
    for i in range(10):
        t = grid[i].expand(3)
        x = x + (grid[i + 1] - grid[i]) * field(x, t)
    assert torch.equal(ours, x)
    assert time_grid(10).dtype == torch.float32


def test_velocity_fn_sees_batch_shaped_left_endpoints():
    seen = []

    def field(x, t):
        seen.append(t.clone())
        return torch.zeros_like(x)

    sample(field, torch.zeros(5, 64, 2), FlowConfig(num_steps=4))
    assert [s.shape for s in seen] == [(5,)] * 4
    assert torch.equal(torch.stack([s[0] for s in seen]), time_grid(4)[:-1])


def test_noise_is_injectable_and_sampling_deterministic():
    a = make_noise(2, 64, torch.Generator().manual_seed(7))
    b = make_noise(2, 64, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.dtype == torch.float32
    cfg = FlowConfig(num_steps=5, solver="heun")
    assert torch.equal(sample(linear_field, a, cfg), sample(linear_field, b, cfg))
    assert not torch.equal(a, make_noise(2, 64, torch.Generator().manual_seed(8)))


@pytest.mark.parametrize("sigma_min", [0.0, 1e-2])
def test_interpolation_endpoints_and_derivative(sigma_min):
    gen = torch.Generator().manual_seed(0)
    data, noise = torch.randn(2, 8, 2, generator=gen), torch.randn(2, 8, 2, generator=gen)
    assert torch.equal(interpolate(data, noise, 0.0, sigma_min), noise)
    assert torch.allclose(interpolate(data, noise, 1.0, sigma_min), data + sigma_min * noise)
    t, h = torch.tensor([0.3, 0.6]), 1e-3
    derivative = (interpolate(data, noise, t + h, sigma_min)
                  - interpolate(data, noise, t - h, sigma_min)) / (2 * h)
    assert torch.allclose(derivative, target_velocity(data, noise, sigma_min), atol=1e-3)


def test_conditional_field_transports_noise_to_data():
    """The exact conditional field of one data point: Euler lands on x_data + sigma_min*noise."""
    sigma_min = 1e-3
    gen = torch.Generator().manual_seed(5)
    data, noise = torch.randn(1, 4, 2, generator=gen), torch.randn(1, 4, 2, generator=gen)

    def field(x, t):
        t = t[:, None, None]
        return (data - (1 - sigma_min) * x) / (1 - (1 - sigma_min) * t)

    x1 = sample(field, noise, FlowConfig(num_steps=20, sigma_min=sigma_min))
    assert torch.allclose(x1, data + sigma_min * noise, atol=1e-4)


def test_wrong_velocity_shape_raises():
    with pytest.raises(ValueError, match="velocity_fn"):
        sample(lambda x, t: x[:, :1], torch.zeros(1, 64, 2), FlowConfig(num_steps=1))
