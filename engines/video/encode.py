"""Writing the upscaled video stream: encoder choices checked against the installed PyAV build,
and a writer that keeps every frame's timestamp, the colour metadata and the bit depth.

Decisions (docs/video.md, "True to the source"):
- timestamps: each frame is written with the pts it had in the source (source time base), so a
  variable frame rate stays variable and a segment of a longer run keeps its place in time;
- rotation: frames arrive upright (the reader applies the display rotation to the pixels, as
  core does), so the output carries no rotation tag;
- colour: primaries / transfer / matrix / range of the source go on the encoder (and frames);
- depth: a source deeper than 8 bits is encoded at 10 bits where the encoder can (h264/h265/
  ffv1/prores), else at 8 bits with a note;
- 4:2:0 needs even sizes: an odd width/height is padded by repeating the last column/row
  (noted once); alpha is dropped by the MP4 codecs (noted once);
- every file is independently decodable (closed GOP, starts with a key frame), so segments
  can be joined without re-encoding (remux.join_segments).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .container import SourceInfo, is_av_error, require_av, write_error


@dataclass(frozen=True)
class Codec:
    """One encoder choice: ``name`` is what VideoWriter's ``codec`` takes."""

    name: str  # "h264", "h265", "h264 lossless", ...
    encoder: str  # FFmpeg encoder
    available: bool  # in this PyAV build
    why_not: str  # when not available: what is missing
    browser_preview: bool  # plays in a browser's <video> (the ComfyUI preview)
    lossless: bool
    max_depth: int  # deepest bit depth it can carry (8 or 10 here)
    containers: tuple[str, ...]  # file suffixes that can hold it
    note: str = ""  # shown next to the choice


@dataclass(frozen=True)
class _Spec:
    encoder: str
    lossless: bool
    browser_preview: bool
    containers: tuple[str, ...]
    pix8: str
    pix10: str | None  # None: 8-bit only
    note: str


_MP4ISH = (".mp4", ".m4v", ".mov", ".mkv")
_SPECS: dict[str, _Spec] = {
    "h264": _Spec("libx264", False, True, (*_MP4ISH, ".avi", ".ts"), "yuv420p", "yuv420p10le", "H.264, crf quality"),
    "h265": _Spec(
        "libx265",
        False,
        False,
        (*_MP4ISH, ".ts"),
        "yuv420p",
        "yuv420p10le",
        "H.265, crf quality; most browsers cannot preview it",
    ),
    "h264 lossless": _Spec(
        "libx264rgb",
        True,
        False,
        _MP4ISH,
        "rgb24",
        None,
        "H.264 RGB 4:4:4 at qp 0: identical 8-bit pixels; most browsers cannot preview it",
    ),
    "av1": _Spec("libsvtav1", False, True, (".mp4", ".mkv", ".webm"), "yuv420p", "yuv420p10le", "AV1, crf quality"),
    "vp9": _Spec("libvpx-vp9", False, True, (".webm", ".mkv", ".mp4"), "yuv420p", "yuv420p10le", "VP9, crf quality"),
    "ffv1": _Spec("ffv1", True, False, (".mkv",), "yuv444p", "yuv444p10le", "FFV1 lossless (MKV only), 10-bit"),
}
# Added to every timestamp of an MPEG-TS file the writer makes (see VideoWriter).
TS_LEAD_S = Fraction(10)
# Container suffix -> FFmpeg muxer name.
MUXERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".avi": "avi",
    ".ts": "mpegts",
    ".webm": "webm",
}


def _encoder(av, name: str):
    try:
        return av.Codec(name, "w")
    except Exception:  # PyAV raises its own error type for an unknown codec
        return None


def _supports(encoder, pix_fmt: str | None) -> bool:
    return pix_fmt is not None and encoder is not None and pix_fmt in {f.name for f in encoder.video_formats or ()}


