"""scripts/gpu_check.py, the one GPU check, as a CPU dry run: every step runs (gpu tests collect
and skip, the expert bench on the tiny preset, a bf16 plan per backend), the report and the
summary are written, and a parity failure makes the exit status non-zero."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

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


def test_shell_entry_point_is_valid_bash_with_a_ten_minute_bound():
    script = ROOT / "scripts" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "timeout --signal=TERM --kill-after=10 600 python scripts/gpu_check.py" in text
