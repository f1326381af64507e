"""What a Ray worker runs for a video (no Ray import here): the scene cuts of a range, and one
chunk upscaled and encoded into a segment.

Frames are decoded by the pipeline's own reader (engines/video/container.py), so a worker sees
exactly the frames the single-process run sees; the chunk goes through the same streaming
pipeline (engines/video/stream.py) after the same warm-up (chunks.warm_up), and its segment is
written by the same writer, with every frame's source timestamp (the driver's join keeps them).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import torch

from ...engines.runtime.files import atomic_output
from ...engines.video import chunks, container, encode, stream, temporal
from ...engines.video.options import VideoOptions
from .worker_engine import engine

_SOURCES: dict = {}  # stream mode: the job's source bytes, written once per worker process


@contextlib.contextmanager
def _source_path(job: dict, item: dict, payload: bytes | None):
    """The source as a path: the shared path, or (stream mode) the driver's bytes in a file
    kept for the job's later tasks on this worker."""
    if item["source"] is not None:
        yield Path(item["source"])
        return
    token = job["token"]
    if token not in _SOURCES:
        for old in _SOURCES.values():
            old.cleanup()
        _SOURCES.clear()
        folder = tempfile.TemporaryDirectory(prefix="paragonsr2-source-")
        (Path(folder.name) / f"source{job['suffix']}").write_bytes(payload or b"")
        _SOURCES[token] = folder
    yield Path(_SOURCES[token].name) / f"source{job['suffix']}"


def frames_from(path: Path, first_pts: int | None, skip: int, count: int, time_base: Fraction) -> Iterator:
    """``count`` frames (container.Frame) of the first video stream from the one with
    presentation time ``first_pts`` (the reader seeks to the keyframe before it), or, when the
    source has no usable timestamps, from the ``skip``-th frame (decoding from the start)."""
    start_s = float(first_pts * time_base) if first_pts is not None and skip > 0 else 0.0
    given = 0
    with container.open_source(path, start_s=start_s) as source:
        frames = source.frames()
        if first_pts is None:
            for _ in zip(range(skip), frames):
                pass
        for frame in frames:
            if given == 0 and first_pts is not None and skip > 0 and frame.pts != first_pts:
                raise RuntimeError(f"seek landed on frame pts {frame.pts}, not {first_pts}")
            yield frame
            given += 1
            if given == count:
                return
    if given < count:
        raise RuntimeError(f"the video ended after {given} of {count} frames of this chunk")


def _stacked(frames: Iterator, size: int) -> Iterator[torch.Tensor]:
    batch = []
    for frame in frames:
        batch.append(frame.image)
        if len(batch) == size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def scan_range(job: dict, item: dict, payload: bytes | None = None) -> dict:
    """The scene cuts in frames [start, end): decodes from ``decode_start`` (HISTORY_FRAMES
    earlier, so every decision has the history the single-process run gives it)."""
    start, end, decode_start = item["start"], item["end"], item["decode_start"]
    options = VideoOptions.from_dict(job["video"])
    finder = chunks.CutFinder(options.scene_cut_sensitivity)
    with _source_path(job, item, payload) as path:
        frames = frames_from(path, item["first_pts"], decode_start, end - decode_start, Fraction(job["time_base"]))
        for batch in _stacked(frames, 16):
            finder.add(batch)
    cuts = [decode_start + c for c in finder.cuts if decode_start + c >= start]
    return {"index": item["index"], "cuts": cuts, "frames": end - start}


def upscale_chunk(job: dict, item: dict, payload: bytes | None = None) -> dict:
    """item: chunk bounds (start, end, decode_start), first_pts (of decode_start), the source
    (path, or bytes in stream mode) and, in shared mode, the segment path to write."""
    runner = engine(job, video=True)
    options = VideoOptions.from_dict(job["video"])
    key = temporal.engine_key(runner)
    start, end, decode_start = item["start"], item["end"], item["decode_start"]
    with contextlib.ExitStack() as stack:
        path = stack.enter_context(_source_path(job, item, payload))
        info = container.probe(path)
        frames = frames_from(path, item["first_pts"], decode_start, end - decode_start, info.time_base)
        state = None
        if start > decode_start:  # the warm-up prefix builds the state only (no network)
            prefix = [next(frames).image for _ in range(start - decode_start)]
            state = chunks.warm_up(torch.stack(prefix), options, None, key)
            del prefix
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="paragonsr2-"))
        target = Path(item["segment"]) if job["transfer"] == "shared" else Path(folder) / f"segment{job['suffix']}"
        with atomic_output(target) as tmp:
            writer: list = []

            def sink(done: stream.Upscaled) -> None:
                if not writer:
                    writer.append(
                        encode.VideoWriter(
                            tmp,
                            width=done.images.shape[2],
                            height=done.images.shape[1],
                            codec=job["codec"],
                            quality=options.quality,
                            source=info,
                            time_base=info.time_base,
                            rate=info.rate,
                            threads=1,
                        )
                    )
                for image, pts in zip(done.images, done.pts):
                    writer[0].write(image, pts)

            try:
                written, _ = stream.upscale_stream(
                    runner, frames, sink, options, state=state, model_key=key, total=end - start
                )
            except BaseException:
                if writer:
                    writer[0].abort()
                raise
            if writer:
                writer[0].close()
        blob = None if job["transfer"] == "shared" else target.read_bytes()
    return {"index": item["index"], "frames": written, "blob": blob}
