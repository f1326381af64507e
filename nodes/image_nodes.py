"""ParagonSR2 Loader and ParagonSR2 Upscale: the image nodes (ComfyUI V3 schema).

Node ids, input names and their order, defaults and output types are those of the classic
nodes these replace, so workflows saved before (positional widgets_values) load unchanged;
tests/test_saved_workflows.py holds such workflows and checks their pixels.
"""

from __future__ import annotations

import os

from ..engines.runtime.options import SHARPNESS_AUTO
from . import comfy_bridge as bridge
from . import managed
from .comfy_io import io, schema
from .inputs import MODEL_FACTOR, checked_request, naming_model_on_failure
from .shared import CATEGORY, PRECISIONS, SHARPNESS_CHOICES, engine_for, load_model_handle, validate_device
from .sockets import MODEL, device_input, model_input, output_size_inputs, tile_size_input


class ParagonSR2Loader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ParagonSR2Loader",
            display_name="ParagonSR2 Loader",
            category=CATEGORY,
            description="Loads a ParagonSR2 model (realtime, stream, photo or pro; any scale) from "
            "models/upscale_models or models/paragonsr2. Outputs it for the ParagonSR2 "
            "nodes and, when spandrel is installed, as UPSCALE_MODEL for core and other nodes.",
            search_aliases=[
                "paragonsr2",
                "load upscale model",
                "upscale model loader",
                "super resolution model",
                "sr model",
            ],
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=bridge.list_model_files(),
                    tooltip="A ParagonSR2 file (.safetensors, .pth, ...) from models/upscale_models "
                    "or models/paragonsr2; '(bundled)' files ship with this pack.",
                ),
                io.Combo.Input(
                    "sharpness",
                    options=SHARPNESS_CHOICES,
                    default=SHARPNESS_AUTO,
                    tooltip="Sharpening of the structural base upsampler (upsampler_alpha). 'auto' = "
                    "the value stored in the file, else 0.0 (what the published models were "
                    "trained with). Higher = crisper edges, more ringing.",
                ),
                io.Combo.Input(
                    "precision",
                    options=PRECISIONS,
                    default="auto",
                    tooltip="Compute precision. auto = fp16 on CUDA GPUs, fp32 elsewhere. Tiles whose "
                    "fp16/bf16 result overflows are recomputed in fp32 automatically.",
                ),
            ],
            outputs=[
                MODEL.Output(
                    display_name="paragonsr2_model",
                    tooltip="The model for ParagonSR2 Upscale / Video Upscale / TensorRT nodes.",
                ),
                io.UpscaleModel.Output(
                    display_name="upscale_model",
                    tooltip="The same model for core 'Upscale Image (using Model)' and other UPSCALE_MODEL "
                    "nodes (empty when spandrel is not installed).",
                ),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, model_name, sharpness=SHARPNESS_AUTO, precision="auto"):
        # Re-run when the file on disk changes, even under the same name.
        try:
            stat = os.stat(bridge.model_file_path(model_name))
            return f"{stat.st_mtime_ns}:{stat.st_size}"
        except (OSError, ValueError):
            return ""

    @classmethod
    def execute(cls, model_name, sharpness=SHARPNESS_AUTO, precision="auto"):
        handle, descriptor = load_model_handle(model_name, sharpness, precision, with_descriptor=True)
        return io.NodeOutput(handle, descriptor)


class ParagonSR2Upscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ParagonSR2Upscale",
            display_name="ParagonSR2 Upscale",
            category=CATEGORY,
            description="Upscales images with a ParagonSR2 model, tile by tile so any size fits in "
            "memory. realtime/stream tiles are seamless (identical to one whole pass); "
            "photo/pro use wide overlaps and upstream's border padding. RGBA keeps its alpha "
            "(upscaled smoothly); grayscale comes back as RGB.",
            search_aliases=[
                "upscale",
                "upscaler",
                "super resolution",
                "super-resolution",
                "sr",
                "superres",
                "enlarge image",
                "paragonsr2",
            ],
            inputs=[
                model_input(),
                io.Image.Input("image", tooltip="Images to upscale (a batch is upscaled image by image)."),
                tile_size_input(
                    "Tile side in input pixels (multiple of 16). 0 = auto: as large as "
                    "free memory allows (on the CPU at most 1024 px; realtime/stream smaller, exact "
                    "tiles on an idle machine, never below core's 512 px when the cores are "
                    "busy), halved automatically on out-of-memory. Cancel and the progress "
                    "bar act inside tiles, so large tiles stay responsive."
                ),
                io.Int.Input(
                    "halo",
                    default=-1,
                    min=-1,
                    max=512,
                    step=1,
                    optional=True,
                    tooltip="Context margin around each tile in input pixels. -1 = auto (exact "
                    "for realtime/stream, a measured safe width for photo/pro).",
                ),
                device_input(),
                *output_size_inputs(),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The upscaled images, scale x the input size.")],
        )

    @classmethod
    def validate_inputs(cls, device="auto"):
        return validate_device(device)  # any device name: workflows from other machines validate

    @classmethod
    def execute(
        cls,
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
            return io.NodeOutput(upscale_images(model, image, int(tile_size), halo, device, size))


def upscale_images(model, image, tile_size: int, halo, device: str, size):
    """The Upscale node's work, callable without ComfyUI: tiles planned, weights loaded, run."""
    from ..engines.tiling import runner as tiling

    halo = None if halo is None or halo < 0 else int(halo)
    engine = engine_for(model, device)
    managed.prepare(engine, image.shape[1], image.shape[2], tile_size, halo)
    return tiling.upscale_image(
        engine,
        image,
        tile_size=tile_size,
        halo=halo,
        progress=bridge.make_progress(),
        check_interrupt=bridge.check_interrupt,
        free_memory=lambda: bridge.free_memory(engine.info.device),
        output_size=size,
    )


NODES = [ParagonSR2Loader, ParagonSR2Upscale]
