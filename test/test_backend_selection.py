"""Backend options reach the backends, `auto` only keeps a backend that passed its parity
self-check, the TensorRT rules that need no GPU, and the bf16 ONNX export run in ONNX Runtime.

Everything here runs on CPU with real backends (eager torch, torch_static, ONNX Runtime) on a
tiny random step; TensorRT itself is absent, so its option plumbing is checked up to the point
where it imports TensorRT.
"""

from __future__ import annotations

import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper

from alpamayo_core.backends import (
    BackendUnavailable,
    backend_options,
    create_backend,
    select,
)
from alpamayo_core.backends.base import ExpertBackend
from alpamayo_core.backends.onnx_export import export_step
from alpamayo_core.backends.selection import (
    NoBackendPassed,
    ParityResult,
    ParityTolerance,
    parity_check,
    select_backend,
    select_fastest,
    synthetic_prefix,
)
from alpamayo_core.backends.synthetic import random_step
from alpamayo_core.backends.tensorrt_backend import (
    EngineSpec,
    check_strongly_typed,
    resolve_precision,
)
from alpamayo_core.backends.torch_static import TorchStaticBackend
from alpamayo_core.model.config import preset, with_vocab_size
from alpamayo_core.model.denoise_step import input_names, step_inputs

T = 64


@pytest.fixture(scope="module")
def step():
    return random_step(with_vocab_size(preset("tiny"), 32), seed=0)


# -- options (issue point 8) -------------------------------------------------------------------

def test_tensorrt_options_are_known_and_reach_the_backend(step):
    options = backend_options("tensorrt")
    assert {"precision", "max_batch", "max_prefix", "cache_dir", "build_missing"} <= options
    # An invalid value is rejected by the backend's own EngineSpec: the option arrived.
    with pytest.raises(ValueError, match="precision must be one of"):
        create_backend("tensorrt", step, "cpu", precision="fp7", max_batch=2)
    with pytest.raises(ValueError, match="opt_batch must lie in"):
        create_backend("tensorrt", step, "cpu", max_batch=0)
    # Valid options pass validation and stop only at the missing TensorRT package.
    with pytest.raises(BackendUnavailable, match="TensorRT"):
        create_backend("tensorrt", step, "cpu", precision="bf16", max_batch=3, max_prefix=5000)


def test_unknown_options_raise_and_known_ones_arrive(step):
    with pytest.raises(ValueError, match=r"option\(s\) \['max_batchh'\]"):
        create_backend("tensorrt", step, "cpu", max_batchh=3)
    with pytest.raises(ValueError, match=r"option\(s\) \['bucket_size'\]"):
        select("auto", step, "cpu", bucket_size=64)
    backend = create_backend("onnxruntime", step, "cpu", intra_op_threads=2, bucket=64)
    assert backend.intra_op_threads == 2 and backend.bucket == 64
    # Shared options under auto: each candidate takes its own (torch_static: bucket).
    chosen = select("auto", step, "cpu", bucket=32, intra_op_threads=2, precision="bf16")
    built = {trial.name: trial.backend for trial in chosen.trials}
    assert isinstance(built["torch_static"], TorchStaticBackend)
    assert built["torch_static"].bucket == 32 and built["onnxruntime"].intra_op_threads == 2


# -- self-check and selection (issue point 9) ----------------------------------------------------

def test_auto_checks_parity_times_every_passing_backend_and_keeps_the_fastest(step):
    selection = select("auto", step, "cpu", trial_prefix_len=256)
    names = [trial.name for trial in selection.trials]
    assert sorted(names) == ["onnxruntime", "torch", "torch_static"] and not selection.fell_back
    assert all(trial.passed and trial.trial_ms > 0 for trial in selection.trials)
    assert selection.chosen.trial_ms == min(trial.trial_ms for trial in selection.trials)
    assert selection.backend is selection.chosen.backend and names[-1] == selection.backend.name
    values = selection.diagnostic_values()
    assert values["backend"] == selection.backend.name
    for trial in selection.trials:
        if trial.name != "torch":  # the reference has no parity figures
            assert trial.parity.max_abs_err < 1e-5 and trial.parity.cosine > 0.99999
        assert f"{trial.name}: passed (" in values["trials"] and "ms/step in the trial" in \
            values["trials"]


class _SlowStaticBackend(TorchStaticBackend):
    """torch_static that waits 50 ms per velocity call (a slower but correct candidate)."""

    name = "slow_static"

    def velocity(self, x, t):
        time.sleep(0.05)
        return super().velocity(x, t)


