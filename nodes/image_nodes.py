"""ParagonSR2 Loader and ParagonSR2 Upscale: the image nodes (classic ComfyUI node API)."""

from __future__ import annotations

import os

from ..engines.runtime.options import SHARPNESS_AUTO
from . import comfy_bridge as bridge
from . import managed
from .inputs import MODEL_FACTOR, checked_request, naming_model_on_failure, output_size_inputs
from .shared import (
    CATEGORY,
    PRECISIONS,
    SHARPNESS_CHOICES,
    device_choices,
    engine_for,
    load_model_handle,
    validate_device,
)


class ParagonSR2Loader:
    DESCRIPTION = (
        "Loads a ParagonSR2 model (realtime, stream, photo or pro; any scale) from "
        "models/upscale_models or models/paragonsr2. Outputs it for the ParagonSR2 "
        "nodes and, when spandrel is installed, as UPSCALE_MODEL for core and other nodes."
    )
    CATEGORY = CATEGORY
    # Extra words the node search matches (ComfyUI sends them to the frontend as a JSON list).
    SEARCH_ALIASES = ("paragonsr2", "load upscale model", "upscale model loader", "super resolution model", "sr model")
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
                "model_name": (
                    bridge.list_model_files(),
                    {
                        "tooltip": "A ParagonSR2 file (.safetensors, .pth, ...) from models/upscale_models "
                        "or models/paragonsr2; '(bundled)' files ship with this pack."
                    },
                ),
                "sharpness": (
                    SHARPNESS_CHOICES,
                    {
                        "default": SHARPNESS_AUTO,
                        "tooltip": "Sharpening of the structural base upsampler (upsampler_alpha). 'auto' = "
                        "the value stored in the file, else 0.0 (what the published models were "
                        "trained with). Higher = crisper edges, more ringing.",
                    },
                ),
                "precision": (
                    PRECISIONS,
                    {
                        "default": "auto",
                        "tooltip": "Compute precision. auto = fp16 on CUDA GPUs, fp32 elsewhere. Tiles whose "
                        "fp16/bf16 result overflows are recomputed in fp32 automatically.",
                    },
                ),
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
    DESCRIPTION = (
        "Upscales images with a ParagonSR2 model, tile by tile so any size fits in "
        "memory. realtime/stream tiles are seamless (identical to one whole pass); "
        "photo/pro use wide overlaps and upstream's border padding. RGBA keeps its alpha "
        "(upscaled smoothly); grayscale comes back as RGB."
    )
    CATEGORY = CATEGORY
    SEARCH_ALIASES = (
        "upscale",
        "upscaler",
        "super resolution",
        "super-resolution",
        "sr",
        "superres",
        "enlarge image",
        "paragonsr2",
    )
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
                "tile_size": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 8192,
                        "step": 16,
                        "tooltip": "Tile side in input pixels (multiple of 16). 0 = auto: as large as "
                        "free memory allows (on the CPU at most 1024 px; realtime/stream smaller, exact "
                        "tiles on an idle machine, never below core's 512 px when the cores are "
                        "busy), halved automatically on out-of-memory. Cancel and the progress "
                        "bar act inside tiles, so large tiles stay responsive.",
                    },
                ),
            },
            "optional": {
                "halo": (
                    "INT",
                    {
                        "default": -1,
                        "min": -1,
                        "max": 512,
                        "step": 1,
                        "tooltip": "Context margin around each tile in input pixels. -1 = auto (exact "
                        "for realtime/stream, a measured safe width for photo/pro).",
                    },
                ),
                "device": (
                    device_choices(),
                    {
                        "default": "auto",
                        "tooltip": "Where to compute. auto = ComfyUI's device (the GPU when there is one).",
                    },
                ),
                **output_size_inputs(),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, device="auto"):
        return validate_device(device)  # any device name: workflows from other machines validate

    def upscale(
        self,
        model,
        image,
        tile_size=0,
        halo=-1,
        device="auto",
        output_size=MODEL_FACTOR,
        output_factor=2.0,
        output_long_side=2048,
    ):
        size = checked_request(model, image, "image", output_size, output_factor, output_long_side)
        with naming_model_on_failure(model):
            return self._upscale(model, image, tile_size, halo, device, size)

    def _upscale(self, model, image, tile_size, halo, device, size):
        from ..engines.tiling import runner as tiling

        engine = engine_for(model, device)
        managed.prepare(
            engine, image.shape[1], image.shape[2], int(tile_size), None if halo is None or halo < 0 else int(halo)
        )
        out = tiling.upscale_image(
            engine,
            image,
            tile_size=int(tile_size),
            halo=None if halo is None or halo < 0 else int(halo),
            progress=bridge.make_progress(),
            check_interrupt=bridge.check_interrupt,
            free_memory=lambda: bridge.free_memory(engine.device),
            output_size=size,
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
