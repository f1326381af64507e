"""The nodes on hostile inputs: empty batches, 1x1 images, NaN pixels, odd channel counts,
foreign temporal states, broken (NaN) weights. Each gives a defined result or one clear
ValueError/RuntimeError line, never a shape error from deep inside torch.

Real node calls (packlib.run_node) with real model files written by the tests."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
from PIL import Image

from packlib import PACK_ROOT, load_reference, max_abs, natural_image, reference_case_for, run_node
from paragonsr2_pack.engines.backends import torch_engine as te
from paragonsr2_pack.engines.runtime import contract
from paragonsr2_pack.engines.tiling import runner as tiling
from paragonsr2_pack.engines.video import temporal
from paragonsr2_pack.nodes import image_nodes, video_nodes

Upscale, Video = image_nodes.ParagonSR2Upscale, video_nodes.ParagonSR2VideoUpscale

# torch-internal wording that must never reach the user
TORCH_INTERNALS = ("size of tensor", "shape '", "Expected", "dimension", "must match the size", "Given groups")


@pytest.fixture(scope="module")
def realtime():
    model, _ = load_reference(reference_case_for("realtime"))
    return contract.ModelHandle(model=model, name="rt.safetensors", precision="fp32")


@pytest.fixture(scope="module")
def photo(arch):
    model = arch.build_model("photo", 2, num_groups=1, num_blocks=1)
    return contract.ModelHandle(model=model, name="photo.safetensors", precision="fp32")


def upscale(handle, image, **kw):
    return run_node(Upscale, model=handle, image=image, device="cpu", **kw)[0]


def video(handle, frames, **kw):
    return run_node(Video, model=handle, frames=frames, device="cpu", **kw)


def image(h, w, batch=1, channels=3, seed=0):
    x = natural_image(h, w, seed=seed, batch=batch).permute(0, 2, 3, 1)
    if channels == 1:
        return x[..., :1].contiguous()
    if channels == 2:
        return torch.cat([x[..., :1], torch.ones_like(x[..., :1])], dim=-1)
    if channels == 4:
        return torch.cat([x, torch.linspace(0, 1, w).expand(batch, h, w)[..., None]], dim=-1)
    return x.contiguous()


def clear_message(exc_info) -> str:
    """The message must be one line of ours, not torch's."""
    text = str(exc_info.value)
    assert "\n" not in text.strip(), text
    assert "ParagonSR2" in text, text
    assert not any(s in text for s in TORCH_INTERNALS), text
    return text


def test_empty_batches(realtime):
    empty = torch.zeros(0, 32, 32, 3)
    with pytest.raises(ValueError) as err:
        upscale(realtime, empty)
    assert "empty" in clear_message(err)
    with pytest.raises(ValueError) as err:
        video(realtime, empty)
    assert "empty" in clear_message(err)


def test_one_pixel_images(realtime, photo):
    for channels in (1, 3, 4):
        out = upscale(realtime, image(1, 1, batch=2, channels=channels))
        assert out.shape == (2, 2, 2, 4 if channels == 4 else 3)
        assert bool(torch.isfinite(out).all()) and out.min() >= 0 and out.max() <= 1
    frames, state = video(realtime, image(1, 1, batch=3))
    assert frames.shape == (3, 2, 2, 3) and state.frames_seen == 3
    # photo/pro: upstream's reflect padding to 16 cannot pad a side of 8 px or less
    with pytest.raises(ValueError) as err:
        upscale(photo, image(1, 1))
    assert "at least 9" in clear_message(err)
    with pytest.raises(ValueError) as err:
        video(photo, image(4, 40, batch=2))
    assert "at least 9" in clear_message(err)


def test_nan_and_inf_pixels_are_refused(realtime):
    x = image(20, 24)
    x[0, 3, 5, 1] = float("nan")
    with pytest.raises(ValueError) as err:
        upscale(realtime, x)
    assert "NaN" in clear_message(err)
    y = image(20, 24, batch=2)
    y[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError) as err:
        video(realtime, y)
    assert "NaN" in clear_message(err)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(8, 8, 3),  # one image without the batch axis
        torch.zeros(1, 8, 8, 2),  # gray + alpha
        torch.zeros(1, 8, 8, 5),
        torch.zeros(1, 3, 16, 16),  # channels first (a torch habit, not an IMAGE)
        torch.zeros(1, 8, 8, 3, dtype=torch.uint8),
    ],
)
def test_tensors_that_are_no_image(realtime, bad):
    for call in (upscale, video):
        with pytest.raises(ValueError) as err:
            call(realtime, bad)
        clear_message(err)


