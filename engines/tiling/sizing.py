"""All tile sizing in one place: the halo, the tile side and the images per engine call.

From the engine's facts (``EngineInfo``) and the free memory: how much activation memory a tile
needs on a device, how large CPU calls may grow before the C allocator page-faults, and what
fits an engine's shape profile. plan.py turns the chosen sizes into tiles.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable

import torch

from ..runtime.contract import ALIGN, ALLOCATOR_MALLOC, EngineInfo
from ..runtime.memory import free_memory_bytes
from .plan import engine_shape_rules, round_up

logger = logging.getLogger("ParagonSR2")

MIN_TILE = 32  # LR px: smallest auto tile, and the out-of-memory back-off floor
# Default halo of the attention variants, in LR px (a multiple of ALIGN); measured, see docs.
ATTENTION_HALO = {"photo": 32, "pro": 32}
# CPU: cancel and progress act between network stages (one photo block branch on a 1088 px
# context is ~2.5 s on a 2-core EPYC), so this only bounds how long a tile's stage takes.
_MAX_AUTO_TILE = {"cpu": 1024}
# While other processes share the cores, CPU auto tiles of the local networks are never
# smaller than ComfyUI core's fixed 512 px tile. The allocator-budget tiles (CPU_CALL_BUDGET)
# win on an idle machine (2-core EPYC, 1024x768 x2: realtime 0.36 s in 368 px tiles vs 0.54 at
# 512; stream 3.0 s in 176 px vs 5.5 at 512; core 0.64 / 5.0 s) but lose when the cores are
# shared (load ~18: realtime 3.4 CPU-s in 368 px tiles, 2.1 at 512, 1.6 at 1024; core 3.1;
# stream in the issue 16-21 s vs 11.3 at 512): many small calls wait on descheduled threads.
# At equal tiles ours runs about core's pixels or fewer and no feather blend.
_CPU_MIN_AUTO_TILE = 512
_SHARED_LOAD_PER_CORE = 1.5  # 1-min load average per core above which the cores count as shared


def cpu_cores_shared() -> bool:
    """Whether other work competes for the CPU now: the 1-minute load average exceeds 1.5 per
    core (a run's own threads add about 1 per core). False where there is no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return False
    return load > _SHARED_LOAD_PER_CORE * (os.cpu_count() or 1)


_MAX_AUTO_TILE_DEFAULT = 2048
_MEMORY_FRACTION = 0.6  # of the free memory a tile may plan to use (allocator slack, fragmentation)

# -- memory a tile needs ---------------------------------------------------------------------
# Planning figure, bytes per LR pixel of one image in float32. Measured peak RSS growth of one
# CPU forward pass (384x384 LR, the larger of x2/x4; `python benchmarks/tiling.py --memory`):
# realtime 0.9 KB, stream 2.2 KB, photo 2.8 KB, pro 3.5 KB. The table keeps a ~3-4x margin for
# GPU allocator fragmentation, cuDNN workspaces and attention kernels that materialise the
# 256x256 window scores. Low precision halves it.
_FP32_BYTES_PER_LR_PIXEL = {
    "realtime": 3_000,
    "stream": 6_000,
    "photo": 12_000,
    "pro": 12_000,
}
_UNKNOWN_VARIANT = max(_FP32_BYTES_PER_LR_PIXEL.values())

# CPU calls: bytes per LR pixel that one forward pass churns through the allocator (float32),
# calibrated so that CPU_CALL_BUDGET lands on the largest call measured free of page faults
# after memory.warm_cpu_allocator() (2-core EPYC, glibc 2.3x): realtime x2 ~147k LR px (faults
# at 196k), realtime x4 ~70k, stream x2 ~54k (faults at 97k). Modelled as the body's share plus
# 36 bytes per HR pixel (three 3-channel HR tensors). For scale: peak RSS growth of one pass at
# 256x256 is 449 / 772 / 2632 B per LR px for realtime x2 / x4 / x8, 1924 for stream.
_CPU_BODY_BYTES_PER_LR_PIXEL = {"realtime": 300, "stream": 1100}
_CPU_BYTES_PER_HR_PIXEL = 36
# Past glibc's thresholds every call maps, page-faults (zero-fills) and unmaps its tensors
# afresh (45-65% of a 256x256 realtime frame on a 2-core EPYC); warm_cpu_allocator() lifts them
# to glibc's dynamic maximum (32 MiB, trim at 64 MiB), and CPU tiles keep one call's growth
# within this budget.
CPU_CALL_BUDGET = 64 << 20
# Past one 256x256 frame per call, batching images gained nothing on the CPU (realtime x2: 127
# ns per LR pixel for one frame per call, 139 for two, 163 for three); small images still share
# the per-call overhead.
CPU_BATCH_PIXELS = 1 << 16


def bytes_per_lr_pixel(variant: str | None, dtype: torch.dtype = torch.float32, scale: int = 4) -> int:
    """Estimated peak device bytes per LR pixel for one image (with a safety margin)."""
    per_px = _FP32_BYTES_PER_LR_PIXEL.get(variant or "", _UNKNOWN_VARIANT)
    if scale > 4:
        per_px = per_px * scale * scale // 16
    if dtype in (torch.float16, torch.bfloat16):
        per_px //= 2
    return per_px


def cpu_call_bytes_per_lr_pixel(variant: str | None, scale: int, dtype: torch.dtype = torch.float32) -> int | None:
    """Allocator churn per LR pixel of one CPU forward pass (the calibrated figure above); None
    for the attention variants, whose tiles are not shrunk for the allocator (tiling them is
    approximate, and their compute dwarfs the page faults)."""
    body = _CPU_BODY_BYTES_PER_LR_PIXEL.get(variant or "")
    if body is None:
        return None
    per_px = body + _CPU_BYTES_PER_HR_PIXEL * scale * scale
    return per_px // 2 if dtype in (torch.float16, torch.bfloat16) else per_px


# CPU (malloc) planning figure for the attention variants: twice the measured peak RSS growth
# above (photo 2.8 KB, pro 3.5 KB). The GPU table's margin would cut a photo tile on a 16 GB
# machine to ~900 px, i.e. 3x3 tiles instead of 2x2 on 2048 px images (~7% more pixels run,
# slower than core's 512 px tiles; benchmarks/core_compare.py).
_CPU_FP32_BYTES_PER_LR_PIXEL = {"photo": 6_000, "pro": 7_000}


def _tile_bytes_per_lr_pixel(info: EngineInfo) -> int:
    cpu = _CPU_FP32_BYTES_PER_LR_PIXEL.get(info.variant or "") if info.allocator == ALLOCATOR_MALLOC else None
    if cpu is not None:
        per_px = cpu * int(info.scale) ** 2 // 16 if int(info.scale) > 4 else cpu
        return per_px // 2 if info.dtype in (torch.float16, torch.bfloat16) else per_px
    return bytes_per_lr_pixel(info.variant, info.dtype, int(info.scale))


# -- halo ------------------------------------------------------------------------------------
def default_halo(info: EngineInfo) -> int:
    """exact_halo for local networks (rounded up to the window); the measured default else."""
    window = max(1, int(info.window or 1))
    multiple, _, _ = engine_shape_rules(info)
    step = max(window, multiple)
    if info.exact_halo is not None:
        return round_up(int(info.exact_halo), step)
    halo = ATTENTION_HALO.get(info.variant or "", max(ATTENTION_HALO.values()))
    return round_up(halo, max(step, ALIGN))


def default_wrap(info: EngineInfo, halo: int) -> int:
    """Edge band for shifted-window engines (window > 1), 0 for local networks."""
    if int(info.window or 1) <= 1 or info.exact_halo is not None:
        return 0
    return max(ALIGN, round_up(halo, ALIGN))


# -- tile side -------------------------------------------------------------------------------
def auto_tile_size(info: EngineInfo, batch: int, free_bytes: int, halo: int | None = None) -> int:
    """Largest LR tile side (multiple of 16) whose context for ``batch`` images fits in a safe
    fraction of ``free_bytes``; never below MIN_TILE, never above the engine's max_tile."""
    halo = default_halo(info) if halo is None else halo
    budget = max(0, int(free_bytes)) * _MEMORY_FRACTION / max(1, batch)
    side = int(math.sqrt(budget / _tile_bytes_per_lr_pixel(info))) - 2 * halo
    cap = _MAX_AUTO_TILE.get(info.device.type, _MAX_AUTO_TILE_DEFAULT)
    cpu_cap = _cpu_tile_cap(info, batch, halo)
    if cpu_cap is not None:
        cap = min(cap, cpu_cap)
    _, _, max_side = engine_shape_rules(info)
    if max_side is not None:
        cap = min(cap, max_side - 2 * halo)
    tile = min(cap, side) // ALIGN * ALIGN
    return max(MIN_TILE, tile)


def _cpu_call_bytes(info: EngineInfo) -> int | None:
    """Per-LR-pixel growth of one call of a local network whose tensors come from the C
    library's malloc (ALLOCATOR_MALLOC: torch on the CPU); None elsewhere (GPUs want large
    tiles, ONNX Runtime keeps its own arena, the attention variants lose accuracy and gain
    little from smaller tiles)."""
    if info.allocator != ALLOCATOR_MALLOC or info.exact_halo is None:
        return None
    return cpu_call_bytes_per_lr_pixel(info.variant, int(info.scale), info.dtype)


def _cpu_tile_cap(info: EngineInfo, batch: int, halo: int) -> int | None:
    """Largest tile whose call for ``batch`` images stays within CPU_CALL_BUDGET, so the
    allocator reuses memory instead of page-faulting it (exact: these networks are local); while
    the cores are shared, no call smaller than one _CPU_MIN_AUTO_TILE tile (see there).
    Idle 2-core EPYC, fp32: stream x2 512x512 1.02 s whole vs 0.33 s in 176 px tiles; realtime
    x2 1024x1024 0.56 s vs 0.21 s in 368 px tiles (python benchmarks/tiling.py, overhead part)."""
    per_px = _cpu_call_bytes(info)
    if per_px is None:
        return None
    side = int(math.sqrt(CPU_CALL_BUDGET / (per_px * max(1, batch)))) - 2 * halo
    floor = int(_CPU_MIN_AUTO_TILE / math.sqrt(max(1, batch))) // ALIGN * ALIGN if cpu_cores_shared() else 0
    return max(MIN_TILE, floor, side // ALIGN * ALIGN)


def tile_layout(
    info: EngineInfo,
    height: int,
    width: int,
    tile_size: int = 0,
    halo: int | None = None,
    free_memory: Callable[[], int] | None = None,
    batch: int = 1,
    wrap: int | None = None,
) -> tuple[int, int, int]:
    """(tile, halo, wrap) for ``height`` x ``width`` LR images: the user's tile_size, or auto
    from free memory for ``batch`` images per call (and on the CPU the allocator budget), within
    the engine's max_tile, never larger than the image needs. halo/wrap None = the defaults."""
    halo = default_halo(info) if halo is None else int(halo)
    _, _, max_side = engine_shape_rules(info)
    if max_side is not None and max_side - 2 * halo < ALIGN:
        halo = max(0, (max_side - ALIGN) // 2 // ALIGN * ALIGN)
        logger.warning("ParagonSR2: halo reduced to %d px to fit the engine's max tile %d", halo, max_side)
    wrap = default_wrap(info, halo) if wrap is None else int(wrap)
    if tile_size and tile_size > 0:
        tile = int(tile_size)
    else:
        free = free_memory() if free_memory is not None else free_memory_bytes(info.device)
        tile = auto_tile_size(info, batch, free, halo)
    if max_side is not None:  # the engine input is the interior plus halo (and an edge band)
        tile = min(tile, (max_side - max(2 * halo, halo + wrap)) // ALIGN * ALIGN)
    return max(ALIGN, min(tile, round_up(max(height, width), ALIGN))), halo, wrap


# -- images per call -------------------------------------------------------------------------
def cpu_images_per_call(info: EngineInfo, context_pixels: int) -> int | None:
    """How many images (tiles) of ``context_pixels`` LR pixels one CPU call should take: one
    for frame-sized tiles, more for small ones (sharing per-call overhead) within the allocator
    budget; None where the rule does not apply (GPUs, attention variants)."""
    per_px = _cpu_call_bytes(info)
    if per_px is None:
        return None
    context_pixels = max(1, int(context_pixels))
    return max(1, min(CPU_BATCH_PIXELS // context_pixels, CPU_CALL_BUDGET // (context_pixels * per_px)))


def auto_batch_chunk(
    info: EngineInfo, batch: int, height: int, width: int, tile: int, halo: int, free_memory: Callable[[], int]
) -> int:
    """Whole images per engine call when one tile covers the image and memory allows; else 1."""
    if batch == 1 or tile < max(height, width):
        return 1
    free = free_memory()
    context = (min(height, tile) + 2 * halo) * (min(width, tile) + 2 * halo)
    per_image = context * _tile_bytes_per_lr_pixel(info)
    chunk = int(free * _MEMORY_FRACTION // max(1, per_image))
    on_cpu = cpu_images_per_call(info, context)
    if on_cpu is not None:
        chunk = min(chunk, on_cpu)
    return max(1, min(batch, chunk))
