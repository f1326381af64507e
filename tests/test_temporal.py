"""The temporal video pipeline (engines/temporal.py) against the spec's frame-by-frame
recurrence, on real (reference) models and real tensors."""

from __future__ import annotations

import logging

import pytest
import torch

from packlib import load_reference, max_abs, natural_image, reference_case_for, submodule
from paragonsr2_pack.engines.runtime import contract
from paragonsr2_pack.engines.video import motion, scene_cuts, temporal

EXACT = 1e-5


class ModelEngine:
    """The Engine protocol directly on a loaded fp32 CPU model (no copy, no casting)."""

    def __init__(self, model):
        self.model = model
        self.info = contract.EngineInfo.of_model(model, "cpu", torch.float32)

    @torch.inference_mode()
    def __call__(self, lr):
        return self.model(lr)

    @torch.inference_mode()
    def encode(self, lr):
        return self.model.encode(lr)

    @torch.inference_mode()
    def decode(self, lr, feat):
        return self.model.decode(lr, feat)


def _case(variant):
    return reference_case_for(variant)


_MODELS = {}


def model_for(variant):
    if variant not in _MODELS:
        _MODELS[variant] = load_reference(_case(variant))[0]
    return _MODELS[variant]


def to_image(x_bchw):
    return x_bchw.permute(0, 2, 3, 1).contiguous()


def to_bchw(image):
    return image.permute(0, 3, 1, 2)


def clip_of(h, w, n, seed=0, shift=2):
    """n frames of a natural image panning right by ``shift`` px per frame, (n, h, w, 3)."""
    big = natural_image(h, w + shift * n, seed=seed)
    return to_image(torch.cat([big[..., shift * t : shift * t + w] for t in range(n)]))


@torch.inference_mode()
def frame_by_frame(model, frames, alpha, restarts=(), motion_adaptive=False):
    """The recurrence one frame at a time. Plain blending goes through the network's own forward
    (the spec's feature recurrence, s_t fed back as prev_feat). Motion-adaptive blending is this
    pack's own rule, defined on the LR frames: b_t = (1 - m) x_t + m b_{t-1}, features conv_in(b_t)."""
    x = to_bchw(frames).float()
    outs, feat, prev, blended = [], None, None, None
    for t in range(x.shape[0]):
        xt = x[t : t + 1]
        if feat is None or t in restarts or alpha == 0:
            out, feat = model(xt, feature_tap=True)
            blended = xt
        elif motion_adaptive:
            m = motion.motion_weights(xt, prev, alpha)
            blended = (1 - m) * xt + m * blended
            feat = model.encode(blended)
            out = model.decode(xt, feat)
        else:
            out, feat = model(xt, feature_tap=True, prev_feat=feat, alpha=alpha)
        outs.append(out)
        prev = xt
    return to_image(torch.cat(outs)).clamp(0, 1), feat


@torch.inference_mode()
def state_features(model, state):
    """The spec's state s_t: conv_in features of the state's blended LR frame."""
    return model.encode(state.blended)


def tile_count(model, frames, **kw):
    """Tiles per chunk the pipeline used, from its progress calls (one per chunk x tile)."""
    calls = []
    run(model, frames[:1], progress=lambda done, total: calls.append(total), **kw)
    return calls[-1]


def run(model, frames, **kw):
    kw.setdefault("scene_cut_sensitivity", 0)
    kw.setdefault("tile_size", 512)
    return temporal.upscale_video(ModelEngine(model), frames, **kw)


# -- the reference vectors ------------------------------------------------------------------


@torch.no_grad()
def upstream_padded_outputs(model, io, alpha):
    """photo/pro outputs as upstream's video inference makes them (and the runners reproduce,
    tests/test_upstream_padding.py): frames reflect-padded to a multiple of 16, prev_feat the
    padded frame's features, output cropped. The state's features stay the vectors' own."""
    h, w = io["x0"].shape[-2:]
    s = model.scale

    def pad(x):
        return torch.nn.functional.pad(x, (0, (-w) % 16, 0, (-h) % 16), mode="reflect")

    out0, feat0 = model(pad(io["x0"]), feature_tap=True)
    out1 = model(pad(io["x1"]), prev_feat=feat0, alpha=alpha)
    return out0[..., : h * s, : w * s], out1[..., : h * s, : w * s]


