"""The four block types of ParagonSR2 (one per variant) and the ResidualGroup container."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChannelAttention, LayerScale, RMSNorm, TokenDictionaryCA, WindowAttention

FP16_MAX = 65504.0


def _bhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _bchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class ConvMLP(nn.Module):
    """conv1 1x1 -> depthwise 3x3 -> GELU -> conv2 1x1; the parameter names are the file's."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden, 1)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.conv2 = nn.Conv2d(hidden, dim, 1)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.dw(self.conv1(x))))


class NanoBlock(ConvMLP):
    def __init__(self, dim: int, hidden: int, **_):
        super().__init__(dim, hidden)
        self.scale = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale(self.mlp(x))


class StreamBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, **_):
        super().__init__()
        self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.dw3 = nn.Conv2d(dim, dim, 3, padding=3, dilation=3, groups=dim)
        self.fuse = nn.Conv2d(dim * 2, dim, 1)
        self.proj = nn.Conv2d(dim, hidden * 2, 1)
        self.gate = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.out = nn.Conv2d(hidden, dim, 1)
        self.scale = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([self.dw1(x), self.dw3(x)], dim=1))
        a, b = self.gate(self.proj(y)).chunk(2, dim=1)
        # The gate product is always formed in float32 and clamped to the fp16 range.
        y = (a.float() * b.float()).clamp_(-FP16_MAX, FP16_MAX).to(x.dtype)
        return x + self.scale(self.out(y))


class PhotoBlock(ConvMLP):
    def __init__(
        self,
        dim: int,
        hidden: int,
        attention: bool = True,
        window_size: int = 16,
        shift: int = 0,
        num_heads: int = 4,
        **_,
    ):
        super().__init__(dim, hidden)
        self.norm = RMSNorm(dim)
        self.scale = LayerScale(dim)  # shared by both branches, as upstream
        self.attention = attention
        if attention:
            self.attn_norm = RMSNorm(dim)
            self.attn = WindowAttention(dim, num_heads, window_size, shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale(self.mlp(self.norm(x)))
        if self.attention:
            x = x + self.scale(_bchw(self.attn(_bhwc(self.attn_norm(x)))))
        return x


class ProBlock(ConvMLP):
    def __init__(
        self,
        dim: int,
        hidden: int,
        attention: bool = True,
        window_size: int = 16,
        shift: int = 0,
        num_heads: int = 4,
        ca_reduced: int | None = None,
        num_tokens: int = 64,
        token_reduced: int = 16,
        **_,
    ):
        super().__init__(dim, hidden)
        self.norm1 = RMSNorm(dim)
        self.scale1 = LayerScale(dim)
        self.channel_attn = ChannelAttention(dim, reduced=ca_reduced)
        self.scale2 = LayerScale(dim)
        self.attention = attention
        if attention:
            self.norm3 = RMSNorm(dim)
            self.window_attn = WindowAttention(dim, num_heads, window_size, shift)
            self.scale3 = LayerScale(dim)
        self.norm4 = RMSNorm(dim)
        self.token_ca = TokenDictionaryCA(dim, num_tokens, token_reduced)
        self.scale4 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1(self.mlp(self.norm1(x)))
        x = x + self.scale2(self.channel_attn(x))
        if self.attention:
            x = x + self.scale3(_bchw(self.window_attn(_bhwc(self.norm3(x)))))
        return x + self.scale4(self.token_ca(self.norm4(x)))


BLOCK_TYPES = {"realtime": NanoBlock, "stream": StreamBlock, "photo": PhotoBlock, "pro": ProBlock}


class ResidualGroup(nn.Module):
    """A named container of blocks; despite the upstream name there is no residual here."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)
