"""ParagonSR2 Video Upscale: temporally stable upscaling of a frame batch (ComfyUI V3 schema)."""

from __future__ import annotations

from ..engines.runtime.contract import ModelHandle
from ..engines.video import chunks, scene_cuts, temporal
from ..engines.video.options import VideoOptions
from . import comfy_bridge as bridge
from . import managed
from . import meta_batch as meta_batch_states
from .comfy_io import io, schema
from .inputs import MODEL_FACTOR, checked_request, naming_model_on_failure
from .shared import CATEGORY, engine_for, validate_device
from .sockets import META_BATCH, TEMPORAL_STATE, device_input, model_input, output_size_inputs, temporal_inputs


def _model_key(handle: ModelHandle) -> str:
    """The model a temporal state belongs to: a state from another model starts a fresh one."""
    m = handle.model
    return f"{handle.name} ({m.variant} x{m.scale}, {m.num_feat} ch)"


class ParagonSR2VideoUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ParagonSR2VideoUpscale",
            display_name="ParagonSR2 Video Upscale",
            category=CATEGORY,
            description="Upscales a batch of video frames with ParagonSR2's temporal feature feedback: each "
            "frame's first-layer features are blended with the previous frames' (an exponential "
            "moving average), so textures stop flickering and swimming. Frames are processed in "
            "chunks (memory does not grow with the clip length), the state restarts at scene cuts, "
            "and 'temporal_state' carries it from one batch of a long video to the next. RGBA keeps "
            "its alpha (upscaled smoothly); grayscale comes back as RGB.",
            search_aliases=[
                "video upscale",
                "upscale video",
                "video super resolution",
                "vsr",
                "super resolution",
                "sr",
                "temporal upscale",
                "paragonsr2",
            ],
            # Same order as the classic node's required then optional inputs: saved workflows
            # store widget values by position.
            inputs=[
                model_input(),
                io.Image.Input("frames", tooltip="The video frames as an IMAGE batch, in playback order."),
                *temporal_inputs(),
                TEMPORAL_STATE.Input(
                    "temporal_state",
                    optional=True,
                    tooltip="The temporal_state output of the node that upscaled the previous batch "
                    "of the same video; continues it seamlessly. Ignored (with a log note) "
                    "if the model or the frame size differ.",
                ),
                device_input(),
                io.Int.Input(
                    "start_frame",
                    default=0,
                    min=0,
                    max=1_000_000,
                    step=1,
                    optional=True,
                    tooltip="Begin exactly mid-clip: frames before this index only build the temporal "
                    "state (as if they had been upscaled first) and are not output. To split a "
                    "long video over several instances, load each range with "
                    f"{chunks.lead_in_frames(temporal.DEFAULT_STRENGTH)} extra frames before it "
                    f"(at strength 0.2; ceil(ln 1e-6 / ln strength) + {chunks.history_frames()} in "
                    "general) and set start_frame to that number: the parts join seamlessly "
                    "(docs/distributed.md).",
                ),
                META_BATCH.Input(
                    "meta_batch",
                    optional=True,
                    tooltip="VideoHelperSuite's Meta Batch Manager, when it splits the video into "
                    "batches queued one after another: the temporal state then carries from "
                    "each batch to the next (a link cannot, each batch is its own prompt).",
                ),
                *output_size_inputs(),
            ],
            outputs=[
                io.Image.Output(
                    display_name="frames",
                    tooltip="The upscaled frames, scale x the input size, in the input order.",
                ),
                TEMPORAL_STATE.Output(
                    display_name="temporal_state",
                    tooltip="The state after the last frame: connect it to the temporal_state input of the "
                    "node that upscales the next batch of the same video.",
                ),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],  # which meta batch this prompt is
        )

    @classmethod
    def validate_inputs(cls, device="auto"):
        return validate_device(device)  # any device name: workflows from other machines validate

    @classmethod
    def execute(
        cls,
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
        meta_batch=None,
        output_size=MODEL_FACTOR,
        output_factor=2.0,
        output_long_side=2048,
    ):
        size = checked_request(model, frames, "frames", output_size, output_factor, output_long_side)
        hidden = cls.hidden
        node_id = getattr(hidden, "unique_id", None)
        if meta_batch is not None:
            batch = meta_batch_states.batch_number(meta_batch, getattr(hidden, "prompt", None))
            previous = meta_batch_states.state_before(meta_batch, node_id, batch)
            temporal_state = previous if temporal_state is None else temporal_state
        with naming_model_on_failure(model):
            out, state = upscale_frames(
                model,
                frames,
                float(temporal_strength),
                float(scene_cut_sensitivity),
                bool(motion_adaptive),
                int(tile_size),
                int(frames_per_chunk),
                temporal_state,
                device,
                int(start_frame),
                size,
            )
        if meta_batch is not None:
            meta_batch_states.remember(meta_batch, node_id, batch, state)
        return io.NodeOutput(out, state)


def upscale_frames(
    model,
    frames,
    temporal_strength: float,
    scene_cut_sensitivity: float,
    motion_adaptive: bool,
    tile_size: int,
    frames_per_chunk: int,
    temporal_state,
    device: str,
    start_frame: int,
    size,
):
    """The Video Upscale node's work, callable without ComfyUI: (frames, state after the last)."""
    engine = engine_for(model, device)
    managed.prepare(
        engine,
        frames.shape[1],
        frames.shape[2],
        tile_size,
        batch=managed.frames_per_call(engine, frames_per_chunk),
    )
    frames, temporal_state = _skip_warmup(
        model, frames, start_frame, temporal_state, temporal_strength, scene_cut_sensitivity, motion_adaptive
    )
    return temporal.upscale_video(
        engine,
        frames,
        temporal_strength=temporal_strength,
        scene_cut_sensitivity=scene_cut_sensitivity,
        motion_adaptive=motion_adaptive,
        tile_size=tile_size,
        frames_per_chunk=frames_per_chunk,
        state=temporal_state,
        model_key=_model_key(model),
        progress=bridge.make_progress(),
        check_interrupt=bridge.check_interrupt,
        free_memory=lambda: bridge.free_memory(engine.info.device),
        output_size=size,
    )


def _skip_warmup(handle, frames, start_frame, state, alpha, sensitivity, motion_adaptive):
    """(frames to upscale, state before them): frames[:start_frame] become the state, computed
    from the pixels alone (engines/video/chunks.warm_up), so the output equals the
    tail of a run over all the frames."""
    if start_frame <= 0:
        return frames, state
    if start_frame >= frames.shape[0]:
        raise ValueError(
            f"start_frame {start_frame} leaves nothing to upscale: the batch has {frames.shape[0]} frame(s)"
        )
    options = VideoOptions(temporal_strength=alpha, scene_cut_sensitivity=sensitivity, motion_adaptive=motion_adaptive)
    return frames[start_frame:], chunks.warm_up(frames[:start_frame], options, state, _model_key(handle))


NODES = [ParagonSR2VideoUpscale]
