"""Reading video files, true to the source: what a file holds (``probe``), a stable identity for
resume keys (``identity``) and its frames, decoded lazily one at a time (``open_source``).

Frames are decoded the way ComfyUI's core Load Video decodes them (0.33's VideoFromFile):
planar float RGB (``gbrpf32le``, alpha in ``gbrapf32le``) for most formats, packed 8-bit
``rgb24``/``rgba`` divided by 255 for full-range JPEG-style YUV, RGB and palette sources; a
frame whose width is not a multiple of 32 is converted on a copy padded to a multiple of 32
with smeared borders (core does this because the converter's result otherwise depends on
memory alignment), and the display rotation is applied to the pixels. So the frames here equal
what core's ``get_components()`` gives for the same file (tested against a real core).

PyAV is optional: it is imported when a video is first touched, and a missing PyAV gives one
line saying how to install it (``require_av``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

# Readable video inputs (animated GIF/WebP/PNG are images: the image reader keeps their
# per-frame timing and transparency, which FFmpeg's GIF demuxer does not).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")

# Pixel formats core decodes through packed 8-bit RGB (then / 255) instead of planar float.
_PACKED_8BIT_FORMATS = ("yuvj420p", "yuvj422p", "yuvj444p", "rgb24", "rgba", "pal8")
_IDENTITY_CHUNK = 1 << 20  # the first and last MiB go into a file's identity


class PyAVMissing(ImportError):
    """PyAV is not installed; the message says how to get it."""


class VideoInputError(ValueError):
    """A video input that cannot be read at all (no video stream, not a media file); one line."""


def require_av():
    """The ``av`` module, or PyAVMissing with the install line."""
    try:
        import av
    except ImportError:
        raise PyAVMissing(
            "video files need PyAV, which is not installed: pip install av "
            "(or this pack's 'video' extra: pip install 'comfyui-paragonsr2[video]')"
        ) from None
    return av


def is_av_error(exc: BaseException) -> bool:
    """True for PyAV's own errors (FFmpeg failures), which carry a readable message."""
    try:
        from av.error import FFmpegError
    except ImportError:
        return False
    return isinstance(exc, FFmpegError)


