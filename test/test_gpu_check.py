"""scripts/gpu_check.py, the one GPU check, as a CPU dry run: every step runs (gpu tests collect
and skip, the expert bench on the tiny preset, a bf16 plan per backend), the report and the
summary are written, and a parity failure or a backend that raises makes the exit status
non-zero (only a backend whose package or device is absent is "unavailable")."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check():
    return _load_gpu_check()


@pytest.fixture(scope="module")
def dry_run(gpu_check, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    status = gpu_check.main(["--device", "cpu", "--out", str(out)])
    return status, json.loads((out / "gpu_check.json").read_text()), out


def test_cpu_dry_run_runs_every_step_and_passes(dry_run):
    status, report, out = dry_run
    assert status == 0, report
    assert report["gpu_tests"]["status"] == "skipped (CPU dry run)"
    assert "skipped" in report["gpu_tests"]["summary"]
    bench = report["expert_bench"]["backends"]
    assert {"torch B=1", "torch_static B=1"} <= set(bench)
    assert all(r["status"] == "passed" for r in bench.values()), bench
    assert json.loads((out / "expert_fullsize.json").read_text())["preset"] == "tiny"
    e2e = report["e2e_bf16_plan"]["backends"]
    assert list(e2e) == ["torch", "torch_static", "torch_cuda_graph", "tensorrt", "onnxruntime"]
    assert e2e["torch"]["status"] == e2e["torch_static"]["status"] == "passed"
    assert "cosine 1.0" in e2e["torch_static"]["detail"]
    assert e2e["tensorrt"]["status"] == "unavailable"  # not installed: never a parity failure
    assert "bfloat16" in e2e["onnxruntime"]["detail"]


def test_a_parity_failure_makes_the_exit_status_non_zero(gpu_check, dry_run):
    _, report, _ = dry_run
    rows, status = gpu_check.summary_table(report)
    assert status == 0 and rows[0].startswith("check")
    report["e2e_bf16_plan"]["backends"]["torch_static"] = {
        "status": gpu_check.FAILED, "detail": "parity check failed"}
    rows, status = gpu_check.summary_table(report)
    assert status == 1 and any("torch_static" in r and "FAILED" in r for r in rows)
    rows, status = gpu_check.summary_table({"gpu_tests": report["gpu_tests"]})
    assert status == 1  # a step that did not run counts as failed


def _report_with(step: str, name: str, entry: dict) -> dict:
    """A report where every step passed and `step` has the one backend entry `entry`."""
    report = {s: {"status": "passed"} for s in ("gpu_tests", "expert_bench", "e2e_bf16_plan")}
    report[step]["backends"] = {name: entry}
    return report


def test_an_available_backend_raising_in_the_plan_step_is_a_failure(gpu_check, tiny_model_dir,
                                                                      tmp_path):
    from alpamayo_core.io.model_io import load_model

    loaded = load_model(tiny_model_dir, device="cpu", dtype="bfloat16")
    # torch_static is available on CPU; bucket=0 makes its bind raise in the self-check.
    entry, xyz_m = gpu_check._plan_with(loaded, "torch_static", tmp_path, bucket=0)
    assert xyz_m is None and entry["status"] == "FAILED", entry
    assert "self-check raised ValueError: bucket must be >= 1" in entry["detail"]
    assert gpu_check.summary_table(_report_with("e2e_bf16_plan", "torch_static", entry))[1] == 1
    for absent in ("torch_cuda_graph", "tensorrt"):  # CUDA-only: absent for a CPU model
        entry, xyz_m = gpu_check._plan_with(loaded, absent, tmp_path)
        assert xyz_m is None and entry["status"] == "unavailable", entry
        assert "not available on cpu" in entry["detail"]
        assert gpu_check.summary_table(_report_with("e2e_bf16_plan", absent, entry))[1] == 0


def test_a_bench_backend_that_raised_is_a_failure_unless_its_runtime_is_absent(gpu_check):
    spec = importlib.util.spec_from_file_location(
        "gpu_expert_fullsize", ROOT / "bench" / "gpu_expert_fullsize.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from alpamayo_core.backends.synthetic import random_prefix, random_step
    from alpamayo_core.model.config import preset, with_vocab_size

    step = random_step(with_vocab_size(preset("tiny"), 32), seed=0)
    args = bench.parse_args(["--device", "cpu", "--samples", "1", "--cache-dir", "unused"])
    noise = torch.zeros(2, 64, 2)  # two rows for a one-row prefix: the backend raises
    crash, velocity = bench.run_backend("torch_static", step, random_prefix(step, 1, 8),
                                        noise, torch.full((2,), 0.3), args)
    assert velocity is None and crash["stage"] == "bind", crash
    available = gpu_check.unavailable_reason("torch_static", "cpu", torch.float32)
    assert available is None
    entry = gpu_check._bench_status(crash, available)
    assert entry["status"] == "FAILED" and crash["error"] in entry["detail"]
    report = _report_with("expert_bench", "torch_static B=1", entry)
    assert gpu_check.summary_table(report)[1] == 1
    absent = gpu_check.unavailable_reason("torch_cuda_graph", "cpu", torch.float32)
    assert "not available on cpu" in absent
    assert gpu_check._bench_status(crash, absent)["status"] == "unavailable"
    assert gpu_check.unavailable_reason("onnxruntime", "cpu", torch.bfloat16)  # no bf16 there
    not_built = {"error": "EngineNotBuilt: no engine in the cache", "stage": "build"}
    assert gpu_check._bench_status(not_built, None)["status"] == gpu_check.NOT_BUILT


def test_shell_entry_point_is_valid_bash_with_a_ten_minute_bound():
    script = ROOT / "scripts" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "timeout --signal=TERM --kill-after=10 600 python scripts/gpu_check.py" in text