def test_channel_counts_give_defined_results(realtime):
    gray = image(12, 14, channels=1)
    rgb = gray.expand(-1, -1, -1, 3).contiguous()
    assert max_abs(upscale(realtime, gray), upscale(realtime, rgb)) < 1e-6  # memory layouts differ
    rgba = image(12, 14, channels=4)
    out = upscale(realtime, rgba)
    assert out.shape[-1] == 4
    assert max_abs(out[..., :3], upscale(realtime, rgba[..., :3].contiguous())) < 1e-6
    frames, _ = video(realtime, rgba)
    assert frames.shape[-1] == 4
    # other float types are IMAGE-like enough: computed in float32
    half = upscale(realtime, rgb.half())
    assert half.dtype == torch.float32 and max_abs(half, upscale(realtime, rgb.half().float())) < 1e-6


def test_foreign_temporal_states_restart_with_a_warning(realtime, arch, caplog):
    frames = image(16, 20, batch=2)
    fresh, _ = video(realtime, frames)
    _, small_state = video(realtime, image(10, 12, batch=1))
    other = contract.ModelHandle(model=arch.build_model("realtime", 2), name="other.safetensors")
    _, other_state = video(other, frames)
    for state in (small_state, other_state, "not a state", torch.zeros(1, 3, 16, 20)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
            out, _ = video(realtime, frames, temporal_state=state)
        assert torch.equal(out, fresh)
        assert any("temporal state" in r.getMessage() for r in caplog.records)
    # a state whose tensors were tampered with (same signature, other shapes) also restarts
    _, good = video(realtime, frames)
    broken = temporal.TemporalState(
        signature=good.signature,
        blended=torch.zeros(1, 3, 5, 5),
        last_thumb=good.last_thumb,
        last_frame=good.last_frame,
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        out, _ = video(realtime, frames, temporal_state=broken)
    assert torch.equal(out, fresh)
    assert any("temporal state" in r.getMessage() for r in caplog.records)


def nan_weight_model(arch):
    model = arch.build_model("realtime", 2)
    with torch.no_grad():
        model.conv_out.weight[0, 0, 1, 1] = float("nan")
    return model


def test_nan_weights_fail_naming_the_model(arch, tmp_path, monkeypatch):
    (tmp_path / "upscale_models").mkdir()
    arch.save_model(nan_weight_model(arch), tmp_path / "upscale_models" / "broken.safetensors")
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path))
    handle, _ = run_node(image_nodes.ParagonSR2Loader, model_name="broken.safetensors", precision="fp32")
    for call in (lambda: upscale(handle, image(20, 24)), lambda: video(handle, image(20, 24, batch=2))):
        with pytest.raises(RuntimeError) as err:
            call()
        text = clear_message(err)
        assert "broken.safetensors" in text and "NaN" in text


def test_nan_weights_in_the_runners(arch):
    """The runners' own error (the CLI shows it): NonFiniteOutputError, after the low-precision
    engine's fp32 retry, which stays."""
    model = nan_weight_model(arch)
    engine = te.TorchEngine(model, "cpu", "bf16")
    with pytest.raises(RuntimeError, match="NaN") as err:
        tiling.upscale_image(engine, image(20, 24))
    assert type(err.value).__name__ == "NonFiniteOutputError"
    assert engine.fallbacks >= 1  # the bf16 result was recomputed in fp32 first
    with pytest.raises(RuntimeError, match="NaN"):
        temporal.upscale_video(te.TorchEngine(model, "cpu", "fp32"), image(20, 24, batch=2))


def test_nan_weights_fail_the_command_line_naming_the_model(arch, tmp_path):
    arch.save_model(nan_weight_model(arch), tmp_path / "broken.safetensors")
    Image.new("RGB", (24, 20), (90, 120, 150)).save(tmp_path / "in.png")
    result = subprocess.run(
        [
            sys.executable,
            str(PACK_ROOT / "paragonsr2.py"),
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "out.png"),
            "--model",
            str(tmp_path / "broken.safetensors"),
            "--device",
            "cpu",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.safetensors" in lines[0] and "NaN" in lines[0], result.stderr
    assert not (tmp_path / "out.png").exists()
