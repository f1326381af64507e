"""Tiled runner: exactness for local variants, PSNR floors for attention variants, OOM back-off,
cancel, progress, RGBA/grayscale, engine shape profiles. Real reference weights throughout."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from packlib import load_reference, max_abs, natural_image, psnr, reference_case_for
from paragonsr2_pack.engines.backends import torch_engine as te
from paragonsr2_pack.engines.runtime import backoff, contract
from paragonsr2_pack.engines.tiling import plan, sizing
from paragonsr2_pack.engines.tiling import runner as tiling

ALIGN = contract.ALIGN

# tiled-vs-whole PSNR floors at default settings (docs/tiling.md has the measurements)
PSNR_FLOOR = {"photo": 50.0, "pro": 45.0}


def _engine(variant, scale=2):
    case = reference_case_for(variant, scale)
    model, _ = load_reference(case)
    return te.TorchEngine(model, "cpu", "fp32")


@pytest.fixture(scope="module")
def realtime():
    return _engine("realtime")


def _whole(engine, image_bhwc):
    return engine(image_bhwc.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)


def _whole_padded(engine, image_bhwc):
    """photo/pro: one pass on the image reflect-padded to a multiple of 16 (bottom/right), cropped:
    upstream's inference, which the runners reproduce (tests/test_upstream_padding.py)."""
    h, w = image_bhwc.shape[1:3]
    x = F.pad(image_bhwc.permute(0, 3, 1, 2), (0, (-w) % 16, 0, (-h) % 16), mode="reflect")
    s = engine.info.scale
    return _whole(engine, x.permute(0, 2, 3, 1))[:, : h * s, : w * s]


def _bhwc(h, w, batch=1, seed=0):
    return natural_image(h, w, seed=seed, batch=batch).permute(0, 2, 3, 1).contiguous()


def test_plan_tiles_cover_once_aligned():
    for h, w, tile, halo in ((77, 101, 32, 7), (16, 300, 64, 28), (129, 33, 48, 32), (5, 7, 16, 16)):
        tiles = plan.plan_tiles(h, w, tile, halo)
        count = torch.zeros(h, w, dtype=torch.int32)
        for t in tiles:
            count[t.y0 : t.y1, t.x0 : t.x1] += 1
            assert t.y0 % 16 == 0 and t.x0 % 16 == 0
            assert (t.y1 - t.y0) % 16 == 0 or t.y1 == h
            assert (t.x1 - t.x0) % 16 == 0 or t.x1 == w
            assert t.cy0 == max(0, t.y0 - halo) and t.cy1 == min(h, t.y1 + halo)
            assert t.cx0 == max(0, t.x0 - halo) and t.cx1 == min(w, t.x1 + halo)
        assert torch.equal(count, torch.ones_like(count)), (h, w, tile)


@pytest.mark.parametrize("variant,tiles,size", [("realtime", (16, 32), (37, 83)), ("stream", (32,), (45, 70))])
def test_tiled_equals_whole_for_local_variants(variant, tiles, size):
    engine = _engine(variant)
    assert engine.exact_halo is not None
    image = _bhwc(*size, batch=2)  # sizes not multiples of 16, B > 1
    whole = _whole(engine, image)
    for tile in tiles:
        tiles = plan.plan_tiles(*size, tile, sizing.default_halo(engine.info))
        assert len(tiles) >= 4  # tiles touch every border and each other
        out = tiling.upscale_image(engine, image, tile_size=tile)
        assert out.shape == (2, size[0] * 2, size[1] * 2, 3) and out.dtype == torch.float32
        assert max_abs(out, whole) <= 1e-5, (variant, tile)


def test_too_small_halo_is_detected(realtime):
    """The exactness check above can fail: less context than the receptive field."""
    image = _bhwc(40, 40)
    out = tiling.upscale_image(realtime, image, tile_size=16, halo=realtime.exact_halo - 3)
    assert max_abs(out, _whole(realtime, image)) > 1e-4


@pytest.mark.slow  # 13 s (photo) and 32 s (pro) of CPU time: the heaviest cases of the suite
@pytest.mark.parametrize("variant", ["photo", "pro"])
def test_attention_variants_meet_psnr_floor(variant):
    engine = _engine(variant)
    assert engine.exact_halo is None and engine.window == 16
    # 4x4 tiles of 32 (small tiles: many seams and edge bands), edges not on the window grid
    image = _bhwc(100, 120, seed=3)
    out = tiling.upscale_image(engine, image, tile_size=32)
    assert psnr(out, _whole_padded(engine, image)) >= PSNR_FLOOR[variant]


