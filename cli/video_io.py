"""Video files through PyAV (optional): decode in chunks of frames, encode the upscaled frames,
and copy (remux, no re-encoding) the source's audio and subtitle streams into the result.

Which video encoder a container gets, and whether a source stream fits the output container,
is decided up front (``plan_output``) so a bad pair is refused before any pixel is computed.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..engines.runtime.files import atomic_output
from .image_io import CliError, to_uint8

# Readable video inputs (.gif goes to the animated-image path, which keeps per-frame timing
# and transparency that FFmpeg's GIF demuxer does not).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
# Writable containers -> FFmpeg muxer name and video encoders in order of preference.
CONTAINERS = {
    ".mp4": ("mp4", ("libx264", "mpeg4")),
    ".m4v": ("mp4", ("libx264", "mpeg4")),
    ".mov": ("mov", ("libx264", "mpeg4")),
    ".mkv": ("matroska", ("libx264", "mpeg4")),
    ".avi": ("avi", ("libx264", "mpeg4")),
    ".ts": ("mpegts", ("libx264", "mpeg2video")),
    ".webm": ("webm", ("libvpx-vp9", "libsvtav1", "libaom-av1")),  # WebM allows only VP8/VP9/AV1
}
VIDEO_OUTPUT_SUFFIXES = tuple(CONTAINERS)
LOSSLESS_CODEC = "libx264rgb"


def _av():
    try:
        import av
    except ImportError:
        raise CliError(
            "video files need PyAV, which is not installed: pip install av "
            "(or extract frames to a folder and upscale the folder)"
        ) from None
    return av


class VideoReader:
    """Frames of the first video stream as [N, H, W, 3] float32 chunks in 0..1."""

    def __init__(self, path: Path):
        av = _av()
        try:
            self._container = av.open(str(path))
        except Exception as exc:  # PyAV raises its own error types per failure
            raise CliError(f"cannot open video {path}: {exc}") from None
        if not self._container.streams.video:
            self._container.close()
            raise CliError(f"{path} has no video stream")
        self.stream = self._container.streams.video[0]
        self.rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.frames = int(self.stream.frames or 0)  # 0 when the container does not say

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        batch: list[np.ndarray] = []
        for frame in self._container.decode(self.stream):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == size:
                yield torch.from_numpy(np.stack(batch)).float().div_(255)
                batch = []
        if batch:
            yield torch.from_numpy(np.stack(batch)).float().div_(255)

    def close(self) -> None:
        self._container.close()


def _encoder_available(av, name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:  # PyAV raises its own error type for an unknown codec
        return False
    return True


@dataclass
class OutputPlan:
    """What a video output will hold, decided before any frame is upscaled."""

    path: Path
    container: str  # FFmpeg muxer name
    codec: str  # video encoder
    copy: list[int] = field(default_factory=list)  # source stream indexes to remux
    copied: list[str] = field(default_factory=list)  # human descriptions of those
    dropped: list[str] = field(default_factory=list)  # streams that cannot go in, with the reason


def describe_stream(stream) -> str:
    ctx = stream.codec_context
    text = f"{stream.type} #{stream.index} {ctx.name if ctx else '?'}"
    lang = (stream.metadata or {}).get("language")
    return f"{text} ({lang})" if lang else text


def _fits(av, container: str, stream) -> str | None:
    """None when ``stream`` can be copied into ``container``, else the reason it cannot."""
    out = av.open(io.BytesIO(), mode="w", format=container)
    try:
        out.add_stream_from_template(stream)
        out.start_encoding()
    except Exception as exc:  # PyAV: ValueError ('format does not support ...') or FFmpegError
        text = str(exc)
        return "not a codec it accepts" if "does not support" in text else text.split(";")[0] or "refused"
    finally:
        try:
            out.close()
        except Exception:
            pass
    return None


def plan_output(path: Path, source: Path | None = None) -> OutputPlan:
    """Pick the encoder for ``path``'s container and which streams of ``source`` fit in it.

    Raises CliError for an unknown extension or a container whose every video encoder is
    missing from this PyAV build (e.g. .webm without libvpx-vp9 / AV1).
    """
    av = _av()
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise CliError(
            f"cannot write a video as {suffix or 'a file without extension'}; "
            f"video outputs: {' '.join(VIDEO_OUTPUT_SUFFIXES)} (or .gif/.webp/.png as an animation)"
        )
    container, encoders = CONTAINERS[suffix]
    codec = next((name for name in encoders if _encoder_available(av, name)), None)
    if codec is None:
        raise CliError(
            f"{suffix} videos need one of the encoders {', '.join(encoders)}, and this PyAV "
            f"build has none; choose .mp4 or .mkv"
        )
    plan = OutputPlan(path, container, codec)
    if source is None:
        return plan
    try:
        src = av.open(str(source))
    except Exception as exc:
        raise CliError(f"cannot open video {source}: {exc}") from None
    with src:
        for stream in src.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            reason = _fits(av, container, stream)
            if reason is None:
                plan.copy.append(stream.index)
                plan.copied.append(describe_stream(stream))
            else:
                plan.dropped.append(f"{describe_stream(stream)}: {suffix} cannot hold it ({reason})")
    return plan


class VideoWriter:
    """The upscaled video stream: ``codec`` (see CONTAINERS) in yuv420p at ``rate``."""

    def __init__(
        self, path: Path, rate: Fraction, width: int, height: int, codec: str | None = None, lossless: bool = False
    ):
        av = _av()
        if lossless:  # exact 8-bit RGB (H.264 4:4:4 RGB, qp 0): masters, and output comparisons
            if not _encoder_available(av, LOSSLESS_CODEC):
                raise CliError(f"lossless video needs the {LOSSLESS_CODEC} encoder, which this PyAV build lacks")
            codec = LOSSLESS_CODEC
        if codec is None:
            codec = plan_output(path).codec
        self._container = av.open(str(path), mode="w", format=CONTAINERS.get(path.suffix.lower(), (None,))[0])
        try:
            self.stream = self._container.add_stream(codec, rate=rate)
            self.stream.width, self.stream.height = width, height
            self.stream.pix_fmt = "rgb24" if codec == LOSSLESS_CODEC else "yuv420p"
            if codec == LOSSLESS_CODEC:
                self.stream.options = {"qp": "0"}
            elif codec == "libx264":
                self.stream.options = {"crf": "16"}
            elif codec == "libvpx-vp9":
                self.stream.options = {"crf": "24", "b": "0", "row-mt": "1"}
            elif codec in ("libsvtav1", "libaom-av1"):
                self.stream.options = {"crf": "28"}
            else:
                self.stream.bit_rate = max(2_000_000, width * height * 8)
        except BaseException:
            self._container.close()
            raise
        self._av = av

    def write(self, frames: torch.Tensor) -> None:
        """frames: [N, H, W, 3] float 0..1."""
        arr = to_uint8(frames)
        for rgb in arr:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self.stream.encode(frame):
                self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            for packet in self.stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def abort(self) -> None:
        """Close without flushing (the file is being thrown away)."""
        try:
            self._container.close()
        except Exception:
            pass


# -- remux: join video-only files and copy the source's audio/subtitles, no re-encoding ----------
@dataclass
class RemuxResult:
    copied: list[str]
    dropped: list[str]
    frames: int  # video packets written


def _video_packets(av, paths: Sequence[Path], out_stream):
    """(seconds, packet) of the first video stream of each file, in order, each file's
    timestamps shifted to start where the previous one ended (segments joined end to end)."""
    offset = Fraction(0)
    for path in paths:
        with av.open(str(path)) as src:
            stream = src.streams.video[0]
            tb = stream.time_base
            # size 0 = the demuxer's end-of-stream marker; some demuxers (Matroska) leave dts
            # unset on real packets, so order by whichever time stamp there is.
            packets = [p for p in src.demux(stream) if p.size and _time(p) is not None]
            if not packets:
                continue
            first = min(p.pts if p.pts is not None else p.dts for p in packets)
            end = max((p.pts if p.pts is not None else p.dts) + (p.duration or 0) for p in packets)
            shift = round(offset / tb) - first
            for packet in packets:
                _shift(packet, shift)
                packet.stream = out_stream
                yield float(_time(packet) * tb), packet
            offset += (end - first) * tb


def _time(packet):
    return packet.dts if packet.dts is not None else packet.pts


def _shift(packet, ticks: int) -> None:
    if packet.dts is not None:
        packet.dts += ticks
    if packet.pts is not None:
        packet.pts += ticks


def _stream_packets(av, source: Path, index: int, out_stream, start: float):
    """(seconds, packet) of one stream of ``source``, moved by -``start`` seconds so that it
    keeps its place relative to the video, which the output starts at 0."""
    with av.open(str(source)) as src:
        stream = src.streams[index]
        tb = stream.time_base
        shift = round(Fraction(start).limit_denominator(1 << 30) / tb)
        for packet in src.demux(stream):
            if not packet.size or _time(packet) is None:
                continue
            _shift(packet, -shift)
            if packet.pts is not None and packet.pts < 0 and _time(packet) < 0:
                continue  # before the first video frame
            packet.stream = out_stream
            yield float(_time(packet) * tb), packet


def _video_start(av, source: Path) -> float:
    with av.open(str(source)) as src:
        stream = src.streams.video[0] if src.streams.video else None
        if stream is None or stream.start_time is None:
            return 0.0
        return float(stream.start_time * stream.time_base)


def _keyed(feed_index: int, feed):
    """Sort keys that never tie (ties would make heapq compare packets)."""
    for k, (seconds, packet) in enumerate(feed):
        yield (seconds, feed_index, k), packet


def remux_into(tmp_path: Path, video_paths: Sequence[Path], audio_source: Path | None, plan: OutputPlan) -> int:
    """Write ``video_paths`` (joined) plus the ``plan.copy`` streams of ``audio_source`` into
    ``tmp_path`` (not atomic: the caller owns the temporary file). Returns video packets written."""
    av = _av()
    with av.open(str(video_paths[0])) as first:
        template = first.streams.video[0]
        out = av.open(str(tmp_path), mode="w", format=plan.container)
        try:
            video_out = out.add_stream_from_template(template)
            feeds = [_video_packets(av, video_paths, video_out)]
            if audio_source is not None and plan.copy:
                start = _video_start(av, audio_source)
                with av.open(str(audio_source)) as src:
                    outs = {i: out.add_stream_from_template(src.streams[i]) for i in plan.copy}
                feeds += [_stream_packets(av, audio_source, i, outs[i], start) for i in plan.copy]
            frames = 0
            # Interleave by decode time: the muxer then never buffers a whole stream in memory.
            merged = heapq.merge(*(_keyed(n, feed) for n, feed in enumerate(feeds)))
            for _, packet in merged:
                if packet.stream is video_out:
                    frames += 1
                out.mux(packet)
        finally:
            out.close()
    return frames


def remux(
    video_paths: Path | Sequence[Path], audio_source: Path | None, out_path: Path, *, overwrite: bool = False
) -> RemuxResult:
    """Join video-only files (same codec, size and rate; e.g. segments encoded by workers) in
    order, without re-encoding, and copy the audio and subtitle streams of ``audio_source``
    (the original input) that ``out_path``'s container accepts; the rest is reported in
    ``dropped``. ``out_path`` is written atomically (temp name beside it, renamed when complete).
    """
    paths = [Path(video_paths)] if isinstance(video_paths, (str, Path)) else [Path(p) for p in video_paths]
    out_path = Path(out_path)
    if not paths:
        raise CliError("nothing to join: no video files given")
    if out_path.exists() and not overwrite:
        raise CliError(f"{out_path} already exists; pass --overwrite to replace it, or choose another --output")
    plan = plan_output(out_path, audio_source)
    try:
        with atomic_output(out_path) as tmp:
            frames = remux_into(tmp, paths, audio_source, plan)
    except CliError:
        raise
    except Exception as exc:  # PyAV / FFmpeg errors: say what failed, not the error's class
        raise CliError(f"cannot join {', '.join(p.name for p in paths)} into {out_path}: {exc}") from None
    return RemuxResult(plan.copied, plan.dropped, frames)