def encoder_choices() -> list[Codec]:
    """Every codec choice with whether this PyAV build has its encoder (checked now)."""
    av = require_av()
    choices = []
    for name, spec in _SPECS.items():
        encoder = _encoder(av, spec.encoder)
        choices.append(
            Codec(
                name=name,
                encoder=spec.encoder,
                available=encoder is not None,
                why_not="" if encoder else f"this PyAV build has no {spec.encoder} encoder",
                browser_preview=spec.browser_preview,
                lossless=spec.lossless,
                max_depth=10 if _supports(encoder, spec.pix10) else 8,
                containers=spec.containers,
                note=spec.note,
            )
        )
    return choices


def codec_choice(name: str) -> Codec:
    """The choice called ``name``; ValueError naming the choices for an unknown one."""
    for choice in encoder_choices():
        if choice.name == name:
            return choice
    raise ValueError(f"unknown video codec {name!r}; choices: {', '.join(_SPECS)}")


def default_codec(suffix: str) -> str:
    """The codec a container gets when none is asked for (h264, or the first WebM codec there is)."""
    suffix = suffix.lower()
    for choice in encoder_choices():
        if choice.available and suffix in choice.containers and not choice.lossless:
            return choice.name
    raise ValueError(
        f"this PyAV build has no encoder for {suffix or 'a file without extension'} "
        f"(it needs one of {', '.join(c.encoder for c in encoder_choices() if suffix in c.containers) or 'none'})"
    )


def muxer_options(suffix: str, time_base: Fraction) -> dict[str, str]:
    """MP4/MOV: the movie timescale of the video's own time base. The muxer writes the start
    of a segment that does not begin at 0 as an edit list in the movie timescale (1/1000 s by
    default), which would move every frame of the segment by up to half a millisecond."""
    if MUXERS.get(suffix.lower()) in ("mp4", "mov") and time_base.numerator == 1 and time_base.denominator > 1000:
        return {"movie_timescale": str(time_base.denominator)}
    return {}


# Colour matrix (FFmpeg AVColorSpace) -> the converter's matrix: the one the decoder used for
# the same tag, so RGB -> YUV here inverts the source's YUV -> RGB.
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def _even(n: int) -> int:
    return n + (n & 1)


