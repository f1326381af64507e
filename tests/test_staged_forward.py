"""Staged execution (cancel and progress inside one network pass) computes exactly forward().

The torch engine calls ``on_step(done, total)`` between conv_in, every body block and the tail;
a hook that raises stops the pass there. Checked with the upstream reference weights of all
four variants, on the fast path and in reference_mode, and through the engine.
"""

import pytest
import torch

from packlib import load_reference, natural_image, reference_case_for, submodule
from paragonsr2_pack import paragonsr2_arch as arch
from paragonsr2_pack.engines.backends import torch_engine as te
from paragonsr2_pack.engines.tiling import runner as tiling
from paragonsr2_pack.engines.video import temporal

VARIANTS = ["realtime", "stream", "photo", "pro"]


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, done, total):
        self.calls.append((done, total))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", ["fast", "reference"])
def test_staged_pass_is_bit_identical(variant, path):
    model, io = load_reference(reference_case_for(variant))
    x = io["x0"]  # 37x45: odd sizes, window padding on photo/pro
    recorder = _Recorder()
    with torch.inference_mode():
        if path == "reference":
            with arch.reference_mode():
                whole = model(x)
                staged = model.run_staged(x, recorder)
        else:
            whole = model(x)
            staged = model.run_staged(x, recorder)
    assert torch.equal(staged, whole)
    total = model.config.num_groups * model.config.num_blocks + 2
    assert model.stage_count == total
    assert {t for _, t in recorder.calls} == {total}
    done = [d for d, _ in recorder.calls]
    assert sorted(set(done)) == list(range(1, total + 1)) and done == sorted(done)
    # inside slow blocks (fast path only), between their large operations, the same step is
    # reported again: at least after the depthwise conv, the MLP, qkv and SDPA (more while SDPA
    # runs in groups of windows)
    if path == "fast" and variant in ("photo", "pro"):
        assert len(done) >= total + 4 * (total - 2)
    else:
        assert len(done) == total


@pytest.mark.parametrize("variant", ["photo", "pro"])
def test_attention_in_single_window_groups_is_bit_identical(variant, monkeypatch):
    """The hooked pass runs SDPA in groups of windows; with one window per group (the most
    splitting possible) the output is still exactly forward's."""
    model, _ = load_reference(reference_case_for(variant))
    x = natural_image(53, 70, seed=5)  # 4x5 windows, padding on both axes
    monkeypatch.setattr(submodule("paragonsr2_arch.fast_paths"), "SDPA_CHUNKS", 10_000)
    calls = []
    with torch.inference_mode():
        whole = model(x)
        staged = model.run_staged(x, lambda d, t: calls.append(d))
    assert torch.equal(staged, whole)
    assert len(calls) > model.stage_count + 20 * (model.stage_count - 2)  # a call between windows


@pytest.mark.parametrize("variant", VARIANTS)
def test_engine_on_step_is_bit_identical(variant):
    model, _ = load_reference(reference_case_for(variant))
    engine = te.TorchEngine(model, "cpu", "fp32")
    lr = natural_image(48, 64, seed=3, batch=2)
    recorder = _Recorder()
    plain = engine(lr)
    staged = engine(lr, on_step=recorder)
    assert torch.equal(staged, plain)
    assert engine.info.steps_per_call == model.stage_count
    assert sorted({d for d, _ in recorder.calls}) == list(range(1, engine.info.steps_per_call + 1))


class _Cancelled(Exception):
    pass


def test_raising_hook_stops_the_pass_midway():
    """A hook that raises ends the pass at that stage: later blocks never run."""
    model, _ = load_reference(reference_case_for("photo"))
    engine = te.TorchEngine(model, "cpu", "fp32")
    ran = []
    blocks = [b for g in engine.model.body for b in g.blocks]
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: ran.append(i)) for i, b in enumerate(blocks)]

    def cancel_after_three(done, total):
        if done == 3:  # conv_in + two blocks
            raise _Cancelled()

    try:
        with arch.reference_mode(), pytest.raises(_Cancelled):  # module forwards: hooks fire
            engine(natural_image(32, 32), on_step=cancel_after_three)
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1]
    # the engine is usable afterwards and still exact
    lr = natural_image(32, 32, seed=1)
    assert torch.equal(engine(lr, on_step=lambda d, t: None), engine(lr))


# -- the tiled runner: cancel points and progress inside tiles ---------------------------------


def _bhwc(h, w, seed=0):
    return natural_image(h, w, seed=seed).permute(0, 2, 3, 1).contiguous()


def test_runner_reports_every_stage_and_stays_exact(monkeypatch):
    """With the rate limit off, progress walks through every stage of every tile, starting at
    0 before the first tile; the hooked run equals the plain one bit for bit."""
    model, _ = load_reference(reference_case_for("photo"))
    engine = te.TorchEngine(model, "cpu", "fp32")
    image = _bhwc(40, 56, seed=2)
    plain = tiling.upscale_image(engine, image, tile_size=32)
    monkeypatch.setattr(tiling, "PROGRESS_INTERVAL_S", 0.0)
    updates = []
    hooked = tiling.upscale_image(
        engine, image, tile_size=32, check_interrupt=lambda: None, progress=lambda d, t: updates.append((d, t))
    )
    assert torch.equal(hooked, plain)
    total = updates[0][1]
    assert total % engine.info.steps_per_call == 0 and total > engine.info.steps_per_call  # several tiles
    assert updates == [(i, total) for i in range(total + 1)]


