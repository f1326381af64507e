"""Build TensorRT Engine and Export ONNX nodes, called the way ComfyUI calls them, on a real
model file written by the test."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from packlib import max_abs, natural_image, node_outputs
from packlib import run_node as _run
from paragonsr2_pack.engines.backends import tensorrt_build as build
from paragonsr2_pack.engines.runtime import contract as base
from paragonsr2_pack.nodes import tensorrt_nodes as trt_nodes

REASON = build.unavailable_reason()


@pytest.fixture(scope="module")
def handle(arch, tmp_path_factory):
    """A realtime x2 model saved to disk by the test and loaded back, as the Loader would."""
    path = tmp_path_factory.mktemp("models") / "rt_x2.safetensors"
    model = arch.build_model("realtime", 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.2)
    arch.save_model(model, path)
    return base.ModelHandle(arch.load_model(path), "rt_x2.safetensors")


def test_node_contract():
    schemas = {cls.define_schema().node_id: cls.define_schema() for cls in trt_nodes.NODES}
    assert set(schemas) == {"ParagonSR2BuildTensorRTEngine", "ParagonSR2ExportONNX"}
    for schema in schemas.values():
        assert schema.category == "image/upscaling/ParagonSR2" and schema.description and schema.display_name
        for item in schema.inputs:
            assert item.tooltip, f"{schema.node_id}.{item.id} has no tooltip"
    b = trt_nodes.ParagonSR2BuildTensorRTEngine
    assert node_outputs(b) == [("PARAGONSR2_MODEL", "paragonsr2_model")]
    assert schemas["ParagonSR2BuildTensorRTEngine"].is_experimental  # not yet run on NVIDIA hardware
    spec = b.INPUT_TYPES()["required"]
    assert [spec[k][1]["default"] for k in ("min_tile", "opt_tile", "max_tile")] == [64, 512, 1024]
    e = trt_nodes.ParagonSR2ExportONNX
    assert node_outputs(e) == [("STRING", "onnx_path")] and schemas["ParagonSR2ExportONNX"].is_output_node


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here: the fallback path is not taken")
def test_build_without_tensorrt_falls_back_and_logs(handle, caplog):
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        (out,) = _run(trt_nodes.ParagonSR2BuildTensorRTEngine, model=handle, fallback_to_torch=True)
    assert isinstance(out, base.ModelHandle) and out.engine is None and out.model is handle.model
    assert "TensorRT not available" in caplog.text and "pip install tensorrt" in caplog.text
    # The returned handle still upscales (on PyTorch) through the Upscale node.
    from paragonsr2_pack.nodes import image_nodes

    image = natural_image(24, 40, seed=1).permute(0, 2, 3, 1)
    (up,) = _run(image_nodes.ParagonSR2Upscale, model=out, image=image, device="cpu")
    assert up.shape == (1, 48, 80, 3)


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here: the error path is not taken")
def test_build_without_tensorrt_explains_when_no_fallback(handle):
    with pytest.raises(build.TensorRTUnavailable) as info:
        _run(trt_nodes.ParagonSR2BuildTensorRTEngine, model=handle, fallback_to_torch=False)
    text = str(info.value)
    assert "pip install tensorrt" in text and ("CUDA" in text or "NVIDIA" in text)


def test_build_rejects_bad_input(handle):
    with pytest.raises(ValueError, match="ParagonSR2 Loader"):
        _run(trt_nodes.ParagonSR2BuildTensorRTEngine, model=object())
    with pytest.raises(ValueError, match="min_tile"):
        _run(trt_nodes.ParagonSR2BuildTensorRTEngine, model=handle, min_tile=512, max_tile=256)


def test_export_onnx_node_writes_working_graph(handle, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setenv("PARAGONSR2_OUTPUT_DIR", str(tmp_path))
    # execute itself, to see the UI text ComfyUI shows under the node as well as the output
    result = trt_nodes.ParagonSR2ExportONNX.execute(model=handle, precision="fp32", filename_prefix="onnx/demo")
    (path,) = result.args
    assert path == str(tmp_path / "onnx" / "demo_realtime_x2_fp32.onnx") and result.ui["text"] == [path]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = natural_image(32, 48, seed=2)
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        assert max_abs(torch.from_numpy(y), handle.model(x)) <= 1e-4
    # A second export never overwrites the first.
    (second,) = _run(trt_nodes.ParagonSR2ExportONNX, model=handle, precision="fp32", filename_prefix="onnx/demo")
    assert second != path and second.endswith("_00001.onnx")


def test_export_onnx_node_video_and_fp16(handle, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setenv("PARAGONSR2_OUTPUT_DIR", str(tmp_path))
    (path,) = _run(trt_nodes.ParagonSR2ExportONNX, model=handle, video=True)
    assert path.endswith("ParagonSR2_realtime_x2_fp16_video.onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input", "prev_feat", "temporal_alpha"]
    x = natural_image(16, 32, seed=3)
    out, _ = sess.run(
        None,
        {
            "input": x.numpy(),
            "prev_feat": np.zeros((1, 16, 16, 32), np.float32),
            "temporal_alpha": np.asarray(0.0, np.float32),
        },
    )
    with torch.inference_mode():
        assert max_abs(torch.from_numpy(out), handle.model(x)) <= 8e-3  # fp16 limit, see test_onnx_export


def test_export_onnx_node_refuses_escaping_prefix(handle, tmp_path, monkeypatch):
    monkeypatch.setenv("PARAGONSR2_OUTPUT_DIR", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="outside"):
        _run(trt_nodes.ParagonSR2ExportONNX, model=handle, filename_prefix="../evil")


def test_upscale_node_runs_on_an_onnxruntime_engine(handle):
    """A handle carrying a non-torch engine (what the Build node returns) drives the Upscale node."""
    pytest.importorskip("onnxruntime")
    from paragonsr2_pack.engines.backends import onnxruntime_engine as orte
    from paragonsr2_pack.nodes import image_nodes

    with_engine = handle.with_engine(orte.OnnxRuntimeEngine.from_model(handle.model, "fp32"))
    image = natural_image(37, 45, seed=4).permute(0, 2, 3, 1)
    (up,) = _run(image_nodes.ParagonSR2Upscale, model=with_engine, image=image, device="cpu")
    with torch.inference_mode():
        whole = handle.model(image.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert max_abs(up, whole) <= 1e-4
