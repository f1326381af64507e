"""ParagonSR2 Upscale Video (streaming): a VIDEO in, a VIDEO out, at constant memory (V3 schema).

The input's file is decoded frame by frame, run through the temporal recurrence chunk by chunk
and encoded as the frames come out (engines/video/stream.py), so memory does not grow with the
clip's length. The result is an MP4 in ComfyUI's temp folder, returned as core's file-backed
VIDEO: core's Save Video then stores it by remuxing the packets (no second encode), and the node
previews it. Temp, not output: the file is an intermediate (Save Video is where the user keeps
it) and ComfyUI empties temp at start, so repeated runs leave no copies behind.

Resume: a file-backed input keeps its finished segments (with the exact temporal state) under
ComfyUI's output folder in a hidden work area (temp is emptied at start, output is not), keyed
by the input file, the model and the options; Cancel, then queueing the same thing again,
continues from the last finished segment and gives the same result as an uninterrupted run.

A VIDEO that no file backs (Create Video's) is read from its frames tensor, whose memory is the
caller's; it cannot be resumed (no file identity), which the log says once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

from ..engines.runtime.contract import ModelHandle
from ..engines.runtime.files import atomic_output
from ..engines.video import scene_cuts, temporal
from ..engines.video.options import CODECS, DEFAULT_QUALITY, H264, H265, LOSSLESS, MAX_QUALITY, VideoOptions
from . import comfy_bridge as bridge
from . import managed
from .comfy_io import VideoFromFile, io, preview_video, schema
from .inputs import MODEL_FACTOR, naming_model_on_failure
from .shared import CATEGORY, engine_for, validate_device
from .sockets import device_input, model_input, output_size_inputs, temporal_inputs

logger = logging.getLogger("ParagonSR2")

NODE_NAME = "ParagonSR2 Upscale Video (streaming)"
RESULT_SUBFOLDER = "paragonsr2"  # under ComfyUI's temp folder
WORK_FOLDER = ".paragonsr2_resume"  # under ComfyUI's output folder: hidden, survives a restart
RESULT_SUFFIX = ".mp4"  # what Save Video (format auto) names its file and remuxes into
LOG_EVERY_S = 10.0  # progress lines in the log when the container does not say the frame count
_said_once: set[str] = set()


def _say_once(key: str, text: str) -> None:
    if key not in _said_once:
        _said_once.add(key)
        logger.info("%s: %s", NODE_NAME, text)


def _codec_options() -> tuple[list[str], str]:
    """(the codec names an MP4 can hold, their tooltip). Read from the encoder table without
    needing PyAV at import (the pack imports without it): then the issue's three MP4 codecs."""
    try:
        from ..engines.video.encode import encoder_choices

        choices = [c for c in encoder_choices() if RESULT_SUFFIX in c.containers]
    except ImportError:
        return [H264, H265, LOSSLESS], "The video codec of the result (MP4). Video files need PyAV: pip install av."
    lines = []
    for c in choices:
        missing = "" if c.available else f" [not in this PyAV build: {c.why_not}]"
        preview = "" if c.browser_preview else " [the browser cannot preview it; Save Video still keeps it]"
        lines.append(f"{c.name}: {c.note}{preview}{missing}")
    text = "The video codec of the result (an MP4), checked when the node runs. " + "; ".join(lines) + "."
    return [c.name for c in choices], text


