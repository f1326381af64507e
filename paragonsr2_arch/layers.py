"""Building blocks of ParagonSR2 that are shared by several block types.

Module and parameter names here are part of the checkpoint format
(docs/network.md, section 10); do not rename them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHARP_TAPS = (-1.0, 0.0, 9.0, 16.0, 9.0, 0.0, -1.0)
SHARP_DIVISOR = 32.0
BLUR_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)
BLUR_DIVISOR = 16.0


class SeparableConv(nn.Module):
    """Fixed depthwise separable filter: horizontal pass, then vertical, zero padding.

    The file stores the 1-D taps (``kernel``) and both conv weights; the forward pass uses the
    conv weights exactly as loaded.
    """

    def __init__(self, taps, divisor: float, channels: int = 3):
        super().__init__()
        kernel = torch.tensor(taps, dtype=torch.float32) / divisor
        k = kernel.numel()
        self.register_buffer("kernel", kernel)
        self.h = nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2), groups=channels, bias=False)
        self.v = nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0), groups=channels, bias=False)
        with torch.no_grad():
            self.h.weight.copy_(kernel.view(1, 1, 1, k).expand(channels, 1, 1, k))
            self.v.weight.copy_(kernel.view(1, 1, k, 1).expand(channels, 1, k, 1))
        self.h.weight.requires_grad_(False)
        self.v.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.v(self.h(x))


class RMSNorm(nn.Module):
    """Per-pixel RMS normalisation over channels; the statistic is always computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        # rsqrt of the float32 mean square; identical to dividing by sqrt(...) within 1 ulp.
        inv_rms = torch.rsqrt(x32.square().mean(dim=1, keepdim=True) + self.eps).to(x.dtype)
        return torch.addcmul(self.bias, x * inv_rms, self.scale)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((1, dim, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ws x ws windows, input (B, H, W, C).

    The window grid is anchored at the top-left of the input; shifted windows are a cyclic roll
    with no attention mask (as upstream), so padded zero tokens and wrapped tokens take part.
    """

    def __init__(self, dim: int, num_heads: int = 4, window_size: int = 16, shift: int = 0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels ({dim}) must be divisible by the number of heads ({num_heads})")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws, heads = self.window_size, self.num_heads
        pad_h, pad_w = (-h) % ws, (-w) % ws
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        nh, nw = hp // ws, wp // ws
        # (B, nh, ws, nw, ws, C) -> (B*nh*nw, ws*ws, C): windows row-major, tokens row-major.
        tokens = x.view(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        qkv = self.qkv(tokens).view(-1, ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        o = self.proj(o.transpose(1, 2).reshape(-1, ws * ws, c))
        x = o.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        if pad_h or pad_w:
            x = x[:, :h, :w, :]
        return x


class ChannelAttention(nn.Module):
    """Squeeze-excitation over the global mean of whatever input it is given."""

    def __init__(self, dim: int, reduction: int = 16, reduced: int | None = None):
        super().__init__()
        hidden = reduced if reduced is not None else max(1, dim // reduction)
        self.fc = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class TokenDictionaryCA(nn.Module):
    """Per-pixel cross-attention from pixel features to a learned dictionary of tokens."""

    def __init__(self, dim: int, num_tokens: int = 64, reduced: int = 16):
        super().__init__()
        self.token_dict = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02)
        self.q_proj = nn.Linear(dim, reduced)
        self.k_proj = nn.Linear(dim, reduced)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.scale = reduced**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.q_proj(tokens)
        k = self.k_proj(self.token_dict)  # (1, T, r)
        v = self.v_proj(self.token_dict)  # (1, T, C)
        attn = torch.softmax((q @ k.transpose(1, 2)) * self.scale, dim=-1)
        out = self.out_proj(attn @ v)
        return out.transpose(1, 2).reshape(b, c, h, w)
