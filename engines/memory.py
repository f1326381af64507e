"""Free memory on a device and the activation memory a ParagonSR2 tile needs.

Used by the tiled runner to pick a tile size when the user leaves it at 0 (auto). Inside
ComfyUI the nodes pass ComfyUI's own free-memory figure instead of ``free_memory_bytes``.
"""

from __future__ import annotations

import os

import torch

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
