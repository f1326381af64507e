"""User-facing options shared by the nodes and the command line: precisions and sharpness.

Two precision lists exist because they mean different things: torch engines compute in any of
``TORCH_PRECISIONS`` ("auto" picks per device), while an ONNX graph or TensorRT engine is
built in one fixed number format from ``GRAPH_PRECISIONS``.
"""

from __future__ import annotations

import torch

TORCH_PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # auto = fp16 on CUDA, fp32 elsewhere
GRAPH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}  # ONNX / TensorRT graph formats
GRAPH_PRECISIONS = tuple(GRAPH_DTYPES)

SHARPNESS_AUTO = "auto"
SHARPNESS_RANGE = (0.0, 2.0)


def parse_sharpness(value) -> float | None:
    """ "auto" -> None (file metadata, else 0.0); a number or numeric string in 0..2 -> float."""
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


def graph_precision(precision: str | None, device_type: str) -> str:
    """A torch precision choice as an ONNX / TensorRT graph precision: "auto" = fp16 on CUDA,
    fp32 elsewhere (CPU providers lack fp16 kernels for parts of the graph); bf16 is refused."""
    p = (precision or "auto").strip().lower()
    if p == "auto":
        return "fp16" if device_type == "cuda" else "fp32"
    if p not in GRAPH_DTYPES:
        raise ValueError(
            f"precision {precision!r} is not available for ONNX / TensorRT graphs; "
            f"use auto, {' or '.join(GRAPH_PRECISIONS)}"
        )
    return p
