"""ParagonSR2 Video Upscale: temporally stable upscaling of a frame batch (classic node API)."""

from __future__ import annotations

from ..engines.video import scene_cuts, temporal
from ..engines.runtime.contract import ModelHandle
from . import comfy_bridge as bridge
from .image_nodes import CATEGORY, device_choices, engine_for

STATE_TYPE = "PARAGONSR2_TEMPORAL_STATE"


def _model_key(handle: ModelHandle) -> str:
    """The model a temporal state belongs to: a state from another model starts a fresh one."""
    m = handle.model
    return f"{handle.name} ({m.variant} x{m.scale}, {m.num_feat} ch)"


class ParagonSR2VideoUpscale:
    DESCRIPTION = (
        "Upscales a batch of video frames with ParagonSR2's temporal feature feedback: each "
        "frame's first-layer features are blended with the previous frames' (an exponential "
        "moving average), so textures stop flickering and swimming. Frames are processed in "
        "chunks (memory does not grow with the clip length), the state restarts at scene cuts, "
        "and 'temporal_state' carries it from one batch of a long video to the next. RGBA keeps "
        "its alpha (upscaled smoothly); grayscale comes back as RGB.")
    CATEGORY = CATEGORY
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE", STATE_TYPE)
    RETURN_NAMES = ("frames", "temporal_state")
    OUTPUT_TOOLTIPS = (
        "The upscaled frames, scale x the input size, in the input order.",
        "The state after the last frame: connect it to the temporal_state input of the node "
        "that upscales the next batch of the same video.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("PARAGONSR2_MODEL", {"tooltip": "From ParagonSR2 Loader (or a TensorRT engine node)."}),
                "frames": ("IMAGE", {"tooltip": "The video frames as an IMAGE batch, in playback order."}),
                "temporal_strength": ("FLOAT", {
                    "default": temporal.DEFAULT_STRENGTH, "min": 0.0, "max": temporal.MAX_STRENGTH,
                    "step": 0.05,
                    "tooltip": "How much of the previous frames' features each frame keeps (alpha). "
                               "0 = every frame upscaled on its own; 0.2 = the model's default; "
                               "higher = steadier but softer on motion."}),
                "scene_cut_sensitivity": ("FLOAT", {
                    "default": scene_cuts.DEFAULT_SENSITIVITY, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "Restart the temporal state where consecutive frames differ by more than "
                               "0.25 x (1 - sensitivity) (mean absolute difference of 32x32 grayscale "
                               "thumbnails, 0..1). 0 = never; 0.6 = 0.10 (default); 1 = every changed frame."}),
                "motion_adaptive": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Blend less where the picture moved between frames, so moving objects "
                               "leave no faint trail; still areas keep the stabilisation."}),
                "tile_size": ("INT", {
                    "default": 0, "min": 0, "max": 8192, "step": 16,
                    "tooltip": "Tile side in input pixels (multiple of 16). 0 = auto: from free memory, and on "
                               "the CPU small enough for the memory allocator to reuse its buffers. "
                               "Every frame uses the same tiles; realtime/stream tiles are seamless."}),
                "frames_per_chunk": ("INT", {
                    "default": 0, "min": 0, "max": 256, "step": 1,
                    "tooltip": f"Frames run through the network together. 0 = auto: chunks of "
                               f"{temporal.DEFAULT_CHUNK} on a GPU; on the CPU one frame at a time (several when they "
                               "are small), which measured fastest there. Larger = more memory."}),
            },
            "optional": {
                "temporal_state": (STATE_TYPE, {
                    "tooltip": "The temporal_state output of the node that upscaled the previous batch "
                               "of the same video; continues it seamlessly. Ignored (with a log note) "
                               "if the model or the frame size differ."}),
                "device": (device_choices(), {
                    "default": "auto",
                    "tooltip": "Where to compute. auto = ComfyUI's device (the GPU when there is one)."}),
            },
        }

    def upscale(self, model, frames, temporal_strength=temporal.DEFAULT_STRENGTH,
                scene_cut_sensitivity=scene_cuts.DEFAULT_SENSITIVITY, motion_adaptive=False,
                tile_size=0, frames_per_chunk=0, temporal_state=None, device="auto"):
        if not isinstance(model, ModelHandle):
            raise ValueError("model must come from ParagonSR2 Loader (a PARAGONSR2_MODEL), "
                             f"not {type(model).__name__}")
        engine = engine_for(model, device)
        out, state = temporal.upscale_video(
            engine, frames,
            temporal_strength=float(temporal_strength),
            scene_cut_sensitivity=float(scene_cut_sensitivity),
            motion_adaptive=bool(motion_adaptive),
            tile_size=int(tile_size),
            frames_per_chunk=int(frames_per_chunk),
            state=temporal_state,
            model_key=_model_key(model),
            progress=bridge.make_progress(),
            check_interrupt=bridge.check_interrupt,
            free_memory=lambda: bridge.free_memory(engine.device),
        )
        return (out, state)


NODE_CLASS_MAPPINGS = {"ParagonSR2VideoUpscale": ParagonSR2VideoUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"ParagonSR2VideoUpscale": "ParagonSR2 Video Upscale"}