class ParagonSR2UpscaleVideoStreaming(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        codecs, codec_tooltip = _codec_options()
        return schema(
            node_id="ParagonSR2UpscaleVideoStreaming",
            display_name=NODE_NAME,
            category=CATEGORY,
            description="Upscales a whole VIDEO (from Load Video) with ParagonSR2's temporal feature "
            "feedback at constant memory: frames are decoded, upscaled and encoded as they go, so "
            "a video of any length fits. Keeps every frame's timestamp, the audio and subtitle "
            "tracks (copied, not re-encoded), colour tags and bit depth where the codec can. The "
            "result is an MP4 that Save Video stores without encoding it again. Cancel keeps the "
            "finished part: queue the same video with the same settings again and it continues "
            "there. For short clips as IMAGE batches use ParagonSR2 Video Upscale.",
            search_aliases=[
                "video upscale",
                "upscale video",
                "long video",
                "streaming upscale",
                "video super resolution",
                "vsr",
                "paragonsr2",
            ],
            inputs=[
                model_input(),
                io.Video.Input(
                    "video",
                    tooltip="The video, e.g. from Load Video (read from its file frame by frame; a trimmed "
                    "video is honoured). A video built from images (Create Video) is read from "
                    "its frames, which are then in memory already.",
                ),
                *temporal_inputs(),
                io.Combo.Input("codec", options=codecs, default=H264, tooltip=codec_tooltip),
                io.Int.Input(
                    "quality",
                    default=DEFAULT_QUALITY,
                    min=0,
                    max=MAX_QUALITY,
                    step=1,
                    tooltip="CRF of the lossy codecs: lower = better and larger; 16 looks like the "
                    "source, 23 is x264's default. Not used by 'h264 lossless'.",
                ),
                device_input(),
                *output_size_inputs(),
            ],
            outputs=[
                io.Video.Output(
                    display_name="video",
                    tooltip="The upscaled video: an MP4 in ComfyUI's temp folder (connect Save Video to "
                    "keep it; it is stored without re-encoding).",
                ),
            ],
        )

    @classmethod
    def validate_inputs(cls, device="auto"):
        return validate_device(device)  # any device name: workflows from other machines validate

    @classmethod
    def execute(
        cls,
        model,
        video,
        temporal_strength=temporal.DEFAULT_STRENGTH,
        scene_cut_sensitivity=scene_cuts.DEFAULT_SENSITIVITY,
        motion_adaptive=False,
        tile_size=0,
        frames_per_chunk=0,
        codec=H264,
        quality=DEFAULT_QUALITY,
        device="auto",
        output_size=MODEL_FACTOR,
        output_factor=2.0,
        output_long_side=2048,
    ):
        if not isinstance(model, ModelHandle):
            raise ValueError(
                f"ParagonSR2: model must come from ParagonSR2 Loader (a PARAGONSR2_MODEL), not {type(model).__name__}"
            )
        if codec not in CODECS:
            raise ValueError(f"ParagonSR2: codec must be one of {', '.join(CODECS)}, not {codec!r}")
        options = VideoOptions(
            temporal_strength=temporal_strength,
            scene_cut_sensitivity=scene_cut_sensitivity,
            motion_adaptive=motion_adaptive,
            tile_size=tile_size,
            frames_per_chunk=frames_per_chunk,
            output_size=output_size,
            output_factor=output_factor,
            output_long_side=output_long_side,
            codec=codec,
            quality=quality,
        )
        with naming_model_on_failure(model):
            path = upscale_video_input(model, video, options, device)
        return io.NodeOutput(VideoFromFile(str(path)), ui=preview_video(path.name, RESULT_SUBFOLDER, "temp"))


# -- the work, callable without ComfyUI --------------------------------------------------------------


def upscale_video_input(model: ModelHandle, video, options: VideoOptions, device: str = "auto") -> Path:
    """Upscale a core VIDEO value into an MP4 under ComfyUI's temp folder; returns its path."""
    from ..engines.video.encode import codec_choice

    choice = codec_choice(options.codec)  # PyAV missing: one line saying how to install it
    if not choice.available:
        raise ValueError(f"ParagonSR2: video codec {options.codec!r} cannot be used here: {choice.why_not}")
    engine = engine_for(model, device)
    out_dir = bridge.temp_dir() / RESULT_SUBFOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    source = _file_source(video)
    if source is None:
        return _upscale_components(model, engine, video, options, out_dir)
    src, start_s, duration_s = source
    if isinstance(src, (str, os.PathLike)):
        return _upscale_file(model, engine, Path(src), options, out_dir, start_s, duration_s, resumable=True)
    # An in-memory file (a BytesIO VIDEO): spooled to disk so it is read like any other file.
    with _spooled(src, out_dir) as spooled:
        _say_once("bytes", "this VIDEO lives in memory, not in a file: it is processed in one go (no resume)")
        return _upscale_file(model, engine, spooled, options, out_dir, start_s, duration_s, resumable=False)


def _file_source(video):
    """(file or BytesIO, start_s, duration_s) of a file-backed VIDEO; None for one made of
    frames. Only core's VideoFromFile counts as file-backed: other VIDEO types' default
    get_stream_source encodes the whole video into memory."""
    if not isinstance(video, VideoFromFile):
        return None
    start, duration = 0.0, 0.0
    trim = getattr(video, "get_active_trim_window", None)  # 0.33 trims; 0.3.64 has no trim
    if trim is not None:
        start, duration = trim()
    return video.get_stream_source(), float(start or 0.0), (float(duration) if duration else None)


@contextlib.contextmanager
def _spooled(buffer, folder: Path):
    fd, name = tempfile.mkstemp(prefix=".input-", suffix=".video", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            buffer.seek(0)
            shutil.copyfileobj(buffer, handle, 1 << 20)
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def model_identity(model: ModelHandle, engine) -> str:
    """What names the weights and how they compute, for resume keys: the model file's identity
    (size, mtime, hash of its ends), its sharpness, and the engine kind, device and dtype (a
    run resumed on another device or precision would not give the same frames)."""
    from ..engines.video.container import identity

    try:
        weights = identity(Path(bridge.model_file_path(model.name)))
    except (OSError, ValueError):  # a handle whose file is gone or unnamed: its name only
        weights = "no-file"
    info = engine.info
    alpha = float(getattr(model.model, "upsampler_alpha", 0.0))
    return f"{model.name}|{weights}|alpha={alpha!r}|{type(engine).__name__}|{info.device.type}|{info.dtype}"


def _result_path(out_dir: Path, *parts) -> Path:
    """A name that depends on what the result is made of, so rerunning the same thing rewrites
    the same temp file instead of adding one."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]
    return out_dir / f"ParagonSR2_{digest}{RESULT_SUFFIX}"


def _upscale_file(model, engine, src: Path, options, out_dir: Path, start_s, duration_s, *, resumable: bool) -> Path:
    from ..engines.video import container, stream

    info = container.probe(src)
    width, height = info.display_size
    _prepare(engine, height, width, options)
    model_id = model_identity(model, engine)
    dst = _result_path(out_dir, container.identity(src), model_id, options.key(), start_s, duration_s)
    work_dir = bridge.output_dir() / WORK_FOLDER if resumable else None
    result = stream.upscale_file(
        engine,
        src,
        dst,
        options,
        work_dir=work_dir,
        model_id=model_id,
        start_s=start_s,
        duration_s=duration_s,
        progress=_progress(src.name),
        check_interrupt=bridge.check_interrupt,
        free_memory=lambda: bridge.free_memory(engine.device),
    )
    for note in result.notes:
        logger.info("%s: %s", NODE_NAME, note)
    if result.ended_early:
        logger.warning(
            "%s: %s. The result holds the %d frame(s) before that point.", NODE_NAME, result.ended_early, result.frames
        )
    logger.info("%s: %d frame(s) -> %s", NODE_NAME, result.frames, dst)
    return dst


def _prepare(engine, height: int, width: int, options: VideoOptions) -> None:
    """Have ComfyUI's model manager load the weights (or make room) for this frame size."""
    managed.prepare(
        engine, height, width, options.tile_size, batch=managed.frames_per_call(engine, options.frames_per_chunk)
    )


def _progress(name: str):
    """progress(done, total) for the stream: ComfyUI's bar per frame; says so when a run
    continues an interrupted one; logs done and elapsed when the container gives no total."""
    bar = bridge.make_progress()
    started = time.monotonic()
    state = {"first": True, "logged": started}

    def report(done: int, total: int | None) -> None:
        if state["first"]:
            state["first"] = False
            if done > 0:
                logger.info(
                    "%s: resuming %s at frame %d%s (the frames before it were kept from an interrupted run)",
                    NODE_NAME,
                    name,
                    done,
                    f" of {total}" if total else "",
                )
        if total:
            bar(min(done, total), total)
            return
        bar(done, done + 1)  # no total from the container: the bar moves, the log says how far
        now = time.monotonic()
        if now - state["logged"] >= LOG_EVERY_S:
            state["logged"] = now
            logger.info("%s: %s: %d frames in %.0f s", NODE_NAME, name, done, now - started)

    return report


# -- a VIDEO made of frames (Create Video) --------------------------------------------------------


def _upscale_components(model, engine, video, options: VideoOptions, out_dir: Path) -> Path:
    """Upscale a VIDEO that no file backs, from its frames tensor (the caller's memory), with its
    audio encoded as AAC beside the picture. Not resumable: there is no file to key it by."""
    from ..engines.runtime.checks import check_images
    from ..engines.video import container, stream
    from ..engines.video.encode import VideoWriter
    from ..engines.video.remux import join_segments

    _say_once("components", "a VIDEO made of frames (e.g. Create Video) is upscaled from memory; it cannot resume")
    components = video.get_components()
    images = components.images
    check_images(images, "video frames")
    n, height, width = (int(x) for x in images.shape[:3])
    _prepare(engine, height, width, options)
    # Timestamps as core writes such a video: the rate rounded to 1/1000 fps, one tick per frame.
    rate = Fraction(round(float(components.frame_rate) * 1000), 1000) or Fraction(24)
    time_base = 1 / rate
    frames = (container.Frame(i, i, float(i * time_base), images[i]) for i in range(n))
    dst = out_dir / f"ParagonSR2_{uuid.uuid4().hex[:16]}{RESULT_SUFFIX}"
    scratch = Path(tempfile.mkdtemp(prefix=".parts-", dir=out_dir))
    writer: list = []
    try:

        def sink(item) -> None:
            if not writer:
                h, w = item.images.shape[1:3]
                writer.append(
                    VideoWriter(
                        scratch / f"video{RESULT_SUFFIX}",
                        width=w,
                        height=h,
                        codec=options.codec,
                        quality=options.quality,
                        time_base=time_base,
                        rate=rate,
                        threads=stream.CODEC_THREADS,
                    )
                )
            for image, pts in zip(item.images, item.pts):
                writer[0].write(image, pts)

        stream.upscale_stream(
            engine,
            frames,
            sink,
            options,
            total=n,
            progress=_progress("the video"),
            check_interrupt=bridge.check_interrupt,
            free_memory=lambda: bridge.free_memory(engine.device),
        )
        if not writer:
            raise ValueError("ParagonSR2: the video has no frames")
        writer[0].close()
        audio = _write_audio(components.audio, scratch / "audio.m4a", n / rate)
        with atomic_output(dst) as tmp:
            notes = join_segments([scratch / f"video{RESULT_SUFFIX}"], tmp, source=audio)
        for note in writer[0].notes + notes:
            logger.info("%s: %s", NODE_NAME, note)
    finally:
        if writer:
            writer[0].abort()
        shutil.rmtree(scratch, ignore_errors=True)
    return dst


def _write_audio(audio, path: Path, seconds) -> Path | None:
    """A core AUDIO value ({'waveform': [B, C, S], 'sample_rate'}) as an AAC file, cut to
    ``seconds`` as core's Create Video -> Save Video cuts it; None when there is no audio."""
    if not audio or audio.get("waveform") is None:
        return None
    from ..engines.video.container import require_av

    av = require_av()
    rate = int(audio["sample_rate"])
    waveform = audio["waveform"][0, :, : math.ceil(rate * seconds)]
    layouts = {1: "mono", 2: "stereo", 6: "5.1"}
    if waveform.shape[0] not in layouts:
        waveform = waveform[:2]
    if waveform.shape[1] == 0:
        return None
    layout = layouts[waveform.shape[0]]
    samples = waveform.float().cpu().contiguous().numpy()
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


NODES = [ParagonSR2UpscaleVideoStreaming]
