"""ParagonSR2 Engine: one node that puts a model on torch, TensorRT, ONNX Runtime or OpenVINO,
on a device each can use, or lets ``auto`` pick the fastest (engines/backends/auto.py).

A workflow saved on another machine may name a backend or device this one lacks: it loads and
validates (any name is accepted), and at run time the node either falls back to torch with a
logged reason (``fallback_to_torch``, the default) or stops with a one-line explanation.
"""

from __future__ import annotations

import logging

from ..engines.runtime.contract import ModelHandle
from ..engines.runtime.devices import dtype_name
from ..engines.runtime.options import TORCH_PRECISIONS
from . import comfy_bridge as bridge
from .comfy_io import io, schema
from .shared import CATEGORY, device_choices, resolve_device
from .sockets import MODEL, model_input

logger = logging.getLogger("ParagonSR2")

BACKENDS = ["auto", "torch", "tensorrt", "onnxruntime", "openvino"]
GRAPH_BACKENDS = ("tensorrt", "onnxruntime", "openvino")  # their engines need a video graph for video


def engine_device_choices() -> list[str]:
    """torch's devices (auto, cpu, cuda:N, mps), then OpenVINO's (GPU, NPU, AUTO) when installed."""
    from ..engines.backends.openvino_engine import device_choices as openvino_choices

    choices = device_choices()
    return choices + [name for name in openvino_choices() if name != "CPU" and name not in choices]


class ParagonSR2Engine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ParagonSR2Engine",
            display_name="ParagonSR2 Engine",
            category=CATEGORY,
            description="Chooses what runs the model: auto (the fastest for this model, device and "
            "precision: torch on a GPU ComfyUI manages, a short cached speed test of torch / OpenVINO / "
            "ONNX Runtime on the CPU), torch, TensorRT (NVIDIA, engine built once and cached), ONNX "
            "Runtime or OpenVINO (CPUs, Intel GPUs and NPUs). Connect its model to ParagonSR2 Upscale "
            "or Video Upscale. The info output says what was chosen and why.",
            search_aliases=["engine", "backend", "openvino", "onnxruntime", "tensorrt", "speed", "paragonsr2"],
            inputs=[
                model_input("From ParagonSR2 Loader."),
                io.Combo.Input(
                    "backend",
                    options=BACKENDS,
                    default="auto",
                    tooltip="auto = the fastest here (never another precision than chosen). torch: any "
                    "device. tensorrt: NVIDIA GPUs (fp32/fp16). onnxruntime: CPU or CUDA (fp32; fp16 on "
                    "CUDA). openvino: CPU, Intel GPU (GPU), NPU, or OpenVINO's own AUTO.",
                ),
                io.Combo.Input(
                    "device",
                    options=engine_device_choices(),
                    default="auto",
                    tooltip="auto = ComfyUI's device (the CPU for OpenVINO). GPU / NPU / AUTO are "
                    "OpenVINO's Intel devices; cuda:N are NVIDIA GPUs (torch, TensorRT, ONNX Runtime).",
                ),
                io.Combo.Input(
                    "precision",
                    options=list(TORCH_PRECISIONS),
                    default="auto",
                    tooltip="auto = fp16 on NVIDIA GPUs, fp32 elsewhere. bf16 runs on torch and on "
                    "OpenVINO where the CPU has native bf16; graph backends refuse what they cannot hold.",
                ),
                io.Boolean.Input(
                    "video",
                    default=True,
                    tooltip="Graph backends: build the temporal graph so Video Upscale can use the "
                    "engine too (images work on it as well; costs a few percent).",
                ),
                io.Boolean.Input(
                    "fallback_to_torch",
                    default=True,
                    tooltip="When the backend or device is missing here (a workflow from another "
                    "machine): on = log it and use torch; off = stop with an explanation.",
                ),
            ],
            outputs=[
                MODEL.Output(display_name="paragonsr2_model", tooltip="The same model, running on the chosen engine."),
                io.String.Output(display_name="info", tooltip="The engine chosen, and why."),
            ],
        )

    @classmethod
    def validate_inputs(cls, backend="auto", device="auto", precision="auto"):
        # Any names: a workflow saved where other backends/devices exist must still load and queue.
        for name, value in (("backend", backend), ("device", device), ("precision", precision)):
            if not isinstance(value, str):
                return f"{name} must be a name, not {value!r}"
        return True

    @classmethod
    def execute(cls, model, backend="auto", device="auto", precision="auto", video=True, fallback_to_torch=True):
        handle, info = choose_engine(model, backend, device, precision, bool(video), bool(fallback_to_torch))
        logger.info("ParagonSR2 Engine: %s", info)
        return io.NodeOutput(handle, info)


