"""photo / pro give upstream's inference result: the LR image reflect-padded on the bottom/right
to a multiple of 16, the network run on that, the output cropped (upstream
scripts/run_inference.py and scripts/benchmark_release.py; their quality tables come from that
path). realtime / stream run unpadded (upstream pads them by 1, i.e. not at all).

The expected values here are computed independently of the pack's runners: the network's own
forward on ``F.pad(..., mode="reflect")`` of the image, then cropped. Whole-image runs must equal
it up to float rounding (the engines run the optimised path / the exported graph), tiled runs
must stay within the tiled-vs-whole PSNR floors of docs/tiling.md *measured against it*, and both
must be far closer to it than the unpadded network is.

Small models (one group of two blocks, layer scales raised so attention matters) keep the two
shared CPU cores from spending minutes; the reference weights cover one whole-image case each.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from packlib import load_reference, max_abs, natural_image, psnr, reference_case_for, run_node
from paragonsr2_pack.engines.backends import torch_engine as te
from paragonsr2_pack.engines.runtime import contract
from paragonsr2_pack.engines.tiling import plan, sizing
from paragonsr2_pack.engines.tiling import runner as tiling
from paragonsr2_pack.engines.video import temporal
from paragonsr2_pack.nodes import image_nodes, video_nodes

TOL = 1e-4  # float32 rounding between the optimised path / ONNX graph and the plain forward
TILED_FLOOR = {"photo": 50.0, "pro": 45.0}  # dB against upstream's whole padded result


def upstream_pad(x_bchw: torch.Tensor, window: int = 16) -> torch.Tensor:
    """What upstream's scripts do before the network: reflect, bottom/right, to a multiple."""
    h, w = x_bchw.shape[-2:]
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    return F.pad(x_bchw, (0, pad_w, 0, pad_h), mode="reflect") if (pad_h or pad_w) else x_bchw


@torch.no_grad()
def upstream_result(model, x_bchw: torch.Tensor) -> torch.Tensor:
    """(B, sH, sW, 3) clamped: the network on the padded image, cropped back."""
    h, w = x_bchw.shape[-2:]
    s = model.scale
    out = model(upstream_pad(x_bchw))[..., : h * s, : w * s]
    return out.clamp(0, 1).permute(0, 2, 3, 1)


@torch.no_grad()
def unpadded_result(model, x_bchw: torch.Tensor) -> torch.Tensor:
    return model(x_bchw).clamp(0, 1).permute(0, 2, 3, 1)


def small_model(arch, variant: str):
    model = arch.build_model(variant, 2, num_groups=1, num_blocks=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.2)  # the factory's tiny layer scales would hide the attention
    return model


