"""Tiled upscaling of images of any size with any engine (torch, ONNX Runtime, TensorRT).

The runner reads ``engine.info`` (an EngineInfo) and calls ``engine(lr_tile)`` (with an
``on_step`` hook for cancel and progress inside the tile when the engine has stages). Each tile is
run with a context margin (halo) and only its interior is kept: plan.py lays the tiles out,
sizing.py chooses their size, paste.py moves pixels in and out (alpha included), and
runtime/backoff.py shrinks the sizes after an out-of-memory failure.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import torch

from ..runtime.backoff import OutOfMemoryBackoff
from ..runtime.checks import check_images, check_output
from ..runtime.memory import free_memory_bytes
from .output_size import resize_into
from .paste import as_rgb_bchw, crop_context, paste_alpha, paste_interior
from .plan import plan_engine_tiles
from .sizing import MIN_TILE, auto_batch_chunk, tile_layout
from .window_pad import check_size, pad_bchw, pad_multiple, padded_size

# Progress inside a tile is sent at most this often: each report is a websocket message in
# ComfyUI, and a fast variant passes its stages in milliseconds.
PROGRESS_INTERVAL_S = 0.25


def upscale_image(
    engine,
    image: torch.Tensor,
    *,
    tile_size: int = 0,
    halo: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
    free_memory: Callable[[], int] | None = None,
    batch_chunk: int = 0,
    min_tile: int = MIN_TILE,
    wrap: int | None = None,
    output_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Upscale ``image`` (B, H, W, C) float in 0..1, C = 1, 3 or 4, tile by tile.

    Returns (B, sH, sW, C') float32 on the CPU clamped to 0..1, with C' = 4 for RGBA (alpha
    upscaled bicubically and reattached) and 3 otherwise (grayscale comes back as RGB).
    ``tile_size`` 0 = auto from ``free_memory()`` (default: the engine device's free memory);
    ``batch_chunk`` 0 = as many images per engine call as memory allows. On out-of-memory the
    batch chunk, then the tile, is halved down to ``min_tile``; then TileOutOfMemoryError.
    ``progress(done, total)`` counts engine stages: total = tiles x batch chunks x
    ``engine.info.steps_per_call`` (it grows if an out-of-memory retry re-plans). It is called
    with done = 0 before the first tile (so a progress bar shows at once), inside tiles at most
    every PROGRESS_INTERVAL_S, and after each tile. ``check_interrupt()`` runs before every tile
    and between the engine's stages inside it (torch: every body block, so a slow tile stops
    within a block); its exception propagates unchanged.
    ``output_size`` (out_h, out_w): each batch chunk is resized to it as soon as it is done
    (output_size.py), so only one chunk at the model's size exists at a time.
    photo / pro: each chunk is reflect-padded to a multiple of 16 first, as upstream's inference
    does (window_pad.py); tiles are planned on the padded size and pasted back cropped.
    Bad input: ValueError; NaN/Inf in an engine's output: checks.NonFiniteOutputError.
    """
    check_images(image)
    batch, height, width, channels = image.shape
    info = engine.info
    check_size(info, height, width)
    multiple = pad_multiple(info)
    plan_h, plan_w = padded_size(height, multiple), padded_size(width, multiple)
    scale = int(info.scale)
    # Read free memory at most once: the tile and the batch chunk are planned from one figure.
    free_memory = functools.cache(free_memory or functools.partial(free_memory_bytes, info.device))
    tile, halo, wrap = tile_layout(info, plan_h, plan_w, tile_size, halo, free_memory, wrap=wrap)
    if batch_chunk <= 0:
        batch_chunk = auto_batch_chunk(info, batch, plan_h, plan_w, tile, halo, free_memory)
    sizes = OutOfMemoryBackoff(info.device, tile, batch_chunk, min_tile=min_tile, unit="image")

    out_h, out_w = output_size or (height * scale, width * scale)
    out = torch.empty(batch, out_h, out_w, 4 if channels == 4 else 3, dtype=torch.float32)
    run = _ImageRun(engine, image, out, progress, check_interrupt, multiple, output_size is not None)
    while run.start < batch:  # once, plus once per out-of-memory shrink
        tiles = plan_engine_tiles(info, plan_h, plan_w, sizes.tile, halo, wrap)
        run.total = run.done + len(tiles) * math.ceil((batch - run.start) / sizes.per_call)
        run.report()
        sizes.attempt(run.chunks, tiles, sizes.per_call)
    return out


