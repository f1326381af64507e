"""Joining encoded segments into one file without re-encoding, with the source's audio and
subtitle streams copied in (trimmed to the same time range), packets unchanged.

Timestamps: a segment written by encode.VideoWriter carries its frames' source timestamps, so
the join keeps them as they are (moved as a whole so that the output starts at 0); segments
whose timestamps each start at 0 (older writers) are laid end to end instead. The source's
audio and subtitle packets are moved by the same amount, so they stay where they were relative
to the picture.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .container import describe_stream, is_av_error, require_av, write_error
from .encode import MUXERS, TS_LEAD_S, muxer_options


@dataclass
class StreamPlan:
    """Which audio/subtitle streams of a source go into an output container."""

    copy: list[int] = field(default_factory=list)  # source stream indexes to copy
    copied: list[str] = field(default_factory=list)  # their descriptions
    dropped: list[str] = field(default_factory=list)  # 'subtitle #2 subrip: .mp4 cannot hold it (...)'


def _muxer(suffix: str) -> str:
    suffix = suffix.lower()
    if suffix not in MUXERS:
        raise ValueError(f"cannot write a video as {suffix or 'a file without extension'}; use {' '.join(MUXERS)}")
    return MUXERS[suffix]


def _refusal(av, muxer: str, stream) -> str | None:
    """None when ``stream`` can be copied into ``muxer``, else why not (asked of FFmpeg itself)."""
    out = av.open(io.BytesIO(), mode="w", format=muxer)
    try:
        out.add_stream_from_template(stream, opaque=True)
        out.start_encoding()
    except Exception as exc:  # PyAV: ValueError ('format does not support ...') or FFmpegError
        text = str(exc)
        return "not a codec it accepts" if "does not support" in text else (text.split(";")[0] or "refused")
    finally:
        try:
            out.close()
        except Exception:  # a refused header leaves nothing to close cleanly
            pass
    return None


def stream_plan(source: Path | None, suffix: str) -> StreamPlan:
    """The audio and subtitle streams of ``source`` that a ``suffix`` file can hold (copied
    without re-encoding) and the ones it cannot, with the reason. Decided before any work."""
    plan = StreamPlan()
    if source is None:
        return plan
    av, muxer = require_av(), _muxer(suffix)
    with av.open(str(source)) as src:
        for stream in src.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            reason = _refusal(av, muxer, stream)
            if stream.type == "subtitle" and reason and muxer in ("mp4", "mov"):
                reason = f"{suffix} holds only mov_text subtitles"
            if reason is None:
                plan.copy.append(stream.index)
                plan.copied.append(describe_stream(stream))
            else:
                plan.dropped.append(f"{describe_stream(stream)}: {suffix} cannot hold it ({reason})")
    return plan


def _time(packet) -> int | None:
    return packet.dts if packet.dts is not None else packet.pts


def _seconds(packet, tb: Fraction, decode_order: bool = True) -> float:
    """The packet's decode (or presentation) time in seconds; 0 when it has none."""
    first, second = (packet.dts, packet.pts) if decode_order else (packet.pts, packet.dts)
    ticks = first if first is not None else second
    return float(ticks * tb) if ticks is not None else 0.0


def _shift(packet, ticks: int) -> None:
    if packet.dts is not None:
        packet.dts += ticks
    if packet.pts is not None:
        packet.pts += ticks


@dataclass
class _Segment:
    path: Path
    time_base: Fraction
    shift: int  # ticks added to every timestamp
    dts: dict[int, int] | None  # pts -> dts to use, where the container stores no dts (Matroska)


def _timestamps(av, path: Path) -> tuple[list[tuple[int | None, int | None, int]], Fraction]:
    """(pts, dts, duration) of each video packet of ``path``, in decode order (no payloads)."""
    with av.open(str(path)) as src:
        if not src.streams.video:
            raise ValueError(f"segment {path.name} has no video stream")
        stream = src.streams.video[0]
        # size 0 = the demuxer's end-of-stream marker
        stamps = [(p.pts, p.dts, p.duration or 0) for p in src.demux(stream) if p.size]
        return stamps, Fraction(stream.time_base)


def _plan_segments(av, paths: Sequence[Path]) -> tuple[list[_Segment], Fraction]:
    """Where each segment's packets go (a first pass reading timestamps only, so a long
    segment is never held in memory) and the source time the output's 0 stands for."""
    segments, origin, end = [], None, None
    for path in paths:
        stamps, tb = _timestamps(av, path)
        pts = [t for t in (p if p is not None else d for p, d, _ in stamps) if t is not None]
        if not pts:
            continue
        first, last = min(pts), max(pts) + max(d for _, _, d in stamps)
        if origin is None:
            origin = first * tb
        shift = -round(origin / tb)
        if end is not None and first * tb < end:  # a segment that restarts at 0: lay it end to end
            shift = round(end / tb) - first
        end = (last + shift) * tb + origin
        dts, order = None, [p for p, _, _ in stamps if p is not None]
        if any(d is None for _, d, _ in stamps) and len(order) == len(stamps):
            # Matroska stores no decode times and its demuxer leaves the first ones unset; the
            # muxer needs them increasing and never after pts: the sorted pts, moved back by
            # the reorder delay.
            ranked = sorted(order)
            delay = max(r - p for r, p in zip(ranked, order))
            dts = {p: r - delay for p, r in zip(order, ranked)}
        segments.append(_Segment(path, tb, shift, dts))
    if origin is None:
        raise ValueError("the segments hold no video packets")
    return segments, origin