def test_reference_vectors_through_pipeline(reference_case):
    model, io = load_reference(reference_case)
    alpha = reference_case["temporal_alpha"]
    x0, x1 = to_image(io["x0"]), to_image(io["x1"])
    expect0, expect1 = io["out0"], io["out1"]
    if model.variant in ("photo", "pro"):
        expect0, expect1 = upstream_padded_outputs(model, io, alpha)
    expect0, expect1 = to_image(expect0).clamp(0, 1), to_image(expect1).clamp(0, 1)
    # one frame, then the next one continued through the returned state
    out0, state0 = run(model, x0, temporal_strength=alpha)
    out1, state1 = run(model, x1, temporal_strength=alpha, state=state0)
    errors = {
        "out0": max_abs(out0, expect0),
        "feat0": max_abs(state_features(model, state0), io["feat0"]),
        "out1": max_abs(out1, expect1),
        "feat1": max_abs(state_features(model, state1), io["feat1"]),
    }
    if model.receptive_radius is not None:  # the slow attention variants: continuation only
        both, state_both = run(model, torch.cat([x0, x1]), temporal_strength=alpha)
        errors.update(
            batch_out0=max_abs(both[:1], expect0),
            batch_out1=max_abs(both[1:], expect1),
            batch_feat1=max_abs(state_features(model, state_both), io["feat1"]),
        )
    assert max(errors.values()) <= 1e-4, errors


# -- batching, alpha = 0, tiling ------------------------------------------------------------


@pytest.mark.parametrize("motion_adaptive", [False, True])
def test_batched_equals_frame_by_frame(motion_adaptive):
    model = model_for("realtime")
    frames = clip_of(36, 44, 5, seed=1)
    expected, feat = frame_by_frame(model, frames, 0.3, motion_adaptive=motion_adaptive)
    for chunk in (2, 5):
        out, state = run(model, frames, temporal_strength=0.3, frames_per_chunk=chunk, motion_adaptive=motion_adaptive)
        assert out.shape == (5, 72, 88, 3) and out.dtype == torch.float32
        assert max_abs(out, expected) <= EXACT, chunk
        assert max_abs(state_features(model, state), feat) <= EXACT


def test_blending_changes_output():
    """Guards the tests above: the recurrence is not a no-op on this clip."""
    model = model_for("realtime")
    frames = clip_of(36, 44, 4, seed=1)
    blended, _ = run(model, frames, temporal_strength=0.3)
    single, _ = frame_by_frame(model, frames, 0.0)
    assert max_abs(blended[1:], single[1:]) > 1e-3


def test_alpha_zero_is_single_image():
    model = model_for("stream")
    frames = clip_of(30, 34, 5, seed=2)
    out, _ = run(model, frames, temporal_strength=0.0, frames_per_chunk=2, motion_adaptive=True)
    with torch.inference_mode():
        single = torch.cat([model(to_bchw(frames[t : t + 1])) for t in range(5)])
    assert max_abs(out, to_image(single).clamp(0, 1)) <= EXACT


@pytest.mark.parametrize(
    "variant, motion_adaptive, tile", [("realtime", False, 16), ("realtime", True, 16), ("stream", False, 32)]
)
def test_tiled_equals_untiled(variant, motion_adaptive, tile):
    model = model_for(variant)
    frames = clip_of(40, 72, 3, seed=3)
    whole, whole_state = run(model, frames, temporal_strength=0.25, motion_adaptive=motion_adaptive)
    tiled, tiled_state = run(
        model, frames, temporal_strength=0.25, motion_adaptive=motion_adaptive, tile_size=tile, frames_per_chunk=2
    )
    assert tile_count(model, frames) == 1 and tile_count(model, frames, tile_size=tile) >= 3
    assert max_abs(tiled, whole) <= EXACT
    assert max_abs(tiled_state.blended, whole_state.blended) == 0


# -- scene cuts -------------------------------------------------------------------------------


def _luma_mean(x):
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).mean().item()


def test_scene_cut_with_equal_brightness_resets():
    model = model_for("realtime")
    a = to_image(natural_image(40, 48, seed=11))
    b = to_image(natural_image(40, 48, seed=12))
    b = (b - _luma_mean(b) + _luma_mean(a)).clamp(0, 1)
    # upstream's rule (mean luma jump > 30/255) cannot see this cut
    assert abs(_luma_mean(a) - _luma_mean(b)) * 255 < 1.0
    frames = torch.cat([a, a, a, b, b])
    single, _ = frame_by_frame(model, frames, 0.0)
    cut, _ = run(model, frames, temporal_strength=0.3, scene_cut_sensitivity=0.8, frames_per_chunk=2)
    no_cut, _ = run(model, frames, temporal_strength=0.3, scene_cut_sensitivity=0.0)
    assert max_abs(cut[3], single[3]) <= EXACT  # first frame after the cut: its own features
    assert max_abs(no_cut[3], single[3]) > 1e-2  # without detection, scene a bleeds in