class OOMAbove:
    """A real engine that raises out-of-memory (like CUDA would) for inputs above a side."""

    def __init__(self, engine, max_side):
        self.engine, self.max_side = engine, max_side
        self.info = engine.info
        self.calls = []

    def __call__(self, lr, on_step=None):
        self.calls.append(tuple(lr.shape))
        if max(lr.shape[-2:]) > self.max_side:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.engine(lr, on_step=on_step)


def test_oom_backoff_halves_tile_and_stays_exact(realtime, caplog):
    image = _bhwc(70, 90, batch=3)
    engine = OOMAbove(realtime, max_side=64)
    done = []
    out = tiling.upscale_image(engine, image, tile_size=128, progress=lambda d, t: done.append((d, t)))
    assert max_abs(out, _whole(realtime, image)) <= 1e-5
    ok = [s for s in engine.calls if max(s[-2:]) <= 64]
    assert ok and all(s[0] == 1 for s in ok[-3:])  # ended one image per call, small tiles
    assert done[-1][0] == done[-1][1]  # progress completes
    assert any("out of memory" in r.getMessage() for r in caplog.records)


def test_oom_at_floor_raises_clear_error(realtime):
    engine = OOMAbove(realtime, max_side=8)
    with pytest.raises(backoff.TileOutOfMemoryError, match="out of memory"):
        tiling.upscale_image(engine, _bhwc(64, 64), tile_size=64)


class Cancelled(Exception):
    pass


def test_cancel_between_tiles_then_next_run_works(realtime):
    image = _bhwc(64, 64, batch=2)
    calls = []

    def counting(lr, on_step=None):
        calls.append(1)
        return realtime(lr, on_step=on_step)

    counting.info = realtime.info
    checks = []

    def interrupt():
        checks.append(1)
        if len(checks) == 3:
            raise Cancelled("user pressed cancel")

    with pytest.raises(Cancelled, match="user pressed cancel"):
        tiling.upscale_image(counting, image, tile_size=16, batch_chunk=1, check_interrupt=interrupt)
    # checked before the tile, then after conv_in and after the first block: it stopped there,
    # inside the first tile
    assert len(calls) == 1
    steps = []
    out = tiling.upscale_image(
        counting,
        image,
        tile_size=32,
        batch_chunk=1,
        check_interrupt=lambda: None,
        progress=lambda d, t: steps.append((d, t)),
    )
    assert max_abs(out, _whole(realtime, image)) <= 1e-5
    per_tile = realtime.info.steps_per_call  # conv_in, 3 blocks, tail
    total = 8 * per_tile  # 4 tiles x 2 batch chunks
    assert steps[0] == (0, total) and steps[-1] == (total, total) and {t for _, t in steps} == {total}
    done = [d for d, _ in steps]
    assert done == sorted(done) and {per_tile * i for i in range(1, 9)} <= set(done)


