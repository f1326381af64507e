"""TorchEngine: device/precision resolution, device copies, fp32 fallback, OOM detection."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from packlib import load_reference, max_abs, natural_image, reference_case_for, submodule
from paragonsr2_pack.engines.backends import torch_engine as te
from paragonsr2_pack.engines.runtime import contract as base
from paragonsr2_pack.engines.runtime import devices

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine")


VARIANTS = ["realtime", "stream", "photo", "pro"]


def _case(variant):
    """One x2 reference case per variant (keeps the suite fast with the full ../shared set)."""
    return reference_case_for(variant)


def test_pick_device_and_dtype():
    assert te.pick_device("cpu") == torch.device("cpu")
    auto = te.pick_device("auto")
    assert auto.type == ("cuda" if CUDA else auto.type)
    if not CUDA:
        with pytest.raises(RuntimeError, match="CUDA"):
            te.pick_device("cuda:0")
    with pytest.raises(ValueError, match="unknown device"):
        te.pick_device("tpu-ish")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert te.resolve_dtype("auto", cpu) == torch.float32
    assert te.resolve_dtype("auto", cuda) == torch.float16
    assert te.resolve_dtype("fp32", cuda) == torch.float32
    assert te.resolve_dtype("fp16", cpu) == torch.float16
    assert te.resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        te.resolve_dtype("int8", cpu)


@pytest.mark.parametrize("variant", VARIANTS)
def test_engine_matches_reference_and_keeps_master(variant):
    model, io = load_reference(_case(variant))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = te.TorchEngine(model, "cpu", "bf16")
    assert isinstance(engine, base.Engine)
    assert engine.model is not model and engine.dtype == torch.bfloat16
    assert engine.scale == model.scale and engine.exact_halo == model.receptive_radius
    assert engine.window == model.window_size and engine.min_tile is None and engine.max_tile is None
    # the master copy is untouched (dtype, device, values)
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and v.device.type == "cpu" and torch.equal(v, before[k]), k
    fp32 = te.TorchEngine(model, "cpu", "fp32")
    out = fp32(io["xb"])
    assert out.dtype == torch.float32
    assert max_abs(out, io["y_batch"]) <= 1e-5
    # encode/decode compose to the full network
    assert max_abs(fp32.decode(io["x0"], fp32.encode(io["x0"])), io["out0"]) <= 1e-5
    # bf16 runs and stays near fp32 (loose: 8-bit mantissa through a deep network)
    assert max_abs(engine(io["xb"]), io["y_batch"]) < 0.1


def test_fp16_overflow_falls_back_to_fp32_and_logs_once(arch, tmp_path, caplog):
    model = arch.build_model("realtime", 2)
    with torch.no_grad():
        model.conv_in.weight.mul_(1e5)  # activations far beyond fp16's 65504
    path = tmp_path / "overflow.safetensors"
    arch.save_model(model, path)
    model = arch.load_model(path)
    x = natural_image(24, 20)
    with torch.inference_mode():
        raw_fp16 = te.TorchEngine(model, "cpu", "fp16").model(x.half())
    assert not torch.isfinite(raw_fp16).all(), "the test model must overflow in fp16"

    engine = te.TorchEngine(model, "cpu", "fp16")
    expected = te.TorchEngine(model, "cpu", "fp32")(x)
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        first = engine(x)
        second = engine(x)
        feat = engine.encode(x)
    assert torch.isfinite(first).all() and torch.isfinite(feat).all()
    assert max_abs(first, expected) == 0 and max_abs(second, expected) == 0
    assert engine.fallbacks == 3
    fallback_logs = [r for r in caplog.records if r.name == "ParagonSR2" and "fp32" in r.getMessage()]
    assert len(fallback_logs) == 1


@pytest.mark.parametrize("variant", ["realtime", "photo"])
def test_fp16_without_overflow_keeps_fp16(variant):
    model, io = load_reference(_case(variant))
    engine = te.TorchEngine(model, "cpu", "fp16")
    out = engine(io["x0"])
    assert engine.fallbacks == 0 and out.dtype == torch.float32
    assert max_abs(out, io["out0"]) < 0.05


def test_is_out_of_memory():
    assert devices.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert devices.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert devices.is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    )
    assert devices.is_out_of_memory(MemoryError())
    assert not devices.is_out_of_memory(RuntimeError("Given groups=1, weight of size [16, 3, 3, 3]"))
    assert not devices.is_out_of_memory(KeyboardInterrupt())


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_auto_is_fp16_and_matches_fp32(variant):
    model, io = load_reference(_case(variant))
    engine = te.TorchEngine(model, "cuda", "auto")
    assert engine.dtype == torch.float16 and engine.device.type == "cuda"
    out = engine(io["xb"])
    assert out.device.type == "cuda" and max_abs(out.cpu(), io["y_batch"]) < 0.05
    assert next(model.parameters()).device.type == "cpu"


_FAULTS_CHILD = r"""
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
from packlib import submodule
model = submodule("paragonsr2_arch.network").build_model("realtime", 2)
if sys.argv[2] == "warm":
    submodule("engines.runtime.memory").warm_cpu_allocator()
x = torch.rand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    model(x), model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


@pytest.mark.skipif(
    not submodule("engines.runtime.memory").is_glibc(), reason="the allocator warm-up only acts on glibc (Linux)"
)
def test_warm_allocator_stops_page_faults_per_call():
    """A 256x256 realtime forward pass on the CPU, each in a fresh process: glibc's default
    thresholds page-fault its tensors afresh on every call; after warm_cpu_allocator() (which a
    CPU TorchEngine calls) the freed memory is reused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def faults_per_call(mode):
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS_CHILD, str(Path(__file__).parent), mode],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return float(done.stdout.split()[-1])

    cold, warm = faults_per_call("cold"), faults_per_call("warm")
    print(f"minor page faults per call: cold {cold:.0f}, warm {warm:.0f}")
    assert cold > 1000  # 4 KiB pages: at least 4 MB of fresh memory a call
    assert warm < 0.05 * cold