def test_cut_detection_scores():
    a = natural_image(64, 64, seed=5)
    noisy = (a + 0.03 * torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    other = natural_image(64, 64, seed=6)
    thumbs = scene_cuts.thumbnails(torch.cat([noisy, other]))
    assert thumbs.shape == (5, 32, 32)
    scores = scene_cuts.change_scores(thumbs, None)
    assert scores[0] == float("inf")
    assert scores[1:4].max() < 0.15 and scores[4] > 0.6  # grain vs a cut (scene_cuts docstring)
    assert scene_cuts.detect_cuts(thumbs, None, 0.8) == [True, False, False, False, True]
    assert scene_cuts.detect_cuts(thumbs, thumbs[-1], 0.0) == [False] * 5
    assert scene_cuts.cut_threshold(0.6) == pytest.approx(0.54)


# -- state continuation -----------------------------------------------------------------------


@pytest.mark.parametrize("motion_adaptive", [False, True])
def test_state_continuation(motion_adaptive):
    model = model_for("realtime")
    frames = clip_of(40, 56, 7, seed=4)
    kw = dict(
        temporal_strength=0.3,
        motion_adaptive=motion_adaptive,
        tile_size=32,
        frames_per_chunk=3,
        scene_cut_sensitivity=0.6,
    )
    whole, whole_state = run(model, frames, **kw)
    first, state = run(model, frames[:3], **kw)
    second, state2 = run(model, frames[3:], state=state, **kw)
    assert state2.frames_seen == 7
    assert max_abs(torch.cat([first, second]), whole) <= 1e-6
    assert max_abs(state2.blended, whole_state.blended) <= 1e-6
    # the state is per frame, not per tile: the next batch may use another tile grid
    regrid, _ = run(model, frames[3:], state=state, **dict(kw, tile_size=16))
    assert max_abs(regrid, whole[3:]) <= EXACT
    # without the state the second batch restarts: a visible difference at the boundary
    fresh, _ = run(model, frames[3:], **kw)
    assert max_abs(fresh[0], whole[3]) > 1e-4


def test_mismatched_state_is_ignored(caplog):
    model = model_for("realtime")
    frames = clip_of(40, 56, 3, seed=4)
    _, state = run(model, frames, temporal_strength=0.3)
    small = frames[:, :32, :40]
    fresh, _ = run(model, small, temporal_strength=0.3)
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        out, _ = run(model, small, temporal_strength=0.3, state=state)
    assert "starting a fresh state" in caplog.text
    assert max_abs(out, fresh) == 0


# -- channels, progress, interrupt -------------------------------------------------------------


def test_gray_and_rgba_frames():
    model = model_for("realtime")
    rgb = clip_of(24, 32, 3, seed=7)
    gray = rgb.mean(dim=-1, keepdim=True)
    out_gray, _ = run(model, gray, temporal_strength=0.2)
    expected, _ = run(model, gray.expand(-1, -1, -1, 3).contiguous(), temporal_strength=0.2)
    assert out_gray.shape == (3, 48, 64, 3)  # like the image runner: gray comes back as RGB
    assert max_abs(out_gray, expected) == 0
    alpha = torch.linspace(0, 1, 32).expand(3, 24, 32)[..., None]
    out_rgba, _ = run(model, torch.cat([rgb, alpha], dim=-1), temporal_strength=0.2)
    plain, _ = run(model, rgb, temporal_strength=0.2)
    assert out_rgba.shape == (3, 48, 64, 4)
    assert max_abs(out_rgba[..., :3], plain) == 0
    assert out_rgba[..., 3].min() >= 0 and out_rgba[..., 3].max() <= 1
    assert max_abs(out_rgba[..., 3].mean(dim=1), torch.linspace(0, 1, 64).expand(3, 64)) < 0.03


def test_progress_and_interrupt():
    model = model_for("realtime")
    frames = clip_of(32, 32, 3, seed=8)
    calls = []
    run(model, frames, tile_size=16, frames_per_chunk=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 8) for i in range(9)]  # 0 first, then 2 chunks x 4 tiles

    class Stop(Exception):
        pass

    count = []

    def interrupt():
        count.append(1)
        if len(count) > 2:
            raise Stop

    with pytest.raises(Stop):
        run(model, frames, tile_size=16, frames_per_chunk=2, check_interrupt=interrupt)


