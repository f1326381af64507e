"""ParagonSR2 Build TensorRT Engine and ParagonSR2 Export ONNX nodes (ComfyUI V3 schema; thin
wrappers over engines/backends/tensorrt_engine.py and engines/backends/onnx_export.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..engines.runtime.contract import ModelHandle
from ..engines.runtime.options import GRAPH_PRECISIONS
from . import comfy_bridge as bridge
from .comfy_io import io, schema
from .shared import CATEGORY
from .sockets import MODEL, model_input

logger = logging.getLogger("ParagonSR2")

TRT_PRECISIONS = list(GRAPH_PRECISIONS)  # what ONNX graphs and TensorRT engines can hold


def _check_handle(model) -> ModelHandle:
    if not isinstance(model, ModelHandle):
        raise ValueError(f"model must come from ParagonSR2 Loader (a PARAGONSR2_MODEL), not {type(model).__name__}")
    return model


def _cancel_requested() -> bool:
    """For TensorRT's progress monitor: True once the user pressed cancel in ComfyUI."""
    try:
        bridge.check_interrupt()
    except Exception:
        return True
    return False


class ParagonSR2BuildTensorRTEngine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        side: dict[str, Any] = {"min": 16, "max": 4096, "step": 16}  # widget settings, spread by name
        return schema(
            node_id="ParagonSR2BuildTensorRTEngine",
            display_name="ParagonSR2 Build TensorRT Engine",
            category=CATEGORY,
            description="Builds (or loads from the cache) a TensorRT engine for a ParagonSR2 model and returns "
            "the model running on it; ParagonSR2 Upscale and Video Upscale then use the engine. Any image "
            "size works: the tile range only sets the engine's tile sizes. The first build takes a few "
            "minutes; engines are cached under models/tensorrt/paragonsr2 per GPU and TensorRT version. "
            "Needs an NVIDIA GPU and 'pip install tensorrt'.",
            search_aliases=["tensorrt", "trt", "tensorrt upscale", "super resolution engine", "sr", "paragonsr2"],
            # Not yet run on real NVIDIA hardware (CI has no GPU): flagged in the node browser until it has.
            is_experimental=True,
            inputs=[
                model_input("From ParagonSR2 Loader."),
                io.Combo.Input(
                    "precision",
                    options=TRT_PRECISIONS,
                    default="fp16",
                    tooltip="Precision of the engine, baked into the exported graph. fp16 is about "
                    "twice as fast; RMSNorm statistics and the stream gate stay float32.",
                ),
                io.Int.Input("min_tile", default=64, **side, tooltip="Smallest LR tile side (px) the engine accepts."),
                io.Int.Input(
                    "opt_tile", default=512, **side, tooltip="LR tile side TensorRT optimises for (the usual tile)."
                ),
                io.Int.Input(
                    "max_tile",
                    default=1024,
                    **side,
                    tooltip="Largest LR tile side; larger images are tiled, never refused.",
                ),
                io.Int.Input(
                    "max_batch", default=1, min=1, max=64, tooltip="Most images (or video frames) per engine call."
                ),
                io.Boolean.Input(
                    "video",
                    default=False,
                    tooltip="Add the temporal inputs (prev_feat, temporal_alpha) so ParagonSR2 Video "
                    "Upscale can use the engine; images work on it too.",
                ),
                io.Boolean.Input(
                    "fallback_to_torch",
                    default=True,
                    tooltip="Without TensorRT or an NVIDIA GPU: on = log it and continue with "
                    "PyTorch; off = stop with an explanation.",
                ),
            ],
            outputs=[
                MODEL.Output(
                    display_name="paragonsr2_model",
                    tooltip="The same model, running on the TensorRT engine (or on PyTorch after a fallback).",
                )
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        precision="fp16",
        min_tile=64,
        opt_tile=512,
        max_tile=1024,
        max_batch=1,
        video=False,
        fallback_to_torch=True,
    ):
        return io.NodeOutput(
            build_engine(model, precision, min_tile, opt_tile, max_tile, max_batch, video, fallback_to_torch)
        )


def build_engine(model, precision, min_tile, opt_tile, max_tile, max_batch, video, fallback_to_torch):
    """The TensorRT node's work, callable without ComfyUI: the handle running on a (cached) engine."""
    from ..engines.backends.engine_cache import Profile
    from ..engines.backends.tensorrt_build import BuildCancelled, TensorRTUnavailable
    from ..engines.backends.tensorrt_engine import load_or_build

    handle = _check_handle(model)
    if not min_tile <= max_tile:
        raise ValueError(f"min_tile ({min_tile}) must not exceed max_tile ({max_tile})")
    opt = min(max(int(opt_tile), int(min_tile)), int(max_tile))
    profile = Profile(int(min_tile), opt, int(max_tile), 1, 1, int(max_batch))
    try:
        engine = load_or_build(
            handle.model,
            precision=precision,
            profile=profile,
            video=bool(video),
            models_dir=bridge.models_dir(),
            progress=bridge.make_progress(),
            cancel=_cancel_requested,
        )
    except TensorRTUnavailable as exc:
        if not fallback_to_torch:
            raise TensorRTUnavailable(f"ParagonSR2: cannot build a TensorRT engine: {exc}") from None
        logger.warning("ParagonSR2: TensorRT not available (%s); continuing with PyTorch", exc)
        return handle.with_engine(None)
    except BuildCancelled:
        bridge.check_interrupt()  # re-raise ComfyUI's own interrupt when that was the cause
        raise
    return handle.with_engine(engine)


def _unique_path(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.onnx"
    counter = 1
    while path.exists():
        path = folder / f"{stem}_{counter:05d}.onnx"
        counter += 1
    return path


class ParagonSR2ExportONNX(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ParagonSR2ExportONNX",
            display_name="ParagonSR2 Export ONNX",
            category=CATEGORY,
            description="Writes the model as a single .onnx file to ComfyUI's output folder, for chaiNNer, "
            "VapourSynth (vs-mlrt), ONNX Runtime or trtexec. Input 'input' (N,3,H,W) float32 in 0..1 with "
            "H and W multiples of 16 (pad, then crop the output); the video graph adds 'prev_feat' and "
            "'temporal_alpha' inputs and a 'feature_map' output.",
            search_aliases=["onnx", "export onnx", "super resolution onnx", "sr", "paragonsr2"],
            is_output_node=True,
            inputs=[
                model_input("From ParagonSR2 Loader."),
                io.Combo.Input(
                    "precision",
                    options=TRT_PRECISIONS,
                    default="fp16",
                    tooltip="Weights and activations in the graph (float32 inputs/outputs either way).",
                ),
                io.Boolean.Input("video", default=False, tooltip="Export the temporal (video) graph."),
                io.String.Input(
                    "filename_prefix",
                    default="ParagonSR2",
                    tooltip="File name start; may include a subfolder of the output folder.",
                ),
            ],
            outputs=[io.String.Output(display_name="onnx_path", tooltip="Full path of the written .onnx file.")],
        )

    @classmethod
    def execute(cls, model, precision="fp16", video=False, filename_prefix="ParagonSR2"):
        path = export_onnx_file(model, precision, video, filename_prefix)
        return io.NodeOutput(path, ui={"text": [path]})


def export_onnx_file(model, precision="fp16", video=False, filename_prefix="ParagonSR2") -> str:
    """The Export ONNX node's work, callable without ComfyUI: the written file's full path."""
    from ..engines.backends.onnx_export import export_onnx

    handle = _check_handle(model)
    root = bridge.output_dir().resolve()
    target = (root / (filename_prefix or "ParagonSR2")).resolve()
    if root != target and root not in target.parents:
        raise ValueError(f"filename_prefix {filename_prefix!r} points outside the output folder")
    m = handle.model
    stem = f"{target.name}_{m.variant}_x{int(m.scale)}_{precision}{'_video' if video else ''}"
    path = _unique_path(target.parent, stem)
    export_onnx(m, path, precision=precision, video=bool(video))
    logger.info("ParagonSR2: ONNX graph written to %s", path)
    return str(path)


NODES = [ParagonSR2BuildTensorRTEngine, ParagonSR2ExportONNX]
