"""Where backends are chosen: a backend name -> the module that makes its engines.

Each backend module offers ``create_engine(model, *, device, precision, video, **options)``
returning an Engine (engines/runtime/contract.py). Adding a backend = writing that module and
one line in BACKENDS. Modules are imported on first use, so a missing optional dependency
(onnxruntime, TensorRT, OpenVINO) only matters to whoever picks that backend.
"""

from __future__ import annotations

import importlib

import torch

from ..runtime.contract import Engine

BACKENDS = {
    "torch": ".torch_engine",
    "onnxruntime": ".onnxruntime_engine",
    "tensorrt": ".tensorrt_engine",
    "openvino": ".openvino_engine",
    "auto": ".auto",  # the fastest of the above for the model, device and precision (auto.py)
}
DEFAULT_BACKEND = "torch"


def make_engine(
    backend: str,
    model: torch.nn.Module,
    device: str | torch.device = "auto",
    precision: str = "auto",
    *,
    video: bool = False,
    **options,
) -> Engine:
    """An engine of ``backend`` for ``model`` (the CPU float32 master, never changed).

    ``device`` / ``precision`` take the torch choices ("auto", "cpu", "cuda:1"; "auto", "fp32",
    "fp16", "bf16"); graph backends map them to what they hold (see options.graph_precision).
    ``video`` asks for an engine whose ``decode`` works (video graphs for ONNX Runtime and
    TensorRT). ``options`` go to the backend (e.g. ``models_dir``, ``profile`` for TensorRT).
    Raises ValueError for an unknown backend or a choice it cannot serve, RuntimeError when
    its runtime is not installed or the device is missing.
    """
    module_name = BACKENDS.get(backend)
    if module_name is None:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    module = importlib.import_module(module_name, __package__)
    return module.create_engine(model, device=device, precision=precision, video=video, **options)
