"""Input and output checks shared by the image and video runners.

Hostile tensors get one clear line before any network runs (not a shape error from inside
torch); a network whose output holds NaN/Inf fails instead of producing a picture, because
clamping would turn NaN into black and Inf into white without telling anybody.
"""

from __future__ import annotations

import numpy as np
import torch


class NonFiniteOutputError(RuntimeError):
    """The network's output held NaN/Inf (after a low-precision torch engine's fp32 retry)."""

    def __init__(self, engine_label: str):
        self.engine_label = engine_label
        super().__init__(self.describe())

    def describe(self, model_name: str | None = None) -> str:
        which = f"model '{model_name}'" if model_name else "the model"
        return (
            f"ParagonSR2: {which} produced NaN/Inf output ({self.engine_label}); its weights are "
            f"probably broken (NaN/Inf in the file): re-download or re-export it"
        )


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite. CPU float32/float64 tensors are checked by numpy
    in one single-threaded pass: torch's mask-then-all runs two multi-threaded passes whose
    OpenMP wake-ups wait for a core when other work shares the CPU (384x384x3 at load 5 on
    2 cores: 40 ms in torch, 0.04 ms in numpy; the same result)."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(t.detach().numpy()).all())
    return bool(torch.isfinite(t).all())


def check_images(image, what: str = "image") -> None:
    """ValueError unless ``image`` is a non-empty (B, H, W, C) float tensor, C = 1, 3 or 4,
    with finite pixels."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"ParagonSR2: {what} must be an IMAGE tensor, not {type(image).__name__}")
    shape = tuple(image.shape)
    if image.dim() != 4 or shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"ParagonSR2: {what} must be (batch, height, width, channels) with 1, 3 or 4 "
            f"channels (gray, RGB, RGBA); got a tensor of shape {shape}"
        )
    if not image.is_floating_point():
        raise ValueError(f"ParagonSR2: {what} must hold floats in 0..1, not {str(image.dtype).replace('torch.', '')}")
    if shape[0] == 0:
        raise ValueError(f"ParagonSR2: the {what} batch is empty (0 images)")
    if shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"ParagonSR2: {what} is {shape[2]}x{shape[1]} px; nothing to upscale")
    # One image at a time: a boolean mask of a whole long clip would be gigabytes.
    for index in range(shape[0]):
        if not all_finite(image[index]):
            raise ValueError(
                f"ParagonSR2: {what} {index} of the batch holds NaN/Inf pixel values; "
                "pixels must be finite numbers in 0..1"
            )


def check_output(hr: torch.Tensor, info) -> None:
    """NonFiniteOutputError when an engine result holds NaN/Inf (``info``: the EngineInfo)."""
    if not all_finite(hr):
        raise NonFiniteOutputError(f"{info.variant or 'ParagonSR2'} x{info.scale}, {info.precision} on {info.device}")