def _video_feed(av, segments: list[_Segment], out_stream, frame_slots: bool) -> Iterator[tuple[float, object]]:
    """(seconds, packet) of every segment's video packets, timestamps moved as planned.
    ``frame_slots`` (AVI, which stores no timestamps, only the order at a fixed rate): the
    packets are numbered end to end instead."""
    slot = 0
    for seg in segments:
        with av.open(str(seg.path)) as src:
            stream = src.streams.video[0]
            for packet in src.demux(stream):
                if not packet.size or (packet.pts is None and not frame_slots):
                    continue
                if frame_slots:
                    packet.pts = packet.dts = slot
                    slot += 1
                else:
                    if seg.dts is not None and packet.pts is not None:
                        packet.dts = seg.dts[packet.pts]
                    _shift(packet, seg.shift)
                packet.stream = out_stream
                yield _seconds(packet, seg.time_base), packet


def _copied_feed(
    av, source: Path, index: int, out_stream, origin: Fraction, window, keep_priming: bool
) -> Iterator[tuple[float, object]]:
    """(seconds, packet) of one source stream moved by -origin; with a trim ``window``
    (start, end seconds of source time) only the packets that start inside it. Packets that
    end before the first frame (an AAC encoder's priming) are kept only where the container
    can say that they are not to be played (``keep_priming``: MP4/MOV edit lists); elsewhere
    they would be played, and lengthen the sound by their duration."""
    with av.open(str(source)) as src:
        stream = src.streams[index]
        tb = Fraction(stream.time_base)
        shift = -round(origin / tb)
        for packet in src.demux(stream):
            if not packet.size or _time(packet) is None:
                continue
            if window is not None:
                t = _seconds(packet, tb, decode_order=False)
                if t < window[0] - Fraction(1, 1000) or (window[1] is not None and t >= window[1]):
                    continue
            _shift(packet, shift)
            if not keep_priming and packet.pts is not None and packet.pts + (packet.duration or 0) <= 0:
                continue
            packet.stream = out_stream
            yield _seconds(packet, tb), packet


def _keyed(n: int, feed) -> Iterator:
    for k, (seconds, packet) in enumerate(feed):
        yield (seconds, n, k), packet  # never ties, so heapq never compares packets


def join_segments(
    segment_paths: Sequence[Path],
    dst_tmp: Path,
    *,
    source: Path | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> list[str]:
    """Write the video packets of ``segment_paths`` (in order, timestamps kept: each segment
    carries its frames' source timestamps) and the audio/subtitle streams of ``source`` that the
    container of ``dst_tmp`` can hold into ``dst_tmp`` (the caller renames it into place).
    ``start_s``/``duration_s``: the source range the video covers (the same trim as the
    decoder's). Returns notes: 'kept audio #1 aac', 'not kept: subtitle #2 subrip: ...'.

    Raises ValueError for no segments; OSError (one line) when writing fails (disk full)."""
    av = require_av()
    paths = [Path(p) for p in segment_paths]
    if not paths:
        raise ValueError("nothing to join: no video segments given")
    dst_tmp = Path(dst_tmp)
    plan, muxer = stream_plan(source, dst_tmp.suffix), _muxer(dst_tmp.suffix)
    trimmed = bool(start_s) or bool(duration_s)
    window = (Fraction(start_s).limit_denominator(1 << 30), None) if trimmed else None
    if window is not None and duration_s:
        window = (window[0], window[0] + Fraction(duration_s).limit_denominator(1 << 30))
    try:
        with av.open(str(paths[0])) as first:
            template = first.streams.video[0]
            out = av.open(
                str(dst_tmp),
                mode="w",
                format=muxer,
                options=muxer_options(dst_tmp.suffix, Fraction(template.time_base)),
            )
            try:
                video_out = out.add_stream_from_template(template, opaque=True)
                video_out.time_base = template.time_base
                segments, origin = _plan_segments(av, paths)
                # the source time of the first frame (our TS segments carry a fixed lead)
                source_origin = origin - TS_LEAD_S if "mpegts" in first.format.name.split(",") else origin
                feeds = [_video_feed(av, segments, video_out, frame_slots=muxer == "avi")]
                if source is not None and plan.copy:
                    with av.open(str(source)) as src:
                        outs = {i: out.add_stream_from_template(src.streams[i], opaque=True) for i in plan.copy}
                    for i in plan.copy:
                        feeds.append(
                            _copied_feed(av, source, i, outs[i], source_origin, window, muxer in ("mp4", "mov"))
                        )
                # Interleave by decode time: the muxer then never buffers a whole stream in memory.
                for _, packet in heapq.merge(*(_keyed(n, feed) for n, feed in enumerate(feeds))):
                    out.mux(packet)
            finally:
                out.close()
    except Exception as exc:  # FFmpeg's write errors (a full disk) become one OSError line
        if isinstance(exc, OSError) or is_av_error(exc):
            raise write_error(dst_tmp, exc) from None
        raise
    return [f"kept {text}" for text in plan.copied] + [f"not kept: {text}" for text in plan.dropped]
