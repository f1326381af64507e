"""ParagonSR2 Video Upscale: temporally stable upscaling of a frame batch (classic node API)."""

from __future__ import annotations

from ..engines.runtime.contract import ModelHandle
from ..engines.video import chunks, scene_cuts, temporal
from . import comfy_bridge as bridge
from . import managed
from . import meta_batch as meta_batch_states
from .inputs import MODEL_FACTOR, checked_request, naming_model_on_failure, output_size_inputs
from .shared import CATEGORY, device_choices, engine_for, validate_device

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
        "its alpha (upscaled smoothly); grayscale comes back as RGB."
    )
    CATEGORY = CATEGORY
    SEARCH_ALIASES = (
        "video upscale",
        "upscale video",
        "video super resolution",
        "vsr",
        "super resolution",
        "sr",
        "temporal upscale",
        "paragonsr2",
    )
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
                "temporal_strength": (
                    "FLOAT",
                    {
                        "default": temporal.DEFAULT_STRENGTH,
                        "min": 0.0,
                        "max": temporal.MAX_STRENGTH,
                        "step": 0.05,
                        "tooltip": "How much of the previous frames' features each frame keeps (alpha). "
                        "0 = every frame upscaled on its own; 0.2 = the model's default; "
                        "higher = steadier but softer on motion.",
                    },
                ),
                "scene_cut_sensitivity": (
                    "FLOAT",
                    {
                        "default": scene_cuts.DEFAULT_SENSITIVITY,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.05,
                        "tooltip": "Restart the temporal state at scene cuts: where a frame's picture (32x32 "
                        "grayscale, compared after the best shift, so pans, shakes, zooms, fades and "
                        "flashes score low) changes by more than 0.90 - 0.60 x sensitivity and by far "
                        "more than in the frames before. Higher = more cuts. 0 = never; 0.6 = 0.54 "
                        "(default); 0.8 = 0.42 (similar shots); 1 = 0.30.",
                    },
                ),
                "motion_adaptive": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Blend less where the picture moved between frames, so moving objects "
                        "leave no faint trail; still areas keep the stabilisation.",
                    },
                ),
                "tile_size": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 8192,
                        "step": 16,
                        "tooltip": "Tile side in input pixels (multiple of 16). 0 = auto: from free memory, and on "
                        "the CPU small enough for the memory allocator to reuse its buffers. "
                        "Every frame uses the same tiles; realtime/stream tiles are seamless.",
                    },
                ),
                "frames_per_chunk": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 256,
                        "step": 1,
                        "tooltip": f"Frames run through the network together. 0 = auto: chunks of "
                        f"{temporal.DEFAULT_CHUNK} on a GPU; on the CPU one frame at a time (several when they "
                        "are small), which measured fastest there. Larger = more memory.",
                    },
                ),
            },
            "optional": {
                "temporal_state": (
                    STATE_TYPE,
                    {
                        "tooltip": "The temporal_state output of the node that upscaled the previous batch "
                        "of the same video; continues it seamlessly. Ignored (with a log note) "
                        "if the model or the frame size differ."
                    },
                ),
                "device": (
                    device_choices(),
                    {
                        "default": "auto",
                        "tooltip": "Where to compute. auto = ComfyUI's device (the GPU when there is one).",
                    },
                ),
                "start_frame": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 1_000_000,
                        "step": 1,
                        "tooltip": "Begin exactly mid-clip: frames before this index only build the temporal "
                        "state (as if they had been upscaled first) and are not output. To split a "
                        "long video over several instances, load each range with "
                        f"{chunks.lead_in_frames(temporal.DEFAULT_STRENGTH)} extra frames before it "
                        f"(at strength 0.2; ceil(ln 1e-6 / ln strength) + {chunks.history_frames()} in "
                        "general) and set start_frame to that number: the parts join seamlessly "
                        "(docs/distributed.md).",
                    },
                ),
                "meta_batch": (
                    meta_batch_states.META_BATCH_TYPE,
                    {
                        "tooltip": "VideoHelperSuite's Meta Batch Manager, when it splits the video into "
                        "batches queued one after another: the temporal state then carries from "
                        "each batch to the next (a link cannot, each batch is its own prompt)."
                    },
                ),
                **output_size_inputs(),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, device="auto"):
        return validate_device(device)  # any device name: workflows from other machines validate

    def upscale(
        self,
        model,
        frames,
        temporal_strength=temporal.DEFAULT_STRENGTH,
        scene_cut_sensitivity=scene_cuts.DEFAULT_SENSITIVITY,
        motion_adaptive=False,
        tile_size=0,
        frames_per_chunk=0,
        temporal_state=None,
        device="auto",
        start_frame=0,
        output_size=MODEL_FACTOR,
        output_factor=2.0,
        output_long_side=2048,
        meta_batch=None,
        prompt=None,
        unique_id=None,
    ):
        size = checked_request(model, frames, "frames", output_size, output_factor, output_long_side)
        if meta_batch is not None:
            batch = meta_batch_states.batch_number(meta_batch, prompt)
            previous = meta_batch_states.state_before(meta_batch, unique_id, batch)
            temporal_state = previous if temporal_state is None else temporal_state
        with naming_model_on_failure(model):
            result = self._upscale(
                model,
                frames,
                temporal_strength,
                scene_cut_sensitivity,
                motion_adaptive,
                tile_size,
                frames_per_chunk,
                temporal_state,
                device,
                start_frame,
                size,
            )
        if meta_batch is not None:
            meta_batch_states.remember(meta_batch, unique_id, batch, result[1])
        return result

    def _upscale(
        self,
        model,
        frames,
        temporal_strength,
        scene_cut_sensitivity,
        motion_adaptive,
        tile_size,
        frames_per_chunk,
        temporal_state,
        device,
        start_frame,
        size,
    ):
        engine = engine_for(model, device)
        managed.prepare(
            engine,
            frames.shape[1],
            frames.shape[2],
            int(tile_size),
            batch=managed.frames_per_call(engine, int(frames_per_chunk)),
        )
        frames, temporal_state = _skip_warmup(
            model,
            frames,
            int(start_frame),
            temporal_state,
            float(temporal_strength),
            float(scene_cut_sensitivity),
            bool(motion_adaptive),
        )
        out, state = temporal.upscale_video(
            engine,
            frames,
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
            output_size=size,
        )
        return (out, state)


def _skip_warmup(handle, frames, start_frame, state, alpha, sensitivity, motion_adaptive):
    """(frames to upscale, state before them): frames[:start_frame] become the state, computed
    from the pixels alone (engines/video/chunks.state_at_frame), so the output equals the
    tail of a run over all the frames."""
    if start_frame <= 0:
        return frames, state
    if start_frame >= frames.shape[0]:
        raise ValueError(
            f"start_frame {start_frame} leaves nothing to upscale: the batch has {frames.shape[0]} frame(s)"
        )
    warm = frames[:start_frame]
    state = chunks.state_at_frame(
        warm,
        temporal_strength=alpha,
        scene_cut_sensitivity=sensitivity,
        motion_adaptive=motion_adaptive,
        state=state,
        signature=(_model_key(handle), warm.shape[1], warm.shape[2]),
    )
    return frames[start_frame:], state


NODE_CLASS_MAPPINGS = {"ParagonSR2VideoUpscale": ParagonSR2VideoUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"ParagonSR2VideoUpscale": "ParagonSR2 Video Upscale"}
