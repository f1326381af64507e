"""The ONNX Runtime engine behind the Engine protocol, driven by the tiled runner and the
temporal pipeline, compared with the torch engine.

Tolerance 1e-4 (the project's float32 tolerance) everywhere: the exported graph is the spec's
straightforward network, while the torch engine runs the optimised path (weights folded into
neighbouring convs, a fused HR head), so the two differ by float rounding only (measured up
to ~2e-5 on the reference weights; the graph alone matches the vectors to <1e-6). For realtime
and stream tiled == whole exactly, so tiled ORT is also compared with one whole-image pass; for
photo (attention) the runner feeds both engines identical 16-aligned context boxes when the
image size is a multiple of 16, so tiled ORT == tiled torch up to the same float rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from packlib import load_reference, max_abs, natural_image, reference_case_for, submodule

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from paragonsr2_pack.engines.backends import onnx_export as ox
from paragonsr2_pack.engines.backends import onnxruntime_engine as orte
from paragonsr2_pack.engines.runtime import contract as base
from paragonsr2_pack.engines.video import temporal


def _case(variant: str) -> dict:
    return reference_case_for(variant)


@pytest.fixture(scope="module")
def realtime():
    model, _ = load_reference(_case("realtime"))
    return model, orte.OnnxRuntimeEngine.from_model(model, "fp32", video=True)


@pytest.fixture(scope="module")
def photo(arch):
    model = arch.build_model("photo", 2, num_groups=1, num_blocks=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.2)
    return model, orte.OnnxRuntimeEngine.from_model(model, "fp32", video=False)


def _torch_engine(model):
    return submodule("engines.backends.torch_engine").TorchEngine(model, device="cpu", precision="fp32")


def test_engine_protocol_and_facts(realtime, photo):
    model, engine = realtime
    assert isinstance(engine, base.Engine)
    assert (engine.scale, engine.variant, engine.window, engine.video) == (2, "realtime", 1, True)
    assert engine.exact_halo == model.receptive_radius
    assert engine.device == torch.device("cpu") and engine.tile_multiple is None  # any size
    assert engine.providers[-1] == "CPUExecutionProvider"
    _, pengine = photo
    assert (pengine.window, pengine.exact_halo, pengine.video, pengine.tile_multiple) == (16, None, False, 16)
    assert "OnnxRuntimeEngine(photo x2" in repr(pengine)


def test_aligned_call_equals_torch(photo):
    model, engine = photo
    x = natural_image(48, 64, seed=1, batch=2)
    with torch.inference_mode():
        ref = model(x)
    assert max_abs(engine(x), ref) <= 1e-4


def test_unaligned_call_pads_and_crops(photo):
    """37x45 is padded (replicate) to 48x48 and cropped: equal to torch on the padded input."""
    model, engine = photo
    x = natural_image(37, 45, seed=2)
    y = engine(x)
    assert y.shape == (1, 3, 74, 90)
    with torch.inference_mode():
        ref = model(F.pad(x, (0, 3, 0, 11), mode="replicate"))[:, :, :74, :90]
    assert max_abs(y, ref) <= 1e-4


def test_encode_decode(realtime):
    model, engine = realtime
    x = natural_image(37, 45, seed=3)
    with torch.inference_mode():
        feat = model.encode(x)
        ref = model.decode(x, feat * 0.9)
    assert max_abs(engine.encode(x), feat) <= 1e-5
    # decode through the graph's temporal_alpha = 1 path, on an aligned size (no padding)
    x16 = natural_image(32, 48, seed=4)
    with torch.inference_mode():
        f16 = model.encode(x16) * 0.9
        ref16 = model.decode(x16, f16)
    assert max_abs(engine.decode(x16, f16), ref16) <= 1e-5
    assert ref.shape == engine.decode(x, feat * 0.9).shape


def test_engine_from_file_encodes_with_graph(realtime, tmp_path):
    model, _ = realtime
    path = tmp_path / "rt.onnx"
    ox.export_onnx(model, path, video=True)
    engine = orte.OnnxRuntimeEngine(path)  # no torch conv_in: encode runs the video graph
    x = natural_image(32, 48, seed=5)
    with torch.inference_mode():
        assert max_abs(engine.encode(x), model.encode(x)) <= 1e-5


def test_image_engine_refuses_decode(photo):
    _, engine = photo
    with pytest.raises(RuntimeError, match="video"):
        engine.decode(torch.rand(1, 3, 16, 16), torch.rand(1, 64, 16, 16))


@pytest.mark.parametrize("hw,tile", [((37, 45), 16), ((70, 52), 32)])
def test_tiled_runner_local_variant_matches_torch(realtime, hw, tile):
    from paragonsr2_pack.engines.tiling import runner as tiling

    model, engine = realtime
    image = natural_image(*hw, seed=6, batch=2).permute(0, 2, 3, 1)
    ort_out = tiling.upscale_image(engine, image, tile_size=tile)
    torch_out = tiling.upscale_image(_torch_engine(model), image, tile_size=tile)
    with torch.inference_mode():
        whole = model(image.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert max_abs(ort_out, torch_out) <= 1e-4
    assert max_abs(ort_out, whole) <= 1e-4  # tiled ORT == one whole-image torch pass


def test_tiled_runner_attention_variant_matches_torch(photo):
    from paragonsr2_pack.engines.tiling import runner as tiling

    model, engine = photo
    image = natural_image(64, 80, seed=7).permute(0, 2, 3, 1)
    ort_out = tiling.upscale_image(engine, image, tile_size=32)
    torch_out = tiling.upscale_image(_torch_engine(model), image, tile_size=32)
    assert max_abs(ort_out, torch_out) <= 1e-4


def test_temporal_pipeline_runs_on_ort_engine(realtime):
    model, engine = realtime
    frames = natural_image(32, 48, seed=8, batch=3).permute(0, 2, 3, 1)
    ort_out, _ = temporal.upscale_video(engine, frames, temporal_strength=0.2, scene_cut_sensitivity=0)
    torch_out, _ = temporal.upscale_video(_torch_engine(model), frames, temporal_strength=0.2, scene_cut_sensitivity=0)
    assert max_abs(ort_out, torch_out) <= 1e-4