def test_timed_trial_prefers_the_faster_of_two_correct_backends(step):
    built = {"slow_static": _SlowStaticBackend, "torch_static": TorchStaticBackend,
             "wrong": _WrongBackend}
    selection = select_fastest(["slow_static", "wrong", "torch_static"],
                               lambda name: built[name](step, "cpu"), step, batch=2,
                               prefix_len=128)
    slow, wrong, chosen = selection.trials
    assert (slow.name, wrong.name, chosen.name) == ("slow_static", "wrong", "torch_static")
    assert slow.passed and slow.trial_ms > 50 > chosen.trial_ms
    assert "parity check failed" in wrong.error and wrong.trial_ms is None
    assert selection.fell_back  # a rejected candidate came first


class _WrongBackend(ExpertBackend):
    """A real backend that computes the wrong field: eager torch, velocity scaled by 1.5."""

    name = "wrong"

    def _bind(self, prefix):
        self._inputs = step_inputs(torch.zeros(1), torch.zeros(1), prefix)[2:]

    def velocity(self, x, t):
        return 1.5 * self.step(x, t, *self._inputs)


class _RaisingBackend(_WrongBackend):
    name = "raising"

    def velocity(self, x, t):
        raise RuntimeError("illegal memory access (as a failed graph replay would)")


def test_failing_or_raising_candidates_fall_back_with_a_diagnostic(step):
    built = {"wrong": _WrongBackend, "raising": _RaisingBackend,
             "torch_static": TorchStaticBackend}
    selection = select_backend(["wrong", "raising", "missing", "torch_static"],
                               lambda name: built[name](step, "cpu"), step)
    assert selection.backend.name == "torch_static" and selection.fell_back
    wrong, raising, missing, chosen = selection.trials
    assert "parity check failed" in wrong.error and wrong.parity.cosine > 0.99
    assert wrong.parity.max_abs_err > 0.1 and wrong.backend is None
    assert "self-check raised RuntimeError: illegal memory access" in raising.error
    assert missing.error.startswith("KeyError")
    assert chosen.passed and "wrong: rejected: parity check failed" in \
        selection.diagnostic_values()["trials"]


def test_named_backend_without_fallback_fails_clearly(step):
    with pytest.raises(BackendUnavailable, match="tensorrt: rejected: BackendUnavailable"):
        select("tensorrt", step, "cpu", fallback=False)
    fallen = select("tensorrt", step, "cpu", fallback=True)
    assert fallen.backend.name == "torch_static" and fallen.trials[0].name == "tensorrt"


def test_parity_tolerance_rules():
    strict = ParityTolerance.for_dtype(torch.float32)
    assert ParityResult(1e-6, 0.999999, 1.0).passes(strict)
    assert not ParityResult(1e-2, 0.99999, 1.0).passes(strict)
    assert not ParityResult(float("nan"), 1.0, 1.0).passes(strict)
    loose = ParityTolerance.for_dtype(torch.bfloat16)
    assert ParityResult(2e-2, 0.9995, 1.0).passes(loose)
    with pytest.raises(ValueError, match="min_cosine"):
        ParityTolerance(min_cosine=1.5, max_rel_err=1e-3)


def test_parity_check_of_a_real_backend_is_tight(step):
    with create_backend("onnxruntime", step, "cpu") as backend:
        result = parity_check(backend, step)
    assert result.max_abs_err < 1e-5 and result.cosine > 0.99999 and result.ref_max_abs > 0.1


# -- TensorRT rules that need no GPU (issue point 10) -------------------------------------------

def test_tensorrt_precision_defaults_to_bf16_where_supported():
    assert EngineSpec().precision == "auto"
    assert resolve_precision("auto", (9, 0)) == "bf16"  # Hopper
    assert resolve_precision("auto", (8, 7)) == "bf16"  # Orin
    assert resolve_precision("auto", (7, 2)) == "fp32"  # Xavier: no bf16, and no silent fp16
    assert resolve_precision("fp16", (9, 0)) == "fp16"  # only by request
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int4", (9, 0))


def test_strongly_typed_network_never_ignores_precision():
    check_strongly_typed("auto", torch.bfloat16)
    check_strongly_typed("bf16", torch.bfloat16)
    with pytest.raises(ValueError, match="cannot apply to a strongly typed"):
        check_strongly_typed("fp16", torch.bfloat16)


# -- bf16 ONNX export (issue point 7) ------------------------------------------------------------

