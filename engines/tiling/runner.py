"""Tiled upscaling of images of any size with any engine (torch, ONNX Runtime, TensorRT).

The runner only calls ``engine(lr_tile)``. Each tile is run with a context margin (halo) and
only its interior is kept:

* realtime / stream are purely convolutional: the halo covers the receptive field
  (``engine.exact_halo``), so the tiled result equals one whole-image pass. Tiles at the
  image border simply end there (no padding of the input), so the network's own zero padding
  sees the same thing as in a whole-image pass.
* photo / pro use window attention (pro also a global channel attention), so tiling is an
  approximation; the default halo was chosen from measurements (docs/tiling.md). Tile origins
  and the halo are multiples of the attention window, so every tile's window grid lines up
  with the whole-image grid.

Engines with a shape profile (``min_tile`` / ``max_tile``, or ``tile_multiple``) get context
boxes whose sides lie inside the profile and are multiples of 16: a box is first grown
towards the image interior, and only an image smaller than the profile's minimum is padded
(replicate, bottom/right), which makes the outermost pixels approximate.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..runtime.memory import (CPU_BATCH_PIXELS, CPU_CALL_BUDGET, bytes_per_lr_pixel, cpu_call_bytes_per_lr_pixel,
                     free_memory_bytes)
from ..runtime.devices import _DTYPES, is_out_of_memory, release_cached_memory

logger = logging.getLogger("ParagonSR2")

ALIGN = 16  # LR granularity of tile origins and sizes (the attention window)
MIN_TILE = 32  # OOM back-off floor (LR px)
# Default halo of the attention variants, in LR px (a multiple of ALIGN); measured, see docs.
ATTENTION_HALO = {"photo": 32, "pro": 32}
_MAX_AUTO_TILE = {"cpu": 1024}  # keep cancel/progress responsive on slow devices
_MAX_AUTO_TILE_DEFAULT = 2048
_MEMORY_FRACTION = 0.6  # of the free memory a tile may plan to use (allocator slack, fragmentation)
_ALPHA_MARGIN = 2  # bicubic reaches 2 LR px


class TileOutOfMemoryError(RuntimeError):
    """Even the smallest tile did not fit in memory."""


@dataclass(frozen=True)
class Tile:
    """Interior (kept) LR box ``y0:y1, x0:x1``; context box ``cy0:cy1, cx0:cx1`` (interior +
    halo, inside the image).

    The engine input is the context box, plus (attention variants only, see ``plan_tiles``)
    ``wrap_top`` image rows ``0:wrap_top`` before it and ``wrap_bottom`` rows ``H-wrap_bottom:H``
    after it (likewise ``wrap_left``/``wrap_right`` columns), plus ``pad_y``/``pad_x`` rows and
    columns of replicate padding at the bottom/right (engines whose shape profile needs it).
    """

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int
    pad_y: int = 0
    pad_x: int = 0
    wrap_top: int = 0
    wrap_bottom: int = 0
    wrap_left: int = 0
    wrap_right: int = 0

    @property
    def context_shape(self) -> tuple[int, int]:
        """(h, w) of the engine input."""
        return (self.wrap_top + self.cy1 - self.cy0 + self.wrap_bottom + self.pad_y,
                self.wrap_left + self.cx1 - self.cx0 + self.wrap_right + self.pad_x)

    @property
    def offset(self) -> tuple[int, int]:
        """LR position of the interior's top-left corner inside the engine input."""
        return self.wrap_top + self.y0 - self.cy0, self.wrap_left + self.x0 - self.cx0


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _axis_starts(size: int, tile: int, align: int) -> list[int]:
    """Tile starts along one axis: equal-ish tiles (no thin leftover strip), sizes multiples of align."""
    if tile >= size:
        return [0]
    count = math.ceil(size / tile)
    step = min(tile, _round_up(math.ceil(size / count), align))
    return list(range(0, size, step))


def _fit_axis(c0: int, c1: int, size: int, multiple: int, min_side: int) -> tuple[int, int, int]:
    """Grow a context span to a multiple/minimum length, towards the image interior first."""
    length = c1 - c0
    target = max(_round_up(length, multiple), _round_up(min_side, multiple))
    if target == length:
        return c0, c1, 0
    if target > size:
        return 0, size, target - size  # image smaller than the engine's tile: replicate pad
    grow_end = min(target - length, size - c1)  # growing the end keeps the origin aligned
    return c0 - (target - length - grow_end), c1 + grow_end, 0


