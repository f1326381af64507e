"""Moving pixels between images and engine tiles: the engine input of a tile, its output
pasted back, and the one alpha path (image and video runners both use it).

The network only ever sees RGB: grayscale is replicated to three channels, and an RGBA
image's alpha is resized bicubically beside the network (per tile, with its own margin, so a
tiled alpha equals a whole-image bicubic) and reattached as channel 3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .plan import Tile

ALPHA_MARGIN = 2  # LR px: bicubic reaches 2 px


def _axis_index(c0, c1, size, before, after) -> torch.Tensor | None:
    if not (before or after):
        return None
    return torch.cat([torch.arange(0, before), torch.arange(c0, c1), torch.arange(size - after, size)])


def crop_context(x_bchw: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The engine input for ``tile``: a contiguous copy of its context (bands, padding included)."""
    h, w = x_bchw.shape[-2:]
    rows = _axis_index(tile.cy0, tile.cy1, h, tile.wrap_top, tile.wrap_bottom)
    cols = _axis_index(tile.cx0, tile.cx1, w, tile.wrap_left, tile.wrap_right)
    crop = x_bchw[:, :, tile.cy0 : tile.cy1] if rows is None else x_bchw.index_select(2, rows)
    crop = crop[..., tile.cx0 : tile.cx1] if cols is None else crop.index_select(3, cols)
    if tile.pad_y or tile.pad_x:
        return F.pad(crop.float(), (0, tile.pad_x, 0, tile.pad_y), mode="replicate")
    # Keep the caller's memory format: a channels-last frame stays channels-last (no copy when
    # the tile covers the whole frame). Engines that need NCHW buffers make them themselves.
    channels_last = x_bchw.dim() == 4 and x_bchw.is_contiguous(memory_format=torch.channels_last)
    return crop.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def paste_interior(
    out_bhwc: torch.Tensor, hr_bchw: torch.Tensor, tile: Tile, scale: int, batch_slice: slice = slice(None)
) -> None:
    """Write the interior of an engine output (for ``tile``'s context box) into ``out_bhwc``
    (channels 0..2), clamped to 0..1, moved to the output's device. Rows and columns beyond
    ``out_bhwc`` (a window-padded image's padding, see window_pad.py) are dropped."""
    s = scale
    oy, ox = tile.offset[0] * s, tile.offset[1] * s
    h = min((tile.y1 - tile.y0) * s, out_bhwc.shape[1] - tile.y0 * s)
    w = min((tile.x1 - tile.x0) * s, out_bhwc.shape[2] - tile.x0 * s)
    interior = hr_bchw[:, :3, oy : oy + h, ox : ox + w].permute(0, 2, 3, 1)
    target = out_bhwc[batch_slice, tile.y0 * s : tile.y1 * s, tile.x0 * s : tile.x1 * s, :3]
    if interior.device == target.device and interior.dtype == target.dtype:
        torch.clamp(interior, 0.0, 1.0, out=target)  # one pass, no temporary
    else:  # clamp where the data is, then one transfer
        target.copy_(interior.clamp(0.0, 1.0).to(target.device, target.dtype))


def as_rgb_bchw(image: torch.Tensor) -> torch.Tensor:
    """A (B, 3, H, W) view of the colour channels (grayscale replicated) without copying."""
    channels = image.shape[-1]
    rgb = image[..., :3] if channels >= 3 else image.expand(*image.shape[:-1], 3)
    return rgb.permute(0, 3, 1, 2)


def paste_alpha(
    out_bhwc: torch.Tensor, alpha_bhw: torch.Tensor, tile: Tile, scale: int, batch_slice: slice = slice(None)
) -> None:
    """Bicubic-upscale the tile's alpha (with its own 2 px margin, so tiles match a
    whole-image bicubic) into channel 3 of ``out_bhwc``; bicubic keeps flat alpha exactly
    flat. ``alpha_bhw`` (B, H, W) is the input's alpha, batch-aligned with ``out_bhwc``; tiles
    planned on a window-padded image are clipped to it (slicing stops at its border)."""
    h, w = alpha_bhw.shape[-2:]
    ay0, ay1 = max(0, tile.y0 - ALPHA_MARGIN), min(h, tile.y1 + ALPHA_MARGIN)
    ax0, ax1 = max(0, tile.x0 - ALPHA_MARGIN), min(w, tile.x1 + ALPHA_MARGIN)
    crop = alpha_bhw[batch_slice, None, ay0:ay1, ax0:ax1].float()
    up = crop if scale == 1 else F.interpolate(crop, scale_factor=scale, mode="bicubic", align_corners=False)
    s = scale
    oy, ox = (tile.y0 - ay0) * s, (tile.x0 - ax0) * s
    interior = up[:, 0, oy : oy + (tile.y1 - tile.y0) * s, ox : ox + (tile.x1 - tile.x0) * s]
    out_bhwc[batch_slice, tile.y0 * s : tile.y1 * s, tile.x0 * s : tile.x1 * s, 3].copy_(interior.clamp(0.0, 1.0))
