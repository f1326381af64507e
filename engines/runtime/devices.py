"""Devices and number formats: which device to run on, which dtype a precision name means,
and how allocator failures of every backend are recognised and recovered from."""

from __future__ import annotations

import torch

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}

# Substrings of allocator failures that are not raised as torch.OutOfMemoryError / MemoryError
# (CPU allocator, cuDNN/cuBLAS workspaces, ONNX Runtime's BFC arena, TensorRT).
_OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate memory",
    "alloc_failed",
    "bad_alloc",
)


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """ "auto" = CUDA, then MPS, then CPU; otherwise "cpu", "cuda", "cuda:1", "mps" (checked)."""
    if isinstance(preference, torch.device):
        device = preference
    else:
        pref = (preference or "auto").strip().lower()
        if pref == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            if mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            device = torch.device(pref)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} requested but this torch build sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {str(device)!r} requested but only {torch.cuda.device_count()} CUDA GPU(s) exist"
            )
    if device.type == "mps" and not mps_available():
        raise RuntimeError("device 'mps' requested but MPS is not available in this torch build")
    return device


def resolve_dtype(precision: str | None, device: torch.device | str) -> torch.dtype:
    """ "auto" = fp16 on CUDA, fp32 elsewhere; "fp32" / "fp16" / "bf16" as asked."""
    device = torch.device(device)
    p = (precision or "auto").strip().lower()
    if p == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if p not in _DTYPES:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    return _DTYPES[p]


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for allocator failures of any backend (torch CUDA/CPU/MPS, ONNX Runtime, TensorRT)."""
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, Exception):
        text = str(exc).lower()
        return any(marker in text for marker in _OOM_MARKERS)
    return False


def release_cached_memory(device: torch.device | str) -> None:
    """Give the caching allocator's free blocks back, so a smaller retry can fit."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and mps_available():
        torch.mps.empty_cache()
