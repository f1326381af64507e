"""Upstream's window padding for photo / pro, done once per image before tiling.

Upstream's inference (scripts/run_inference.py, scripts/benchmark_release.py; its published
quality tables come from that path) reflect-pads the LR image on the bottom/right to a multiple
of the 16-px attention window before the network and crops the output. Without it the network
pads its feature maps with zeros inside every window attention, and the border pixels come out
differently (up to half the value range on trained models). The runners therefore pad the
whole image (each batch chunk) once, tile the padded image as if it were the input, and paste
only the pixels of the original image. realtime / stream are not padded (upstream's window is
1 for them): their tiles are exact against one unpadded pass.

Reflect padding needs ``pad < side``: upstream's script stops with torch's error for a side of
8 px or less (pad 8..15); the runners refuse those sizes up front with a clear message.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Upstream keys the padding on the architecture name, not on whether attention is present.
PADDED_VARIANTS = {"photo": 16, "pro": 16}


def pad_multiple(info) -> int:
    """16 for the variants upstream pads, 1 (no padding) otherwise (``info``: an EngineInfo)."""
    return PADDED_VARIANTS.get(info.variant, 1)


def padded_size(side: int, multiple: int) -> int:
    return side + (-side) % multiple


def check_size(info, height: int, width: int) -> None:
    """ValueError when reflect padding cannot reach the multiple (pad >= side, as upstream)."""
    multiple = pad_multiple(info)
    if multiple == 1:
        return
    if (-height) % multiple >= height or (-width) % multiple >= width:
        smallest = multiple // 2 + 1
        raise ValueError(
            f"ParagonSR2 {info.variant}: the image is {width}x{height} px; {info.variant} models need "
            f"sides of at least {smallest} px (their input is reflect-padded to a multiple of {multiple}, "
            f"as upstream's inference does). Use a realtime or stream model, or enlarge the image first."
        )


def pad_bchw(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad (B, C, H, W) on the bottom/right to a multiple; ``x`` itself when aligned."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    return F.pad(x.float(), (0, pad_w, 0, pad_h), mode="reflect")