def _wrap_bands(c0: int, c1: int, size: int, band: int, align: int) -> tuple[int, int, int, int]:
    """(c0, c1, before, after): image-edge bands a shifted-window tile needs (see plan_tiles)."""
    if band <= 0:
        return c0, c1, 0, 0
    before = after = 0
    # Only a context touching one image edge but not the opposite one is affected; an inner
    # tile's own wrap-around lands in its halo.
    if c1 == size and c0 > 0:
        if c0 <= band:
            c0 = 0  # the band would touch the context: just extend it
        else:
            before = band
    elif c0 == 0 and c1 < size:
        start = max(0, (size - band) // align * align)  # on the whole image's window grid
        if start <= c1:
            c1 = size
        else:
            after = size - start
    return c0, c1, before, after


def plan_tiles(height: int, width: int, tile: int, halo: int, align: int = ALIGN, *,
               multiple: int = 1, min_side: int = 0, wrap: int = 0) -> list[Tile]:
    """Cover an LR image with tiles whose origins and sizes are multiples of ``align`` (the last
    tile on each axis ends at the border). ``multiple``/``min_side`` constrain engine inputs.

    ``wrap`` > 0 (shifted window attention): the whole-image network rolls its feature map, so
    windows at the bottom/right border also see the top/left rows and columns (and the other
    way round). A tile not touching a border gets a ``wrap``-pixel band from the opposite image
    edge attached, so its border windows see what they see in a whole-image pass.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {height}x{width}")
    tile = max(align, tile // align * align)
    halo = max(0, int(halo))
    ys, xs = _axis_starts(height, tile, align), _axis_starts(width, tile, align)
    cols = []
    for i, x0 in enumerate(xs):
        x1 = xs[i + 1] if i + 1 < len(xs) else width
        cols.append((x0, x1) + _axis_context(x0, x1, width, halo, align, multiple, min_side, wrap))
    tiles = []
    for j, y0 in enumerate(ys):
        y1 = ys[j + 1] if j + 1 < len(ys) else height
        cy0, cy1, before_y, after_y, pad_y = _axis_context(y0, y1, height, halo, align, multiple, min_side, wrap)
        for x0, x1, cx0, cx1, before_x, after_x, pad_x in cols:
            tiles.append(Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1, pad_y, pad_x,
                              before_y, after_y, before_x, after_x))
    return tiles


def _axis_context(i0, i1, size, halo, align, multiple, min_side, wrap):
    c0, c1 = max(0, i0 - halo), min(size, i1 + halo)
    if wrap:
        c0, c1, before, after = _wrap_bands(c0, c1, size, wrap, align)
        length = before + (c1 - c0) + after
        target = max(_round_up(length, multiple), _round_up(min_side, multiple))
        return c0, c1, before, after, target - length
    c0, c1, pad = _fit_axis(c0, c1, size, multiple, min_side)
    return c0, c1, 0, 0, pad


def _axis_index(c0, c1, size, before, after) -> torch.Tensor | None:
    if not (before or after):
        return None
    return torch.cat([torch.arange(0, before), torch.arange(c0, c1), torch.arange(size - after, size)])


def crop_context(x_bchw: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The engine input for ``tile``: a contiguous copy of its context (bands, padding included)."""
    h, w = x_bchw.shape[-2:]
    rows = _axis_index(tile.cy0, tile.cy1, h, tile.wrap_top, tile.wrap_bottom)
    cols = _axis_index(tile.cx0, tile.cx1, w, tile.wrap_left, tile.wrap_right)
    crop = x_bchw[:, :, tile.cy0:tile.cy1] if rows is None else x_bchw.index_select(2, rows)
    crop = crop[..., tile.cx0:tile.cx1] if cols is None else crop.index_select(3, cols)
    if tile.pad_y or tile.pad_x:
        return F.pad(crop.float(), (0, tile.pad_x, 0, tile.pad_y), mode="replicate")
    # Keep the caller's memory format: a channels-last frame stays channels-last (no copy when
    # the tile covers the whole frame). Engines that need NCHW buffers make them themselves.
    channels_last = x_bchw.dim() == 4 and x_bchw.is_contiguous(memory_format=torch.channels_last)
    return crop.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def paste_interior(out_bhwc: torch.Tensor, hr_bchw: torch.Tensor, tile: Tile, scale: int,
                   batch_slice: slice = slice(None)) -> None:
    """Write the interior of an engine output (for ``tile``'s context box) into ``out_bhwc``
    (channels 0..2), clamped to 0..1, moved to the output's device."""
    s = scale
    oy, ox = tile.offset[0] * s, tile.offset[1] * s
    h, w = (tile.y1 - tile.y0) * s, (tile.x1 - tile.x0) * s
    interior = hr_bchw[:, :3, oy:oy + h, ox:ox + w].permute(0, 2, 3, 1)
    target = out_bhwc[batch_slice, tile.y0 * s:tile.y1 * s, tile.x0 * s:tile.x1 * s, :3]
    if interior.device == target.device and interior.dtype == target.dtype:
        torch.clamp(interior, 0.0, 1.0, out=target)  # one pass, no temporary
    else:  # clamp where the data is, then one transfer
        target.copy_(interior.clamp(0.0, 1.0).to(target.device, target.dtype))


# -- defaults --------------------------------------------------------------------------------

def engine_shape_rules(engine) -> tuple[int, int, int | None]:
    """(side multiple, min side, max side) that context boxes must satisfy for this engine."""
    min_tile = getattr(engine, "min_tile", None)
    max_tile = getattr(engine, "max_tile", None)
    multiple = getattr(engine, "tile_multiple", None) or (ALIGN if (min_tile or max_tile) else 1)
    return int(multiple), int(min_tile or 0), (int(max_tile) if max_tile else None)


def default_halo(engine) -> int:
    """exact_halo for local networks (rounded up to the window); the measured default else."""
    window = max(1, int(getattr(engine, "window", 1) or 1))
    multiple, _, _ = engine_shape_rules(engine)
    step = max(window, multiple)
    exact = getattr(engine, "exact_halo", None)
    if exact is not None:
        return _round_up(int(exact), step)
    halo = ATTENTION_HALO.get(getattr(engine, "variant", None), max(ATTENTION_HALO.values()))
    return _round_up(halo, max(step, ALIGN))


def default_wrap(engine, halo: int) -> int:
    """Edge band for shifted-window engines (window > 1), 0 for local networks."""
    if int(getattr(engine, "window", 1) or 1) <= 1 or getattr(engine, "exact_halo", None) is not None:
        return 0
    return max(ALIGN, _round_up(halo, ALIGN))


def _engine_dtype(engine) -> torch.dtype:
    dtype = getattr(engine, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    return _DTYPES.get(str(getattr(engine, "precision", "fp32")).lower(), torch.float32)


def auto_tile_size(engine, batch: int, free_bytes: int, halo: int | None = None) -> int:
    """Largest LR tile side (multiple of 16) whose context for ``batch`` images fits in a safe
    fraction of ``free_bytes``; never below MIN_TILE, never above the engine's max_tile."""
    halo = default_halo(engine) if halo is None else halo
    per_px = bytes_per_lr_pixel(getattr(engine, "variant", None), _engine_dtype(engine), int(engine.scale))
    budget = max(0, int(free_bytes)) * _MEMORY_FRACTION / max(1, batch)
    side = int(math.sqrt(budget / per_px)) - 2 * halo
    device = torch.device(getattr(engine, "device", "cpu"))
    cap = _MAX_AUTO_TILE.get(device.type, _MAX_AUTO_TILE_DEFAULT)
    cpu_cap = _cpu_tile_cap(engine, batch, halo)
    if cpu_cap is not None:
        cap = min(cap, cpu_cap)
    _, _, max_side = engine_shape_rules(engine)
    if max_side is not None:
        cap = min(cap, max_side - 2 * halo)
    tile = min(cap, side) // ALIGN * ALIGN
    return max(MIN_TILE, tile)


def _cpu_call_bytes(engine) -> int | None:
    """Per-LR-pixel growth of one call of a local network whose tensors come from the C
    library's malloc (``engine.system_allocator``: torch on the CPU); None elsewhere (GPUs want
    large tiles, ONNX Runtime keeps its own arena, the attention variants lose accuracy and gain
    little from smaller tiles)."""
    if not getattr(engine, "system_allocator", False) or getattr(engine, "exact_halo", None) is None:
        return None
    return cpu_call_bytes_per_lr_pixel(getattr(engine, "variant", None), int(engine.scale), _engine_dtype(engine))


def _cpu_tile_cap(engine, batch: int, halo: int) -> int | None:
    """Largest tile whose call for ``batch`` images stays within CPU_CALL_BUDGET, so the
    allocator reuses memory instead of page-faulting it (exact: these networks are local).
    2-core EPYC, fp32: stream x2 512x512 1.02 s whole vs 0.33 s in 176 px tiles; realtime x2
    1024x1024 0.56 s vs 0.21 s in 368 px tiles (python benchmarks/tiling.py, overhead part)."""
    per_px = _cpu_call_bytes(engine)
    if per_px is None:
        return None
    side = int(math.sqrt(CPU_CALL_BUDGET / (per_px * max(1, batch)))) - 2 * halo
    return max(MIN_TILE, side // ALIGN * ALIGN)


def cpu_images_per_call(engine, context_pixels: int) -> int | None:
    """How many images (tiles) of ``context_pixels`` LR pixels one CPU call should take: one
    for frame-sized tiles, more for small ones (sharing per-call overhead) within the allocator
    budget; None where the rule does not apply (GPUs, attention variants)."""
    per_px = _cpu_call_bytes(engine)
    if per_px is None:
        return None
    context_pixels = max(1, int(context_pixels))
    return max(1, min(CPU_BATCH_PIXELS // context_pixels, CPU_CALL_BUDGET // (context_pixels * per_px)))


def tile_layout(engine, height: int, width: int, tile_size: int = 0, halo: int | None = None,
                free_memory: Callable[[], int] | None = None, batch: int = 1,
                wrap: int | None = None) -> tuple[int, int, int]:
    """(tile, halo, wrap) for ``height`` x ``width`` LR images: the user's tile_size, or auto
    from free memory for ``batch`` images per call (and on the CPU the allocator budget), within
    the engine's max_tile, never larger than the image needs. halo/wrap None = the defaults."""
    halo = default_halo(engine) if halo is None else int(halo)
    _, _, max_side = engine_shape_rules(engine)
    if max_side is not None and max_side - 2 * halo < ALIGN:
        halo = max(0, (max_side - ALIGN) // 2 // ALIGN * ALIGN)
        logger.warning("ParagonSR2: halo reduced to %d px to fit the engine's max tile %d", halo, max_side)
    wrap = default_wrap(engine, halo) if wrap is None else int(wrap)
    if tile_size and tile_size > 0:
        tile = int(tile_size)
    else:
        device = torch.device(getattr(engine, "device", "cpu"))
        free = free_memory() if free_memory is not None else free_memory_bytes(device)
        tile = auto_tile_size(engine, batch, free, halo)
    if max_side is not None:  # the engine input is the interior plus halo (and an edge band)
        tile = min(tile, (max_side - max(2 * halo, halo + wrap)) // ALIGN * ALIGN)
    return max(ALIGN, min(tile, _round_up(max(height, width), ALIGN))), halo, wrap


def plan_engine_tiles(engine, height: int, width: int, tile: int, halo: int, wrap: int) -> list[Tile]:
    """plan_tiles with the engine's input shape rules (side multiple, min side)."""
    multiple, min_side, _ = engine_shape_rules(engine)
    return plan_tiles(height, width, tile, halo, ALIGN, multiple=multiple, min_side=min_side, wrap=wrap)


# -- the runner ------------------------------------------------------------------------------

def as_rgb_bchw(image: torch.Tensor) -> torch.Tensor:
    """A (B, 3, H, W) view of the colour channels (grayscale replicated) without copying."""
    channels = image.shape[-1]
    rgb = image[..., :3] if channels >= 3 else image.expand(*image.shape[:-1], 3)
    return rgb.permute(0, 3, 1, 2)


def _paste_alpha(out_bhwc: torch.Tensor, alpha_bhw: torch.Tensor, tile: Tile, scale: int,
                 batch_slice: slice) -> None:
    """Bicubic-upscale the tile's alpha (with its own 2 px margin, so tiles match a
    whole-image bicubic) into channel 3; bicubic keeps flat alpha exactly flat."""
    h, w = alpha_bhw.shape[-2:]
    ay0, ay1 = max(0, tile.y0 - _ALPHA_MARGIN), min(h, tile.y1 + _ALPHA_MARGIN)
    ax0, ax1 = max(0, tile.x0 - _ALPHA_MARGIN), min(w, tile.x1 + _ALPHA_MARGIN)
    crop = alpha_bhw[batch_slice, None, ay0:ay1, ax0:ax1].float()
    up = crop if scale == 1 else F.interpolate(crop, scale_factor=scale, mode="bicubic", align_corners=False)
    s = scale
    oy, ox = (tile.y0 - ay0) * s, (tile.x0 - ax0) * s
    interior = up[:, 0, oy:oy + (tile.y1 - tile.y0) * s, ox:ox + (tile.x1 - tile.x0) * s]
    out_bhwc[batch_slice, tile.y0 * s:tile.y1 * s, tile.x0 * s:tile.x1 * s, 3].copy_(interior.clamp(0.0, 1.0))


def upscale_image(engine, image: torch.Tensor, *, tile_size: int = 0, halo: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  check_interrupt: Callable[[], None] | None = None,
                  free_memory: Callable[[], int] | None = None,
                  batch_chunk: int = 0, min_tile: int = MIN_TILE, wrap: int | None = None) -> torch.Tensor:
    """Upscale ``image`` (B, H, W, C) float in 0..1, C = 1, 3 or 4, tile by tile.

    Returns (B, sH, sW, C') float32 on the CPU clamped to 0..1, with C' = 4 for RGBA (alpha
    upscaled bicubically and reattached) and 3 otherwise (grayscale comes back as RGB).
    ``tile_size`` 0 = auto from ``free_memory()`` (default: the engine device's free memory);
    ``batch_chunk`` 0 = as many images per engine call as memory allows. On out-of-memory the
    batch chunk, then the tile, is halved down to ``min_tile``; then TileOutOfMemoryError.
    ``progress(done, total)`` is called once per tile (total = tiles x batch chunks; it grows
    if an out-of-memory retry re-plans); ``check_interrupt()`` runs before every tile and its
    exception propagates unchanged.
    """
    if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must be (B, H, W, C) with C = 1, 3 or 4, got {tuple(image.shape)}")
    batch, height, width, channels = image.shape
    if batch == 0:
        raise ValueError("image batch is empty")
    scale = int(engine.scale)
    device = torch.device(getattr(engine, "device", "cpu"))
    # Read free memory at most once: the tile and the batch chunk are planned from one figure.
    free_memory = functools.cache(free_memory or functools.partial(free_memory_bytes, device))
    tile, halo, wrap = tile_layout(engine, height, width, tile_size, halo, free_memory, wrap=wrap)
    if batch_chunk <= 0:
        batch_chunk = _auto_batch_chunk(engine, batch, height, width, tile, halo, free_memory)

    out = torch.empty(batch, height * scale, width * scale, 4 if channels == 4 else 3, dtype=torch.float32)
    x = as_rgb_bchw(image)
    alpha = image[..., 3] if channels == 4 else None

    start = 0  # first image not finished yet: finished chunks survive an out-of-memory retry
    done = 0
    while start < batch:
        tiles = plan_engine_tiles(engine, height, width, tile, halo, wrap)
        total = done + len(tiles) * math.ceil((batch - start) / batch_chunk)
        try:
            while start < batch:
                rows = slice(start, min(batch, start + batch_chunk))
                for t in tiles:
                    if check_interrupt is not None:
                        check_interrupt()
                    hr = engine(crop_context(x[rows], t))
                    paste_interior(out, hr, t, scale, rows)
                    del hr
                    if alpha is not None:
                        _paste_alpha(out, alpha, t, scale, rows)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                start = rows.stop
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            del exc  # drop the traceback's references to device tensors before retrying
            release_cached_memory(device)
            if batch_chunk > 1:
                batch_chunk //= 2
            elif tile // 2 >= min_tile:
                tile = tile // 2 // ALIGN * ALIGN
            else:
                raise TileOutOfMemoryError(
                    f"ParagonSR2: out of memory on {device} even with {tile}x{tile} LR tiles and one "
                    f"image per call. Free memory (close other programs or models), use a smaller "
                    f"model variant or a lower precision (fp16/bf16)."
                ) from None
            logger.warning("ParagonSR2: out of memory on %s; retrying with %d px tiles, %d image(s) per call",
                           device, tile, batch_chunk)
    return out


def _auto_batch_chunk(engine, batch, height, width, tile, halo, free_memory) -> int:
    """Whole images per engine call when one tile covers the image and memory allows; else 1."""
    if batch == 1 or tile < max(height, width):
        return 1
    free = free_memory()
    context = (min(height, tile) + 2 * halo) * (min(width, tile) + 2 * halo)
    per_image = context * bytes_per_lr_pixel(getattr(engine, "variant", None), _engine_dtype(engine),
                                             int(engine.scale))
    chunk = int(free * _MEMORY_FRACTION // max(1, per_image))
    on_cpu = cpu_images_per_call(engine, context)
    if on_cpu is not None:
        chunk = min(chunk, on_cpu)
    return max(1, min(batch, chunk))