def test_rgba_and_grayscale(realtime):
    rgb = _bhwc(40, 52, batch=2)
    alpha = torch.linspace(0, 1, 52).expand(2, 40, 52).clone()
    alpha[:, :10] = 1.0
    rgba = torch.cat([rgb, alpha[..., None]], dim=-1)
    out = tiling.upscale_image(realtime, rgba, tile_size=16)
    assert out.shape == (2, 80, 104, 4)
    assert max_abs(out[..., :3], _whole(realtime, rgb)) <= 1e-5
    bicubic = F.interpolate(alpha[:, None], scale_factor=2, mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    assert max_abs(out[..., 3], bicubic) <= 1e-6  # tiled alpha == whole-image bicubic
    assert torch.all(out[:, :16, :, 3] == 1.0)  # opaque stays exactly opaque, borders included

    gray = rgb[..., :1].contiguous()
    out_gray = tiling.upscale_image(realtime, gray, tile_size=32)
    assert out_gray.shape == (2, 80, 104, 3)
    assert max_abs(out_gray, _whole(realtime, gray.expand(-1, -1, -1, 3))) <= 1e-5


class Profiled:
    """A real engine behind a fixed shape profile (like a TensorRT engine): input sides must be
    multiples of 16 inside [min_tile, max_tile]."""

    def __init__(self, engine, min_tile, max_tile):
        self.engine = engine
        self.info = dataclasses.replace(engine.info, min_tile=min_tile, max_tile=max_tile)
        self.min_tile, self.max_tile = min_tile, max_tile
        self.shapes = set()

    def __call__(self, lr, on_step=None):
        h, w = lr.shape[-2:]
        assert h % 16 == 0 and w % 16 == 0 and self.min_tile <= min(h, w) and max(h, w) <= self.max_tile, (h, w)
        self.shapes.add((h, w))
        return self.engine(lr, on_step=on_step)


def test_engine_shape_profile_is_respected(realtime):
    image = _bhwc(75, 90)
    engine = Profiled(realtime, min_tile=32, max_tile=64)
    out = tiling.upscale_image(engine, image, tile_size=0, free_memory=lambda: 1 << 40)
    # contexts grow into the image instead of padding, so the result stays exact
    assert max_abs(out, _whole(realtime, image)) <= 1e-5
    small = _bhwc(20, 24)  # smaller than min_tile: replicate padding, result approximate at edges
    out_small = tiling.upscale_image(Profiled(realtime, 32, 64), small)
    assert out_small.shape == (1, 40, 48, 3)
    assert psnr(out_small, _whole(realtime, small)) > 25


def test_auto_tile_size_follows_free_memory(realtime):
    small = sizing.auto_tile_size(realtime.info, 1, 64 << 20)
    large = sizing.auto_tile_size(realtime.info, 1, 8 << 30)
    assert small % 16 == 0 and large % 16 == 0 and sizing.MIN_TILE <= small < large
    assert sizing.auto_tile_size(realtime.info, 4, 8 << 30) < large
    assert sizing.auto_tile_size(realtime.info, 1, 0) == sizing.MIN_TILE
    # auto tile on a tiny memory budget still gives the exact result
    image = _bhwc(50, 60)
    out = tiling.upscale_image(realtime, image, free_memory=lambda: 40 << 20)
    assert max_abs(out, _whole(realtime, image)) <= 1e-5


@pytest.mark.parametrize("shared", [False, True])
def test_cpu_auto_tiles_allocator_sized_or_cores_size_under_load(realtime, monkeypatch, shared):
    """On the CPU the auto tile of a local network keeps one call within the allocator budget
    on an idle machine; while other work shares the cores it is never below ComfyUI core's
    512 px tile (a batch call holds at least one such tile's pixels), because small calls lose
    there (docs/benchmarks.md). Attention variants and GPUs keep large tiles, also on 16 GB."""
    monkeypatch.setattr(sizing, "cpu_cores_shared", lambda: shared)
    plenty = lambda: 64 << 30  # noqa: E731
    stream = _engine("stream")
    for engine in (realtime, stream):
        tile, halo, _ = sizing.tile_layout(engine.info, 2048, 2048, free_memory=plenty)
        if shared:
            assert tile == 512 and sizing.auto_tile_size(engine.info, 4, 64 << 30) == 256
        else:
            per_px = sizing.cpu_call_bytes_per_lr_pixel(engine.variant, engine.scale)
            assert (tile + 2 * halo) ** 2 * per_px <= sizing.CPU_CALL_BUDGET
            assert (tile + 2 * halo + 2 * ALIGN) ** 2 * per_px > sizing.CPU_CALL_BUDGET  # not needlessly small
    photo = _engine("photo")
    assert sizing.tile_layout(photo.info, 1024, 1024, free_memory=plenty)[0] == 1024
    assert sizing.tile_layout(photo.info, 2048, 2048, free_memory=lambda: 16 << 30)[0] == 1024
    gpu_like = contract.EngineInfo(
        device=torch.device("cuda"), dtype=torch.float16, variant="realtime", scale=2, window=1, exact_halo=7
    )
    assert sizing.tile_layout(gpu_like, 2048, 2048, free_memory=plenty)[0] == 2048
    # batches: one frame-sized image per CPU call, many small ones
    assert sizing.cpu_images_per_call(realtime.info, 270 * 270) == 1
    assert sizing.cpu_images_per_call(realtime.info, 46 * 46) == (1 << 16) // (46 * 46)
    assert sizing.cpu_images_per_call(photo.info, 46 * 46) is None
    small = _bhwc(32, 32, batch=40)
    out = tiling.upscale_image(realtime, small, free_memory=plenty)
    assert max_abs(out, _whole(realtime, small)) <= 1e-5
