"""The OpenVINO engine behind the Engine protocol, the ``auto`` backend choice and its cache.

Real reference weights (tests/data/reference), compared with the torch engine through the
image runner (whole and tiled) and the video runner (two batches joined by the temporal state).
Tolerance 1e-4 (the project's float32 tolerance): the OpenVINO graph is the spec's network as
exported to ONNX, the torch engine the optimised path; they differ by float rounding (measured
2-6e-7). Only the CPU plugin exists here; Intel GPUs and NPUs are not tested.

"Not installed" is simulated in a subprocess whose import system refuses the package (a
meta-path finder that raises ImportError for it): the same error an absent package gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from packlib import PACK_ROOT, load_reference, max_abs, natural_image, reference_case_for

pytest.importorskip("onnx", reason="the OpenVINO engine converts the pack's ONNX export: pip install onnx")
ov = pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install openvino")
from paragonsr2_pack.engines.backends import auto, registry  # noqa: E402
from paragonsr2_pack.engines.backends import openvino_engine as ove  # noqa: E402
from paragonsr2_pack.engines.runtime import contract  # noqa: E402
from paragonsr2_pack.engines.tiling import runner as tiling  # noqa: E402
from paragonsr2_pack.engines.video import temporal  # noqa: E402


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def realtime(models_dir):
    model, _ = load_reference(reference_case_for("realtime"))
    return model, registry.make_engine("openvino", model, "cpu", "auto", video=True, models_dir=models_dir)


@pytest.fixture(scope="module")
def stream(models_dir):
    model, _ = load_reference(reference_case_for("stream"))
    return model, registry.make_engine("openvino", model, "cpu", "fp32", video=True, models_dir=models_dir)


def _torch(model):
    return registry.make_engine("torch", model, "cpu", "fp32")


def _hint(engine) -> str:
    return str(engine.compiled.get_property("INFERENCE_PRECISION_HINT"))


def test_facts_and_pinned_precision(realtime):
    model, engine = realtime
    assert isinstance(engine, contract.Engine)
    assert (engine.variant, engine.scale, engine.precision, engine.video) == ("realtime", 2, "fp32", True)
    assert engine.exact_halo == model.receptive_radius and engine.tile_multiple is None
    # "auto" is fp32, never OpenVINO's own bf16 default on CPUs that have bf16
    assert _hint(engine) in ("<Type: 'float32'>", "f32", "float32")
    assert int(engine.compiled.get_property("INFERENCE_NUM_THREADS")) == torch.get_num_threads()


def test_bf16_only_when_asked(realtime, models_dir):
    model, _ = realtime
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in capabilities:
        with pytest.raises(ValueError, match="no native bf16"):
            registry.make_engine("openvino", model, "cpu", "bf16", models_dir=models_dir)
        return
    engine = registry.make_engine("openvino", model, "cpu", "bf16", models_dir=models_dir)
    assert engine.precision == "bf16"
    assert "bf16" in _hint(engine) or "bfloat16" in _hint(engine)
    x = natural_image(32, 48, seed=9)
    with torch.inference_mode():
        err = max_abs(engine(x), model(x))
    assert 1e-5 < err < 0.06  # really bf16 (not fp32), within the bf16 limit of test_arch_precision


def test_refuses_cuda_and_unknown_devices(realtime, models_dir):
    model, _ = realtime
    with pytest.raises(ValueError, match=r"does not run"):
        registry.make_engine("openvino", model, "cuda", "fp32", models_dir=models_dir)
    if "NPU" not in ove.available_devices():
        with pytest.raises(RuntimeError, match="no NPU"):
            registry.make_engine("openvino", model, "NPU", "fp32", models_dir=models_dir)


@pytest.mark.parametrize("hw,tile", [((37, 45), 0), ((70, 52), 32)])
def test_image_runner_matches_torch(realtime, hw, tile):
    model, engine = realtime
    image = natural_image(*hw, seed=6, batch=2).permute(0, 2, 3, 1)
    ov_out = tiling.upscale_image(engine, image, tile_size=tile)
    torch_out = tiling.upscale_image(_torch(model), image, tile_size=tile)
    assert ov_out.shape == (2, 2 * hw[0], 2 * hw[1], 3)
    assert max_abs(ov_out, torch_out) <= 1e-4


@pytest.mark.slow
def test_image_runner_attention_variant_matches_torch(models_dir):
    """photo (window attention): unaligned sizes padded to 16 by the engine, tiles aligned."""
    model, _ = load_reference(reference_case_for("photo"))
    engine = registry.make_engine("openvino", model, "cpu", "fp32", models_dir=models_dir)
    assert engine.tile_multiple == 16
    image = natural_image(64, 80, seed=7).permute(0, 2, 3, 1)
    for tile in (0, 32):
        ov_out = tiling.upscale_image(engine, image, tile_size=tile)
        assert max_abs(ov_out, tiling.upscale_image(_torch(model), image, tile_size=tile)) <= 1e-4


def test_video_runner_and_state_match_torch(stream):
    model, engine = stream
    frames = natural_image(36, 52, seed=8, batch=5).permute(0, 2, 3, 1)
    kwargs = {"temporal_strength": 0.3, "scene_cut_sensitivity": 0}
    results = []
    for eng in (engine, _torch(model)):
        first, state = temporal.upscale_video(eng, frames[:3], **kwargs)
        second, _ = temporal.upscale_video(eng, frames[3:], state=state, tile_size=32, **kwargs)
        results.append(torch.cat([first, second]))
    assert max_abs(results[0], results[1]) <= 1e-4


def test_cancel_inside_a_call_stops_it(stream):
    """on_step raising (the runner's cancel) cancels the running request; the engine still works."""
    model, engine = stream
    x = natural_image(256, 256, seed=3)
    calls = []

    def cancel(step, steps):
        calls.append(step)
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        engine(x, on_step=cancel)
    assert calls and calls[0] < ove.PROGRESS_STEPS
    small = natural_image(32, 32, seed=4)
    with torch.inference_mode():
        assert max_abs(engine(small), model(small)) <= 1e-4


def _python(code: str, models_dir, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``blocked`` packages made unimportable."""
    prelude = f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(PACK_ROOT / "tests")!r})
        from packlib import import_pack, load_reference, reference_case_for
        import_pack()
        from paragonsr2_pack.engines.backends import registry, auto
        model, _ = load_reference(reference_case_for("realtime"))
        models_dir = {str(models_dir)!r}
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = textwrap.dedent(prelude) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)


def test_cache_hit_needs_no_onnx_export(tmp_path):
    """First engine: exported and converted, IR written. Second (another process, onnx made
    unimportable so any export would fail): read from the cache."""
    first = _python(
        "e = registry.make_engine('openvino', model, 'cpu', 'fp32', models_dir=models_dir); print(e.from_cache)",
        tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[-1] == "False"
    assert sorted(p.suffix for p in (tmp_path / "openvino" / "paragonsr2").iterdir() if p.is_file()) == [".bin", ".xml"]
    second = _python(
        "e = registry.make_engine('openvino', model, 'cpu', 'fp32', models_dir=models_dir); print(e.from_cache)",
        tmp_path,
        blocked=("onnx",),
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[-1] == "True"
    # a cold cache without onnx: the export is needed, and the message says what to install
    cold = _python(
        "registry.make_engine('openvino', model, 'cpu', 'fp32', models_dir=models_dir + '/other')",
        tmp_path,
        blocked=("onnx",),
    )
    assert cold.returncode != 0 and "pip install onnx" in cold.stderr


def test_missing_openvino_message_and_auto_fallback(tmp_path):
    run = _python(
        """
        try:
            registry.make_engine('openvino', model, 'cpu', 'fp32', models_dir=models_dir)
        except RuntimeError as exc:
            print("ERROR", exc)
        print("AUTO", auto.cpu_candidates("fp32"))
        """,
        tmp_path,
        blocked=("openvino",),
    )
    assert run.returncode == 0, run.stderr
    assert "ERROR the OpenVINO engine needs the 'openvino' package: pip install openvino" in run.stdout
    assert "openvino" not in run.stdout.split("AUTO", 1)[1]


def test_auto_probe_choice_and_cache(realtime, tmp_path):
    model, _ = realtime
    engine, choice = auto.create(model, "cpu", "auto", video=True, models_dir=tmp_path)
    assert choice.backend in auto.cpu_candidates("fp32") and not choice.cached
    assert set(choice.timings_ms) == set(auto.cpu_candidates("fp32"))
    assert choice.backend in choice.describe() and "ms" in choice.reason
    assert engine.precision == "fp32" and engine.video  # never another precision than asked
    files = list((tmp_path / "paragonsr2_auto").glob("probe_realtime_x2_fp32_*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["backend"] == choice.backend and record["facts"]["cpu"] == auto.cpu_name()
    _, again = auto.create(model, "cpu", "auto", video=True, models_dir=tmp_path)
    assert again.cached and again.backend == choice.backend and "cached probe" in again.reason
    # the registry's "auto" is the same choice
    assert type(registry.make_engine("auto", model, "cpu", "auto", video=True, models_dir=tmp_path)) is type(engine)


def test_auto_keeps_the_asked_precision(realtime, tmp_path):
    model, _ = realtime
    engine, choice = auto.create(model, "cpu", "bf16", models_dir=tmp_path)
    assert engine.precision == "bf16"
    assert "onnxruntime" not in choice.timings_ms  # its CPU graphs are fp32 only


def test_openvino_device_names():
    assert ove.openvino_device("auto") == ove.openvino_device("cpu") == "CPU"
    assert "CPU" in ove.device_choices()
    choice, engine = auto.choose(torch.nn.Module(), "GPU")  # type: ignore[arg-type] (no probe: OpenVINO only)
    assert (choice.backend, choice.device, engine) == ("openvino", "GPU", None)


def test_engine_node_offers_backends_and_falls_back_clearly(realtime):
    """ParagonSR2 Engine: any saved backend/device name validates; one this machine lacks falls
    back to torch with the reason (default) or stops with it (fallback_to_torch off)."""
    from paragonsr2_pack.engines.runtime.contract import ModelHandle
    from paragonsr2_pack.nodes import engine_nodes

    model, _ = realtime
    handle = ModelHandle(model=model, name="realtime reference", precision="fp32")
    node = engine_nodes.ParagonSR2Engine
    assert node.validate_inputs(backend="some_future_backend", device="GPU.3") is True
    assert {"torch", "openvino", "onnxruntime", "tensorrt", "auto"} <= set(engine_nodes.BACKENDS)
    chosen, info = engine_nodes.choose_engine(handle, "openvino", "cpu", "auto", True, True)
    assert type(chosen.engine).__name__ == "OpenVinoEngine" and "OpenVinoEngine" in info
    missing = "NPU" if "NPU" not in ove.available_devices() else "GPU.9"
    fallback, info = engine_nodes.choose_engine(handle, "openvino", missing, "auto", True, True)
    assert type(fallback.engine).__name__ == "TorchEngine" and "fallback" in info and missing in info
    with pytest.raises(RuntimeError, match="not available here"):
        engine_nodes.choose_engine(handle, "openvino", missing, "auto", True, False)
