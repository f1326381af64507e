"""Recover a ParagonSR2Config from a state dict alone (spandrel-style detection).

Only shapes and key names are used; nothing is inferred from file names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from .errors import ModelLoadError
from .network import ParagonSR2Config, factory_config

_BLOCK_KEY = re.compile(r"^body\.(\d+)\.blocks\.(\d+)\.")

# Parameters that identify each block type (relative to body.0.blocks.0.).
_SIGNATURES = {
    "pro": ("norm1.scale", "channel_attn.fc.0.weight", "token_ca.token_dict", "conv1.weight"),
    "photo": ("norm.scale", "conv1.weight", "dw.weight", "conv2.weight"),
    "stream": ("dw1.weight", "dw3.weight", "fuse.weight", "proj.weight", "gate.weight", "out.weight"),
    "realtime": ("conv1.weight", "dw.weight", "conv2.weight", "scale.gamma"),
}
_TOP_LEVEL = ("conv_in.weight", "conv_mid.weight", "up.0.weight", "conv_out.weight", "detail_gain")


def looks_like_paragonsr2(state: Mapping[str, object]) -> bool:
    """Cheap test used by registries: the top-level keys and one known block signature."""
    if not all(k in state for k in _TOP_LEVEL):
        return False
    if not any(k.startswith("base.") for k in state):
        return False
    return _detect_variant(state) is not None


def _detect_variant(state: Mapping[str, object]) -> str | None:
    for variant, keys in _SIGNATURES.items():  # most specific first
        if all(f"body.0.blocks.0.{k}" in state for k in keys):
            return variant
    return None


def _shape(state: Mapping[str, object], key: str) -> tuple[int, ...]:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise ModelLoadError(f"expected a tensor at {key!r}")
    return tuple(value.shape)


def detect_config(state: Mapping[str, object], *, upsampler_alpha: float | None = None) -> ParagonSR2Config:
    missing = [k for k in _TOP_LEVEL if k not in state]
    if missing:
        sample = ", ".join(list(state)[:5]) or "no keys at all"
        raise ModelLoadError(
            "this is not a ParagonSR2 checkpoint: it lacks " + ", ".join(missing) + f" (its first keys are: {sample})"
        )
    variant = _detect_variant(state)
    if variant is None:
        raise ModelLoadError(
            "the file has ParagonSR2's top-level layers but no known block type "
            "(expected NanoBlock, StreamBlock, PhotoBlock or ProBlock keys under body.0.blocks.0.)"
        )

    c, in_chans = _shape(state, "conv_in.weight")[:2]
    up_out = _shape(state, "up.0.weight")[0]
    scale = math.isqrt(up_out // c) if up_out % c == 0 else 0
    if scale < 1 or c * scale * scale != up_out:
        raise ModelLoadError(
            f"up.0.weight has {up_out} output channels, which is not num_feat ({c}) times a square scale"
        )

    blocks_per_group: dict[int, set[int]] = {}
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks_per_group.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    num_groups = max(blocks_per_group) + 1
    num_blocks = max(blocks_per_group[0]) + 1
    for g in range(num_groups):
        if blocks_per_group.get(g) != set(range(num_blocks)):
            raise ModelLoadError(
                f"body group {g} has blocks {sorted(blocks_per_group.get(g, ()))}, "
                f"expected 0..{num_blocks - 1} like group 0"
            )

    prefix = "body.0.blocks.0."
    if variant == "stream":
        hidden = _shape(state, prefix + "out.weight")[1]
    else:
        hidden = _shape(state, prefix + "conv1.weight")[0]
    attention = any(".attn." in k or ".window_attn." in k for k in state)

    overrides: dict[str, object] = dict(
        num_feat=c, in_chans=in_chans, num_groups=num_groups, num_blocks=num_blocks, hidden=hidden, attention=attention
    )
    if variant == "pro":
        overrides["ca_reduced"] = _shape(state, prefix + "channel_attn.fc.0.weight")[0]
        overrides["num_tokens"] = _shape(state, prefix + "token_ca.token_dict")[1]
        overrides["token_reduced"] = _shape(state, prefix + "token_ca.q_proj.weight")[0]
    # Published models were trained with a plain base (alpha 0) and the value is not stored.
    overrides["upsampler_alpha"] = 0.0 if upsampler_alpha is None else float(upsampler_alpha)
    if attention and c % 4:
        raise ModelLoadError(f"num_feat {c} is not divisible by the 4 attention heads")
    return factory_config(variant, scale, **overrides)
