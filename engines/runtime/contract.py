"""What every execution backend offers, and the object that flows between nodes.

Runners (tiling, temporal) only use the ``Engine`` protocol: ``engine.info`` (an EngineInfo,
every fact they plan with) and three calls. So torch, ONNX Runtime and TensorRT engines are
interchangeable under them; docs/architecture.md has the recipe for a new backend.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import torch

from .devices import dtype_name

if TYPE_CHECKING:
    from ...paragonsr2_arch import ParagonSR2

# LR granularity of the window-attention variants (photo, pro): tile origins and sizes, graph
# input sides and TensorRT profile sides are multiples of it.
ALIGN = 16

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def frozen_copy(module: ModuleT, device=None, dtype: torch.dtype | None = None) -> ModuleT:
    """An eval-mode, grad-free copy on ``device``/``dtype``; deepcopy first because ``.to()`` on a
    module already there returns the module itself (the caller's master would be changed)."""
    clone = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    return clone.requires_grad_(False)


# EngineInfo.allocator: where an engine's working tensors come from, which decides how the
# runners size CPU tiles (only "malloc" tiles are kept small enough for the C allocator to reuse).
ALLOCATOR_MALLOC = "malloc"  # the C library's malloc: torch on the CPU
ALLOCATOR_ARENA = "arena"  # the engine's own memory pool (ONNX Runtime)
ALLOCATOR_DEVICE = "device"  # a device allocator (torch's CUDA/MPS caching allocator, TensorRT)


@dataclass(frozen=True)
class EngineInfo:
    """Every fact about an engine that the runners plan with; each backend fills one.

    device: where the engine computes (inputs may live anywhere).
    dtype: the number format it computes in (memory estimates; fp16/bf16 halve them).
    variant: "realtime", "stream", "photo" or "pro" (None: unknown, planned like the largest).
    scale: upscale factor.
    window: LR granularity the network cares about (16 with window attention, else 1).
    exact_halo: LR context that makes tiled == whole exactly (None: the network is not local).
    tile_multiple: engine input sides must be multiples of it (None: any side; ALIGN is
        assumed when min_tile/max_tile are set).
    min_tile, max_tile: LR input side limits (a TensorRT profile), None when unbounded.
    allocator: ALLOCATOR_MALLOC, ALLOCATOR_ARENA or ALLOCATOR_DEVICE.
    supports_video: whether ``decode`` works (video graphs / engines, every torch engine).
    steps_per_call: how often one call reports to its ``on_step`` hook (torch: conv_in, each
        body block, the tail); 1 = the engine cannot stop inside a call (ONNX Runtime, TensorRT).
    """

    device: torch.device
    dtype: torch.dtype
    variant: str | None
    scale: int
    window: int = 1
    exact_halo: int | None = None
    tile_multiple: int | None = None
    min_tile: int | None = None
    max_tile: int | None = None
    allocator: str = ALLOCATOR_DEVICE
    supports_video: bool = True
    steps_per_call: int = 1

    @classmethod
    def of_model(cls, model: ParagonSR2, device: torch.device | str, dtype: torch.dtype, **facts) -> EngineInfo:
        """The facts a ParagonSR2 module carries itself (variant, scale, window, receptive
        radius); ``facts`` add or override the engine's own (allocator, profile, ...)."""
        base = {
            "variant": model.variant,
            "scale": int(model.scale),
            "window": int(model.window_size),
            "exact_halo": model.receptive_radius,
        }
        base.update(facts)
        return cls(device=torch.device(device), dtype=dtype, **base)

    @property
    def precision(self) -> str:
        """ "fp32", "fp16" or "bf16"."""
        return dtype_name(self.dtype)


@runtime_checkable
class Engine(Protocol):
    """Runs a ParagonSR2 network on LR tiles; runners read only ``info`` and call these three."""

    info: EngineInfo

    def __call__(self, lr: torch.Tensor, on_step=None) -> torch.Tensor:
        """(B, 3, h, w) float in 0..1 -> (B, 3, s*h, s*w) float32 (unclamped) on any device.

        ``on_step(done, info.steps_per_call)``, when given, runs between stages of the pass
        (cancel: it may raise; progress); engines without stages may ignore it."""
        ...

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """conv_in features (B, C, h, w): the only part inside the video recurrence."""
        ...

    def decode(self, lr: torch.Tensor, feat: torch.Tensor, on_step=None) -> torch.Tensor:
        """The network with ``feat`` in place of conv_in's output -> (B, 3, s*h, s*w) float32.

        ``on_step`` as in ``__call__`` (the same ``steps_per_call`` stages: the first is
        reported before the body, conv_in's work being ``feat``); may be ignored likewise."""
        ...


class InfoAttributes:
    """Base of the backends: ``engine.scale``, ``engine.device``, ... read from ``engine.info``,
    so callers that print or compare them (CLI, nodes, tests) see the one set of facts."""

    info: EngineInfo

    device = property(lambda self: self.info.device)
    dtype = property(lambda self: self.info.dtype)
    precision = property(lambda self: self.info.precision)
    variant = property(lambda self: self.info.variant)
    scale = property(lambda self: self.info.scale)
    window = property(lambda self: self.info.window)
    exact_halo = property(lambda self: self.info.exact_halo)
    tile_multiple = property(lambda self: self.info.tile_multiple)
    min_tile = property(lambda self: self.info.min_tile)
    max_tile = property(lambda self: self.info.max_tile)
    video = property(lambda self: self.info.supports_video)


@dataclass(frozen=True)
class ModelHandle:
    """The PARAGONSR2_MODEL value passed between nodes.

    ``model`` is the CPU float32 master copy (never moved or cast in place: engines make
    their own device copies). ``engine`` is a prepared non-torch engine (ONNX Runtime or
    TensorRT); when None, runners build a torch engine with ``precision`` on demand.
    """

    model: ParagonSR2
    name: str
    precision: str = "auto"
    engine: Engine | None = None

    @property
    def variant(self) -> str:
        return self.model.variant

    @property
    def scale(self) -> int:
        return self.model.scale

    def with_engine(self, engine: Engine | None) -> ModelHandle:
        return replace(self, engine=engine)
