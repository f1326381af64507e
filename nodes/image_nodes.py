"""ParagonSR2 Loader and ParagonSR2 Upscale: the image nodes (classic ComfyUI node API)."""

from __future__ import annotations

import copy
import logging
import os
import weakref
from collections import OrderedDict

import torch

from ..engines.runtime.contract import PRECISIONS as TORCH_PRECISIONS
from ..engines.runtime.contract import SHARPNESS_AUTO, ModelHandle, parse_sharpness
from ..paragonsr2_arch import ModelLoadError, load_model
from . import comfy_bridge as bridge

logger = logging.getLogger("ParagonSR2")

CATEGORY = "image/upscaling/ParagonSR2"
SHARPNESS_CHOICES = [SHARPNESS_AUTO] + [f"{i / 10:.1f}" for i in range(11)]
PRECISIONS = list(TORCH_PRECISIONS)
_MODEL_CACHE_SIZE = 4    # loaded CPU models kept (small: at most a few tens of MB each)
_ENGINE_CACHE_SIZE = 2   # device copies kept, so re-queuing does not copy weights again


class _LRU(OrderedDict):
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


_models = _LRU(_MODEL_CACHE_SIZE)     # (path, mtime_ns, size, sharpness) -> (model, descriptor)
_engines = _LRU(_ENGINE_CACHE_SIZE)   # (id(model), precision, device) -> (weakref(model), engine)
_spandrel_note_logged = False


def _upscale_model_output(model: torch.nn.Module):
    """A spandrel ImageModelDescriptor for core nodes, or None when spandrel is unusable.

    It wraps its own copy of the network: core nodes move and cast the model they are given
    (``.to(device)``, ``.half()``), and the handle's master copy must stay CPU float32.
    """
    global _spandrel_note_logged
    try:
        from ..paragonsr2_arch.spandrel_arch import descriptor_for_model

        return descriptor_for_model(copy.deepcopy(model))
    except Exception as exc:  # ImportError, or torchvision failing inside spandrel's import
        if not _spandrel_note_logged:
            _spandrel_note_logged = True
            logger.info("ParagonSR2 Loader: UPSCALE_MODEL output is empty because spandrel is not "
                        "usable here (%s); the PARAGONSR2_MODEL output works.", type(exc).__name__)
        return None


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
    cached = _models.get_fresh(key)
    if cached is None:
        try:
            model = load_model(path, upsampler_alpha=alpha)
        except ModelLoadError as exc:
            raise ValueError(str(exc)) from None
        cached = [model, None, False]  # model, descriptor, descriptor tried
        _models.put(key, cached)
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
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices


def engine_for(handle: ModelHandle, device: str = "auto"):
    """The handle's prepared engine, else a cached TorchEngine on ``device`` ("auto" = ComfyUI's)."""
    if handle.engine is not None:
        return handle.engine
    from ..engines.backends.torch_engine import TorchEngine, pick_device

    target = bridge.torch_device() if device == "auto" else pick_device(device)
    key = (id(handle.model), handle.precision, str(target))
    cached = _engines.get_fresh(key)
    if cached is not None and cached[0]() is handle.model:
        return cached[1]
    engine = TorchEngine(handle.model, target, handle.precision)
    _engines.put(key, (weakref.ref(handle.model), engine))
    return engine


