"""The pack's socket types and the V3 inputs several nodes share (output size, device).

Node modules (image, video, TensorRT, streaming video, engine nodes) take them from here so a
shared input is defined once, with the same name, default and tooltip everywhere.
"""

from __future__ import annotations

from ..engines.tiling.output_size import MODEL_FACTOR, OUTPUT_SIZE_MODES
from ..engines.video import scene_cuts, temporal
from .comfy_io import io
from .meta_batch import META_BATCH_TYPE
from .shared import device_choices

MODEL = io.Custom("PARAGONSR2_MODEL")
TEMPORAL_STATE = io.Custom("PARAGONSR2_TEMPORAL_STATE")
META_BATCH = io.Custom(META_BATCH_TYPE)  # VideoHelperSuite's Meta Batch Manager


def model_input(tooltip: str = "From ParagonSR2 Loader (or a TensorRT engine node).") -> io.Input:
    return MODEL.Input("model", tooltip=tooltip)


def device_input() -> io.Input:
    """Optional ``device`` combo; the node's ``validate_inputs`` accepts any name (workflows from
    other machines), so the list only offers what this machine has."""
    return io.Combo.Input(
        "device",
        options=device_choices(),
        default="auto",
        optional=True,
        tooltip="Where to compute. auto = ComfyUI's device (the GPU when there is one).",
    )


def tile_size_input(tooltip: str) -> io.Input:
    """The ``tile_size`` widget: tile side in input pixels, a multiple of 16, 0 = auto (the
    tooltip says how the node sizes its auto tiles)."""
    return io.Int.Input("tile_size", default=0, min=0, max=8192, step=16, tooltip=tooltip)


def temporal_inputs() -> list:
    """The video nodes' temporal settings, temporal_strength .. frames_per_chunk, in the order
    saved workflows store them (Video Upscale and Upscale Video (streaming) share them)."""
    return [
        io.Float.Input(
            "temporal_strength",
            default=temporal.DEFAULT_STRENGTH,
            min=0.0,
            max=temporal.MAX_STRENGTH,
            step=0.05,
            tooltip="How much of the previous frames' features each frame keeps (alpha). "
            "0 = every frame upscaled on its own; 0.2 = the model's default; "
            "higher = steadier but softer on motion.",
        ),
        io.Float.Input(
            "scene_cut_sensitivity",
            default=scene_cuts.DEFAULT_SENSITIVITY,
            min=0.0,
            max=1.0,
            step=0.05,
            tooltip="Restart the temporal state at scene cuts: where a frame's picture (32x32 "
            "grayscale, compared after the best shift, so pans, shakes, zooms, fades and "
            "flashes score low) changes by more than 0.90 - 0.60 x sensitivity and by far "
            "more than in the frames before. Higher = more cuts. 0 = never; 0.6 = 0.54 "
            "(default); 0.8 = 0.42 (similar shots); 1 = 0.30.",
        ),
        io.Boolean.Input(
            "motion_adaptive",
            default=False,
            tooltip="Blend less where the picture moved between frames, so moving objects "
            "leave no faint trail; still areas keep the stabilisation.",
        ),
        tile_size_input(
            "Tile side in input pixels (multiple of 16). 0 = auto: from free memory, and on "
            "the CPU small enough for the memory allocator to reuse its buffers. "
            "Every frame uses the same tiles; realtime/stream tiles are seamless."
        ),
        io.Int.Input(
            "frames_per_chunk",
            default=0,
            min=0,
            max=256,
            step=1,
            tooltip=f"Frames run through the network together. 0 = auto: chunks of "
            f"{temporal.DEFAULT_CHUNK} on a GPU; on the CPU one frame at a time (several when they "
            "are small), which measured fastest there. Larger = more memory.",
        ),
    ]


def output_size_inputs() -> list:
    """The optional output-size inputs; their defaults keep the model's factor (old workflows).

    Plain inputs on purpose, not a DynamicCombo (which would show only the value that applies):
    a DynamicCombo saves its nested values under new names, so the positional widgets_values of
    workflows saved before (output_size, output_factor, output_long_side) would no longer map
    and those workflows would not load on 0.3.64 (docs/nodes.md).
    """
    return [
        io.Combo.Input(
            "output_size",
            options=list(OUTPUT_SIZE_MODES),
            default=MODEL_FACTOR,
            optional=True,
            tooltip="model factor = the model's own scale (fastest, no resampling). factor = "
            "output_factor x the input size (e.g. 1.5 with a 2x or 4x model). long side = "
            "the longer output side is output_long_side pixels, aspect ratio kept. The resize "
            "(bicubic, antialiased) happens image by image as they are produced, so the batch "
            "never holds the model-size results all at once.",
        ),
        io.Float.Input(
            "output_factor",
            default=2.0,
            min=0.05,
            max=16.0,
            step=0.05,
            optional=True,
            tooltip="Output size relative to the input when output_size is 'factor'.",
        ),
        io.Int.Input(
            "output_long_side",
            default=2048,
            min=1,
            max=32768,
            step=1,
            optional=True,
            tooltip="Length in pixels of the output's longer side when output_size is 'long side'.",
        ),
    ]