def choose_engine(
    model, backend: str, device: str, precision: str, video: bool, fallback_to_torch: bool
) -> tuple[ModelHandle, str]:
    """The node's work, callable without ComfyUI: (the handle on its engine, what and why)."""
    if not isinstance(model, ModelHandle):
        raise ValueError(f"model must come from ParagonSR2 Loader (a PARAGONSR2_MODEL), not {type(model).__name__}")
    precision = model.precision if precision == "auto" else precision
    try:
        return _make(model, backend, device, precision, video)
    except Exception as exc:  # a runtime missing or broken here (TensorRT on a torch without CUDA: AttributeError)
        bridge.check_interrupt()  # a cancelled TensorRT build is the user's cancel, not a fallback
        reason = f"{backend} on {device} ({precision}) is not available here: {exc}"
        if not fallback_to_torch:
            raise RuntimeError(f"ParagonSR2 Engine: {reason}") from None
        logger.warning("ParagonSR2 Engine: %s; using torch", reason)
        engine = _torch(model, "auto", precision)
        used = f"{engine.info.device} ({dtype_name(engine.info.dtype)})"
        return model.with_engine(engine), f"torch on {used}: fallback, {reason}"


def _make(model: ModelHandle, backend: str, device: str, precision: str, video: bool) -> tuple[ModelHandle, str]:
    from ..engines.backends import auto
    from ..engines.backends.registry import BACKENDS as REGISTERED
    from ..engines.backends.registry import make_engine

    if backend not in REGISTERED:
        raise ValueError(f"unknown backend {backend!r} (this pack offers {', '.join(BACKENDS)})")
    choice = None
    if backend == "auto":
        target = device
        if device == "auto":  # ComfyUI's device, as the Upscale node's auto
            target = str(resolve_device("auto"))
        managed = bridge.IN_COMFYUI and target.startswith("cuda")
        choice, engine = auto.choose(
            model.model, target, precision, video=video, models_dir=bridge.models_dir(), managed_gpu=managed
        )
        backend, device = choice.backend, choice.device
        if engine is not None:
            return model.with_engine(engine), _describe(engine, choice.reason)
    if backend == "torch":
        engine = _torch(model, device, precision)
    else:
        options = {"models_dir": bridge.models_dir()} if backend in ("openvino", "tensorrt") else {}
        engine = make_engine(backend, model.model, device, precision, video=video or backend == "torch", **options)
    return model.with_engine(engine), _describe(engine, choice.reason if choice else "chosen in the node")


def _torch(model: ModelHandle, device: str, precision: str):
    """torch on ``device`` ("auto" = ComfyUI's); inside ComfyUI on its model manager."""
    target = resolve_device(device)
    if bridge.IN_COMFYUI:
        from .managed import ManagedTorchEngine

        return ManagedTorchEngine(model.model, target, precision)
    from ..engines.backends.registry import make_engine

    return make_engine("torch", model.model, target, precision)


def _describe(engine, reason: str) -> str:
    return f"{engine!r}: {reason}"


NODES = [ParagonSR2Engine]
