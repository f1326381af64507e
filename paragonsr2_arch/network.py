"""The ParagonSR2 network (dual path: fixed base upsampler + learned LR-space residual)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import cast

import torch
from torch import nn

from . import fast_paths
from .base_upsampler import MagicKernelSharp2021
from .blocks import BLOCK_TYPES, ResidualGroup

SUPPORTED_SCALES = (1, 2, 3, 4, 8)
VARIANTS = ("realtime", "stream", "photo", "pro")


@dataclass(frozen=True)
class ParagonSR2Config:
    """Everything needed to build a ParagonSR2 network; also what detection recovers."""

    variant: str
    scale: int
    num_feat: int
    num_groups: int
    num_blocks: int
    hidden: int
    attention: bool
    window_size: int
    detail_gain: float
    upsampler_alpha: float
    in_chans: int = 3
    num_heads: int = 4
    # Pro only: squeeze-excitation width and token-dictionary sizes (detected from shapes).
    ca_reduced: int | None = None
    num_tokens: int = 64
    token_reduced: int = 16

    def as_dict(self) -> dict:
        return asdict(self)


_FACTORY = {
    # variant: (C, groups, blocks, attention, window, detail_gain, upsampler_alpha)
    "realtime": (16, 1, 3, False, 16, 0.05, 0.3),
    "stream": (32, 2, 3, False, 16, 0.1, 0.0),
    "photo": (64, 4, 4, True, 16, 0.1, 0.4),
    "pro": (64, 6, 6, True, 16, 0.1, 0.4),
}


def factory_config(variant: str, scale: int, **overrides) -> ParagonSR2Config:
    if variant not in _FACTORY:
        raise ValueError(f"unknown ParagonSR2 variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    c, groups, blocks, attention, window, gain, alpha = _FACTORY[variant]
    cfg = ParagonSR2Config(
        variant=variant,
        scale=scale,
        num_feat=c,
        num_groups=groups,
        num_blocks=blocks,
        hidden=2 * c,
        attention=attention,
        window_size=window,
        detail_gain=gain,
        upsampler_alpha=alpha,
    )
    if "num_feat" in overrides and "hidden" not in overrides:
        overrides["hidden"] = 2 * overrides["num_feat"]
    unknown = set(overrides) - set(cfg.as_dict())
    if unknown:
        raise TypeError(f"unknown ParagonSR2 option(s): {', '.join(sorted(unknown))}")
    return replace(cfg, **overrides)


class ParagonSR2(nn.Module):
    """``forward(x, feature_tap=False, prev_feat=None, alpha=0.2)`` as in the spec.

    Attributes for callers: ``config``, ``variant``, ``scale``, ``num_feat``,
    ``upsampler_alpha`` (settable; it only changes the base path).
    """

    metadata: dict[str, str]  # the file's metadata; set by checkpoint.load_model only

    def __init__(self, config: ParagonSR2Config):
        super().__init__()
        self.config = config
        c = config.num_feat
        # Registration order mirrors the upstream state dict.
        self.detail_gain = nn.Parameter(torch.tensor(float(config.detail_gain)))
        self.base = MagicKernelSharp2021(config.scale, config.upsampler_alpha, config.in_chans)
        self.conv_in = nn.Conv2d(config.in_chans, c, 3, padding=1)
        block_cls = BLOCK_TYPES[config.variant]
        groups = []
        for g in range(config.num_groups):
            blocks = []
            for i in range(config.num_blocks):
                b = g * config.num_blocks + i
                blocks.append(
                    block_cls(
                        c,
                        config.hidden,
                        attention=config.attention,
                        window_size=config.window_size,
                        shift=(config.window_size // 2) if b % 2 else 0,
                        num_heads=config.num_heads,
                        ca_reduced=config.ca_reduced,
                        num_tokens=config.num_tokens,
                        token_reduced=config.token_reduced,
                    )
                )
            groups.append(ResidualGroup(blocks))
        self.body = nn.Sequential(*groups)
        self.conv_mid = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(c, c * config.scale**2, 3, padding=1), nn.PixelShuffle(config.scale))
        self.conv_out = nn.Conv2d(c, config.in_chans, 3, padding=1)

    # -- attributes of the public API -------------------------------------------------------
    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def num_feat(self) -> int:
        return self.config.num_feat

    @property
    def upsampler_alpha(self) -> float:
        return self.base.alpha

    @upsampler_alpha.setter
    def upsampler_alpha(self, value: float) -> None:
        self.base.alpha = float(value)

    @property
    def window_size(self) -> int:
        """Spatial granularity the body cares about (1 when there is no window attention)."""
        return self.config.window_size if self.config.attention else 1

    @property
    def receptive_radius(self) -> int | None:
        """LR pixels of context that fully determine an output pixel, or None when the network
        is not local (window attention, or pro's channel attention over the whole input).

        conv_in, conv_mid, up.0 and conv_out (one HR pixel is within one LR pixel) add 1 each;
        a Nano/Photo block adds 1 (its 3x3 depthwise), a Stream block 4 (dilated 3x3 depthwise
        reaching 3, then the 3x3 gate); the base path needs 3 (sharpen) + 1 (blur at HR).
        """
        cfg = self.config
        if cfg.variant == "pro" or (cfg.variant == "photo" and cfg.attention):
            return None
        per_block = 4 if cfg.variant == "stream" else 1
        return max(4 + per_block * cfg.num_groups * cfg.num_blocks, 4)

    # -- forward ----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """conv_in features: the only part of the network inside the video recurrence."""
        return self.conv_in(x)

    @property
    def stage_count(self) -> int:
        """Hook calls of one staged pass: conv_in, every body block, the tail (see run_staged)."""
        return self.config.num_groups * self.config.num_blocks + 2

    def decode(self, x: torch.Tensor, feat: torch.Tensor, on_block=None, on_branch=None) -> torch.Tensor:
        """Everything after conv_in, with ``feat`` standing in for conv_in's output.

        Inference uses the optimised path (fast_paths.py); inside ``reference_mode()``, in
        training mode or when autograd records, the modules' straightforward forwards run.
        ``on_block()``, when given, is called after each body block (for cancel and progress:
        it may raise), ``on_branch()`` on the fast path also inside photo/pro blocks, between
        their large operations; the values computed are the same with or without them.
        """
        if fast_paths.usable(self, feat):
            return fast_paths.decode(self, x, feat, on_block, on_branch)
        if on_block is None:
            y = self.body(feat)
        else:  # the same blocks in the same order as body(feat), with a call between them
            y = feat
            for group in self.body:
                for block in cast(ResidualGroup, group).blocks:  # body holds ResidualGroups only
                    y = block(y)
                    on_block()
        y = self.up(self.conv_mid(y))
        return self.base(x) + self.conv_out(y) * self.detail_gain

    def run_staged(self, x: torch.Tensor, on_step) -> torch.Tensor:
        """``forward(x)`` with ``on_step(done, stage_count)`` called after conv_in, after each
        body block and after the tail, so a caller can cancel (raise) or report progress inside
        one pass. Inside a photo/pro block (between its large operations: depthwise conv, MLP,
        qkv, attention) it is called again with the same ``done``: such a block takes seconds
        on a CPU. Same operations in the same order as forward: bit-identical output."""
        return self.run_decode_staged(x, self.encode(x), on_step)

    def run_decode_staged(self, x: torch.Tensor, feat: torch.Tensor, on_step) -> torch.Tensor:
        """``decode(x, feat)`` with run_staged's hook calls: ``on_step(1, stage_count)`` first
        (``feat`` stands for conv_in's stage), then after each body block and after the tail.
        The video pipeline's decode; bit-identical to ``decode(x, feat)``."""
        total = self.stage_count
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            on_step(done, total)

        def branch() -> None:
            on_step(done, total)

        step()
        out = self.decode(x, feat, step, branch)
        step()
        return out

    def forward(
        self, x: torch.Tensor, feature_tap: bool = False, prev_feat: torch.Tensor | None = None, alpha: float = 0.2
    ):
        feat = self.encode(x)
        if prev_feat is not None:
            feat = (1 - alpha) * feat + alpha * prev_feat
        out = self.decode(x, feat)
        return (out, feat) if feature_tap else out


def build_model(variant: str, scale: int, **overrides) -> ParagonSR2:
    """A freshly initialised network with the spec's factory settings (in eval mode)."""
    return ParagonSR2(factory_config(variant, scale, **overrides)).eval()
