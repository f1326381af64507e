"""Free memory on a device and the activation memory a ParagonSR2 tile needs.

Used by the tiled runner to pick a tile size when the user leaves it at 0 (auto). Inside
ComfyUI the nodes pass ComfyUI's own free-memory figure instead of ``free_memory_bytes``.
"""

from __future__ import annotations

import os

import torch

# CPU calls: bytes per LR pixel that one forward pass churns through the allocator (float32),
# calibrated so that CPU_CALL_BUDGET lands on the largest call measured free of page faults
# after warm_cpu_allocator() (2-core EPYC, glibc 2.3x): realtime x2 ~147k LR px (faults at 196k),
# realtime x4 ~70k, stream x2 ~54k (faults at 97k). Modelled as the body's share plus 36 bytes
# per HR pixel (three 3-channel HR tensors). For scale: peak RSS growth of one pass at 256x256
# is 449 / 772 / 2632 B per LR px for realtime x2 / x4 / x8, 1924 for stream.
_CPU_BODY_BYTES_PER_LR_PIXEL = {"realtime": 300, "stream": 1100}
_CPU_BYTES_PER_HR_PIXEL = 36
# glibc serves blocks below its mmap threshold from the heap and keeps freed heap memory for
# reuse while the free heap top stays under the trim threshold; above those, every call maps,
# page-faults (zero-fills) and unmaps its tensors afresh, which took 45-65% of a 256x256
# realtime frame on a 2-core EPYC. warm_cpu_allocator() lifts the thresholds to glibc's dynamic
# maximum (32 MiB, trim at 64 MiB), and CPU tiles keep one call's growth within this budget.
CPU_CALL_BUDGET = 64 << 20
# Past one 256x256 frame per call, batching images gained nothing on the CPU (realtime x2: 127
# ns per LR pixel for one frame per call, 139 for two, 163 for three); small images still share
# the per-call overhead.
CPU_BATCH_PIXELS = 1 << 16
_GLIBC_MAX_DYNAMIC_THRESHOLD = 32 << 20
_allocator_warmed = False

# Planning figure, bytes per LR pixel of one image in float32. Measured peak RSS growth of one
# CPU forward pass (384x384 LR, the larger of x2/x4; `python benchmarks/tiling.py --memory`): realtime 0.9 KB, stream 2.2 KB, photo 2.8 KB,
# pro 3.5 KB. The table keeps a ~3-4x margin for GPU allocator fragmentation, cuDNN workspaces
# and attention kernels that materialise the 256x256 window scores. Low precision halves it.
_FP32_BYTES_PER_LR_PIXEL = {
    "realtime": 3_000,
    "stream": 6_000,
    "photo": 12_000,
    "pro": 12_000,
}
_UNKNOWN_VARIANT = max(_FP32_BYTES_PER_LR_PIXEL.values())


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


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (whose malloc warm_cpu_allocator tunes)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def warm_cpu_allocator() -> None:
    """Raise glibc's malloc thresholds to their dynamic maximum, once per process.

    glibc raises its mmap threshold to the size of any mapped block freed (up to 32 MiB;
    mallopt(3), "dynamic mmap threshold"), and the heap trim threshold to twice that. Freeing
    one block just under the maximum does at once what a long-running process reaches anyway,
    so the tensors of each CPU forward pass are reused instead of page-faulted afresh (realtime,
    256x256, 2-core EPYC: 22.6 ms -> 10.3 ms a frame). It keeps at most ~64 MiB of freed heap
    resident. Thresholds the user fixed through MALLOC_* variables disable the dynamic rule,
    and then this does nothing; other C libraries are left alone.
    """
    global _allocator_warmed
    if _allocator_warmed:
        return
    _allocator_warmed = True
    if not is_glibc():
        return
    block = torch.empty(_GLIBC_MAX_DYNAMIC_THRESHOLD - (1 << 20), dtype=torch.uint8)
    del block


def free_memory_bytes(device: torch.device | str) -> int:
    """Bytes a new allocation can use: CUDA free + torch's reusable cache; RAM elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(cached, 0))
    # CPU and MPS (unified memory): what the OS says is available.
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 4 << 30
