"""The TensorRT layer. Runs only where ``tensorrt`` imports and a CUDA GPU exists (a Builder can
be created); skipped with that reason everywhere else. The layers below the API boundary (ONNX
graph, profiles, cache keys, atomic writes) are proven on CPU by the other test files."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from packlib import max_abs, natural_image, run_node
from paragonsr2_pack.engines.backends import engine_cache as ec
from paragonsr2_pack.engines.backends import tensorrt_build as build

REASON = build.unavailable_reason()
needs_trt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT layer not testable here: {REASON}")


def test_unavailable_reason_says_what_and_how():
    if REASON is None:
        pytest.skip("TensorRT is available here; the message path is not reachable")
    assert "pip install tensorrt" in REASON
    assert "NVIDIA" in REASON or "CUDA" in REASON


def test_engine_module_imports_without_tensorrt():
    from paragonsr2_pack.engines.backends import tensorrt_engine as trt_engine

    assert hasattr(trt_engine, "load_or_build") and hasattr(trt_engine, "TensorRTEngine")


def _small(arch, variant="realtime"):
    model = arch.build_model(variant, 2, num_groups=1, num_blocks=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.2)
    return model


PROFILE = ec.Profile(min_side=32, opt_side=64, max_side=128, min_batch=1, opt_batch=1, max_batch=2)


@pytest.mark.tensorrt
@needs_trt
def test_strongly_typed_flag_is_computed():
    import tensorrt as trt

    assert build.strongly_typed_flag(trt) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@pytest.mark.tensorrt
@needs_trt
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 1e-2)])
def test_build_and_run_matches_torch(arch, tmp_path, precision, tol):
    from paragonsr2_pack.engines.backends import tensorrt_engine as trt_engine

    model = _small(arch, "photo")
    steps = []
    engine = trt_engine.load_or_build(
        model,
        precision=precision,
        profile=PROFILE,
        video=True,
        models_dir=tmp_path,
        progress=lambda d, t: steps.append((d, t)),
    )
    assert (engine.min_tile, engine.max_tile, engine.max_batch) == (32, 128, 2)
    x = natural_image(64, 96, seed=1, batch=3)  # batch above the profile: split into calls
    with torch.inference_mode():
        ref = model(x)
    out = engine(x).cpu()
    print(precision, "max abs vs torch fp32", max_abs(out, ref))
    assert max_abs(out, ref) <= tol
    feat = engine.encode(x)
    assert max_abs(engine.decode(x, feat).cpu(), out) <= tol
    assert list((tmp_path / "tensorrt" / "paragonsr2").glob("*.engine"))
    # The second request loads the cached engine (no build, so no progress steps).
    steps.clear()
    again = trt_engine.load_or_build(model, precision=precision, profile=PROFILE, video=True, models_dir=tmp_path)
    assert not steps and max_abs(again(x).cpu(), out) == 0.0
    with pytest.raises(ValueError, match="profile"):
        engine(natural_image(16, 16, seed=2))


@pytest.mark.tensorrt
@needs_trt
def test_tiled_runner_stays_inside_profile(arch, tmp_path):
    from paragonsr2_pack.engines.backends import tensorrt_engine as trt_engine
    from paragonsr2_pack.engines.tiling import runner as tiling

    model = _small(arch)
    engine = trt_engine.load_or_build(model, precision="fp32", profile=PROFILE, models_dir=tmp_path)
    image = natural_image(200, 150, seed=3).permute(0, 2, 3, 1)  # larger than max_side
    out = tiling.upscale_image(engine, image)
    with torch.inference_mode():
        whole = model(image.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert max_abs(out, whole) <= 1e-3


@pytest.mark.tensorrt
@needs_trt
def test_build_cancel(arch, tmp_path):
    model = _small(arch)
    from paragonsr2_pack.engines.backends import onnx_export as ox

    with pytest.raises(build.BuildCancelled):
        build.build_serialized_engine(
            ox.export_onnx(model), PROFILE, num_feat=model.num_feat, video=False, cancel=lambda: True
        )


@pytest.mark.tensorrt
@needs_trt
def test_build_failure_reports_tensorrt_log(arch):
    with pytest.raises(build.BuildFailed) as info:
        build.build_serialized_engine(b"not an onnx graph", PROFILE, num_feat=16, video=False)
    assert "TensorRT" in str(info.value) and len(str(info.value).splitlines()) > 1


# -- one cache for the node and the command line --------------------------------------------------
# TensorRT itself is replaced by stand-ins (version, GPU facts, a builder returning bytes derived
# from the real ONNX graph and profile); everything else (real model file, real export, real
# cache files, locks, sidecars) is the code the node and `paragonsr2 build-trt` run.


class _StandInTensorRT:
    __version__ = "10.13.0"


class _LoadedEngine:
    """Stands in for TensorRTEngine(data, ...): keeps what the node would deserialize."""

    def __init__(self, data, **kwargs):
        self.data = data


@pytest.fixture
def stand_in_tensorrt(monkeypatch):
    from paragonsr2_pack.engines.backends import tensorrt_engine as trt_engine

    builds = []

    def build_serialized_engine(onnx_bytes, profile, **kwargs):
        builds.append(profile)
        return b"engine for " + hashlib.sha256(onnx_bytes + repr(profile).encode()).digest()

    monkeypatch.setattr(trt_engine, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_engine, "import_tensorrt", lambda: _StandInTensorRT)
    monkeypatch.setattr(trt_engine, "gpu_facts", lambda: ("Stand-in GPU", "8.9"))
    monkeypatch.setattr(trt_engine, "build_serialized_engine", build_serialized_engine)
    monkeypatch.setattr(trt_engine, "TensorRTEngine", _LoadedEngine)
    return builds


def _sidecars(models_dir):
    found = sorted(ec.cache_dir(models_dir).glob("*.json"))
    return [{k: v for k, v in json.loads(p.read_text()).items() if k != "created"} for p in found]


def test_node_and_command_line_share_cache_entries(arch, tmp_path, monkeypatch, capsys, stand_in_tensorrt):
    pytest.importorskip("onnx")
    from paragonsr2_pack import cli
    from paragonsr2_pack.engines.runtime import contract as base
    from paragonsr2_pack.nodes import tensorrt_nodes as trt_nodes

    model_file = arch.save_model(_small(arch), tmp_path / "rt_x2.safetensors")
    handle = base.ModelHandle(arch.load_model(model_file), model_file.name)
    tiles = dict(min_tile=32, opt_tile=64, max_tile=128)
    cli_args = ["build-trt", "--model", str(model_file), "--precision", "fp16"] + [
        f"--{k.replace('_', '-')}={v}" for k, v in tiles.items()
    ]

    # The node builds; the command line then finds its engine.
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path / "node_first"))
    (out,) = run_node(trt_nodes.ParagonSR2BuildTensorRTEngine, model=handle, precision="fp16", **tiles)
    assert len(stand_in_tensorrt) == 1
    assert cli.main(cli_args + ["--models-dir", str(tmp_path / "node_first")]) == 0
    assert "already built" in capsys.readouterr().out and len(stand_in_tensorrt) == 1

    # The command line builds (into the default folder); the node then finds its engine.
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path / "cli_first"))
    assert cli.main(cli_args) == 0
    assert "wrote TensorRT engine" in capsys.readouterr().out and len(stand_in_tensorrt) == 2
    (again,) = run_node(trt_nodes.ParagonSR2BuildTensorRTEngine, model=handle, precision="fp16", **tiles)
    assert len(stand_in_tensorrt) == 2 and again.engine.data == out.engine.data

    node_meta, cli_meta = _sidecars(tmp_path / "node_first"), _sidecars(tmp_path / "cli_first")
    assert len(node_meta) == 1 and node_meta == cli_meta
    assert {k: node_meta[0][k] for k in ("variant", "scale", "precision")} == {
        "variant": "realtime",
        "scale": 2,
        "precision": "fp16",
    }
    assert sorted(p.name for p in ec.cache_dir(tmp_path / "node_first").glob("*.engine")) == sorted(
        p.name for p in ec.cache_dir(tmp_path / "cli_first").glob("*.engine")
    )
