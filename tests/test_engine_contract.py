"""The engine contract: EngineInfo filled by every backend, backends chosen through the registry
(nodes' and CLI's one table), runners that need nothing but ``info`` and the three calls, one
out-of-memory error type and one alpha path for images and video. Real weights throughout
(the bundled demo model and the reference weights)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from packlib import PACK_ROOT, load_reference, max_abs, natural_image, reference_case_for, submodule
from paragonsr2_pack.engines.backends import registry
from paragonsr2_pack.engines.runtime import backoff, contract
from paragonsr2_pack.engines.tiling import runner as tiling
from paragonsr2_pack.engines.video import temporal

DEMO = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
SAMPLE = PACK_ROOT / "assets" / "chelsea.png"


@pytest.fixture(scope="module")
def demo(arch):
    return arch.load_model(DEMO)


def _bhwc(h, w, batch=1, seed=0):
    return natural_image(h, w, seed=seed, batch=batch).permute(0, 2, 3, 1).contiguous()


def _available(backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
        pytest.importorskip("onnx", reason="onnx is not installed")


@pytest.mark.parametrize(
    "backend,allocator", [("torch", contract.ALLOCATOR_MALLOC), ("onnxruntime", contract.ALLOCATOR_ARENA)]
)
def test_registry_backends_fill_the_contract(demo, backend, allocator):
    _available(backend)
    engine = registry.make_engine(backend, demo, "cpu", "auto", video=True)
    assert isinstance(engine, contract.Engine)
    info = engine.info
    expected = dict(
        device=torch.device("cpu"),
        dtype=torch.float32,
        variant="realtime",
        scale=2,
        window=1,
        exact_halo=demo.receptive_radius,
        tile_multiple=None,
        min_tile=None,
        max_tile=None,
        allocator=allocator,
        supports_video=True,
    )
    assert {name: getattr(info, name) for name in expected} == expected
    assert info.precision == "fp32"
    # the attributes callers print are the same facts
    assert (engine.scale, engine.device, engine.variant, engine.precision) == (2, info.device, "realtime", "fp32")
    with pytest.raises(AttributeError):  # frozen: one set of facts for the engine's lifetime
        info.scale = 4
    image = _bhwc(37, 45, batch=2)
    whole = demo(image.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert max_abs(tiling.upscale_image(engine, image, tile_size=16), whole) <= 1e-4


def test_registry_refuses_what_a_backend_cannot_serve(demo):
    with pytest.raises(ValueError, match="torch, onnxruntime, tensorrt"):
        registry.make_engine("no_such_backend", demo)
    with pytest.raises(ValueError, match="TensorRT runs on CUDA GPUs only"):
        registry.make_engine("tensorrt", demo, "cpu")
    _available("onnxruntime")
    with pytest.raises(ValueError, match="not available for ONNX / TensorRT graphs"):
        registry.make_engine("onnxruntime", demo, "cpu", "bf16")
    image_only = registry.make_engine("onnxruntime", demo, "cpu", "fp32", video=False)
    assert not image_only.info.supports_video
    with pytest.raises(ValueError, match="single images only"):
        temporal.upscale_video(image_only, _bhwc(16, 16, batch=2))


class InfoOnly:
    """An engine with nothing but the contract: ``info`` and the three calls (``__slots__``:
    any other attribute a runner reached for would raise AttributeError)."""

    __slots__ = ("_model", "info")

    def __init__(self, model):
        self._model = model
        self.info = contract.EngineInfo.of_model(model, "cpu", torch.float32)

    @torch.inference_mode()
    def __call__(self, lr):
        return self._model(lr)

    @torch.inference_mode()
    def encode(self, lr):
        return self._model.encode(lr)

    @torch.inference_mode()
    def decode(self, lr, feat):
        return self._model.decode(lr, feat)


@pytest.mark.parametrize("variant", ["realtime", "photo"])
def test_runners_need_only_info_and_the_three_calls(variant):
    model, _ = load_reference(reference_case_for(variant, 2))
    engine = InfoOnly(model)
    image = _bhwc(40, 52, batch=2, seed=3)
    out = tiling.upscale_image(engine, image, tile_size=32)
    assert out.shape == (2, 80, 104, 3)
    frames, state = temporal.upscale_video(engine, image, temporal_strength=0.0, tile_size=32)
    # temporal_strength 0 is the single-image network on the same tile grid
    assert max_abs(frames, out) <= 1e-5 and state.signature[0] == f"{variant} x2"


def test_rgba_alpha_is_the_same_path_for_images_and_video(demo):
    engine = registry.make_engine("torch", demo, "cpu", "fp32")
    rgb = _bhwc(40, 52, batch=3, seed=5)
    alpha = torch.linspace(0, 1, 52).expand(3, 40, 52).clone()
    alpha[:, :10] = 1.0
    rgba = torch.cat([rgb, alpha[..., None]], dim=-1)
    image_out = tiling.upscale_image(engine, rgba, tile_size=16)
    video_out, _ = temporal.upscale_video(engine, rgba, temporal_strength=0.0, tile_size=16)
    bicubic = F.interpolate(alpha[:, None], scale_factor=2, mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    for out in (image_out, video_out):
        assert out.shape == (3, 80, 104, 4)
        assert max_abs(out[..., 3], bicubic) <= 1e-6  # tiled alpha == whole-image bicubic
        assert torch.all(out[:, :16, :, 3] == 1.0)  # opaque stays exactly opaque (bicubic reaches 2 px)
    assert torch.equal(image_out[..., 3], video_out[..., 3])


class NeverFits:
    """A real engine whose device never has room (every call fails like CUDA's allocator)."""

    __slots__ = ("calls", "info")

    def __init__(self, engine):
        self.info, self.calls = engine.info, 0

    def _fail(self, *_):
        self.calls += 1
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    __call__ = encode = decode = _fail


def test_image_and_video_runners_share_the_back_off_and_its_error(demo, caplog):
    engine = NeverFits(registry.make_engine("torch", demo, "cpu", "fp32"))
    frames = _bhwc(64, 64, batch=4)
    with pytest.raises(backoff.TileOutOfMemoryError, match="one image per call"):
        tiling.upscale_image(engine, frames, tile_size=64)
    image_calls, engine.calls = engine.calls, 0
    with pytest.raises(backoff.TileOutOfMemoryError, match="one frame per call"):
        temporal.upscale_video(engine, frames, frames_per_chunk=4, tile_size=64)
    # the same ladder: 4 -> 2 -> 1 images per call, then 64 -> 32 px tiles, then give up
    assert image_calls == engine.calls == 4
    assert "retrying with 32 px tiles, 1 image(s) per call" in caplog.text
    assert "retrying with 32 px tiles, 1 frame(s) per call" in caplog.text


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cli_backend_option(tmp_path, backend):
    _available(backend)
    from paragonsr2_pack import cli

    src = tmp_path / "cat.png"
    with Image.open(SAMPLE) as im:
        im.crop((150, 60, 150 + 48, 60 + 40)).save(src)
    out = tmp_path / f"cat_{backend}.png"
    assert cli.main([str(src), "-o", str(out), "--backend", backend, "--device", "cpu", "--quiet"]) == 0
    with Image.open(src) as im:
        x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)[None]
    expected = tiling.upscale_image(
        registry.make_engine("torch", submodule("paragonsr2_arch").load_model(DEMO), "cpu", "fp32"), x
    )[0]
    expected = (expected * 255).round().to(torch.int16).numpy()
    with Image.open(out) as im:
        got = np.asarray(im.convert("RGB")).astype(np.int16)
    assert got.shape == (80, 96, 3) and np.abs(got - expected).max() <= 1
