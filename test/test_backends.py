"""Expert backends on the tiny preset: ORT vs eager parity, registry, unavailable backends,
the static-prefix (CUDA-graph) step on CPU, the export CLI. GPU tests skip without CUDA."""

import dataclasses

import onnx
import pytest
import torch

from alpamayo_core.backends import (
    BackendUnavailable,
    available_backends,
    create_backend,
    options_for,
    resolve,
)
from alpamayo_core.backends.base import bucket_capacity, pad_prefix
from alpamayo_core.backends.cuda_graph import StaticPrefixStep
from alpamayo_core.backends.onnx_export import cached_export, model_hash
from alpamayo_core.backends.synthetic import random_prefix, random_step, smooth_config
from alpamayo_core.model.config import FlowConfig, preset, with_vocab_size
from alpamayo_core.model.denoise_step import input_names
from alpamayo_core.model.flow_matching import make_noise

T = 64
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_cfg():
    return with_vocab_size(preset("tiny"), 32)


@pytest.fixture(scope="module")
def step():
    return random_step(tiny_cfg(), seed=0)


@pytest.fixture(scope="module")
def onnx_path(step, tmp_path_factory):
    return cached_export(step, tmp_path_factory.mktemp("cache"))


def inputs(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return make_noise(batch, T, gen), torch.rand(batch, generator=gen)


@pytest.mark.parametrize("static_shapes", [True, False])
@pytest.mark.parametrize(("batch", "prefix_len"), [(1, 37), (3, 200)])
def test_ort_single_step_matches_eager(step, onnx_path, batch, prefix_len, static_shapes):
    """One exported graph serves both batch sizes and prefix lengths (dynamic B and P)."""
    prefix = random_prefix(step, batch, prefix_len, seed=prefix_len, masked_tail=5)
    x, t = inputs(batch)
    with create_backend("torch", step, "cpu") as eager, create_backend(
            "onnxruntime", step, "cpu", onnx_path=onnx_path,
            static_shapes=static_shapes) as ort:
        eager.bind(prefix)
        ort.bind(prefix)
        ref, got = eager.velocity(x, t), ort.velocity(x, t)
    assert ref.abs().max() > 0.1  # a non-trivial field
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_ort_fused_euler_equals_the_generic_sampler(step, onnx_path):
    """The in-buffer Euler loop does exactly flow_matching.sample's float32 arithmetic."""
    from alpamayo_core.model.flow_matching import sample

    prefix = random_prefix(step, 2, 50)
    noise, _ = inputs(2)
    flow = FlowConfig(num_steps=4)
    with create_backend("onnxruntime", step, "cpu", onnx_path=onnx_path) as ort:
        ort.bind(prefix)
        assert torch.equal(ort.sample(noise, flow), sample(ort.velocity, noise, flow))


class StopAtCall:
    """A `before_step` hook that counts its calls and raises at call `n`."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise InterruptedError(f"stopped before step {self.n}")


@pytest.mark.parametrize("name", ["onnxruntime", "torch"])
def test_before_step_runs_before_every_step_and_can_stop_the_flow(step, onnx_path, name):
    """The hook (the planner's cancel check) runs once per step in the backend's own loop
    (ONNX Runtime's in-buffer Euler, the generic loop), changes nothing when it returns, and
    stops the flow where it raises."""
    prefix = random_prefix(step, 2, 50)
    noise, _ = inputs(2)
    flow = FlowConfig(num_steps=4)
    options = {"onnx_path": onnx_path} if name == "onnxruntime" else {}
    with create_backend(name, step, "cpu", **options) as backend:
        backend.bind(prefix)
        hook = StopAtCall(0)  # never raises
        assert torch.equal(backend.sample(noise, flow, hook), backend.sample(noise, flow))
        assert hook.calls == 4
        hook = StopAtCall(3)
        with pytest.raises(InterruptedError, match="before step 3"):
            backend.sample(noise, flow, hook)
        assert hook.calls == 3


def test_full_plan_parity_on_a_smooth_field(tmp_path):
    """Low max_freq and small weights: a smooth field, so 10-step plans stay together."""
    step = random_step(smooth_config(tiny_cfg()), seed=3, init_std=0.05)
    prefix = random_prefix(step, 3, 120, masked_tail=7)
    noise, _ = inputs(3, seed=5)
    flow = FlowConfig(num_steps=10)
    plans = {}
    for name in ("torch", "onnxruntime", "torch_static"):
        with create_backend(name, step, "cpu", **options_for(name, cache_dir=tmp_path)) \
                as backend:
            backend.bind(prefix)
            plans[name] = backend.sample(noise, flow)
    assert (plans["torch"] - noise).abs().max() > 1e-2  # the flow moved the samples
    torch.testing.assert_close(plans["onnxruntime"], plans["torch"], rtol=0, atol=1e-5)
    torch.testing.assert_close(plans["torch_static"], plans["torch"], rtol=0, atol=1e-5)


def test_torch_static_single_step_parity_and_buffer_reuse(step):
    """Two plans of different prefix length in one bucket reuse the buffers, stay exact."""
    x, t = inputs(2)
    with create_backend("torch", step, "cpu") as eager, \
            create_backend("torch_static", step, "cpu", bucket=64) as static:
        for length in (40, 60):
            prefix = random_prefix(step, 2, length, masked_tail=3)
            eager.bind(prefix)
            static.bind(prefix)
            torch.testing.assert_close(static.velocity(x, t), eager.velocity(x, t), rtol=0,
                                       atol=1e-5)
        assert len(static._steps) == 1


def test_static_prefix_step_matches_denoise_step_on_cpu(step):
    """The CUDA-graph backend's step (in-place K/V buffers, folded GQA, bucket padding)."""
    prefix = random_prefix(step, 3, 77, masked_tail=4)
    capacity = bucket_capacity(77, 64)
    assert capacity == 128
    static = StaticPrefixStep(step, 3, capacity, T)
    static.load(prefix)
    x, t = inputs(3)
    static.x.copy_(x)
    static.t.copy_(t)
    with torch.inference_mode(), create_backend("torch", step, "cpu") as eager:
        eager.bind(prefix)
        torch.testing.assert_close(static(), eager.velocity(x, t), rtol=0, atol=1e-5)


def test_padded_prefix_gives_the_same_velocity(step):
    prefix = random_prefix(step, 2, 30)
    x, t = inputs(2)
    with create_backend("torch", step, "cpu") as eager:
        eager.bind(prefix)
        ref = eager.velocity(x, t)
        eager.bind(pad_prefix(prefix, 64))
        torch.testing.assert_close(eager.velocity(x, t), ref, rtol=0, atol=1e-5)


def test_registry_and_auto_resolution_on_cpu(step):
    assert available_backends("cpu") == ["torch_static", "onnxruntime", "torch"]
    assert resolve("auto", "cpu") == "torch_static"
    assert resolve("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="unknown expert backend"):
        resolve("tvm", "cpu")
    with pytest.raises(ValueError, match=r"option\(s\) \['intra_op_threads'\]"):
        create_backend("torch", step, "cpu", intra_op_threads=1)  # not the torch backend's
    backend = create_backend("torch", step, "cpu")
    assert backend.name == "torch"
    with pytest.raises(RuntimeError, match="bind"):
        backend.velocity(*inputs(1))


def test_bind_validates_layers_and_batch(step):
    prefix = random_prefix(step, 2, 10)
    backend = create_backend("torch", step, "cpu")
    with pytest.raises(ValueError, match="layers"):
        backend.bind(dataclasses.replace(prefix, keys=prefix.keys[:1], values=prefix.values[:1]))
    backend.bind(prefix)
    with pytest.raises(ValueError, match=r"\(B, T, 2\)"):
        backend.velocity(*inputs(3))


def test_tensorrt_absent_gives_a_clear_error(step):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable, match="TensorRT Python package is not importable"):
        create_backend("tensorrt", step, "cpu")
    assert "tensorrt" not in available_backends("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_graph_backend_on_cpu_gives_a_clear_error(step):
    with pytest.raises(BackendUnavailable, match="needs a CUDA device"):
        create_backend("torch_cuda_graph", step, "cpu")
    assert available_backends("cuda") == []


def test_export_cache_is_keyed_by_model_hash(step, tmp_path):
    first = cached_export(step, tmp_path)
    assert cached_export(step, tmp_path) == first
    other = random_step(tiny_cfg(), seed=1)
    assert model_hash(other) != model_hash(step)
    assert cached_export(other, tmp_path) != first


def test_model_hash_sees_any_changed_value_and_order():
    a, b = random_step(tiny_cfg(), seed=0), random_step(tiny_cfg(), seed=0)
    assert model_hash(a) == model_hash(b)
    weight = b.action_out_proj.weight
    with torch.no_grad():
        weight[1, 3] = torch.nextafter(weight[1, 3], torch.tensor(1.0))  # one ulp
    assert model_hash(b) != model_hash(a)
    with torch.no_grad():
        weight.copy_(a.action_out_proj.weight.flip(1))  # same values, other positions
    assert model_hash(b) != model_hash(a)


def test_export_cli_writes_valid_onnx_with_named_inputs(tmp_path, capsys):
    from alpamayo_core.cli.export import main
    from alpamayo_core.cli.make_tiny import make_tiny

    model_dir = make_tiny(tmp_path / "model")
    assert main(["--model", str(model_dir), "--out", str(tmp_path / "out")]) == 0
    graph = onnx.load(str(tmp_path / "out" / "denoise_step.onnx"))
    onnx.checker.check_model(graph)
    names = [i.name for i in graph.graph.input]
    assert names == input_names(tiny_cfg().expert.num_hidden_layers)
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[4].type.tensor_type.shape.dim]
    assert dims[0] == "B" and dims[2] == "P"
    assert main(["compare", "--model", str(model_dir), "--cache-dir", str(tmp_path / "c"),
                 "--prefix-len", "40", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "plan max|d|" in out


@pytest.mark.gpu
@CUDA
def test_cuda_graph_matches_eager_on_gpu():
    step = random_step(tiny_cfg(), seed=0, device="cuda")
    prefix = random_prefix(step, 2, 300, masked_tail=9)
    x, t = (a.cuda() for a in inputs(2))
    with create_backend("torch_cuda_graph", step, "cuda") as graph, \
            create_backend("torch", step, "cuda") as eager:
        graph.bind(prefix)
        eager.bind(prefix)
        torch.testing.assert_close(graph.velocity(x, t), eager.velocity(x, t), rtol=0,
                                   atol=1e-4)
        assert resolve("auto", "cuda") in ("tensorrt", "torch_cuda_graph")