# -- temporal stability and ghosting (numbers in docs/video.md) -------------------------------


def _variation(frames, mask=None):
    """Mean absolute frame-to-frame change."""
    d = (frames[1:] - frames[:-1]).abs()
    return (d if mask is None else d[:, mask]).mean().item()


def _noisy(frames_bchw, seed):
    g = torch.Generator().manual_seed(seed)
    return (frames_bchw + 0.03 * torch.randn(frames_bchw.shape, generator=g)).clamp(0, 1)


def _detail(model, frames, out):
    """The learned branch of the output (output minus the fixed base upsampler): the only part
    the feature recurrence can stabilise; the base path passes input noise straight through."""
    with torch.inference_mode():
        return out - to_image(model.base(to_bchw(frames))).clamp(0, 1)


def test_blending_stabilises_a_noisy_still_clip():
    model = model_for("realtime")
    frames = to_image(_noisy(natural_image(40, 48, seed=21).expand(6, -1, -1, -1), seed=0))
    outs = {
        name: run(model, frames, temporal_strength=a, motion_adaptive=ma)[0]
        for name, a, ma in [("none", 0.0, False), ("plain", 0.2, False), ("motion", 0.2, True)]
    }
    total = {k: _variation(v) for k, v in outs.items()}
    detail = {k: _variation(_detail(model, frames, v)) for k, v in outs.items()}
    print("still clip variation", total, "detail branch", detail)
    assert total["plain"] < total["none"]
    assert detail["plain"] < 0.85 * detail["none"]
    # motion-adaptive blending keeps most of the gain where nothing moves
    assert detail["none"] - detail["motion"] > 0.8 * (detail["none"] - detail["plain"])


def test_motion_adaptive_leaves_a_smaller_trail():
    model = model_for("realtime")
    h, w, n, s = 40, 56, 6, model.scale
    background = natural_image(h, w, seed=21)[0]
    square = natural_image(12, 12, seed=22)[0] * 0.5 + 0.4
    clip = []
    for t in range(n):
        frame = background.clone()
        frame[:, 14:26, 4 + 3 * t : 16 + 3 * t] = square  # moves 3 LR px per frame
        clip.append(frame)
    frames = to_image(_noisy(torch.stack(clip), seed=1))
    single = run(model, frames, temporal_strength=0.0)[0]
    plain = run(model, frames, temporal_strength=0.2)[0]
    adaptive = run(model, frames, temporal_strength=0.2, motion_adaptive=True)[0]
    trail_plain, trail_adaptive = [], []
    for t in range(1, n):  # where the square was or is, with a 2 px margin
        region = torch.zeros(h * s, w * s, dtype=torch.bool)
        region[12 * s : 28 * s, (2 + 3 * (t - 1)) * s : (18 + 3 * t) * s] = True
        trail_plain.append((plain[t] - single[t]).abs()[region].mean().item())
        trail_adaptive.append((adaptive[t] - single[t]).abs()[region].mean().item())
    static = torch.ones(h * s, w * s, dtype=torch.bool)
    static[10 * s : 30 * s] = False  # rows the square never reaches
    flicker = {
        k: _variation(_detail(model, frames, v), static)
        for k, v in (("single", single), ("plain", plain), ("adaptive", adaptive))
    }
    gain_plain = flicker["single"] - flicker["plain"]
    gain_adaptive = flicker["single"] - flicker["adaptive"]
    trail_plain, trail_adaptive = sum(trail_plain) / (n - 1), sum(trail_adaptive) / (n - 1)
    print(
        f"trail plain {trail_plain:.5f} adaptive {trail_adaptive:.5f}; static detail gain "
        f"plain {gain_plain:.5f} adaptive {gain_adaptive:.5f}"
    )
    assert trail_adaptive < 0.5 * trail_plain
    assert gain_plain > 0 and gain_adaptive > 0.8 * gain_plain


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch here)")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_engine_matches_cpu(precision):
    TorchEngine = submodule("engines.backends.torch_engine").TorchEngine
    model = model_for("realtime")
    frames = clip_of(40, 56, 5, seed=9)
    kw = dict(temporal_strength=0.3, motion_adaptive=True, tile_size=32, frames_per_chunk=2, scene_cut_sensitivity=0)
    cpu, _ = temporal.upscale_video(ModelEngine(model), frames, **kw)
    gpu, state = temporal.upscale_video(TorchEngine(model, "cuda", precision), frames, **kw)
    assert state.blended.device.type == "cpu" and gpu.device.type == "cpu"
    assert max_abs(gpu, cpu) <= (5e-3 if precision == "fp32" else 3e-2)  # cuDNN may use TF32


