"""Upstream's window padding for photo / pro: reflect-pad the LR image on the bottom/right to a
multiple of the 16-px attention window before the network, crop the output.

Upstream's inference (scripts/run_inference.py, scripts/benchmark_release.py; its published
quality tables come from that path) does this. Without it the network pads its feature maps with
zeros inside every window attention, and the border pixels come out differently (up to half the
value range on trained models). realtime / stream are not padded (upstream's window is 1 for
them): they run exactly as given.

Written once here, beside the network, because two callers need it: the pack's tiled runners
(engines/tiling, engines/video: they pad the whole image once and tile the padded image) and the
spandrel descriptor (spandrel_arch.py: what ComfyUI's core upscale nodes call on each core tile).

Reflect padding needs ``pad < side``: upstream's script stops with torch's error for a side of
8 px or less (pad 8..15); ``check_size`` refuses those sizes up front with a clear message.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Upstream keys the padding on the architecture name, not on whether attention is present.
PADDED_VARIANTS = {"photo": 16, "pro": 16}


def pad_multiple(variant: str) -> int:
    """16 for the variants upstream pads, 1 (no padding) otherwise."""
    return PADDED_VARIANTS.get(variant, 1)


def padded_size(side: int, multiple: int) -> int:
    return side + (-side) % multiple


def check_size(variant: str, height: int, width: int) -> None:
    """ValueError when reflect padding cannot reach the multiple (pad >= side, as upstream)."""
    multiple = pad_multiple(variant)
    if multiple == 1:
        return
    if (-height) % multiple >= height or (-width) % multiple >= width:
        smallest = multiple // 2 + 1
        raise ValueError(
            f"ParagonSR2 {variant}: the image is {width}x{height} px; {variant} models need "
            f"sides of at least {smallest} px (their input is reflect-padded to a multiple of {multiple}, "
            f"as upstream's inference does). Use a realtime or stream model, or enlarge the image first."
        )


def pad_bchw(x: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right to a multiple (dtype kept); ``x`` itself when aligned.

    ``reflect`` as upstream's inference pads photo / pro; ``replicate`` (any side, even 1 px)
    for engines whose graphs only take aligned sizes and whose extra output is cropped away."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def padded_forward(model, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` the way upstream's inference runs it: photo / pro padded and cropped back,
    realtime / stream called as they are (the same call, bit for bit)."""
    multiple = pad_multiple(model.variant)
    if multiple == 1:
        return model(x)
    h, w = x.shape[-2:]
    check_size(model.variant, h, w)
    scale = int(model.scale)
    return model(pad_bchw(x, multiple))[..., : h * scale, : w * scale]
