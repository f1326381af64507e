"""Output size other than the model's factor: the rule the nodes offer and the per-image resize.

The runners resize each batch chunk (image runner) or frame chunk (video runner) as soon as it
is finished, so a batch never holds all model-factor outputs at once: only the final-size
batch plus one chunk at the model's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODEL_FACTOR, FACTOR, LONG_SIDE = "model factor", "factor", "long side"
OUTPUT_SIZE_MODES = [MODEL_FACTOR, FACTOR, LONG_SIDE]


def output_dims(
    mode: str, factor: float, long_side: int, height: int, width: int, scale: int
) -> tuple[int, int] | None:
    """(out_h, out_w) for an LR ``height`` x ``width`` image, or None when that is the model's
    own size (no resize). ``factor`` is relative to the input (1.5 with a 4x model = 1.5x);
    ``long_side`` fixes the longer output side and keeps the aspect ratio."""
    if mode == MODEL_FACTOR:
        return None
    if mode == FACTOR:
        if not factor or factor <= 0:
            raise ValueError(f"ParagonSR2: output_factor must be above 0, not {factor}")
        dims = (max(1, round(height * factor)), max(1, round(width * factor)))
    elif mode == LONG_SIDE:
        if not long_side or long_side < 1:
            raise ValueError(f"ParagonSR2: output_long_side must be at least 1, not {long_side}")
        ratio = int(long_side) / max(height, width)
        dims = (max(1, round(height * ratio)), max(1, round(width * ratio)))
    else:
        raise ValueError(f"ParagonSR2: output_size must be one of {', '.join(OUTPUT_SIZE_MODES)}, not {mode!r}")
    return None if dims == (height * scale, width * scale) else dims


def resize_into(dest_bhwc: torch.Tensor, native_bhwc: torch.Tensor) -> None:
    """Write ``native_bhwc`` resized to ``dest_bhwc``'s size into it (bicubic, antialiased when
    shrinking, clamped to 0..1: bicubic overshoots at edges); alpha is resized with the colour."""
    size = tuple(dest_bhwc.shape[1:3])
    x = native_bhwc.permute(0, 3, 1, 2)
    y = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    dest_bhwc.copy_(y.clamp_(0.0, 1.0).permute(0, 2, 3, 1))
