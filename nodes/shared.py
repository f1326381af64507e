"""What the node modules share: the category, option lists, the model and engine caches.

Node files (image_nodes, video_nodes, tensorrt_nodes) hold only node classes; everything
two of them need lives here, so no node module is another's library.
"""

from __future__ import annotations

import copy
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Literal, overload

import torch

from ..engines.runtime.contract import ModelHandle
from ..engines.runtime.devices import mps_available
from ..engines.runtime.options import SHARPNESS_AUTO, TORCH_PRECISIONS, parse_sharpness
from ..paragonsr2_arch import ModelLoadError, ParagonSR2, load_model
from . import comfy_bridge as bridge

logger = logging.getLogger("ParagonSR2")

CATEGORY = "image/upscaling/ParagonSR2"
SHARPNESS_CHOICES = [SHARPNESS_AUTO] + [f"{i / 10:.1f}" for i in range(11)]
PRECISIONS = list(TORCH_PRECISIONS)
MODEL_CACHE_SIZE = 4  # loaded CPU models kept (small: at most a few tens of MB each)
ENGINE_CACHE_SIZE = 2  # device copies kept, so re-queuing does not copy weights again


class LRU(OrderedDict):
    """A dict that keeps only its ``size`` most recently used entries."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_fresh(self, key):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


model_cache = LRU(MODEL_CACHE_SIZE)  # (path, mtime_ns, size, sharpness) -> [model, descriptor, tried]
engine_cache = LRU(ENGINE_CACHE_SIZE)  # (id(model), precision, device) -> (weakref(model), engine)
_spandrel_note_logged = False


def _upscale_model_output(model: ParagonSR2):
    """A spandrel ImageModelDescriptor for core nodes, or None when spandrel is unusable.

    It wraps its own copy of the network: core nodes move and cast the model they are given
    (``.to(device)``, ``.half()``), and the handle's master copy must stay CPU float32.
    """
    global _spandrel_note_logged
    try:
        from ..paragonsr2_arch.spandrel_arch import descriptor_for_model

        descriptor = descriptor_for_model(copy.deepcopy(model))
    except Exception as exc:  # ImportError, or torchvision failing inside spandrel's import
        if not _spandrel_note_logged:
            _spandrel_note_logged = True
            logger.info(
                "ParagonSR2 Loader: UPSCALE_MODEL output is empty because spandrel is not "
                "usable here (%s); the PARAGONSR2_MODEL output works.",
                type(exc).__name__,
            )
        return None
    # Current core nodes load an UPSCALE_MODEL through ComfyUI's model manager
    # (descriptor.patcher.load_device, load_models_gpu([descriptor.patcher])), as core's own
    # loader prepares it; 0.3.64's core node ignores the attribute.
    patcher = bridge.model_patcher(descriptor.model, like_core=True)
    if patcher is not None:
        descriptor.patcher = patcher
    return descriptor


@overload
def load_model_handle(
    name: str, sharpness=..., precision: str = ..., *, with_descriptor: Literal[False] = ...
) -> ModelHandle: ...
@overload
def load_model_handle(
    name: str, sharpness=..., precision: str = ..., *, with_descriptor: Literal[True]
) -> tuple[ModelHandle, Any]: ...
def load_model_handle(name: str, sharpness="auto", precision: str = "auto", *, with_descriptor: bool = False):
    """Load a model by its list name into a ModelHandle (cached by file identity and sharpness).

    With ``with_descriptor`` returns ``(handle, spandrel_descriptor_or_None)``.
    Bad files raise ValueError carrying the loader's message (no tensor traceback).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    alpha = parse_sharpness(sharpness)
    path = bridge.model_file_path(name)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, alpha)
    cached = model_cache.get_fresh(key)
    if cached is None:
        try:
            model = load_model(path, upsampler_alpha=alpha)
        except ModelLoadError as exc:
            raise ValueError(str(exc)) from None
        cached = [model, None, False]  # model, descriptor, descriptor tried
        model_cache.put(key, cached)
    model = cached[0]
    handle = ModelHandle(model=model, name=name, precision=precision)
    if not with_descriptor:
        return handle
    if not cached[2]:
        cached[1], cached[2] = _upscale_model_output(model), True
    return handle, cached[1]


def device_choices() -> list[str]:
    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if mps_available():
        choices.append("mps")
    return choices


def validate_device(device="auto"):
    """VALIDATE_INPUTS for the ``device`` combo: any name validates, because the list is built
    from the machine that runs ComfyUI and a workflow saved elsewhere (``cuda:1``) must still
    load and queue here; ``resolve_device`` falls back at run time."""
    return True if isinstance(device, str) else f"device must be a name such as auto, cpu or cuda:0, not {device!r}"


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for a node's ``device`` value; "auto", or one this machine lacks (a
    workflow from another machine), means ComfyUI's device, with a warning for the latter."""
    from ..engines.runtime.devices import pick_device

    if (device or "auto").strip().lower() != "auto":
        try:
            return pick_device(device)
        except (RuntimeError, ValueError) as exc:
            logger.warning("ParagonSR2: %s; using ComfyUI's device instead", exc)
    return bridge.torch_device()


def engine_for(handle: ModelHandle, device: str = "auto"):
    """The handle's prepared engine, else a cached torch engine on ``device`` ("auto" = ComfyUI's).

    Inside ComfyUI the torch engine's weights belong to ComfyUI's model manager (see
    nodes/managed.py): call ``managed.prepare`` before running it."""
    if handle.engine is not None:
        return handle.engine
    target = resolve_device(device)
    key = (id(handle.model), handle.precision, str(target))
    cached = engine_cache.get_fresh(key)
    if cached is not None and cached[0]() is handle.model:
        return cached[1]
    from ..engines.backends.auto import faster_cpu_engine

    # On the CPU: OpenVINO / ONNX Runtime where a cached probe finds them faster than torch.
    engine = (
        faster_cpu_engine(handle.model, handle.precision, models_dir=bridge.models_dir())
        if target.type == "cpu"
        else None
    )
    if engine is None and bridge.IN_COMFYUI:
        from .managed import ManagedTorchEngine

        engine = ManagedTorchEngine(handle.model, target, handle.precision)
    elif engine is None:
        from ..engines.backends.registry import make_engine

        engine = make_engine("torch", handle.model, target, handle.precision)
    engine_cache.put(key, (weakref.ref(handle.model), engine))
    return engine