def test_runner_cancel_stops_inside_a_photo_tile():
    """Cancel pressed while the first tile runs: the run stops at the next stage, not after the
    tile (a photo tile has 16 blocks)."""
    model, _ = load_reference(reference_case_for("photo"))
    engine = te.TorchEngine(model, "cpu", "fp32")
    checks, updates = [], []

    def interrupt():
        checks.append(1)
        if len(checks) == 6:  # before the tile, conv_in, then inside block 1
            raise _Cancelled()

    with pytest.raises(_Cancelled):
        tiling.upscale_image(
            engine, _bhwc(64, 64), tile_size=32, check_interrupt=interrupt, progress=lambda d, t: updates.append((d, t))
        )
    assert updates[0][0] == 0 and all(d < engine.info.steps_per_call for d, _ in updates)


# -- video: the engine's decode with the hook, and the temporal runner -------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_engine_decode_on_step_is_bit_identical(variant):
    """decode(lr, feat, on_step) equals decode(lr, feat) and reports the same stages as a call:
    step 1 for the given features, then every body block and the tail."""
    model, io = load_reference(reference_case_for(variant))
    engine = te.TorchEngine(model, "cpu", "fp32")
    lr = io["x0"]  # 37x45: odd sizes, window padding on photo/pro
    feat = engine.encode(lr)
    recorder = _Recorder()
    plain = engine.decode(lr, feat)
    staged = engine.decode(lr, feat, on_step=recorder)
    assert torch.equal(staged, plain)
    steps = engine.info.steps_per_call
    assert {t for _, t in recorder.calls} == {steps}
    done = [d for d, _ in recorder.calls]
    assert sorted(set(done)) == list(range(1, steps + 1)) and done == sorted(done)
    with torch.inference_mode(), arch.reference_mode():  # the modules' own forwards
        assert torch.equal(model.run_decode_staged(lr, feat, lambda d, t: None), model.decode(lr, feat))


def _clip(n, h, w, seed=0):
    return torch.cat([_bhwc(h, w, seed=seed + t) for t in range(n)])


def test_video_progress_starts_at_zero_and_walks_every_stage(monkeypatch):
    """The bar is created at 0 before the first chunk (before any engine work), then walks
    through every stage of every chunk x tile; the hooked run equals the plain one bit for bit."""
    model, _ = load_reference(reference_case_for("stream"))
    engine = te.TorchEngine(model, "cpu", "fp32")
    frames = _clip(3, 32, 32, seed=4)
    kw = dict(temporal_strength=0.3, scene_cut_sensitivity=0, tile_size=16, frames_per_chunk=2)
    plain, _ = temporal.upscale_video(engine, frames, **kw)
    monkeypatch.setattr(temporal, "PROGRESS_INTERVAL_S", 0.0)
    events = []
    hooked, _ = temporal.upscale_video(
        engine,
        frames,
        progress=lambda d, t: events.append((d, t)),
        check_interrupt=lambda: events.append("check"),
        **kw,
    )
    assert torch.equal(hooked, plain)
    updates = [e for e in events if e != "check"]
    total = 2 * 4 * engine.info.steps_per_call  # 2 chunks x 4 tiles x stages
    assert events[0] == (0, total)  # before the first tile's cancel check
    assert updates == [(i, total) for i in range(total + 1)]


def test_video_progress_with_several_decode_calls_per_tile(monkeypatch):
    """Out of memory halves the frames per call (3 decode calls per tile): the bar still only
    moves forward and ends full, and the output is unchanged."""

    class TwoFrames(te.TorchEngine):
        def decode(self, lr, feat, on_step=None):
            if lr.shape[0] > 2:
                raise MemoryError("simulated: device allocator failed")
            return super().decode(lr, feat, on_step)

    model, _ = load_reference(reference_case_for("realtime"))
    frames = _clip(5, 24, 32, seed=6)
    kw = dict(temporal_strength=0.3, scene_cut_sensitivity=0, tile_size=512, frames_per_chunk=5)
    expected, _ = temporal.upscale_video(te.TorchEngine(model, "cpu", "fp32"), frames, **kw)
    monkeypatch.setattr(temporal, "PROGRESS_INTERVAL_S", 0.0)
    updates = []
    out, _ = temporal.upscale_video(
        TwoFrames(model, "cpu", "fp32"), frames, progress=lambda d, t: updates.append((d, t)), **kw
    )
    assert torch.equal(out, expected)
    done = [d for d, _ in updates]
    assert done[0] == 0 and done == sorted(done) and updates[-1][0] == updates[-1][1]
    assert len(set(done)) > 2  # progress inside the tile, not only at its end


def test_raising_hook_stops_a_video_run_mid_chunk():
    """Cancel pressed while the first chunk's decode runs: the run stops at the next stage of
    that decode, not after the tile or the chunk (a photo decode has 16 blocks)."""
    model, _ = load_reference(reference_case_for("photo"))
    engine = te.TorchEngine(model, "cpu", "fp32")
    ran, checks, updates = [], [], []
    blocks = [b for g in engine.model.body for b in g.blocks]
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: ran.append(i)) for i, b in enumerate(blocks)]

    def interrupt():
        checks.append(1)
        if len(checks) == 4:  # before the tile, the given features (step 1), blocks 0 and 1
            raise _Cancelled()

    try:
        with arch.reference_mode(), pytest.raises(_Cancelled):  # module forwards: hooks fire
            temporal.upscale_video(
                engine,
                _clip(2, 32, 32),
                frames_per_chunk=2,
                scene_cut_sensitivity=0,
                check_interrupt=interrupt,
                progress=lambda d, t: updates.append((d, t)),
            )
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1]
    assert updates[0][0] == 0 and all(d < engine.info.steps_per_call for d, _ in updates)
