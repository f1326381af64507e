"""Output size of the Upscale and Video Upscale nodes: the model's factor (default, old
workflows unchanged), another factor, or a target long side. The resize (bicubic,
antialiased) runs per image / per chunk inside the runners; the expected values here resize
the model-factor output of the same node independently."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from packlib import load_reference, max_abs, natural_image, reference_case_for, run_node, submodule
from paragonsr2_pack.engines.backends import torch_engine as te
from paragonsr2_pack.engines.runtime import contract
from paragonsr2_pack.engines.tiling import runner as tiling
from paragonsr2_pack.engines.video import temporal
from paragonsr2_pack.nodes import image_nodes, video_nodes

Upscale, Video = image_nodes.ParagonSR2Upscale, video_nodes.ParagonSR2VideoUpscale


@pytest.fixture(scope="module")
def realtime():
    model, _ = load_reference(reference_case_for("realtime"))
    return contract.ModelHandle(model=model, name="rt", precision="fp32")


def images(h, w, batch=2, rgba=False):
    x = natural_image(h, w, batch=batch, seed=1).permute(0, 2, 3, 1)
    if rgba:
        x = torch.cat([x, torch.linspace(0, 1, w).expand(batch, h, w)[..., None]], dim=-1)
    return x.contiguous()


def resized(native_bhwc, size):
    x = native_bhwc.permute(0, 3, 1, 2)
    y = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(0, 1).permute(0, 2, 3, 1)


def node_inputs_of(cls):
    return cls.INPUT_TYPES()["optional"]


@pytest.mark.parametrize("cls", [Upscale, Video])
def test_inputs_are_optional_and_default_to_the_model_factor(cls):
    optional = node_inputs_of(cls)
    kind, opts = optional["output_size"]
    assert kind == "COMBO" and opts["options"] == ["model factor", "factor", "long side"]
    assert opts["default"] == "model factor"
    assert optional["output_factor"][0] == "FLOAT" and optional["output_long_side"][0] == "INT"
    for name in ("output_size", "output_factor", "output_long_side"):
        assert optional[name][1].get("tooltip")


def test_output_dims_rule():
    dims = submodule("engines.tiling.output_size").output_dims
    assert dims("model factor", 1.5, 100, 37, 45, 2) is None
    assert dims("factor", 2.0, 100, 37, 45, 2) is None  # the model's own size: no resize
    assert dims("factor", 1.5, 100, 37, 45, 2) == (round(37 * 1.5), round(45 * 1.5))
    assert dims("factor", 0.001, 100, 37, 45, 2) == (1, 1)
    assert dims("long side", 1.0, 100, 37, 45, 2) == (round(37 * 100 / 45), 100)
    assert dims("long side", 1.0, 100, 45, 37, 4) == (100, round(37 * 100 / 45))
    for bad in (("sideways", 1.0, 10), ("factor", 0.0, 10), ("long side", 1.0, 0)):
        with pytest.raises(ValueError, match="ParagonSR2"):
            dims(bad[0], bad[1], bad[2], 10, 10, 2)


def test_upscale_node_factor_and_long_side(realtime):
    x = images(30, 41, rgba=True)
    (native,) = run_node(Upscale, model=realtime, image=x, device="cpu")
    (same,) = run_node(Upscale, model=realtime, image=x, device="cpu", output_size="factor", output_factor=2.0)
    assert torch.equal(native, same)
    (out,) = run_node(Upscale, model=realtime, image=x, device="cpu", output_size="factor", output_factor=1.0)
    assert out.shape == (2, 30, 41, 4)
    assert max_abs(out, resized(native, (30, 41))) < 1e-6
    (out,) = run_node(
        Upscale, model=realtime, image=x, device="cpu", output_size="long side", output_long_side=150, tile_size=16
    )
    assert out.shape == (2, round(30 * 150 / 41), 150, 4)
    assert max_abs(out, resized(native, out.shape[1:3])) < 1e-5  # realtime tiles are exact


def test_video_node_factor(realtime):
    x = images(24, 20, batch=3)
    native, _ = run_node(Video, model=realtime, frames=x, device="cpu", frames_per_chunk=2)
    out, state = run_node(
        Video, model=realtime, frames=x, device="cpu", frames_per_chunk=2, output_size="factor", output_factor=1.5
    )
    assert out.shape == (3, 36, 30, 3) and state.frames_seen == 3
    assert max_abs(out, resized(native, (36, 30))) < 1e-6
    out, _ = run_node(Video, model=realtime, frames=x, device="cpu", output_size="long side", output_long_side=64)
    assert out.shape == (3, 64, round(20 * 64 / 24), 3)


def test_runners_take_a_target_size(realtime):
    engine = te.TorchEngine(realtime.model, "cpu", "fp32")
    x = images(20, 28, batch=3)
    native = tiling.upscale_image(engine, x)
    out = tiling.upscale_image(engine, x, output_size=(17, 23), batch_chunk=2)
    assert max_abs(out, resized(native, (17, 23))) < 1e-6
    frames, _ = temporal.upscale_video(engine, x, output_size=(17, 23), frames_per_chunk=2)
    ref, _ = temporal.upscale_video(engine, x, frames_per_chunk=2)
    assert max_abs(frames, resized(ref, (17, 23))) < 1e-6
