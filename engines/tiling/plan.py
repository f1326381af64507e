"""Tile geometry: which LR boxes cover an image and what context each one is run with.

* realtime / stream are purely convolutional: the halo covers the receptive field
  (``info.exact_halo``), so the tiled result equals one whole-image pass. Tiles at the
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

How large tiles are and how wide the halo is: sizing.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..runtime.contract import ALIGN, EngineInfo


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
        return (
            self.wrap_top + self.cy1 - self.cy0 + self.wrap_bottom + self.pad_y,
            self.wrap_left + self.cx1 - self.cx0 + self.wrap_right + self.pad_x,
        )

    @property
    def offset(self) -> tuple[int, int]:
        """LR position of the interior's top-left corner inside the engine input."""
        return self.wrap_top + self.y0 - self.cy0, self.wrap_left + self.x0 - self.cx0


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _axis_starts(size: int, tile: int, align: int) -> list[int]:
    """Tile starts along one axis: equal-ish tiles (no thin leftover strip), sizes multiples of align."""
    if tile >= size:
        return [0]
    count = math.ceil(size / tile)
    step = min(tile, round_up(math.ceil(size / count), align))
    return list(range(0, size, step))


def _fit_axis(c0: int, c1: int, size: int, multiple: int, min_side: int) -> tuple[int, int, int]:
    """Grow a context span to a multiple/minimum length, towards the image interior first."""
    length = c1 - c0
    target = max(round_up(length, multiple), round_up(min_side, multiple))
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


def plan_tiles(
    height: int,
    width: int,
    tile: int,
    halo: int,
    align: int = ALIGN,
    *,
    multiple: int = 1,
    min_side: int = 0,
    wrap: int = 0,
) -> list[Tile]:
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
            tiles.append(Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1, pad_y, pad_x, before_y, after_y, before_x, after_x))
    return tiles


def _axis_context(i0, i1, size, halo, align, multiple, min_side, wrap):
    c0, c1 = max(0, i0 - halo), min(size, i1 + halo)
    if wrap:
        c0, c1, before, after = _wrap_bands(c0, c1, size, wrap, align)
        length = before + (c1 - c0) + after
        target = max(round_up(length, multiple), round_up(min_side, multiple))
        return c0, c1, before, after, target - length
    c0, c1, pad = _fit_axis(c0, c1, size, multiple, min_side)
    return c0, c1, 0, 0, pad


def engine_shape_rules(info: EngineInfo) -> tuple[int, int, int | None]:
    """(side multiple, min side, max side) that context boxes must satisfy for this engine."""
    multiple = info.tile_multiple or (ALIGN if (info.min_tile or info.max_tile) else 1)
    return int(multiple), int(info.min_tile or 0), (int(info.max_tile) if info.max_tile else None)


def plan_engine_tiles(info: EngineInfo, height: int, width: int, tile: int, halo: int, wrap: int) -> list[Tile]:
    """plan_tiles with the engine's input shape rules (side multiple, min side)."""
    multiple, min_side, _ = engine_shape_rules(info)
    return plan_tiles(height, width, tile, halo, ALIGN, multiple=multiple, min_side=min_side, wrap=wrap)