class VideoWriter:
    """One video stream into ``path`` (container from the suffix); frames written as produced.

    ``source``: the input's SourceInfo (colour, depth, alpha are taken from it); ``time_base``:
    the unit of the pts given to ``write`` (the source's); ``rate``: the nominal frame rate
    (rate control and the container's rate field; the timing is the pts); ``threads``: the
    encoder's thread count (bounded so the network keeps its cores); ``quality``: crf for the
    lossy codecs (lower = better; ignored by the lossless ones). ``notes``: what the output
    could not keep, each said once.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        codec: str = "h264",
        quality: int = 16,
        source: SourceInfo | None = None,
        time_base: Fraction | None = None,
        rate: Fraction | None = None,
        threads: int = 2,
    ):
        av = require_av()
        self._av, self.path = av, Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in MUXERS:
            raise ValueError(f"cannot write a video as {suffix or 'a file without extension'}; use {' '.join(MUXERS)}")
        choice = codec_choice(codec)
        if not choice.available:
            raise ValueError(f"video codec {codec!r}: {choice.why_not}")
        if suffix not in choice.containers:
            raise ValueError(f"{suffix} cannot hold {codec!r} video; it goes in {' '.join(choice.containers)}")
        spec = _SPECS[codec]
        self.codec, self.notes = codec, []
        self.rate = Fraction(rate) if rate else (source.rate if source else Fraction(25))
        self.time_base = Fraction(time_base) if time_base else (source.time_base if source else 1 / self.rate)
        # AVI stores no timestamps, only a frame rate: frames go on that rate's grid there.
        self._grid = 1 / self.rate if MUXERS[suffix] == "avi" else None
        # MPEG-TS cannot hold a negative decode time, so its muxer moves a file that has one
        # (B-frames before the first frame) by that much: a segment starting at 0 would be
        # moved and the next not. A fixed lead keeps every segment's times positive and
        # their relation intact; the join takes it off again (remux.join_segments).
        self._lead = round(TS_LEAD_S / self.time_base) if MUXERS[suffix] == "mpegts" else 0
        self.width, self.height = int(width), int(height)
        depth = source.bit_depth if source is not None else 8
        encoder = _encoder(av, spec.encoder)
        self.pix_fmt: str = spec.pix8
        if depth > 8 and spec.pix10 is not None and _supports(encoder, spec.pix10):
            self.pix_fmt, self.depth = spec.pix10, 10
            if depth > 10:
                self.notes.append(f"the source has {depth}-bit samples; {codec} keeps 10 bits")
        else:
            self.pix_fmt, self.depth = spec.pix8, 8
            if depth > 8:
                self.notes.append(f"the source has {depth}-bit samples; {codec} stores 8 bits (depth reduced)")
        chroma_420 = "420" in self.pix_fmt
        self.out_width, self.out_height = (
            (_even(self.width), _even(self.height)) if chroma_420 else (self.width, self.height)
        )
        if (self.out_width, self.out_height) != (self.width, self.height):
            self.notes.append(
                f"{self.width}x{self.height} padded to {self.out_width}x{self.out_height} "
                f"({codec} needs even sizes; the last column/row is repeated)"
            )
        self._alpha_noted = False
        if source is not None and source.has_alpha:
            self._note_alpha()
        self.color = source.color if source is not None else None
        self._container = None
        try:
            self._container = av.open(
                str(self.path), mode="w", format=MUXERS[suffix], options=muxer_options(suffix, self._stream_time_base)
            )
            stream: Any = self._container.add_stream(spec.encoder, rate=self.rate)
            stream.width, stream.height, stream.pix_fmt = self.out_width, self.out_height, self.pix_fmt
            stream.time_base = self._stream_time_base
            ctx = stream.codec_context
            ctx.time_base = self._stream_time_base
            ctx.framerate = self.rate
            ctx.thread_count = max(1, int(threads))
            self._set_color(ctx)
            stream.options = self._options(spec, int(quality), max(1, int(threads)))
            self.stream = stream
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) or is_av_error(exc):
                raise write_error(self.path, exc) from None
            raise
        self._last_pts: int | None = None
        self._last_slot: int | None = None
        self._grid_noted = False
        self.frames_written = 0

    def _note_alpha(self) -> None:
        if not self._alpha_noted:
            self._alpha_noted = True
            self.notes.append(
                f"the source has transparency (alpha); {self.codec} video cannot carry it, so it is dropped"
            )

    def _set_color(self, ctx) -> None:
        color = self.color
        if color is None:
            return
        if color.primaries is not None:
            ctx.color_primaries = color.primaries
        if color.transfer is not None:
            ctx.color_trc = color.transfer
        if color.matrix is not None and not self.pix_fmt.startswith(("rgb", "bgr", "gbr")):
            ctx.colorspace = color.matrix
        if color.range is not None:
            ctx.color_range = color.range

    def _options(self, spec: _Spec, quality: int, threads: int) -> dict[str, str]:
        if spec.encoder == "libx264rgb":
            return {"qp": "0"}
        if spec.encoder == "libx264":
            return {"crf": str(quality)}  # closed GOPs are x264's default
        if spec.encoder == "libx265":
            # open GOPs (x265's default) would make a segment depend on frames outside its file
            return {"crf": str(quality), "x265-params": f"open-gop=0:pools={threads}:log-level=error"}
        if spec.encoder == "libsvtav1":
            return {"crf": str(quality), "svtav1-params": f"lp={threads}"}
        if spec.encoder == "libvpx-vp9":
            return {"crf": str(quality), "b": "0", "row-mt": "1"}
        if spec.encoder == "ffv1":
            return {"level": "3", "g": "1"}
        return {}

    def write(self, image: torch.Tensor | np.ndarray, pts: int) -> None:
        """One frame: (H, W, 3|4) float 0..1, or uint8 / uint16 integers; ``pts`` in time_base."""
        if self._container is None:
            raise ValueError("the video writer is closed")
        arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if arr.ndim != 3 or arr.shape[:2] != (self.height, self.width) or arr.shape[2] not in (3, 4):
            raise ValueError(f"frame of shape {tuple(arr.shape)}; this writer takes ({self.height}, {self.width}, 3|4)")
        if arr.shape[2] == 4:
            self._note_alpha()
            arr = arr[..., :3]
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"frame pts {pts} is not after the previous one ({self._last_pts})")
        frame = self._frame(arr)
        self._last_pts = pts
        if self._grid is not None:
            pts = self._on_grid(pts)
        pts += self._lead
        frame.pts, frame.time_base = pts, self._stream_time_base
        try:
            for packet in self.stream.encode(frame):
                self._container.mux(packet)
        except BaseException as exc:
            raise self._write_error(exc) from None
        self.frames_written += 1

    @property
    def _stream_time_base(self) -> Fraction:
        return self._grid if self._grid is not None else self.time_base

    def _on_grid(self, pts: int) -> int:
        """The frame slot (in 1 / rate) nearest to ``pts``, after the previous frame's."""
        grid = self._grid
        if grid is None:
            return pts
        slot = round(pts * self.time_base / grid)
        if self._last_slot is not None and slot <= self._last_slot:
            slot = self._last_slot + 1
        if slot * grid != pts * self.time_base and not self._grid_noted:
            self._grid_noted = True
            self.notes.append(
                f"AVI stores no frame times, only a rate: frames placed on the {float(self.rate):g} fps grid"
            )
        self._last_slot = slot
        return slot

    def _frame(self, arr: np.ndarray):
        av, deep = self._av, self.depth > 8
        if arr.dtype == np.uint8:
            pixels = arr.astype(np.uint16) * 257 if deep else arr
        elif arr.dtype == np.uint16:
            pixels = arr if deep else ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
        else:
            peak = 65535.0 if deep else 255.0
            pixels = np.clip(np.rint(arr.astype(np.float32) * peak), 0, peak).astype(np.uint16 if deep else np.uint8)
        pad_h, pad_w = self.out_height - self.height, self.out_width - self.width
        if pad_h or pad_w:
            pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb48le" if deep else "rgb24")
        if self.pix_fmt == "rgb24":
            return frame
        color = self.color
        matrix = _SWS_MATRIX.get(color.matrix) if color is not None and color.matrix is not None else None
        rng = color.range if color is not None else None
        out = frame.reformat(format=self.pix_fmt, dst_colorspace=matrix, dst_color_range=rng)
        if color is not None:
            if color.matrix is not None:
                out.colorspace = color.matrix
            if color.range is not None:
                out.color_range = color.range
            if color.primaries is not None:
                out.color_primaries = color.primaries
            if color.transfer is not None:
                out.color_trc = color.transfer
        return out

    def _write_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, OSError) or is_av_error(exc):
            return write_error(self.path, exc)
        return exc

    def close(self) -> None:
        """Flush the encoder and finish the file (OSError with one line when the disk is full)."""
        if self._container is None:
            return
        try:
            for packet in self.stream.encode():
                self._container.mux(packet)
            self._container.close()
        except BaseException as exc:
            self.abort()
            raise self._write_error(exc) from None
        self._container = None

    def abort(self) -> None:
        """Close without flushing (the file is being thrown away); never raises."""
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # the file is being discarded; a failing close changes nothing
                pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


__all__ = [
    "MUXERS",
    "TS_LEAD_S",
    "Codec",
    "VideoWriter",
    "codec_choice",
    "default_codec",
    "encoder_choices",
    "muxer_options",
]
