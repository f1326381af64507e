"""What every execution backend offers, and the object that flows between nodes.

Runners (tiling, temporal) only use the ``Engine`` protocol, so torch, ONNX Runtime and
TensorRT engines are interchangeable under them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch

# Options shared by the nodes and the command line.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # torch engines; auto = fp16 on CUDA, fp32 elsewhere
SHARPNESS_AUTO = "auto"
SHARPNESS_RANGE = (0.0, 2.0)


def parse_sharpness(value) -> float | None:
    """"auto" -> None (file metadata, else 0.0); a number or numeric string in 0..2 -> float."""
    if value is None or (isinstance(value, str) and value.strip().lower() == SHARPNESS_AUTO):
        return None
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"sharpness must be 'auto' or a number, not {value!r}") from None
    low, high = SHARPNESS_RANGE
    if not low <= alpha <= high:
        raise ValueError(f"sharpness {alpha} is outside {low:g}..{high:g}")
    return alpha


def frozen_copy(module: torch.nn.Module, device=None, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """An eval-mode, grad-free copy on ``device``/``dtype``; deepcopy first because ``.to()`` on a
    module already there returns the module itself (the caller's master would be changed)."""
    clone = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    return clone.requires_grad_(False)


@runtime_checkable
class Engine(Protocol):
    """Runs a ParagonSR2 network on LR tiles.

    Attributes:
        scale: upscale factor.
        window: LR granularity the network cares about (16 with window attention, else 1).
        exact_halo: LR context that makes tiled == whole exactly (None: network not local).
        device: where the engine computes; inputs may live anywhere.
        min_tile, max_tile: LR tile side limits (a TensorRT profile), None when unbounded.
    """

    scale: int
    window: int
    exact_halo: int | None
    device: torch.device
    min_tile: int | None
    max_tile: int | None

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float in 0..1 -> (B, 3, s*h, s*w) float32 (unclamped) on any device."""

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """conv_in features (B, C, h, w): the only part inside the video recurrence."""

    def decode(self, lr: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """The network with ``feat`` in place of conv_in's output -> (B, 3, s*h, s*w) float32."""


@dataclass(frozen=True)
class ModelHandle:
    """The PARAGONSR2_MODEL value passed between nodes.

    ``model`` is the CPU float32 master copy (never moved or cast in place: engines make
    their own device copies). ``engine`` is a prepared non-torch engine (ONNX Runtime or
    TensorRT); when None, runners build a torch engine with ``precision`` on demand.
    """

    model: torch.nn.Module
    name: str
    precision: str = "auto"
    engine: Engine | None = None

    @property
    def variant(self) -> str:
        return self.model.variant

    @property
    def scale(self) -> int:
        return self.model.scale

    def with_engine(self, engine: Engine | None) -> "ModelHandle":
        return replace(self, engine=engine)