class ParagonSR2Loader:
    DESCRIPTION = ("Loads a ParagonSR2 model (realtime, stream, photo or pro; any scale) from "
                   "models/upscale_models or models/paragonsr2. Outputs it for the ParagonSR2 "
                   "nodes and, when spandrel is installed, as UPSCALE_MODEL for core and other nodes.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("PARAGONSR2_MODEL", "UPSCALE_MODEL")
    RETURN_NAMES = ("paragonsr2_model", "upscale_model")
    OUTPUT_TOOLTIPS = (
        "The model for ParagonSR2 Upscale / Video Upscale / TensorRT nodes.",
        "The same model for core 'Upscale Image (using Model)' and other UPSCALE_MODEL nodes "
        "(empty when spandrel is not installed).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (bridge.list_model_files(), {
                    "tooltip": "A ParagonSR2 file (.safetensors, .pth, ...) from models/upscale_models "
                               "or models/paragonsr2; '(bundled)' files ship with this pack."}),
                "sharpness": (SHARPNESS_CHOICES, {
                    "default": SHARPNESS_AUTO,
                    "tooltip": "Sharpening of the structural base upsampler (upsampler_alpha). 'auto' = "
                               "the value stored in the file, else 0.0 (what the published models were "
                               "trained with). Higher = crisper edges, more ringing."}),
                "precision": (PRECISIONS, {
                    "default": "auto",
                    "tooltip": "Compute precision. auto = fp16 on CUDA GPUs, fp32 elsewhere. Tiles whose "
                               "fp16/bf16 result overflows are recomputed in fp32 automatically."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, model_name, sharpness="auto", precision="auto"):
        # Re-run when the file on disk changes, even under the same name.
        try:
            stat = os.stat(bridge.model_file_path(model_name))
            return f"{stat.st_mtime_ns}:{stat.st_size}"
        except (OSError, ValueError):
            return ""

    def load(self, model_name, sharpness="auto", precision="auto"):
        handle, descriptor = load_model_handle(model_name, sharpness, precision, with_descriptor=True)
        return (handle, descriptor)


class ParagonSR2Upscale:
    DESCRIPTION = ("Upscales images with a ParagonSR2 model, tile by tile so any size fits in "
                   "memory. realtime/stream tiles are seamless (identical to one whole pass); "
                   "photo/pro use wide overlaps. RGBA keeps its alpha (upscaled smoothly); grayscale comes back as RGB.")
    CATEGORY = CATEGORY
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The upscaled images, scale x the input size.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("PARAGONSR2_MODEL", {"tooltip": "From ParagonSR2 Loader (or a TensorRT engine node)."}),
                "image": ("IMAGE", {"tooltip": "Images to upscale (a batch is upscaled image by image)."}),
                "tile_size": ("INT", {
                    "default": 0, "min": 0, "max": 8192, "step": 16,
                    "tooltip": "Tile side in input pixels (multiple of 16). 0 = auto: as large as "
                               "free memory allows (on the CPU, realtime/stream use smaller, exact tiles "
                               "that run 2-3x faster), halved automatically on out-of-memory."}),
            },
            "optional": {
                "halo": ("INT", {
                    "default": -1, "min": -1, "max": 512, "step": 1,
                    "tooltip": "Context margin around each tile in input pixels. -1 = auto (exact "
                               "for realtime/stream, a measured safe width for photo/pro)."}),
                "device": (device_choices(), {
                    "default": "auto",
                    "tooltip": "Where to compute. auto = ComfyUI's device (the GPU when there is one)."}),
            },
        }

    def upscale(self, model, image, tile_size=0, halo=-1, device="auto"):
        from ..engines.tiling import runner as tiling

        if not isinstance(model, ModelHandle):
            raise ValueError("model must come from ParagonSR2 Loader (a PARAGONSR2_MODEL), "
                             f"not {type(model).__name__}")
        engine = engine_for(model, device)
        out = tiling.upscale_image(
            engine, image,
            tile_size=int(tile_size),
            halo=None if halo is None or halo < 0 else int(halo),
            progress=bridge.make_progress(),
            check_interrupt=bridge.check_interrupt,
            free_memory=lambda: bridge.free_memory(engine.device),
        )
        return (out,)


NODE_CLASS_MAPPINGS = {
    "ParagonSR2Loader": ParagonSR2Loader,
    "ParagonSR2Upscale": ParagonSR2Upscale,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ParagonSR2Loader": "ParagonSR2 Loader",
    "ParagonSR2Upscale": "ParagonSR2 Upscale",
}
