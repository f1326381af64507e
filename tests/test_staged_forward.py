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
