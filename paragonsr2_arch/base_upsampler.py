"""The fixed MagicKernelSharp2021 base path: optional sharpening, nearest upsample, blur."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import BLUR_DIVISOR, BLUR_TAPS, SHARP_DIVISOR, SHARP_TAPS, SeparableConv


def _polyphase_taps(taps: torch.Tensor, scale: int) -> tuple[torch.Tensor, int]:
    """Rewrite "nearest upsample by s, then 1-D zero-padded filter" as s filters at LR.

    Output pixel j = s*i + p of the filtered, nearest-upsampled row equals
    sum_d w_p[d] * x[i + d], where w_p[d] sums the taps t with floor((p + t) / s) == d.
    Zero padding at HR maps exactly onto zero padding at LR, so the rewrite is exact.
    Returns (weights of shape (C, s, 2R+1), R).
    """
    channels, k = taps.shape
    half = k // 2
    radius = max(abs((0 - half) // scale), (scale - 1 + half) // scale)
    weights = taps.new_zeros(channels, scale, 2 * radius + 1)
    for phase in range(scale):
        for t in range(k):
            d = (phase + t - half) // scale
            weights[:, phase, d + radius] += taps[:, t]
    return weights, radius


class MagicKernelSharp2021(nn.Module):
    """Structural base of the output; its filters are fixed but stored in the checkpoint."""

    def __init__(self, scale: int, alpha: float = 0.0, channels: int = 3):
        super().__init__()
        self.scale = scale
        self.alpha = float(alpha)
        self.sharp = SeparableConv(SHARP_TAPS, SHARP_DIVISOR, channels)
        self.blur = SeparableConv(BLUR_TAPS, BLUR_DIVISOR, channels)
        # Straightforward path of the spec (nearest upsample, then blur at HR), kept for
        # comparisons; the default polyphase path computes the same values at LR resolution.
        self.use_polyphase = True

    def sharpen(self, x: torch.Tensor) -> torch.Tensor:
        if self.alpha > 0:
            x = x + self.alpha * (self.sharp(x) - x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sharpen(x)
        if not self.use_polyphase or self.scale == 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest") if self.scale != 1 else x
            return self.blur(x)
        return self._polyphase_blur(x)

    def _polyphase_blur(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        c = x.shape[1]
        wh, rh = _polyphase_taps(self.blur.h.weight.reshape(c, -1).float(), s)  # (C, s, kh)
        wv, rv = _polyphase_taps(self.blur.v.weight.reshape(c, -1).float(), s)  # (C, s, kv)
        # One depthwise conv producing the s*s phases per channel, in PixelShuffle order
        # (channel-major, then row phase, then column phase).
        kernel = wv[:, :, None, :, None] * wh[:, None, :, None, :]  # (C, s, s, kv, kh)
        kernel = kernel.reshape(c * s * s, 1, 2 * rv + 1, 2 * rh + 1).to(x.dtype)
        phases = F.conv2d(x, kernel, padding=(rv, rh), groups=c)
        return F.pixel_shuffle(phases, s)