def test_out_of_memory_halves_the_batch_then_the_tile(caplog):
    """An engine whose device fits at most 2 frames per call, then one that fits only small
    tiles: the runner backs off, and since the state is per frame the result is unchanged."""

    class SmallDevice(ModelEngine):
        def decode(self, lr, feat):
            if lr.shape[0] > 2:
                raise MemoryError("simulated: device allocator failed")
            return super().decode(lr, feat)

    class SmallTiles(ModelEngine):
        def encode(self, lr):
            if lr.shape[-1] > 48:
                raise MemoryError("simulated: device allocator failed")
            return super().encode(lr)

    model = model_for("realtime")
    frames = clip_of(40, 64, 5, seed=10)
    expected, _ = run(model, frames, temporal_strength=0.3, frames_per_chunk=5)
    kw = dict(temporal_strength=0.3, frames_per_chunk=5, tile_size=512, scene_cut_sensitivity=0)
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        out, _ = temporal.upscale_video(SmallDevice(model), frames, **kw)
    assert "2 frame(s) per call" in caplog.text
    assert max_abs(out, expected) <= EXACT
    caplog.clear()
    calls = []
    with caplog.at_level(logging.WARNING, logger="ParagonSR2"):
        out, _ = temporal.upscale_video(SmallTiles(model), frames, progress=lambda d, t: calls.append((d, t)), **kw)
    assert "retrying with 32 px tiles, 1 frame(s) per call" in caplog.text
    assert max_abs(out, expected) <= EXACT
    assert calls[-1][0] == calls[-1][1]  # the progress bar ends full after the re-plan

    class NoMemory(ModelEngine):
        def decode(self, lr, feat):
            raise MemoryError("simulated: device allocator failed")

    with pytest.raises(RuntimeError, match="smaller tile_size"):
        temporal.upscale_video(NoMemory(model), frames, frames_per_chunk=2, tile_size=512)


def test_onnxruntime_video_engine_runs_the_pipeline():
    """The pipeline only needs encode/decode: an exported video graph gives the same frames."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    from paragonsr2_pack.engines.backends import onnxruntime_engine as ort_engine

    model = model_for("realtime")
    engine = ort_engine.OnnxRuntimeEngine.from_model(model, precision="fp32", video=True)
    frames = clip_of(32, 40, 4, seed=12)
    kw = dict(temporal_strength=0.3, motion_adaptive=True, tile_size=16, frames_per_chunk=3, scene_cut_sensitivity=0)
    expected, _ = run(model, frames, **kw)
    out, _ = temporal.upscale_video(engine, frames, **kw)
    assert tile_count(model, frames, tile_size=16) > 1
    assert max_abs(out, expected) <= 1e-4


def test_cpu_frames_per_call():
    """Auto on the CPU: one frame per call for frame-sized tiles, several small frames per call;
    a user's frames_per_chunk is honoured."""
    engine = submodule("engines.backends.torch_engine").TorchEngine(model_for("realtime"), "cpu", "fp32")
    plenty = lambda: 64 << 30  # noqa: E731
    tiles, chunk = temporal.plan_video(engine, 256, 256, 30, 0, 0, None, plenty)
    assert len(tiles) == 1 and chunk == 1
    tiles, chunk = temporal.plan_video(engine, 40, 48, 30, 0, 0, None, plenty)
    assert len(tiles) == 1 and chunk == 30
    assert temporal.plan_video(engine, 256, 256, 30, 0, 4, None, plenty)[1] == 4
    frames = clip_of(40, 48, 6, seed=13)
    expected, _ = frame_by_frame(model_for("realtime"), frames, 0.3)
    out, _ = temporal.upscale_video(engine, frames, temporal_strength=0.3, scene_cut_sensitivity=0)
    assert max_abs(out, expected) <= EXACT