class _ImageRun:
    """The batch-chunk x tile loop of upscale_image. ``start`` (the first image not finished)
    and ``done`` (tiles run) survive an out-of-memory failure, so a retry resumes there.
    Progress is reported in engine stages: ``steps`` per tile, ``sub`` of them in the running one."""

    def __init__(
        self,
        engine,
        image: torch.Tensor,
        out: torch.Tensor,
        progress: Callable[[int, int], None] | None,
        check_interrupt: Callable[[], None] | None,
        pad_multiple: int = 1,
        resize: bool = False,
    ):
        self.engine, self.out = engine, out
        self.scale = int(engine.info.scale)
        self.pad_multiple = pad_multiple
        # resize: chunks are assembled at the model's size in a buffer, then resized into out
        native = (image.shape[1] * self.scale, image.shape[2] * self.scale, out.shape[-1])
        self.native_shape = native if resize else None
        self.x = as_rgb_bchw(image)
        self.alpha = image[..., 3] if image.shape[-1] == 4 else None
        self.progress, self.check_interrupt = progress, check_interrupt
        self.start = self.done = self.total = 0
        self.steps = max(1, int(engine.info.steps_per_call))
        self.sub = 0
        self.reported_at = 0.0
        # Only engines with stages get the hook (the others' calls cannot stop midway), and only
        # when there is something to do in it; otherwise the engine runs its plain pass.
        hooked = self.steps > 1 and (progress is not None or check_interrupt is not None)
        self.on_step = self._on_step if hooked else None

    def chunks(self, tiles, per_call: int) -> None:
        """Upscale the images from ``start`` on, ``per_call`` at a time, tile by tile."""
        while self.start < self.out.shape[0]:
            rows = slice(self.start, min(self.out.shape[0], self.start + per_call))
            x = pad_bchw(self.x[rows], self.pad_multiple)  # once per chunk, not per tile
            dest = (
                self.out[rows]
                if self.native_shape is None
                else torch.empty((rows.stop - rows.start, *self.native_shape), dtype=torch.float32)
            )
            alpha = None if self.alpha is None else self.alpha[rows]
            for tile in tiles:
                if self.check_interrupt is not None:
                    self.check_interrupt()
                self.tile(tile, x, dest, alpha)
            if self.native_shape is not None:
                resize_into(self.out[rows], dest)
            del x, dest
            self.start = rows.stop

    def report(self) -> None:
        if self.progress is not None:
            self.reported_at = time.monotonic()
            self.progress(self.done * self.steps + self.sub, self.total * self.steps)

    def _on_step(self, step: int, steps: int) -> None:
        """The engine's hook between its stages: cancel point, and progress within the tile."""
        if self.check_interrupt is not None:
            self.check_interrupt()
        # The tile's last stage is reported after its paste; a fp32 re-run (fallback) restarts
        # at step 1 and must not move the bar back.
        if step < self.steps and step > self.sub and time.monotonic() - self.reported_at >= PROGRESS_INTERVAL_S:
            self.sub = step
            self.report()

    def tile(self, tile, x: torch.Tensor, dest: torch.Tensor, alpha: torch.Tensor | None) -> None:
        """One tile of the chunk ``x`` (padded RGB) into ``dest`` (the chunk's output rows)."""
        self.sub = 0
        if self.on_step is None:
            hr = self.engine(crop_context(x, tile))
        else:
            hr = self.engine(crop_context(x, tile), on_step=self.on_step)
        check_output(hr, self.engine.info)
        paste_interior(dest, hr, tile, self.scale)
        del hr
        if alpha is not None:
            paste_alpha(dest, alpha, tile, self.scale)
        self.done += 1
        self.sub = 0
        self.report()
