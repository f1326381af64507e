"""Upstream's window padding for photo / pro, done once per image before tiling.

The padding itself lives beside the network (paragonsr2_arch/window_pad.py: spandrel's
descriptor, which ComfyUI's core nodes run, pads the same way). The runners pad the whole image
(each batch chunk) once, tile the padded image as if it were the input, and paste only the
pixels of the original image; realtime / stream are not padded, and their tiles are exact
against one unpadded pass. This module adapts it to the runners' ``EngineInfo``.
"""

from __future__ import annotations

from ...paragonsr2_arch import window_pad as _arch_pad
from ...paragonsr2_arch.window_pad import PADDED_VARIANTS, pad_bchw, padded_size

__all__ = ["PADDED_VARIANTS", "check_size", "pad_bchw", "pad_multiple", "padded_size"]


def pad_multiple(info) -> int:
    """16 for the variants upstream pads, 1 (no padding) otherwise (``info``: an EngineInfo)."""
    return _arch_pad.pad_multiple(info.variant)


def check_size(info, height: int, width: int) -> None:
    """ValueError when reflect padding cannot reach the multiple (pad >= side, as upstream)."""
    _arch_pad.check_size(info.variant, height, width)