def _as_float32_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph computing in float32: bf16 initializers widened, bf16 casts and I/O made
    float. bf16 -> fp32 is exact, so this runs the exported bf16 weights in ONNX Runtime."""
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.BFLOAT16:
            init.CopyFrom(numpy_helper.from_array(
                _bf16_to_float32(init), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.BFLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.name == "value" and attr.t.data_type == TensorProto.BFLOAT16:
                attr.t.CopyFrom(numpy_helper.from_array(_bf16_to_float32(attr.t)))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    return model


def _bf16_to_float32(tensor: onnx.TensorProto) -> np.ndarray:
    raw = np.frombuffer(tensor.raw_data, dtype=np.uint16) if tensor.raw_data else \
        np.asarray(tensor.int32_data, dtype=np.uint16)
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(tuple(tensor.dims))


def test_bf16_step_exports_with_the_legacy_exporter_and_runs_in_onnxruntime(tmp_path):
    step_bf16 = random_step(with_vocab_size(preset("tiny"), 32), seed=0, dtype=torch.bfloat16)
    path = export_step(step_bf16, tmp_path / "bf16.onnx", exporter="legacy")
    model = onnx.load(str(path))
    assert any(i.data_type == TensorProto.BFLOAT16 for i in model.graph.initializer)
    session = ort.InferenceSession(_as_float32_graph(model).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    prefix = synthetic_prefix(step_bf16, torch.device("cpu"), batch=2, prefix_len=37)
    gen = torch.Generator().manual_seed(3)
    x, t = torch.randn(2, T, 2, generator=gen), torch.rand(2, generator=gen)
    feeds = {name: tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
             for name, tensor in zip(input_names(len(step_bf16.expert.layers)),
                                     step_inputs(x, t, prefix), strict=True)}
    got = torch.from_numpy(session.run(None, feeds)[0])
    with torch.inference_mode():
        in_bf16 = step_bf16(x, t, *step_inputs(x, t, prefix)[2:])  # the bf16 torch step
        in_fp32 = step_bf16.float()(x, t, *(a.float() if a.is_floating_point() else a
                                            for a in step_inputs(x, t, prefix)[2:]))
    # Same bf16 weights computed in fp32 by both: tight. Against bf16 compute: bf16 rounding.
    torch.testing.assert_close(got, in_fp32, rtol=0, atol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), in_bf16.flatten(), dim=0)
    assert cosine > 0.999 and (got - in_bf16).abs().max() < 0.05 * in_bf16.abs().max()


def test_offline_engine_build_command_fails_clearly_without_tensorrt(tiny_model_dir, capsys):
    from alpamayo_core.cli.export import main, parse_args

    args = parse_args(["trt", "--model", str(tiny_model_dir)])
    assert (args.command, args.device, args.precision) == ("trt", "cuda", "auto")
    assert main(["trt", "--model", str(tiny_model_dir), "--device", "cpu"]) == 2
    assert "TensorRT Python package is not importable" in capsys.readouterr().err


class _ProfileLimitedBackend(TorchStaticBackend):
    """Correct, but like a TensorRT engine built for one row: binding more rows raises. It
    passes the one-row parity check and fails only at the plan's shape."""

    name = "profile_limited"

    def _bind(self, prefix):
        if prefix.positions.shape[0] > 1:
            raise ValueError(f"B = {prefix.positions.shape[0]} is outside the engine's "
                             "profile (B <= 1)")
        return super()._bind(prefix)


def test_a_backend_that_fails_at_the_plans_shape_is_rejected_not_raised(step):
    built = {"profile_limited": _ProfileLimitedBackend, "torch_static": TorchStaticBackend}
    selection = select_fastest(["profile_limited", "torch_static"],
                               lambda name: built[name](step, "cpu"), step, batch=2,
                               prefix_len=128)
    limited, chosen = selection.trials
    assert chosen.name == "torch_static" and chosen.passed and chosen.trial_ms is not None
    assert not limited.passed and limited.parity.passes(ParityTolerance.for_dtype(torch.float32))
    assert limited.error.startswith("timed trial raised ValueError: B = 2 is outside")
    assert selection.fell_back


def test_no_backend_passed_when_every_one_fails_at_the_plans_shape(step):
    with pytest.raises(NoBackendPassed, match="timed trial raised ValueError"):
        select_fastest(["profile_limited", "profile_limited"],
                       lambda name: _ProfileLimitedBackend(step, "cpu"), step, batch=2,
                       prefix_len=128)