# pro (channel attention in every block, 3x photo's blocks) runs in the slow pass only
VARIANTS = ["photo", pytest.param("pro", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=VARIANTS)
def small(request, arch):
    return small_model(arch, request.param)


def bhwc(x_bchw):
    return x_bchw.permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_weights_whole_image_is_upstreams(variant):
    model, _ = load_reference(reference_case_for(variant))
    x = natural_image(21, 27, seed=3)  # pads to 32x32 (the full-size networks are slow on CPU)
    expected = upstream_result(model, x)
    out = tiling.upscale_image(te.TorchEngine(model, "cpu", "fp32"), bhwc(x))
    assert out.shape == expected.shape
    assert max_abs(out, expected) < TOL
    # the check means something: the unpadded network differs visibly at the borders
    assert max_abs(unpadded_result(model, x), expected) > 1e-2


def test_whole_and_tiled_torch(small):
    engine = te.TorchEngine(small, "cpu", "fp32")
    x = natural_image(45, 51, seed=1, batch=2)  # odd sizes, B > 1
    expected = upstream_result(small, x)
    whole = tiling.upscale_image(engine, bhwc(x))
    assert max_abs(whole, expected) < TOL
    # tiled: 70x75 pads to 80x80; 32-px tiles with the default halo leave the outer tiles'
    # contexts short of the opposite borders
    x = natural_image(70, 75, seed=1)
    expected = upstream_result(small, x)
    assert len(plan.plan_tiles(80, 80, 32, sizing.default_halo(engine.info))) == 9
    tiled = tiling.upscale_image(engine, bhwc(x), tile_size=32)
    assert psnr(tiled, expected) >= TILED_FLOOR[small.variant]
    assert psnr(tiled, expected) > psnr(unpadded_result(small, x), expected) + 10


def test_whole_and_tiled_onnxruntime(small):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from paragonsr2_pack.engines.backends import onnxruntime_engine as orte

    engine = orte.OnnxRuntimeEngine.from_model(small, "fp32", video=True)
    x = natural_image(39, 50, seed=2)
    expected = upstream_result(small, x)
    assert max_abs(tiling.upscale_image(engine, bhwc(x)), expected) < TOL
    big = natural_image(70, 75, seed=2)
    tiled = tiling.upscale_image(engine, bhwc(big), tile_size=32)
    assert psnr(tiled, upstream_result(small, big)) >= TILED_FLOOR[small.variant]
    # the video graph through the temporal runner, alpha 0: upstream's per-frame result
    frames, _ = temporal.upscale_video(engine, bhwc(x), temporal_strength=0.0)
    assert max_abs(frames, expected) < TOL


@torch.no_grad()
def upstream_video(model, frames_bchw: torch.Tensor, alpha: float) -> torch.Tensor:
    """Upstream's process_video: each frame padded, prev_feat = the previous padded frame's
    blended features, output cropped (no scene cuts in this clip)."""
    h, w = frames_bchw.shape[-2:]
    s, prev, outs = model.scale, None, []
    for t in range(frames_bchw.shape[0]):
        out, prev = model(upstream_pad(frames_bchw[t : t + 1]), feature_tap=True, prev_feat=prev, alpha=alpha)
        outs.append(out[..., : h * s, : w * s])
    return torch.cat(outs).clamp(0, 1).permute(0, 2, 3, 1)


def test_video_runner_is_upstreams_recurrence(small):
    engine = te.TorchEngine(small, "cpu", "fp32")
    base = natural_image(35, 41, seed=4)
    clip = torch.cat([base, (base * 0.97 + 0.01), base.roll(1, dims=-1)])  # gentle motion, no cut
    expected = upstream_video(small, clip, 0.3)
    out, state = temporal.upscale_video(engine, bhwc(clip), temporal_strength=0.3, scene_cut_sensitivity=0.0)
    assert max_abs(out, expected) < TOL
    # the state continues across batches at the unpadded size
    more, _ = temporal.upscale_video(
        engine, bhwc(clip[:1]), temporal_strength=0.3, scene_cut_sensitivity=0.0, state=state
    )
    again = upstream_video(small, torch.cat([clip, clip[:1]]), 0.3)[-1:]
    assert max_abs(more, again) < TOL


def test_local_variants_stay_unpadded(arch):
    """realtime / stream: upstream's window is 1, so the runner output is the plain network."""
    for variant in ("realtime", "stream"):
        model, _ = load_reference(reference_case_for(variant))
        x = natural_image(21, 30, seed=5)
        out = tiling.upscale_image(te.TorchEngine(model, "cpu", "fp32"), bhwc(x))
        assert max_abs(out, unpadded_result(model, x)) < TOL


def test_nodes_give_upstreams_result(arch):
    model = small_model(arch, "photo")
    handle = contract.ModelHandle(model=model, name="photo-small", precision="fp32")
    x = natural_image(27, 34, seed=6, batch=2)
    expected = upstream_result(model, x)
    (image,) = run_node(image_nodes.ParagonSR2Upscale, model=handle, image=bhwc(x), device="cpu")
    assert max_abs(image, expected) < TOL
    frames, _ = run_node(
        video_nodes.ParagonSR2VideoUpscale, model=handle, frames=bhwc(x), temporal_strength=0.0, device="cpu"
    )
    assert max_abs(frames, expected) < TOL


def test_sides_reflect_can_pad_match_upstream_and_smaller_ones_are_refused(arch):
    """Reflect needs pad < side: upstream pads a 9-px side by 7, but stops with torch's
    'Padding size should be less than the corresponding input dimension' for 8 px and less.
    The runner does the same for sides of 9..15 px and refuses 1..8 px with a clear message."""
    model = small_model(arch, "photo")
    engine = te.TorchEngine(model, "cpu", "fp32")
    x = natural_image(9, 20, seed=7)
    assert max_abs(tiling.upscale_image(engine, bhwc(x)), upstream_result(model, x)) < TOL
    with pytest.raises(RuntimeError):
        upstream_pad(natural_image(8, 20))  # what upstream's script does with it
    for h, w in ((8, 20), (20, 3), (1, 1)):
        with pytest.raises(ValueError, match="at least 9"):
            tiling.upscale_image(engine, bhwc(natural_image(h, w)))


def test_tensorrt_engine_gets_upstreams_borders(arch, tmp_path):
    """TensorRT (GPU only): the runner pads before the engine, so the profile sees 16-aligned
    boxes and the result is upstream's within fp32 TensorRT's tolerance."""
    from paragonsr2_pack.engines.backends import tensorrt_build as build

    reason = build.unavailable_reason()
    if reason is not None:
        pytest.skip(f"TensorRT not testable here: {reason}")
    from paragonsr2_pack.engines.backends import tensorrt_engine as trt_engine

    model = small_model(arch, "photo")
    from paragonsr2_pack.engines.backends import engine_cache as ec

    profile = ec.Profile(min_side=32, opt_side=64, max_side=128, min_batch=1, opt_batch=1, max_batch=2)
    engine = trt_engine.load_or_build(model, precision="fp32", profile=profile, models_dir=tmp_path)
    x = natural_image(45, 51, seed=8)
    expected = upstream_result(model, x)
    assert max_abs(tiling.upscale_image(engine, bhwc(x)), expected) <= 1e-3


def test_rgba_alpha_and_output_size_with_padding(arch):
    """Tiles planned on the padded image paste alpha and colour cropped to the real image,
    and an output size resizes the cropped result."""
    model = small_model(arch, "photo")
    engine = te.TorchEngine(model, "cpu", "fp32")
    x = natural_image(27, 34, seed=9)
    alpha = torch.linspace(0, 1, 34).expand(1, 27, 34)
    rgba = torch.cat([bhwc(x), alpha[..., None]], dim=-1)
    out = tiling.upscale_image(engine, rgba, tile_size=16)
    assert out.shape == (1, 54, 68, 4)
    whole_alpha = F.interpolate(alpha[:, None], scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert max_abs(out[..., 3], whole_alpha[:, 0]) < 1e-6
    assert psnr(out[..., :3], upstream_result(model, x)) >= TILED_FLOOR["photo"]
    small = tiling.upscale_image(engine, rgba, output_size=(20, 25))
    native = tiling.upscale_image(engine, rgba)
    expected = (
        F.interpolate(native.permute(0, 3, 1, 2), size=(20, 25), mode="bicubic", antialias=True, align_corners=False)
        .clamp(0, 1)
        .permute(0, 2, 3, 1)
    )
    assert max_abs(small, expected) < 1e-6
