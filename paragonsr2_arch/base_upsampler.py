"""The fixed MagicKernelSharp2021 base path: optional sharpening, nearest upsample, blur."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import BLUR_DIVISOR, BLUR_TAPS, SHARP_DIVISOR, SHARP_TAPS, SeparableConv
from .mode import fast_enabled


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

    def sharpen(self, x: torch.Tensor) -> torch.Tensor:
        if self.alpha > 0:
            x = x + self.alpha * (self.sharp(x) - x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sharpen(x)
        # reference_mode(): the spec's straightforward path (nearest upsample, then blur at
        # HR); else the polyphase path, the same values computed at LR resolution.
        if not fast_enabled():
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest") if self.scale != 1 else x
            return self.blur(x)
        kernel, rv, rh = self.polyphase_kernel(x.dtype, x.device)
        phases = F.conv2d(x, kernel, padding=(rv, rh), groups=x.shape[1])
        return F.pixel_shuffle(phases, self.scale) if self.scale != 1 else phases

    def polyphase_kernel(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, int, int]:
        """(depthwise kernel (C*s*s, 1, kv, kh), rv, rh) computing the s*s phases of blur(nearest(x))
        at LR, in PixelShuffle order. Cached; rebuilt when the blur weights change."""
        h, v = self.blur.h.weight, self.blur.v.weight
        key = (h.data_ptr(), _version(h), v.data_ptr(), _version(v), h.dtype, dtype, device)
        cached = self.__dict__.get("_polyphase_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad(), torch.inference_mode(False):
            s, c = self.scale, h.shape[0]
            wh, rh = _polyphase_taps(h.detach().reshape(c, -1).double(), s)  # (C, s, kh)
            wv, rv = _polyphase_taps(v.detach().reshape(c, -1).double(), s)  # (C, s, kv)
            # One depthwise conv producing the s*s phases per channel, in PixelShuffle order
            # (channel-major, then row phase, then column phase).
            kernel = wv[:, :, None, :, None] * wh[:, None, :, None, :]  # (C, s, s, kv, kh)
            kernel = kernel.reshape(c * s * s, 1, 2 * rv + 1, 2 * rh + 1).to(device=device, dtype=dtype)
        value = (kernel, rv, rh)
        self.__dict__["_polyphase_cache"] = (key, value)
        return value


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter
        return -1
