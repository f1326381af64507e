"""benchmarks/gpu_check.py, the one-command device check: on a machine without CUDA it says so
and exits cleanly, and its sections run end to end against the current engine API (on the CPU,
via --cpu-dry-run), so the script still works on the day a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from packlib import PACK_ROOT

SCRIPT = PACK_ROOT / "benchmarks" / "gpu_check.py"
NO_CUDA = not torch.cuda.is_available()


def run_check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=PACK_ROOT
    )


@pytest.mark.skipif(not NO_CUDA, reason="checks the behaviour where no CUDA device is visible")
def test_without_cuda_it_says_so_and_exits_zero(tmp_path):
    report_path = tmp_path / "x.json"
    done = run_check("--json", str(report_path))
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stderr
    report = json.loads(report_path.read_text())
    assert report["environment"]["cuda"] is False
    assert "nothing to check" in report["skipped"] and report["sections"] == {}


@pytest.mark.skipif(not NO_CUDA, reason="checks the behaviour where no CUDA device is visible")
def test_require_gpu_turns_no_cuda_into_exit_3(tmp_path):
    done = run_check("--json", str(tmp_path / "x.json"), "--require-gpu")
    assert done.returncode == 3, done.stderr


def test_unknown_section_is_a_usage_error(tmp_path):
    done = run_check("--json", str(tmp_path / "x.json"), "--sections", "precision,nonsense")
    assert done.returncode == 2
    assert "nonsense" in done.stderr


@pytest.mark.slow
def test_engine_sections_run_on_the_cpu_dry_run(tmp_path):
    """The sections that drive the engines and runners (the API most likely to drift), against
    the reference weights, tiny sizes on the CPU: the comparisons pass here too, so a failure on
    a GPU means the GPU differs. (precision uses only paragonsr2_arch, covered by
    tests/test_arch_precision.py, and fp16/bf16 on the CPU is slow.)"""
    report_path = tmp_path / "dry.json"
    done = run_check("--cpu-dry-run", "--sections", "tiling,video,speed", "--json", str(report_path), timeout=1200)
    report = json.loads(report_path.read_text())
    assert done.returncode == 0, (report["failed"], done.stderr[-3000:])
    assert set(report["sections"]) == {"tiling", "video", "speed"}
    assert all("error" not in section for section in report["sections"].values())
    speed = report["sections"]["speed"]
    assert {"realtime", "stream", "photo", "pro"} <= set(speed)
    assert all(speed[v]["fast_over_eager_fp16"] > 0 for v in ("realtime", "stream", "photo", "pro"))