def error_line(exc: BaseException) -> str:
    """One readable line for a PyAV/OS error: its reason ("No space left on device",
    "Invalid data found when processing input"), without the errno or the path echoed."""
    reason = getattr(exc, "strerror", None)
    if isinstance(reason, str) and reason.strip():
        text = reason.strip()
        detail = getattr(exc, "log", None)  # PyAV: (level, name, message) of FFmpeg's last log line
        if isinstance(detail, tuple) and len(detail) == 3 and detail[2]:
            text += f" ({str(detail[2]).strip()})"
        return text.splitlines()[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_error(path: Path, exc: BaseException) -> OSError:
    """The one-line OSError a failed video write becomes (keeps errno, e.g. ENOSPC for a full disk)."""
    error = OSError(f"cannot write {path}: {error_line(exc)}")
    error.errno = getattr(exc, "errno", None)
    return error


@dataclass(frozen=True)
class ColorInfo:
    """Colour metadata as the stream reports it (FFmpeg's enum values; None = unspecified)."""

    primaries: int | None = None
    transfer: int | None = None
    matrix: int | None = None
    range: int | None = None  # 1 = limited (MPEG/TV), 2 = full (JPEG/PC)

    def is_set(self) -> bool:
        return any(v is not None for v in (self.primaries, self.transfer, self.matrix, self.range))


@dataclass(frozen=True)
class SourceInfo:
    """What a video file holds, read from its header (and its first frame for the rotation)."""

    path: Path
    width: int  # as stored (before rotation)
    height: int
    frame_count: int | None  # the container's count; None when it does not say
    average_rate: Fraction | None
    time_base: Fraction  # of the video stream: Frame.pts is in these units
    duration_s: float | None  # of the video stream (or the container when the stream does not say)
    start_time_s: float  # the video stream's first timestamp, in seconds
    pix_fmt: str
    bit_depth: int  # 8 / 10 / 12 / 16: the deepest component of pix_fmt
    has_alpha: bool
    rotation: int  # display rotation in degrees counter-clockwise (0, 90, 180, 270)
    color: ColorInfo
    vfr: bool  # best effort: the frame durations seen in the first frames differ
    codec: str = ""
    container_format: str = ""
    audio: list[str] = field(default_factory=list)  # descriptions of the audio streams
    subtitles: list[str] = field(default_factory=list)  # descriptions of the subtitle streams

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames ``VideoSource.frames`` yields (rotation applied)."""
        return (self.height, self.width) if self.rotation % 180 == 90 else (self.width, self.height)

    @property
    def rate(self) -> Fraction:
        """The nominal frame rate (average, else 25): for encoder rate control, not timing."""
        return self.average_rate or Fraction(25)


@dataclass
class Frame:
    """One decoded frame: ``image`` is (H, W, 3) float32 in 0..1, or (H, W, 4) with alpha."""

    index: int  # 0 for the first frame yielded (after trimming)
    pts: int  # in SourceInfo.time_base, as in the source
    time_s: float  # pts in seconds
    image: torch.Tensor


def describe_stream(stream) -> str:
    """'audio #1 aac (eng)': how a stream is named in notes and messages."""
    ctx = stream.codec_context
    text = f"{stream.type} #{stream.index} {ctx.name if ctx is not None else '?'}"
    lang = (stream.metadata or {}).get("language")
    return f"{text} ({lang})" if lang else text


def identity(path: Path) -> str:
    """A key that changes when the file does: size, mtime (ns) and a hash of its first and
    last MiB (cheap on any size; catches an in-place rewrite that keeps size and mtime)."""
    path = Path(path)
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_IDENTITY_CHUNK))
        if st.st_size > _IDENTITY_CHUNK:
            handle.seek(max(_IDENTITY_CHUNK, st.st_size - _IDENTITY_CHUNK))
            digest.update(handle.read(_IDENTITY_CHUNK))
    return f"{st.st_size}-{st.st_mtime_ns}-{digest.hexdigest()[:32]}"


def _open_container(av, path: Path):
    try:
        return av.open(str(path))
    except FileNotFoundError:
        raise VideoInputError(f"{path}: no such file") from None
    except Exception as exc:  # PyAV raises its own error types per failure
        raise VideoInputError(f"cannot open video {path}: {error_line(exc)}") from None


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        raise VideoInputError(f"{path} has no video stream (it holds {kinds})")
    return container.streams.video[0]


def bit_depth_of(pix_fmt_or_format) -> int:
    """The deepest component of a pixel format (8 when unknown), as core's video_stream_bit_depth."""
    av = require_av()
    fmt = pix_fmt_or_format
    if isinstance(fmt, str):
        try:
            fmt = av.VideoFormat(fmt)
        except Exception:  # unknown name
            return 8
    if fmt is None or not fmt.components:
        return 8
    return max(c.bits for c in fmt.components)


def _has_alpha(fmt) -> bool:
    return fmt is not None and (fmt.name == "pal8" or any(c.is_alpha for c in fmt.components))


def _color(ctx) -> ColorInfo:
    def value(v):
        v = int(v) if v is not None else None
        return None if v in (None, 2) else v  # 2 = "unspecified" for primaries/trc/matrix

    rng = int(ctx.color_range) if ctx.color_range is not None else 0
    return ColorInfo(value(ctx.color_primaries), value(ctx.color_trc), value(ctx.colorspace), rng or None)


def _rotation_of(frame) -> int:
    return round(frame.rotation) % 360 if getattr(frame, "rotation", 0) else 0


def probe(path: Path) -> SourceInfo:
    """Read ``path``'s header and its first frames (rotation, frame timing); VideoInputError
    when it is not a readable video."""
    av = require_av()
    path = Path(path)
    with _open_container(av, path) as container:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        duration = None
        if stream.duration is not None:
            duration = float(stream.duration * tb)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        rotation, pts_seen, fmt = 0, [], ctx.format
        try:  # the first frames: rotation (display matrix), the real pixel format, frame timing
            for n, frame in enumerate(container.decode(stream)):
                if n == 0:
                    rotation, fmt = _rotation_of(frame), frame.format
                if frame.pts is not None:
                    pts_seen.append(frame.pts)
                if n >= 24:
                    break
        except Exception:  # a damaged start still probes; open_source reports the damage
            pass
        if not rotation:
            tag = (stream.metadata or {}).get("rotate")
            rotation = int(tag) % 360 if tag and tag.lstrip("-").isdigit() else 0
        steps = {b - a for a, b in zip(sorted(pts_seen), sorted(pts_seen)[1:])}
        pix_fmt = fmt.name if fmt is not None else (ctx.pix_fmt or "unknown")
        return SourceInfo(
            path=path,
            width=int(ctx.width),
            height=int(ctx.height),
            frame_count=int(stream.frames) if stream.frames else None,
            average_rate=Fraction(stream.average_rate) if stream.average_rate else None,
            time_base=tb,
            duration_s=duration,
            start_time_s=start,
            pix_fmt=pix_fmt,
            bit_depth=bit_depth_of(fmt),
            has_alpha=_has_alpha(fmt),
            rotation=rotation,
            color=_color(ctx),
            vfr=len(steps) > 1 and (max(steps) - min(steps)) > 1,  # 1 tick: rounding of a CFR rate
            codec=ctx.name if ctx is not None else "?",
            container_format=container.format.name,
            audio=[describe_stream(s) for s in container.streams.audio],
            subtitles=[describe_stream(s) for s in container.streams.subtitles],
        )


class _CoreConverter:
    """Frame -> float RGB(A) array exactly as core's get_components_internal converts it."""

    def __init__(self, av, first, time_base):
        self._av, self._time_base = av, time_base
        self.size = (first.width, first.height)  # the frame size every later frame must have
        alpha = _has_alpha(first.format)
        if first.format.name in _PACKED_8BIT_FORMATS:
            self.format, self.packed = ("rgba" if alpha else "rgb24"), True
        else:
            self.format, self.packed = ("gbrapf32le" if alpha else "gbrpf32le"), False
        self._graph = None

    def __call__(self, frame) -> torch.Tensor:
        if not self.packed and frame.width % 32 != 0:
            img = self._aligned(frame)
        else:
            img = frame.to_ndarray(format=self.format)
        rotation = _rotation_of(frame)
        if rotation:
            img = np.rot90(img, k=round(frame.rotation // 90), axes=(0, 1)).copy()
        if self.packed:  # as core: uint8 -> float, then / 255 (a division, not * 1/255)
            return torch.from_numpy(img).float() / 255.0
        return torch.from_numpy(img)

    def _aligned(self, frame) -> np.ndarray:
        # Pad to a multiple of 32 with smeared borders, convert, crop: as core does, so the
        # converter takes the same (aligned) path and the pixels equal core's.
        if self._graph is None:
            pad_w, pad_h = (frame.width + 31) // 32 * 32, (frame.height + 31) // 32 * 32
            graph = self._av.filter.Graph()
            src = graph.add_buffer(
                width=frame.width, height=frame.height, format=frame.format.name, time_base=self._time_base
            )
            pad = graph.add("pad", f"{pad_w}:{pad_h}:0:0")
            fill = graph.add(
                "fillborders", f"left=0:right={pad_w - frame.width}:top=0:bottom={pad_h - frame.height}:mode=smear"
            )
            sink = graph.add("buffersink")
            src.link_to(pad)
            pad.link_to(fill)
            fill.link_to(sink)
            graph.configure()
            self._graph = (graph, src, sink)
        _, src, sink = self._graph
        src.push(frame)
        out = sink.pull().to_ndarray(format=self.format)
        return np.ascontiguousarray(out[: frame.height, : frame.width])


def _drain(stream) -> list:
    """The frames a decoder still holds (reordering, threads), after a packet it refused."""
    try:
        return list(stream.codec_context.decode(None))
    except Exception:  # the decoder cannot even flush: nothing more to keep
        return []


class VideoSource:
    """Frames of a file's first video stream, decoded lazily (see ``open_source``)."""

    def __init__(self, path: Path, *, start_s: float = 0.0, duration_s: float | None = None, threads: int = 0):
        self.info = probe(path)
        self.start_s = max(0.0, float(start_s or 0.0))
        self.duration_s = float(duration_s) if duration_s else None
        self.threads = max(0, int(threads))
        self.ended_early: str | None = None
        self.notes: list[str] = []  # what the reader had to repair, each said once
        self.frames_decoded = 0
        self.last_time_s: float | None = None
        self._last_end_s: float | None = None  # when the last decoded frame stops showing
        self._av = require_av()
        self._container = _open_container(self._av, self.info.path)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    @property
    def expected_frames(self) -> int | None:
        """Frames this source should yield, when the container says (for progress)."""
        info = self.info
        if not self.start_s and not self.duration_s:
            return info.frame_count
        if info.average_rate and info.duration_s is not None:
            span = max(0.0, info.duration_s - self.start_s)
            if self.duration_s:
                span = min(span, self.duration_s)
            return max(0, round(span * float(info.average_rate)))
        return None

    def frames(self) -> Iterator[Frame]:
        """Yield the frames in presentation order; never raises for damage after the first frame:
        decoding stops and ``ended_early`` says where and why."""
        av, info = self._av, self.info
        if self._container is None:
            raise ValueError("the video source is closed")
        container = self._container
        stream = container.streams.video[0]
        if self.threads:
            stream.codec_context.thread_count = self.threads
        stream.codec_context.thread_type = "AUTO"
        tb = info.time_base
        # As core: the window is in the stream's own timestamps, start <= pts < start + duration.
        start_pts = int(self.start_s / tb)
        end_pts = int((self.start_s + self.duration_s) / tb) if self.duration_s else None
        if start_pts != 0:
            container.seek(start_pts, stream=stream)
        convert: _CoreConverter | None = None
        index, last_pts = 0, None
        step = max(1, round(1 / (info.rate * tb)))  # one nominal frame, in time_base ticks
        packets = container.demux(stream)
        damage: BaseException | None = None
        while damage is None:
            try:
                packet = next(packets)
                decoded = packet.decode()
            except StopIteration:
                break
            except Exception as exc:  # demuxer or decoder failure: keep what was decoded, say where
                if not is_av_error(exc) and not isinstance(exc, (OSError, ValueError)):
                    raise
                damage, decoded = exc, _drain(stream)  # the frames the decoder still holds are good
            for frame in decoded:
                pts = frame.pts
                if pts is not None and pts < start_pts:
                    continue
                if last_pts is not None and (pts is None or pts <= last_pts):
                    # A missing or backward timestamp (broken muxers): the frame goes one nominal
                    # frame after the previous one, as core does when it saves, and it is said once.
                    pts = last_pts + step
                    self._note_fixed_timestamp()
                elif pts is None:
                    pts = start_pts
                if end_pts is not None and pts >= end_pts:
                    return
                if convert is None:
                    convert = _CoreConverter(av, frame, tb)
                size = convert.size
                if (frame.width, frame.height) != size:
                    self._stopped(
                        f"the resolution changes mid-stream ({size[0]}x{size[1]} -> {frame.width}x{frame.height}); "
                        f"only the part before the change is read",
                        index,
                        changed_at=float(pts * tb),
                    )
                    return
                image = convert(frame)
                last_pts = pts
                self.frames_decoded, self.last_time_s = index + 1, float(pts * tb)
                self._last_end_s = float((pts + (frame.duration or step)) * tb)
                yield Frame(index, pts, self.last_time_s, image)
                index += 1
        if damage is not None:
            self._stopped(f"the input is damaged: {error_line(damage)}", index)
            if index == 0:
                raise VideoInputError(f"cannot decode {info.path}: {error_line(damage)}")
            return
        self._check_complete(index)

    def _note_fixed_timestamp(self) -> None:
        note = "some frames had missing or backward timestamps; each was placed one frame after the previous one"
        if note not in self.notes:
            self.notes.append(note)

    def _stopped(self, why: str, decoded: int, changed_at: float | None = None) -> None:
        where = (
            f"after {decoded} frame(s), last good frame at {self.last_time_s:.3f} s"
            if self.last_time_s is not None
            else "before the first frame"
        )
        if changed_at is not None:
            where += f", change at {changed_at:.3f} s"
        self.ended_early = f"{self.info.path.name}: decoding stopped {where}: {why}"

    def _check_complete(self, decoded: int) -> None:
        """At the end of the stream: a file that ends before its header says is truncated. Both
        the frame count and the duration must fall short where the header gives both, so an
        edit list that hides frames, or a long last frame of a variable-rate clip, is no alarm."""
        info, rate = self.info, self.info.average_rate
        expected = None if self.start_s or self.duration_s else info.frame_count  # a window: judged by time
        short_count = bool(expected) and decoded < expected
        short_time, end = None, 0.0  # unknown
        if info.duration_s is not None and rate and self._last_end_s is not None:
            end = info.start_time_s + info.duration_s
            if self.duration_s:
                end = min(end, self.start_s + self.duration_s)
            short_time = self._last_end_s < end - 1.5 / float(rate)
        if short_time is False or (short_time is None and not short_count):
            return
        if short_count and short_time:
            why = f"its header promises {expected} frames until {end:.3f} s"
        elif short_count:
            why = f"its header promises {expected} frames"
        else:
            why = f"its header says the video lasts until {end:.3f} s"
        self._stopped(f"the file is truncated ({why})", decoded)


def open_source(path: Path, *, start_s: float = 0.0, duration_s: float | None = None, threads: int = 0) -> VideoSource:
    """A context manager over ``path``'s frames. ``start_s``/``duration_s`` trim like core's
    trimmed VIDEO (frames with start <= pts < start + duration, in the video stream's own
    timestamps); ``threads`` bounds the decoder's threads (0 = FFmpeg's choice)."""
    return VideoSource(Path(path), start_s=start_s, duration_s=duration_s, threads=threads)
