"""Torch engines whose weights ComfyUI's model manager owns (used inside ComfyUI only).

A device copy of a network kept out of ComfyUI's sight can be neither evicted to make room for
other models nor released by "Unload models" / ``POST /free``. So inside ComfyUI every network
copy an engine computes with (its compute dtype, and the lazy fp32 copy for overflow fallbacks)
is wrapped in a ComfyUI model patcher; before each run the node calls ``load`` with a
working-memory estimate from the tile plan, ComfyUI's ``load_models_gpu`` evicts what it must
and moves the weights, and the engine computes on exactly that module, wherever ComfyUI put it.
Standalone (command line, tests) none of this is used: TorchEngine keeps its own device copy.

The patchers are the classic ``ModelPatcher`` on every ComfyUI, also where dynamic VRAM (0.33,
comfy-aimdo) makes ``CoreModelPatcher`` the ``ModelPatcherDynamic``: dynamic loading streams only
``comfy.ops`` layers and force-loads plain torch layers like ours whole anyway, so it would gain
nothing for a network of a few MB; and a load that involves a classic patcher makes
``load_models_gpu`` free the asked working memory up front (smart memory: other models, dynamic
ones included, lose only the shortfall), which our tile plan relies on (tiles sized from the
free memory, never planned below MIN_PLANNED_TILE), where an all-dynamic load frees nothing and
leaves it to comfy-aimdo at allocation time. Figures: docs/nodes.md, benchmarks/vram_budget.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..engines.backends.torch_engine import TorchEngine
from ..engines.runtime.contract import frozen_copy
from ..engines.tiling.sizing import bytes_per_lr_pixel, tile_layout
from ..paragonsr2_arch import ParagonSR2
from . import comfy_bridge as bridge

# Smallest working set asked for: a 512 px tile, what core's Upscale Image (using Model) plans
# with. Below it ComfyUI evicts other models rather than letting our tiles shrink further.
MIN_PLANNED_TILE = 512


class ManagedTorchEngine(TorchEngine):
    """A TorchEngine whose network copies live in ComfyUI model patchers (``self.patchers``)."""

    def __init__(self, model: ParagonSR2, device: torch.device, precision: str = "auto"):
        self.patchers: list = []  # filled by _device_copy, which TorchEngine.__init__ calls
        self._memory_required = 0
        super().__init__(model, device, precision)

    def _device_copy(self, dtype: torch.dtype) -> ParagonSR2:
        module = frozen_copy(self._master, "cpu", dtype)
        patcher = bridge.model_patcher(module, self.device)
        if patcher is None:
            raise RuntimeError("ManagedTorchEngine works inside ComfyUI only; use TorchEngine standalone")
        module.to(patcher.offload_device)
        self.patchers.append(patcher)
        if len(self.patchers) > 1:  # the fp32 fallback copy, wanted mid-run: load it beside the first
            bridge.load_models(self.patchers, self._memory_required)
        return module

    def load(self, memory_required: int) -> None:
        """Have ComfyUI load our weights (all copies made so far) with ``memory_required`` bytes
        of working memory to spare; call before every run, since ComfyUI may have unloaded them."""
        self._memory_required = int(memory_required)
        bridge.load_models(self.patchers, self._memory_required)
        for patcher in self.patchers:  # a manager that left any weight elsewhere: move the module
            if any(t.device != patcher.load_device for t in _weights(patcher.model)):
                patcher.model.to(patcher.load_device)

    @property
    def weight_bytes(self) -> int:
        return sum(int(p.model_size()) for p in self.patchers)


def _weights(module: torch.nn.Module):
    yield from module.parameters()
    yield from module.buffers()


def working_memory(
    engine,
    height: int,
    width: int,
    tile_size: int = 0,
    halo: int | None = None,
    batch: int = 1,
    free_memory: Callable[[], int] | None = None,
) -> int:
    """Bytes of activations one engine call needs for ``height`` x ``width`` LR images: the tile
    the runner will plan (``tile_size``, or auto from ComfyUI's free memory: ``free_memory()``,
    default the bridge's reading of the engine's device), never less than a MIN_PLANNED_TILE
    tile, ``batch`` images per call."""
    info = engine.info

    def context_bytes(tile: int, halo_px: int) -> int:
        rows, cols = min(height, tile) + 2 * halo_px, min(width, tile) + 2 * halo_px
        return rows * cols * max(1, batch) * bytes_per_lr_pixel(info.variant, info.dtype, info.scale)

    def free() -> int:  # read only when tile_size is auto
        return free_memory() if free_memory is not None else bridge.free_memory(info.device)

    tile, halo_px, _ = tile_layout(info, height, width, tile_size, halo, free, batch)
    planned = context_bytes(tile, halo_px)
    if tile_size and tile_size > 0:
        return planned
    return max(planned, context_bytes(MIN_PLANNED_TILE, halo_px))


def prepare(engine, height: int, width: int, tile_size: int = 0, halo: int | None = None, batch: int = 1) -> None:
    """Before a run inside ComfyUI: load a managed engine's weights through ComfyUI's model
    manager; for ONNX Runtime / TensorRT engines, whose memory ComfyUI cannot track, ask it to
    evict models until the planned working memory is free. No-op standalone."""
    if not bridge.IN_COMFYUI:
        return
    needed = working_memory(engine, height, width, tile_size, halo, batch)
    if isinstance(engine, ManagedTorchEngine):
        engine.load(needed)
    else:
        bridge.make_room(needed, engine.info.device)


def frames_per_call(engine, frames_per_chunk: int = 0) -> int:
    """Frames the video runner puts through one call: the node's frames_per_chunk, else its
    auto choice on a GPU (engines/video/temporal.DEFAULT_CHUNK); one on the CPU, where ComfyUI
    plans no memory anyway."""
    from ..engines.video import temporal

    if frames_per_chunk > 0:
        return frames_per_chunk
    return 1 if engine.info.device.type == "cpu" else temporal.DEFAULT_CHUNK
